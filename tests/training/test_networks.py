import pytest
import torch

from training.errors import ConfigError
from training.networks import NetworkSpec, build_discriminator, build_generator, dcgan_stages


@pytest.mark.parametrize("arch", ["mlp", "dcgan"])
@pytest.mark.parametrize("resolution", [8, 16, 28, 32, 64])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("num_classes", [0, 10])
def test_shapes_of_every_architecture(arch, resolution, channels, num_classes):
    spec = NetworkSpec(arch, latent_dim=16, channels=channels, resolution=resolution,
                       num_classes=num_classes, width=8)
    labels = torch.arange(3) % 10 if num_classes else None
    images = build_generator(spec)(torch.randn(3, 16), labels)
    assert images.shape == (3, channels, resolution, resolution)
    assert images.min() >= -1 and images.max() <= 1
    logits = build_discriminator(spec, spectral_norm=True)(images, labels)
    assert logits.shape == (3,)


def test_mlp_is_the_tutorial_network():
    spec = NetworkSpec("mlp", latent_dim=100, channels=1, resolution=28)
    layers = [m for m in build_generator(spec).modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in layers] == [(100, 128), (128, 128), (128, 784)]


def test_dcgan_stage_layout_and_bad_resolution():
    assert dcgan_stages(28) == (7, 2)
    assert dcgan_stages(64) == (4, 4)
    with pytest.raises(ConfigError, match="--resolution 9"):
        dcgan_stages(9)


@pytest.mark.parametrize("arch", ["mlp", "dcgan"])
def test_an_image_does_not_depend_on_its_batch(arch):
    spec = NetworkSpec(arch, latent_dim=16, channels=1, resolution=16, width=8)
    generator = build_generator(spec).eval()
    z = torch.randn(5, 16)
    with torch.no_grad():
        assert torch.allclose(generator(z)[2:3], generator(z[2:3]), atol=1e-6)


def test_conditional_generator_uses_the_label():
    spec = NetworkSpec("dcgan", latent_dim=16, channels=1, resolution=8, num_classes=3, width=8)
    generator = build_generator(spec)
    z = torch.randn(1, 16)
    assert not torch.allclose(generator(z, torch.tensor([0])), generator(z, torch.tensor([1])))


@pytest.mark.parametrize("resolution,channels,num_classes", [(8, 1, 0), (28, 1, 10), (64, 3, 0), (256, 3, 3)])
def test_resnet_shapes_from_8_to_256_pixels(resolution, channels, num_classes):
    spec = NetworkSpec("resnet", latent_dim=16, channels=channels, resolution=resolution,
                       num_classes=num_classes, width=16)
    labels = torch.arange(2) % num_classes if num_classes else None
    images = build_generator(spec)(torch.randn(2, 16), labels)
    assert images.shape == (2, channels, resolution, resolution)
    assert build_discriminator(spec)(images, labels).shape == (2,)


def test_resnet_is_normalisation_free_and_its_blocks_start_as_the_identity():
    from training.resnet import Block, stage_widths

    spec = NetworkSpec("resnet", latent_dim=16, channels=3, resolution=64, width=32)
    G, D = build_generator(spec), build_discriminator(spec)
    norms = (torch.nn.BatchNorm2d, torch.nn.GroupNorm, torch.nn.LayerNorm, torch.nn.InstanceNorm2d)
    assert not any(isinstance(m, norms) for m in [*G.modules(), *D.modules()])
    blocks = [m for m in G.modules() if isinstance(m, Block)]
    assert len(blocks) == 2 * 5  # two per stage: 4, 8, 16, 32, 64 px
    x = torch.randn(2, 32, 8, 8)
    assert torch.equal(blocks[0](x), x)  # the last convolution is zero
    assert blocks[0].mix.groups == 32 * 2 // 16  # 16 channels per group
    assert stage_widths([4, 8, 16, 32, 64, 128, 256], 64) == [64, 64, 64, 64, 32, 16, 16]
    assert not any(isinstance(m, torch.nn.Tanh) for m in G.modules())  # a linear output


def test_resnet_class_blend_at_one_hot_is_the_plain_class():
    spec = NetworkSpec("resnet", latent_dim=16, channels=1, resolution=16, num_classes=4, width=16)
    G = build_generator(spec).eval()
    z, labels = torch.randn(3, 16), torch.tensor([0, 2, 3])
    one_hot = torch.nn.functional.one_hot(labels, 4).float()
    assert torch.allclose(G(z, labels), G(z, None, one_hot), atol=1e-6)


def test_resnet_odd_sizes_follow_the_same_rule_as_dcgan():
    with pytest.raises(ConfigError, match="--resolution 30 does not suit resnet"):
        build_generator(NetworkSpec("resnet", latent_dim=8, channels=1, resolution=30, width=16))
