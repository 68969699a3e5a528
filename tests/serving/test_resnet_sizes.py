"""Large sizes end to end: a resnet at 128 and 256 px (tiny width) trained for a few steps on
a folder of photos of other sizes, exported with its parity checks, served over HTTP (the
routes in process) and sampled by the batch command."""

import io

import numpy as np
import pytest
from PIL import Image
from starlette.testclient import TestClient

pytestmark = pytest.mark.slow


def _photos(folder, count=8):
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(count):
        height, width = 180 + 7 * i, 300 - 5 * i  # landscape and odd sizes: cropped and resized
        ramp = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
        pixels = np.clip(ramp + rng.normal(0, 20, (height, width, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"photo{i}.jpg", quality=90)


@pytest.mark.parametrize("resolution", [128, 256])
def test_a_resnet_trains_exports_serves_and_samples(tmp_path, resolution):
    import dataclasses

    from export.exporter import ExportOptions, export_model
    from serving.cli import main
    from serving.engine import Engine
    from serving.http.app import Serving, create_app
    from serving.settings import Settings
    from training.config import TrainConfig
    from training.loop import train

    _photos(tmp_path / "photos")
    config = TrainConfig(data=f"folder:{tmp_path / 'photos'}", resolution=resolution, arch="resnet", width=16,
                         steps=2, batch_size=4, holdout=0.25, checkpoint_every=2, sample_every=1000, log_every=1)
    train(config, tmp_path / "run", progress=False)
    card = export_model(tmp_path / "run", ExportOptions(out=tmp_path / "model", calibration_samples=10))
    assert (card["architecture"], card["height"], card["channels"]) == ("resnet", resolution, 3)
    assert max(card["parity"]["generator"]["max_abs_diff"].values()) <= 1  # uint8 levels

    engine = Engine(tmp_path / "model", threads=1)
    images = engine.generate([0, 1])
    assert images.shape == (2, resolution, resolution, 3) and images.dtype == np.uint8
    serving = Serving(dataclasses.replace(Settings.from_env(), model=str(tmp_path / "model"), threads=1))
    serving.start()
    with TestClient(create_app(serving)) as client:
        png = client.post("/generate", json={"seed": 1}).content
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(png))), images[1])
        scored = client.post("/score", files=[("images", ("a.png", png, "image/png"))])
        assert scored.status_code == 200 and 0 < scored.json()["results"][0]["p_real"] < 1
    assert main(["sample", str(tmp_path / "model"), "--seeds", "0-1", "--out", str(tmp_path / "out"),
                 "--no-progress", "--workers", "1"]) == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / "seed00000000.png")), images[0])
