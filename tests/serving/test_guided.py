"""Discriminator rejection sampling (best of K by D) and interpolation between seeds."""

import numpy as np
import pytest

from serving.engine import Engine
from serving.errors import ServingError
from serving.latent_paths import candidate_latent, slerp
from serving.latents import latent


@pytest.fixture(scope="module")
def engine(model_dir):
    return Engine(model_dir, warmup=False)


def test_keep_top_one_is_plain_generation(engine):
    images, stats = engine.generate_best_of([4, 5], keep_top=1.0)
    assert np.array_equal(images, engine.generate([4, 5]))
    assert stats["candidates_drawn"] == 2 and stats["acceptance_rate"] == 1.0


def test_best_of_four_picks_the_candidate_d_prefers(engine):
    images, stats = engine.generate_best_of([4, 5, 6], keep_top=0.25)
    assert len(images) == 3 and stats["candidates_drawn"] == 12 and stats["acceptance_rate"] == 0.25
    for seed, image, chosen in zip([4, 5, 6], images, stats["chosen_candidate"]):
        candidates = np.stack([candidate_latent(seed, j, 16, None) for j in range(4)])
        drawn = engine.run_generator({"z": candidates})
        logits = engine.run_discriminator({"images": drawn})
        assert chosen == int(np.argmax(logits)) and np.array_equal(image, drawn[chosen])
    assert np.array_equal(candidate_latent(9, 0, 16, None), latent(9, 16))  # candidate 0 is the seed's own


def test_best_of_is_deterministic_per_seed(engine):
    together = engine.generate_best_of([1, 2, 3], keep_top=0.25)[0]
    alone = engine.generate_best_of([2], keep_top=0.25)[0]
    assert np.array_equal(together[1], alone[0])


def test_bad_keep_top_is_refused(engine):
    with pytest.raises(ServingError, match="keep_top: 0.001 is not allowed"):
        engine.generate_best_of([1], keep_top=0.001)


def test_interpolation_ends_are_the_seeds_own_images(engine):
    frames = engine.interpolate(3, 8, 6)
    assert frames.shape == (6, 8, 8, 1)
    plain = engine.generate([3, 8])
    assert np.array_equal(frames[0], plain[0]) and np.array_equal(frames[-1], plain[1])
    assert not np.array_equal(frames[2], plain[0])


def test_conditional_interpolation_keeps_the_label(conditional_model_dir):
    engine = Engine(conditional_model_dir, warmup=False)
    frames = engine.interpolate(3, 8, 4, label=2)
    assert np.array_equal(frames[-1], engine.generate([8], labels=[2])[0])


def test_slerp_stays_on_the_sphere_between_equal_norm_points():
    a, b = np.array([1.0, 0.0], np.float32), np.array([0.0, 1.0], np.float32)
    path = slerp(a, b, 5)
    assert np.allclose(np.linalg.norm(path, axis=1), 1.0, atol=1e-6)
    assert np.allclose(path[2], [np.sqrt(0.5), np.sqrt(0.5)], atol=1e-6)
    with pytest.raises(ServingError, match="frames: 1 is not allowed"):
        slerp(a, b, 1)
