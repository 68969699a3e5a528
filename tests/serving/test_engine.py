import json

import numpy as np
import pytest

from serving.engine import Engine
from serving.errors import ModelFolderError, ServingError
from serving.runtime.graph import batch_buckets, bucket_rows, pad_rows
from serving.sampling.latents import latent, latents


@pytest.fixture(scope="module")
def engine(model_dir):
    return Engine(model_dir, max_batch=16)


def test_generate_gives_uint8_nhwc_of_the_model_shape(engine):
    images = engine.generate([0, 1, 2])
    assert images.shape == (3, 8, 8, 1) and images.dtype == np.uint8
    assert engine.provider == "CPUExecutionProvider" and engine.ready


def test_an_image_depends_only_on_its_seed(engine):
    seeds = list(range(40))  # crosses several chunks of max_batch=16
    together = engine.generate(seeds)
    alone = np.concatenate([engine.generate([s]) for s in seeds])
    shuffled = engine.generate(seeds[::-1])[::-1]
    assert np.array_equal(together, alone) and np.array_equal(together, shuffled)
    assert not np.array_equal(together[0], together[1])


def test_truncation_bounds_the_latent_and_is_deterministic(engine):
    z = latent(123, 16, truncation=0.5)
    assert np.abs(z).max() <= 0.5
    assert np.array_equal(z, latent(123, 16, truncation=0.5))
    plain = latent(123, 16)
    kept = np.abs(plain) <= 0.5
    assert np.array_equal(z[kept], plain[kept])  # only components beyond psi are redrawn
    assert np.array_equal(engine.generate([5], truncation=0.5), engine.generate([5, 6], truncation=0.5)[:1])
    with pytest.raises(ServingError, match="truncation: 0.01 is not allowed"):
        engine.generate([1], truncation=0.01)


def test_latents_are_batch_independent_and_seeded():
    assert np.array_equal(latents([3, 4], 8)[1], latent(4, 8))
    assert not np.array_equal(latent(3, 8), latent(4, 8))


@pytest.mark.parametrize("seed", [-1, 2**63, 1.5, True])
def test_bad_seeds_are_refused(engine, seed):
    with pytest.raises(ServingError, match=r"seeds\[0\]: .* is not allowed; seeds are integers from 0 to 2\*\*63-1"):
        engine.generate([seed])


def test_score_gives_logits_and_calibrated_probabilities(engine):
    logits, p = engine.score(engine.generate(range(5)))
    calibration = engine.card.calibration
    assert logits.shape == p.shape == (5,) and len(set(logits.tolist())) == 5  # one logit per image
    expected = 1 / (1 + np.exp(-(calibration["a"] * logits.astype(np.float64) + calibration["b"])))
    assert np.allclose(p, expected, atol=1e-6)  # Platt's calibration from model.json
    with pytest.raises(ServingError, match=r"shape \[N, 8, 8, 1\]"):
        engine.score(np.zeros((2, 9, 9, 1), np.uint8))
    with pytest.raises(ServingError, match="uint8"):
        engine.score(np.zeros((2, 8, 8, 1), np.float32))


def test_conditional_labels(conditional_model_dir):
    engine = Engine(conditional_model_dir, warmup=False)
    default = engine.generate([0, 1, 2, 3])
    assert np.array_equal(default, engine.generate([0, 1, 2, 3], labels=[0, 1, 2, 0]))  # seed % classes
    assert not np.array_equal(default[:1], engine.generate([0], labels=[1]))
    with pytest.raises(ServingError, match=r"labels\[0\]: 3 is not allowed; use a class index from 0 to 2"):
        engine.generate([0], labels=[3])
    with pytest.raises(ServingError, match="give one label per image"):
        engine.score(default)
    assert engine.score(default, labels=[0, 1, 2, 0])[0].shape == (4,)


def test_unconditional_model_refuses_labels(engine):
    with pytest.raises(ServingError, match="unconditional"):
        engine.generate([0], labels=[1])


