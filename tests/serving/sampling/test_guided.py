"""Discriminator rejection sampling (best of K by D) and interpolation between seeds."""

import numpy as np
import pytest

from serving.engine import Engine
from serving.errors import ServingError
from serving.requests import Plain, generate_request
from serving.sampling.candidates import candidate_latent
from serving.sampling.interpolation import class_blend, slerp
from serving.sampling.latents import latent


@pytest.fixture(scope="module")
def engine(model_dir):
    return Engine(model_dir, warmup=False)


def best_of(engine, seeds, keep_top):
    sampled = engine.sample(generate_request(engine.card, seeds=seeds, keep_top=keep_top))
    return sampled.images, sampled.stats


def test_keep_top_one_is_plain_generation(engine):
    request = generate_request(engine.card, seeds=[4, 5], keep_top=1.0)
    assert request.mode == Plain()
    images, stats = best_of(engine, [4, 5], 1.0)
    assert np.array_equal(images, engine.generate([4, 5])) and stats == {}


def test_best_of_four_picks_the_candidate_d_prefers(engine):
    images, stats = best_of(engine, [4, 5, 6], 0.25)
    assert len(images) == 3 and stats["candidates_drawn"] == 12 and stats["acceptance_rate"] == 0.25
    for seed, image, chosen in zip([4, 5, 6], images, stats["chosen_candidate"]):
        candidates = np.stack([candidate_latent(seed, j, 16, None) for j in range(4)])
        drawn = engine.run_generator({"z": candidates})
        logits = engine.run_discriminator({"images": drawn})
        assert chosen == int(np.argmax(logits)) and np.array_equal(image, drawn[chosen])
    assert np.array_equal(candidate_latent(9, 0, 16, None), latent(9, 16))  # candidate 0 is the seed's own


def test_best_of_is_deterministic_per_seed(engine):
    together = best_of(engine, [1, 2, 3], 0.25)[0]
    alone = best_of(engine, [2], 0.25)[0]
    assert np.array_equal(together[1], alone[0])


def test_bad_keep_top_is_refused(engine):
    with pytest.raises(ServingError, match="keep_top: 0.001 is not allowed; use a fraction from 1/64 to 1"):
        best_of(engine, [1], 0.001)


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


def test_conditional_interpolation_blends_one_class_into_another(conditional_model_dir):
    engine = Engine(conditional_model_dir, warmup=False)
    assert engine.card.graphs["generator_blend"]["inputs"] == ["z", "label_weights"]
    frames = engine.interpolate(3, 8, 5, label=0, label_to=2)
    # the ends are the plain generations of (seed 3, class 0) and (seed 8, class 2)
    assert np.array_equal(frames[0], engine.generate([3], labels=[0])[0])
    assert np.array_equal(frames[-1], engine.generate([8], labels=[2])[0])
    # with one seed, only the class changes: the middle is neither class's image
    morph = engine.interpolate(4, 4, 5, label=1, label_to=2)
    ends = engine.generate([4, 4], labels=[1, 2])
    assert np.array_equal(morph[0], ends[0]) and np.array_equal(morph[-1], ends[1])
    assert not np.array_equal(morph[2], ends[0]) and not np.array_equal(morph[2], ends[1])
    # the class weights go linearly from one one-hot row to the other
    assert np.allclose(class_blend(1, 2, 3, 3), [[0, 1, 0], [0, 0.5, 0.5], [0, 0, 1]])


@pytest.mark.parametrize("kwargs, message", [
    ({"label_to": 2}, "label_to: give the first frame's class too"),
    ({"label": 0, "label_to": 3}, "label_to: 3 is not allowed; use a class index from 0 to 2"),
    ({"label": -1}, "class_label: -1 is not allowed"),
])
def test_bad_label_interpolation_is_refused(conditional_model_dir, kwargs, message):
    engine = Engine(conditional_model_dir, warmup=False)
    with pytest.raises(ServingError, match=message):
        engine.interpolate(1, 2, 3, **kwargs)


def test_label_interpolation_needs_a_blend_graph(conditional_model_dir, tmp_path, engine):
    import json
    import shutil

    old = tmp_path / "old"
    shutil.copytree(conditional_model_dir, old)
    card = json.loads((old / "model.json").read_text())  # as an older ganserve exported it
    del card["graphs"]["generator_blend"], card["files"]["generator_blend.onnx"]
    (old / "generator_blend.onnx").unlink()
    (old / "model.json").write_text(json.dumps(card))
    older = Engine(old, warmup=False)
    with pytest.raises(ServingError, match="no generator_blend graph .* export it again"):
        older.interpolate(1, 2, 3, label=0, label_to=1)
    assert len(older.interpolate(1, 2, 3, label=0)) == 3  # one class still works
    with pytest.raises(ServingError, match="label_to: this model is unconditional"):
        engine.interpolate(1, 2, 3, label_to=1)


def test_slerp_stays_on_the_sphere_between_equal_norm_points():
    a, b = np.array([1.0, 0.0], np.float32), np.array([0.0, 1.0], np.float32)
    path = slerp(a, b, 5)
    assert np.allclose(np.linalg.norm(path, axis=1), 1.0, atol=1e-6)
    assert np.allclose(path[2], [np.sqrt(0.5), np.sqrt(0.5)], atol=1e-6)


def test_too_few_frames_are_refused(engine):
    with pytest.raises(ServingError, match="frames: 1 is not allowed; use 2 to 64"):
        engine.interpolate(1, 2, 1)
