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


@pytest.mark.parametrize("extra", [{}, {"conditional": True}, {"resolution": 16, "channels": 3}])
def test_dcgan_trains_in_channels_last_with_the_same_values_as_contiguous(extra):
    # float32: the layout changes the order of sums, which bfloat16 (dcgan's default where the CPU has
    # it) would round far past the tolerance that shows a layout bug
    fast, plain = _trainer(seed=3, amp="off", **extra), _trainer(seed=3, amp="off", **extra)
    plain.use_layout(torch.contiguous_format)
    for net in (fast.G, fast.D):
        kernels = [p for p in net.parameters() if p.dim() == 4 and p.shape[1] > 1]
        assert kernels and all(p.is_contiguous(memory_format=torch.channels_last) for p in kernels)
        assert not any(p.is_contiguous() for p in kernels)
    for _ in range(3):
        fast.step(), plain.step()
    for net in ("G", "D", "G_ema"):  # the layout changes the order of float sums, nothing more
        for a, b in zip(getattr(fast, net).parameters(), getattr(plain, net).parameters()):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


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


def test_relativistic_loss_and_zero_centred_penalties():
    from training.losses import discriminator_loss, generator_loss

    real, fake = torch.tensor([2.0, 0.0]), torch.tensor([0.0, 1.0])
    expected_d = torch.nn.functional.softplus(-(real - fake)).mean()
    assert torch.isclose(discriminator_loss("rpgan", real, fake), expected_d)
    assert torch.isclose(generator_loss("rpgan", fake, real), torch.nn.functional.softplus(-(fake - real)).mean())


def test_resnet_recipe_trains_with_r1_r2_and_schedules():
    trainer = _trainer(arch="resnet", steps=4)
    assert (trainer.config.loss, trainer.config.spectral_norm, trainer.config.schedules) == ("rpgan", False, True)
    assert trainer.config.beta1 == 0.0 and trainer.config.width == 8  # tiny_config's width, not the recipe's
    losses = [trainer.step() for _ in range(3)]
    assert all(loss["penalty"] > 0 for loss in losses)  # R1 and R2 on every step
    assert trainer.opt_g.param_groups[0]["lr"] < 2e-4  # the cosine has started
    assert trainer.opt_d.param_groups[0]["betas"][1] > 0.9


def test_lazy_regularisation_applies_the_penalties_every_n_steps():
    trainer = _trainer(arch="resnet", penalty_every=2, steps=4)
    penalties = [trainer.step()["penalty"] for _ in range(4)]
    assert penalties[0] > 0 and penalties[1] == 0 and penalties[2] > 0 and penalties[3] == 0


def test_schedules_are_functions_of_the_step():
    from training.schedules import at, cosine

    config = tiny_config(arch="resnet", steps=100, ema_half_life=2.0).resolved()
    start, middle, end = at(config, 0), at(config, 50), at(config, 100)
    assert (start.lr_g, end.lr_g) == (2e-4, pytest.approx(5e-5)) and middle.lr_g == pytest.approx(1.25e-4)
    assert (start.beta2, end.beta2) == (0.9, pytest.approx(0.99))
    assert (start.gamma_scale, end.gamma_scale) == (1.0, pytest.approx(0.1))
    assert (start.ema_half_life_images, end.ema_half_life_images) == (0.0, pytest.approx(2000.0))
    assert (start.augment_p, end.augment_p) == (0.0, pytest.approx(1.0))
    assert at(config, 50) == at(config, 50) and cosine(150, 100, 1.0, 0.0) == 0.0
    flat = tiny_config(steps=100, lr_decay_from=1.0).resolved()  # dcgan without its decay: nothing moves
    assert at(flat, 0) == at(flat, 100)


def test_learning_rates_hold_then_fall_from_lr_decay_from():
    from training.errors import ConfigError
    from training.schedules import at

    config = tiny_config(steps=100, lr_decay_from=0.6, lr_final=5e-5).resolved()  # dcgan: 5e-4, no --schedules
    lrs = [at(config, step).lr_g for step in (0, 30, 60, 80, 100, 120)]
    assert lrs[:3] == [5e-4] * 3 and lrs[3] == pytest.approx((5e-4 + 5e-5) / 2)
    assert lrs[4] == lrs[5] == pytest.approx(5e-5) and at(config, 80).lr_d == lrs[3]
    assert at(config, 80).beta2 == at(config, 0).beta2 == 0.99  # only the rates move without --schedules
    assert tiny_config(steps=100).resolved().lr_decay_from == 0.6  # dcgan's recipe (docs/quality.md)
    assert tiny_config(arch="mlp", steps=100).resolved().lr_decay_from == 1.0  # the tutorial's constant rate
    assert tiny_config(arch="resnet", steps=100).resolved().lr_decay_from == 0.0  # R3GAN's: over the whole run
    assert tiny_config(schedules=True, steps=100).resolved().lr_decay_from == 0.0  # --schedules: so for dcgan too
    assert tiny_config(arch="resnet", schedules=False, steps=100).resolved().lr_decay_from == 1.0
    with pytest.raises(ConfigError, match=r"--lr-decay-from must be a fraction of the run in \[0, 1\], got 1.5"):
        tiny_config(lr_decay_from=1.5).validate()


def test_flip_augmentation_mirrors_about_half_the_images():
    from training.augment import augment

    x = torch.arange(4.0).view(1, 1, 1, 4).repeat(64, 1, 1, 1)
    out = augment(x, ("flip",), torch.Generator().manual_seed(0), 64, slice(0, 64))
    mirrored = (out[:, 0, 0, 0] == 3).sum().item()
    assert 20 < mirrored < 44 and torch.equal(out[out[:, 0, 0, 0] == 3][0, 0, 0], torch.tensor([3.0, 2, 1, 0]))
    none = augment(x, ("flip",), torch.Generator().manual_seed(0), 64, slice(0, 64), p=0.0)
    assert torch.equal(none, x)
