"""Discriminator rejection sampling: deterministic per seed, never fewer images, calibrated rate."""

import numpy as np
import pytest

from serving.engine import Engine
from serving.errors import ServingError
from serving.requests import GenerateRequest, Rejection, generate_request
from serving.sampling import modes
from serving.sampling.rejection import AcceptanceRule


@pytest.fixture(scope="module")
def engine(model_dir):
    return Engine(model_dir, warmup=False)


def rejection(engine, seeds, rate, max_candidates=16):
    sampled = engine.sample(generate_request(engine.card, seeds=seeds, drs_accept=rate,
                                             drs_max_candidates=max_candidates))
    return sampled.images, sampled.stats


def test_acceptance_rule_hits_the_requested_rate_on_its_burn_in_set():
    logits = np.random.default_rng(0).normal(size=1000)
    for rate in (0.1, 0.25, 0.5, 0.9):
        rule = AcceptanceRule.fit(logits, rate)
        assert rule.probability(logits).mean() == pytest.approx(rate, abs=1e-3)
        assert rule.max_logit == logits.max()
    rule = AcceptanceRule.fit(logits, 0.25)
    assert np.all(np.diff(rule.probability(np.sort(logits))) >= 0)  # a higher logit is never less likely


def test_rate_one_returns_the_plain_images(engine):
    images, stats = rejection(engine, [1, 2, 3], 1.0)
    assert np.array_equal(images, engine.generate([1, 2, 3])) and stats["candidates_drawn"] == 3


def test_an_image_depends_only_on_its_seed_and_count_is_kept(engine):
    together, stats = rejection(engine, list(range(12)), 0.2, max_candidates=5)
    alone = rejection(engine, [7], 0.2, max_candidates=5)[0]
    assert np.array_equal(together[7], alone[0])
    assert len(together) == 12 and stats["accepted_by_test"] + stats["fallback_best_of_cap"] == 12
    assert 12 <= stats["candidates_drawn"] <= 12 * 5


def test_the_cap_falls_back_to_the_best_candidate():
    """With an acceptance probability of zero everywhere, the best of the cap is returned."""
    never = AcceptanceRule(max_logit=0.0, gamma=1e9)
    images_seen = []

    async def generate(feeds):
        images_seen.append(len(feeds["z"]))
        return np.arange(len(feeds["z"]), dtype=np.uint8).reshape(-1, 1, 1, 1)  # image k has value k

    async def score(feeds):
        return -np.abs(feeds["images"].reshape(-1).astype(np.float32) - 2)  # D likes the third candidate

    async def rule(rate, truncation):
        return never

    graphs = modes.Graphs(latent_dim=4, num_classes=0, generate=generate, score=score,
                          probability=lambda logits: logits, acceptance_rule=rule)
    request = GenerateRequest(seeds=[5], labels=None, mode=Rejection(0.25, 6))
    sampled = modes.run_now(modes.sample(request, graphs))
    assert sampled.stats["candidates_drawn"] == 6 and sampled.stats["accepted_by_test"] == 0
    assert images_seen == [4, 2] and sampled.images.reshape(-1).tolist() == [2]  # the third candidate


def test_bad_rates_are_refused(engine):
    with pytest.raises(ServingError, match="drs_accept: 0.001 is not allowed; use a fraction from 1/64 to 1"):
        rejection(engine, [1], 0.001)
    with pytest.raises(ServingError, match="drs_max_candidates: 0 is not allowed; use 1 to 64"):
        rejection(engine, [1], 0.5, max_candidates=0)


def test_a_new_rate_reuses_the_burn_in_logits(engine):
    half, quarter = engine.acceptance_rule(0.5), engine.acceptance_rule(0.25)
    assert len(engine._burn_in) == 1  # one burn-in set for both rates
    logits = engine.burn_in_logits()
    assert half.max_logit == quarter.max_logit == float(logits.max())
    assert half.probability(logits).mean() == pytest.approx(0.5, abs=1e-3)
    assert quarter.probability(logits).mean() == pytest.approx(0.25, abs=1e-3)