def test_a_changed_file_is_refused(model_dir, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(model_dir, copy)
    data = bytearray((copy / "generator.onnx").read_bytes())
    data[-1] ^= 1
    (copy / "generator.onnx").write_bytes(bytes(data))
    with pytest.raises(ModelFolderError, match="sha256 does not match"):
        Engine(copy)


def test_a_newer_format_is_refused(model_dir, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(model_dir, copy)
    card = json.loads((copy / "model.json").read_text())
    (copy / "model.json").write_text(json.dumps({**card, "format_version": 3}))
    with pytest.raises(ModelFolderError, match="format_version 3 is newer"):
        Engine(copy)


def test_unknown_device_is_refused(model_dir):
    with pytest.raises(ServingError, match="device: 'tpu'"):
        Engine(model_dir, device="tpu")


def test_cuda_request_on_a_cpu_machine_reports_the_fallback(model_dir, caplog):
    engine = Engine(model_dir, device="cuda", warmup=False)
    assert engine.provider == "CPUExecutionProvider" and engine.fell_back
    assert "ONNX Runtime gave CPUExecutionProvider" in caplog.text
    assert engine.info()["provider"] == "CPUExecutionProvider"


@pytest.mark.parametrize("threads", [2, 16])  # 16: more cores than rows in a batch of 8
def test_batches_split_across_cores_equal_one_thread(model_dir, threads):
    split, single = Engine(model_dir, threads=threads, warmup=False), Engine(model_dir, threads=1, warmup=False)
    # single-threaded twins only when there are cores to split over
    assert split.generator.splits_batches and not single.generator.splits_batches
    for count in (8, 9):
        assert np.array_equal(split.generate(list(range(count))), single.generate(list(range(count))))
    seeds = list(range(37))  # uneven parts, above the split threshold
    images = split.generate(seeds)
    assert np.array_equal(images, single.generate(seeds))
    assert np.array_equal(split.score(images)[0], single.score(images)[0])
    assert np.array_equal(split.generate([5]), single.generate([5]))  # small batches: one run


def test_batch_buckets_are_powers_of_two_up_to_the_cap():
    assert batch_buckets(64) == (1, 2, 4, 8, 16, 32, 64)
    assert batch_buckets(48) == (1, 2, 4, 8, 16, 32, 48)
    assert [bucket_rows(n, 64) for n in (1, 2, 3, 5, 33, 64)] == [1, 2, 4, 8, 64, 64]
    assert bucket_rows(40, 48) == 48


def test_padded_batches_leave_every_row_unchanged(model_dir):
    """GPU engines pad runs to a few batch sizes; the real rows must come out as without padding."""
    padded = Engine(model_dir, max_batch=16, threads=1, pad_batches=True, warmup=False)
    plain = Engine(model_dir, max_batch=16, threads=1, pad_batches=False, warmup=False)
    assert not Engine(model_dir, threads=1, warmup=False).generator.pad_batches  # the CPU default
    for count in (1, 3, 5, 16, 21):  # 21: a full chunk of 16, then 5 rows padded to 8
        seeds = list(range(100, 100 + count))
        assert np.array_equal(padded.generate(seeds), plain.generate(seeds))
    images = plain.generate(list(range(7)))
    assert np.array_equal(padded.score(images)[0], plain.score(images)[0])
    feeds = pad_rows({"z": np.arange(6, dtype=np.float32).reshape(3, 2)}, 4)
    assert feeds["z"].tolist() == [[0, 1], [2, 3], [4, 5], [0, 1]]


def test_auto_device_is_the_cpu_when_the_gpu_build_finds_no_gpu(monkeypatch):
    """onnxruntime-gpu lists its GPU providers on any host; auto must not pick them without a GPU
    (the device count is replaced: this machine's real count is 0, a GPU machine's is not)."""
    from serving.runtime import providers

    gpu_build = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(providers.ort, "get_available_providers", lambda: gpu_build)
    monkeypatch.setattr(providers, "cuda_device_count", lambda: 0)
    assert providers.usable_providers("auto") == ["CPUExecutionProvider"]
    assert providers.usable_providers("cuda") == ["CPUExecutionProvider"]  # the engine then warns that it fell back
    monkeypatch.setattr(providers, "cuda_device_count", lambda: 1)
    monkeypatch.setattr(providers, "_tensorrt_libraries_present", lambda: False)
    monkeypatch.setattr(providers, "_preload_cuda_libraries", lambda: None)
    assert providers.usable_providers("auto") == ["CUDAExecutionProvider", "CPUExecutionProvider"]


def test_start_up_re_checks_the_exports_outputs_on_this_runtime(model_dir, tmp_path):
    import shutil

    import onnxruntime as ort

    from serving.formats.files import sha256_file

    engine = Engine(model_dir, threads=1)
    info = engine.info()
    assert info["spot_check"]["verdict"] == "ok" and info["spot_check"]["max_level_diff"] <= 1
    assert info["runtime"] == f"onnxruntime {ort.__version__}" and info["parity_measured_with"]
    # a runtime that computed something else: the saved images far from what this one makes
    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    with np.load(broken / "spot_check.npz") as saved:
        arrays = {key: saved[key] for key in saved.files}
    arrays["images"] = 255 - arrays["images"]
    np.savez(broken / "spot_check.npz", **arrays)
    card = json.loads((broken / "model.json").read_text())
    card["files"]["spot_check.npz"] = sha256_file(broken / "spot_check.npz")
    (broken / "model.json").write_text(json.dumps(card))
    with pytest.raises(ServingError, match="levels away from the export's"):
        Engine(broken, threads=1)
