"""`ganserve project`: a folder of images in; latents.npy, reconstructions and a manifest out."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from serving.engine import Engine
from serving.formats.images import encode_png

GANSERVE = Path(sys.executable).parent / "ganserve"


def _ganserve(*args):
    return subprocess.run([str(GANSERVE), *map(str, args)], capture_output=True, text=True, timeout=120)


def test_project_a_folder(encoder_model_dir, tmp_path):
    engine = Engine(encoder_model_dir, warmup=False)
    images = engine.generate([20, 21, 22])
    (tmp_path / "in").mkdir()
    for i, image in enumerate(images):
        (tmp_path / "in" / f"g{i}.png").write_bytes(encode_png(image))
    (tmp_path / "in" / "notes.txt").write_text("not an image: skipped")
    run = _ganserve("project", encoder_model_dir, tmp_path / "in", "--out", tmp_path / "out", "--rounds", "4",
                    "--batch-size", "2", "--no-progress")
    assert run.returncode == 0, run.stderr
    rows = [json.loads(line) for line in (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()]
    assert [Path(r["image"]).name for r in rows] == ["g0.png", "g1.png", "g2.png"]
    latents = np.load(tmp_path / "out" / "latents.npy")
    assert latents.shape == (3, 16) and latents.dtype == np.float32
    expected = engine.project(images, rounds=4)  # the same in batches of 2 as in one
    np.testing.assert_array_equal(latents, expected.latents)
    for row, image in zip(rows, expected.images):
        assert row["psnr_db"] >= row["psnr_encoder_db"]
        assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / row["reconstruction"]))[:, :, None], image)
    assert "projected 3 images" in run.stdout and "after 4 rounds of 32 candidates" in run.stdout
    again = _ganserve("project", encoder_model_dir, tmp_path / "in", "--out", tmp_path / "out")
    assert again.returncode == 2 and "already holds a projection; pass --force" in again.stderr


def test_project_refuses_in_one_line(encoder_model_dir, model_dir, tmp_path):
    image = tmp_path / "a.png"
    image.write_bytes(encode_png(Engine(model_dir, warmup=False).generate([1])[0]))
    cases = [((model_dir, image), "has no encoder, so it cannot project images"),
             ((encoder_model_dir, image, "--rounds", "65"), "--rounds: 65 is not allowed; use 0 to 64"),
             ((encoder_model_dir, image, "--rounds", "64", "--candidates", "256"),
              "--rounds: 64 rounds of 256 candidates is 16384 runs of G per image"),
             ((encoder_model_dir, tmp_path / "missing"), "IMAGES: ")]
    for args, message in cases:
        run = _ganserve("project", *args, "--out", tmp_path / "out")
        lines = run.stderr.strip().splitlines()
        assert run.returncode == 2 and len(lines) == 1 and message in lines[0], run.stderr


def test_audit_finds_a_training_image(model_dir, tmp_path):
    from serving.formats.model_card import ModelCard
    from training.data import load_dataset, split_holdout
    from training.samples import to_uint8

    train, _ = split_holdout(load_dataset(ModelCard.read(model_dir).source["dataset"]), 0.5, 0)
    (tmp_path / "in").mkdir()
    for row in (3, 11):
        (tmp_path / "in" / f"train{row}.png").write_bytes(encode_png(to_uint8(train.images[row:row + 1])[0]))
    found = _ganserve("audit", model_dir, "--images", tmp_path / "in", "--top", "2", "--out", tmp_path / "audit")
    assert found.returncode == 0, found.stderr
    report = json.loads((tmp_path / "audit" / "audit.json").read_text())
    assert report["near_copies"] == 2
    assert {(Path(r["image"]).name, r["training_row"], r["similarity"]) for r in report["closest"]} == {
        ("train3.png", 3, 1.0), ("train11.png", 11, 1.0)}
    picture = np.asarray(Image.open(tmp_path / "audit" / "closest.png"))
    assert picture.shape[:2] == (1 + 9, 1 + 4 * 9)  # one row: two pairs of 8 px images, 1 px apart
    generated = _ganserve("audit", model_dir, "--seeds", "0-99", "--no-progress")
    assert generated.returncode == 0 and generated.stdout.startswith("100 images checked against 20 training images")
