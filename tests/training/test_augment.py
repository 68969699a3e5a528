import pytest
import torch

from tests.training.helpers import tiny_config
from training.augment import augment
from training.checkpoints import load_state
from training.errors import ConfigError
from training.loop import train

POLICY = ("color", "translation", "cutout")


def _rng(seed=0):
    return torch.Generator().manual_seed(seed)


def test_augmentation_changes_images_and_keeps_shapes():
    x = torch.rand(8, 3, 16, 16) * 2 - 1
    out = augment(x, POLICY, _rng(), 8, slice(0, 8))
    assert out.shape == x.shape and not torch.equal(out, x)
    cut = augment(x, ("cutout",), _rng(), 8, slice(0, 8))
    zeroed = (cut == 0).flatten(1).float().mean(1)  # a square of up to a quarter of each image, cut at borders
    assert (zeroed > 0).all() and zeroed.max() == 0.25


def test_a_process_slice_is_augmented_as_in_the_whole_batch():
    x = torch.rand(8, 1, 16, 16) * 2 - 1
    whole = augment(x, POLICY, _rng(3), 8, slice(0, 8))
    part = augment(x[4:], POLICY, _rng(3), 8, slice(4, 8))
    assert torch.equal(whole[4:], part)


def test_augmentation_is_differentiable():
    x = (torch.rand(4, 1, 8, 8) * 2 - 1).requires_grad_(True)
    augment(x, POLICY, _rng(), 4, slice(0, 4)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_training_with_augmentation_resumes_exactly(tmp_path):
    straight, resumed = tmp_path / "a", tmp_path / "b"
    # extended from 2 steps to 4: at a constant rate (a decay follows --steps, so it would be re-timed)
    options = dict(checkpoint_every=2, augment="color,translation,cutout", lr_decay_from=1.0)
    train(tiny_config(steps=4, **options), straight, progress=False)
    train(tiny_config(steps=2, **options), resumed, progress=False)
    train(tiny_config(steps=4, **options), resumed, resume=True, progress=False)
    a, b = load_state(straight / "state-00000004.pt"), load_state(resumed / "state-00000004.pt")
    assert all(torch.equal(a["G"][k], b["G"][k]) for k in a["G"])


def test_unknown_augmentation_is_refused():
    with pytest.raises(ConfigError, match="--augment: 'blur'"):
        tiny_config(augment="color,blur").validate()
