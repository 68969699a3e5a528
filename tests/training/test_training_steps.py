import pytest
import torch

from tests.training.helpers import tiny_config
from training import distributed
from training.data import load_dataset
from training.loop import Trainer


def _trainer(**overrides) -> Trainer:
    config = tiny_config(**overrides).validate()
    data = load_dataset(config.data, config.resolution, config.channels)
    return Trainer(config, data, distributed.Context(0, 1, torch.device("cpu")))


@pytest.mark.parametrize("loss,extra", [("nonsat", {}), ("hinge", {}), ("wgan-gp", {}),
                                        ("nonsat", {"r1_gamma": 1.0}), ("hinge", {"conditional": True}),
                                        ("nonsat", {"arch": "mlp"})])
def test_one_step_updates_both_networks(loss, extra):
    trainer = _trainer(loss=loss, **extra)
    g_before = [p.clone() for p in trainer.G.parameters()]
    d_before = [p.clone() for p in trainer.D.parameters()]
    losses = trainer.step()
    assert all(torch.isfinite(torch.tensor(v)) for v in losses.values())
    assert any(not torch.equal(a, b) for a, b in zip(g_before, trainer.G.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(d_before, trainer.D.parameters()))
    if loss == "wgan-gp" or extra.get("r1_gamma"):
        assert losses["penalty"] > 0
    else:
        assert losses["penalty"] == 0


def test_same_seed_same_step_on_cpu():
    a, b = _trainer(seed=5), _trainer(seed=5)
    a.step(), b.step()
    assert all(torch.equal(x, y) for x, y in zip(a.G.parameters(), b.G.parameters()))


def test_conditional_needs_labels(tmp_path):
    import numpy as np

    from training.errors import ConfigError
    np.savez(tmp_path / "d.npz", images=np.zeros((8, 8, 8), np.uint8))
    with pytest.raises(ConfigError, match="--conditional needs labelled data"):
        _trainer(data=f"npz:{tmp_path / 'd.npz'}", conditional=True)


def test_mnist_format_idx_files_train_at_28_pixels(idx_dir, tmp_path):
    from training.loop import train
    from training.release import read_release

    run = tmp_path / "run"
    train(tiny_config(data=f"idx:{idx_dir}", steps=2, checkpoint_every=2, conditional=True), run, progress=False)
    release = read_release(run)
    assert (release.spec.resolution, release.spec.channels, release.spec.num_classes) == (28, 1, 2)
    assert release.build_generator()(torch.randn(3, 100), torch.tensor([0, 1, 0])).shape == (3, 1, 28, 28)
    assert (run / "samples" / "step-00000002.png").is_file()


def test_bare_mnist_without_internet_says_what_to_do(monkeypatch, tmp_path):
    import urllib.error

    from training import data
    from training.errors import DataError

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setenv("GANSERVE_CACHE", str(tmp_path))
    monkeypatch.setattr(data.urllib.request, "urlopen", offline)
    with pytest.raises(DataError, match="could not download mnist .* use --data idx:DIR"):
        data.load_dataset("mnist")
    assert not list((tmp_path / "mnist").iterdir())  # no partial file left behind
