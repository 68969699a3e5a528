"""Projection on the engine (ONNX Runtime, no torch): G's own images come back close, the
refinement never loses to the encoder, an image projects alike alone or in a batch, and the
latents found go back into /generate's and /interpolate's requests."""

import numpy as np
import pytest

from serving.engine import Engine
from serving.errors import NoEncoder, ServingError
from serving.requests import MAX_PROJECT_RUNS, generate_request, interpolate_request, project_request
from serving.sampling import modes
from serving.sampling.projection import pixel_mse, psnr_db, recombination_weights

# G's own images of the 8 px test model, from E after 300 steps and 8 rounds of 32 candidates:
# measured 23.6 dB from E and 32.5 dB refined (docs/projection.md states the figures at 28 and 64 px)
OWN_IMAGES_PSNR_DB = 28.0


@pytest.fixture(scope="module")
def engine(encoder_model_dir):
    return Engine(encoder_model_dir, warmup=False)


def test_gs_own_images_are_recovered(engine):
    images = engine.generate(list(range(100, 132)))
    projected = engine.project(images)
    assert projected.latents.shape == (32, 16) and projected.latents.dtype == np.float32
    assert np.all(projected.mse <= projected.mse_encoder)  # refinement keeps E's guess unless it finds better
    assert psnr_db(projected.mse).mean() >= OWN_IMAGES_PSNR_DB
    assert psnr_db(projected.mse).mean() >= psnr_db(projected.mse_encoder).mean() + 3
    np.testing.assert_allclose(projected.mse, pixel_mse(projected.images, images))
    assert projected.p_real.shape == (32,) and np.all((projected.p_real > 0) & (projected.p_real < 1))
    assert projected.stats == {"rounds": 8, "candidates": 32, "generator_rows": 32 * (1 + 8 * 32)}


def test_more_rounds_come_closer(engine):
    images = engine.generate(list(range(8)))
    distances = [psnr_db(engine.project(images, rounds=rounds).mse).mean() for rounds in (0, 4, 16)]
    assert distances[0] < distances[1] < distances[2], distances


def test_an_image_projects_alike_alone_or_in_a_batch(engine):
    images = engine.generate([5, 6, 7])
    together = engine.project(images)
    alone = engine.project(images[1:2])
    np.testing.assert_array_equal(together.latents[1], alone.latents[0])
    np.testing.assert_array_equal(together.images[1], alone.images[0])


def test_projected_latents_generate_and_interpolate(engine):
    images = engine.generate([11, 12])
    projected = engine.project(images)
    request = generate_request(engine.card, latents=projected.latents.tolist())
    assert request.seeds == [] and request.latents.shape == (2, 16)
    np.testing.assert_array_equal(engine.sample(request).images, projected.images)
    frames = modes.run_now(modes.interpolate(interpolate_request(
        engine.card, latent_from=projected.latents[0].tolist(), seed_to=3, frames=4), engine.graphs))
    np.testing.assert_array_equal(frames[0], projected.images[0])
    np.testing.assert_array_equal(frames[-1], engine.generate([3])[0])
    clipped = generate_request(engine.card, latents=[[3.0] * 16], truncation=0.5)
    assert clipped.latents.max() == 0.5  # truncation clips given latents: they have no stream to redraw from


@pytest.mark.parametrize("fields, message", [
    ({"latents": [[0.0] * 15]}, "latents[0]: 15 numbers; this model's latents have 16"),
    ({"latents": [[0.0] * 16], "seed": 3}, "latents: give latents or seed, not both"),
    ({"latents": [[0.0] * 16], "keep_top": 0.5}, "keep_top: draws candidates from seeds' streams"),
    ({"latents": [[float("nan")] * 16]}, "latents[0]: [NaN"),
    ({"latents": [[0.0] * 16], "n": 2}, "n: 2 does not match the 1 latents given"),
])
def test_bad_latents_are_refused(engine, fields, message):
    with pytest.raises(ServingError) as error:
        generate_request(engine.card, **fields)
    assert message in str(error.value)


def test_projection_requests_are_checked(engine, model_dir):
    images = engine.generate([1])
    with pytest.raises(ServingError, match=f"rounds: 64 rounds of 128 candidates is 8192 runs of G per image, more "
                                           f"than the limit of {MAX_PROJECT_RUNS}"):
        project_request(engine.card, images, rounds=64, candidates=128)
    with pytest.raises(ServingError, match="candidates: 1 is not allowed; use 2 to 256"):
        project_request(engine.card, images, candidates=1)
    with pytest.raises(ServingError, match=r"images: got uint8 \[1, 4, 4, 1\]; the model projects uint8 images"):
        project_request(engine.card, images[:, :4, :4])
    plain = Engine(model_dir, warmup=False)
    with pytest.raises(NoEncoder, match="has no encoder, so it cannot project images; train one with 'ganserve "
                                        "train-encoder RUN'") as error:
        plain.project(images)
    assert error.value.status_code == 400


def test_recombination_weights():
    weights = recombination_weights(8)
    assert weights.sum() == pytest.approx(1.0) and np.all(np.diff(weights) < 0)
