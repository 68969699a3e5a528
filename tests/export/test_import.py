"""`ganserve import`: GANs trained elsewhere, saved as their own scripts save them, become
model folders that generate what the original networks generate.

The tutorial's networks are written out here as PyTorch's DCGAN tutorial writes them (the
64 px layers, `ngpu`, `self.main`), independent of export/tutorial_dcgan.py, so a test fails if
ganserve's rebuilt network stops matching the real one's layers."""

import io
import pickle

import numpy as np
import pytest
import torch
from torch import nn

from export.importer import ImportOptions, import_model
from export.tutorial_dcgan import TutorialSpec
from export.verify import ExportError
from serving.cli import main
from serving.engine import Engine
from serving.errors import NoDiscriminator
from serving.requests import generate_request
from serving.sampling.latents import latents
from tests.export.foreign_models import hand_built_generator

NZ, NGF, NDF, NC = 16, 4, 4, 3
SPEC = TutorialSpec(nz=NZ, ngf=NGF, ndf=NDF, nc=NC, image_size=64)


class Generator(nn.Module):  # PyTorch's DCGAN tutorial, with its sizes as arguments
    def __init__(self, ngpu, nz=NZ, ngf=NGF, nc=NC):
        super().__init__()
        self.ngpu = ngpu
        self.main = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False),
            nn.BatchNorm2d(ngf * 8),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf * 4),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf * 2),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False),
            nn.Tanh(),
        )

    def forward(self, input):
        return self.main(input)


class Discriminator(nn.Module):
    def __init__(self, ngpu, ndf=NDF, nc=NC):
        super().__init__()
        self.ngpu = ngpu
        self.main = nn.Sequential(
            nn.Conv2d(nc, ndf, 4, 2, 1, bias=False),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ndf * 2),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ndf * 4),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ndf * 8),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, input):
        return self.main(input)


def weights_init(m):  # the tutorial's
    classname = m.__class__.__name__
    if classname.find("Conv") != -1:
        nn.init.normal_(m.weight.data, 0.0, 0.02)
    elif classname.find("BatchNorm") != -1:
        nn.init.normal_(m.weight.data, 1.0, 0.02)
        nn.init.constant_(m.bias.data, 0)


@pytest.fixture(scope="module")
def tutorial_nets():
    """The tutorial's G and D after train-mode passes that settle BatchNorm's running statistics
    (a sampler runs them in eval mode, where fresh statistics would scale every layer down),
    in eval mode."""
    torch.manual_seed(0)
    net_g, net_d = Generator(0), Discriminator(0)
    net_g.apply(weights_init)
    net_d.apply(weights_init)
    with torch.no_grad():
        for _ in range(60):
            net_d(net_g(torch.randn(16, NZ, 1, 1)))
    return net_g.eval(), net_d.eval()


def _tutorial_images(net_g, seeds) -> np.ndarray:
    """What the tutorial's own G draws for ganserve's latents of `seeds`, as uint8 NHWC."""
    with torch.no_grad():
        x = net_g(torch.from_numpy(latents(seeds, NZ)).view(-1, NZ, 1, 1))
    return ((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def _options(out, **changes):
    return ImportOptions(out=out, tutorial=SPEC, calibration_samples=20, **changes)


def _levels_apart(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())


def test_a_checkpoint_of_both_networks_imports_and_draws_what_the_tutorial_draws(tutorial_nets, tmp_path):
    net_g, net_d = tutorial_nets
    checkpoint = tmp_path / "checkpoint.pth"
    torch.save({"epoch": 5, "netG_state_dict": net_g.state_dict(), "netD_state_dict": net_d.state_dict(),
                "optimizerG": torch.optim.Adam(net_g.parameters()).state_dict()}, checkpoint)
    real = np.random.default_rng(0).integers(0, 256, (40, 64, 64, 3), dtype=np.uint8)
    np.savez(tmp_path / "real.npz", images=real)
    card, notes = import_model(checkpoint, _options(tmp_path / "tut", discriminator=checkpoint,
                                                    data=f"npz:{tmp_path / 'real.npz'}"))
    assert notes[:2] == ["G: took entry 'netG_state_dict' of checkpoint.pth, the one that fits",
                         "D: took entry 'netD_state_dict' of checkpoint.pth, the one that fits"]
    assert card["format_version"] == 1 and card["architecture"] == "dcgan-tutorial"
    assert card["calibration"]["num_real"] == 20 and card["calibration"]["auroc"] is not None
    engine = Engine(tmp_path / "tut", threads=1)
    seeds = [0, 1, 2, 77]
    assert _levels_apart(engine.generate(seeds), _tutorial_images(net_g, seeds)) <= 1
    images = _tutorial_images(net_g, seeds)
    logits, _ = engine.score(images)
    with torch.no_grad():  # the tutorial's D gives probabilities; ganserve's D contract, their logits
        expected = torch.logit(net_d(torch.from_numpy(images).permute(0, 3, 1, 2) / 127.5 - 1).flatten()).numpy()
    assert np.allclose(logits, expected, atol=1e-3)


def test_a_generator_state_dict_alone_serves_generation_only(tutorial_nets, tmp_path):
    net_g, _ = tutorial_nets
    torch.save(net_g.state_dict(), tmp_path / "netG_epoch_24.pth")  # as pytorch/examples dcgan/main.py saves
    card, notes = import_model(tmp_path / "netG_epoch_24.pth", _options(tmp_path / "g"))
    assert card["format_version"] == 2 and "discriminator" not in card["graphs"] and card["calibration"] is None
    engine = Engine(tmp_path / "g", threads=1)
    assert engine.discriminator is None and engine.spot_check["verdict"] == "ok"
    assert _levels_apart(engine.generate([5, 6]), _tutorial_images(net_g, [5, 6])) <= 1
    with pytest.raises(NoDiscriminator, match="model 'g' has no discriminator .* cannot score images"):
        engine.score(engine.generate([5]))
    with pytest.raises(NoDiscriminator, match="keep_top: model 'g' has no discriminator"):
        generate_request(engine.card, seed=1, keep_top=0.25)


def test_weights_saved_from_data_parallel_import_too(tutorial_nets, tmp_path):
    net_g, _ = tutorial_nets
    torch.save({f"module.{key}": value for key, value in net_g.state_dict().items()}, tmp_path / "netG.pth")
    import_model(tmp_path / "netG.pth", _options(tmp_path / "g"))
    assert _levels_apart(Engine(tmp_path / "g", warmup=False).generate([3]), _tutorial_images(net_g, [3])) <= 1


def test_weights_that_do_not_fit_are_refused_naming_the_layers(tutorial_nets, tmp_path):
    torch.save(tutorial_nets[0].state_dict(), tmp_path / "netG.pth")
    wrong = TutorialSpec(nz=NZ, ngf=2 * NGF, ndf=NDF, nc=NC, image_size=64)
    with pytest.raises(ExportError, match=r"do not fit the DCGAN tutorial's network .*size mismatch for "
                                          r"main\.0\.weight.*check --nz, --ngf/--ndf, --nc and --image-size"):
        import_model(tmp_path / "netG.pth", ImportOptions(out=tmp_path / "g", tutorial=wrong))
    assert not (tmp_path / "g").exists()


class Runs:
    """A pickle that runs code when unpickled: what a .pkl carrying its own classes can do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_pickle_that_carries_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "ran"
    (tmp_path / "network-snapshot.pkl").write_bytes(pickle.dumps({"G_ema": Runs(marker)}))
    with pytest.raises(ExportError, match=r"holds Python objects, not only tensors .* never unpickles code"):
        import_model(tmp_path / "network-snapshot.pkl", _options(tmp_path / "g"))
    assert not marker.exists()
    torch.save(nn.Linear(2, 2), tmp_path / "whole-module.pt")  # a module saved whole, not its state dict
    with pytest.raises(ExportError, match="save the network's state_dict"):
        import_model(tmp_path / "whole-module.pt", _options(tmp_path / "g"))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the TorchScript exporter is deprecated: that is the point
def test_an_onnx_generator_from_the_torchscript_exporter_imports(tutorial_nets, tmp_path):
    net_g, _ = tutorial_nets
    torch.onnx.export(net_g, (torch.randn(1, NZ, 1, 1),), str(tmp_path / "g.onnx"), dynamo=False, opset_version=13,
                      input_names=["noise"], output_names=["fake"],
                      dynamic_axes={"noise": {0: "n"}, "fake": {0: "n"}})
    card, notes = import_model(tmp_path / "g.onnx", ImportOptions(out=tmp_path / "onx"))
    assert notes[0] == ("found: latent 'noise' (N, z, 1, 1) with z = 16, no class labels; output 'fake', NCHW, "
                        "values in [-1, 1]")
    assert card["architecture"] == "onnx" and (card["height"], card["width"], card["channels"]) == (64, 64, 3)
    assert card["parity"]["generator"]["max_level_diff"] == 0 and card["parity"]["generator"]["seeds_checked"] == 1000
    engine = Engine(tmp_path / "onx", threads=1)
    assert _levels_apart(engine.generate([1, 2]), _tutorial_images(net_g, [1, 2])) <= 1


def test_a_hand_built_nhwc_unit_range_generator_imports(tmp_path):
    weights = hand_built_generator(tmp_path / "g.onnx")
    card, notes = import_model(tmp_path / "g.onnx", ImportOptions(out=tmp_path / "hb"))
    assert "NHWC, values in [0, 1]" in notes[0]
    images = Engine(tmp_path / "hb", threads=1).generate([4, 5])
    z = latents([4, 5], 4)
    unit = 1 / (1 + np.exp(-(z @ weights)))
    assert _levels_apart(images, np.round(unit.reshape(2, 4, 4, 3) * 255).astype(np.uint8)) <= 1


def test_a_conditional_onnx_generator_needs_its_class_count(tmp_path):
    hand_built_generator(tmp_path / "g.onnx", labels=True)
    with pytest.raises(ExportError, match="--num-classes: the graph takes class labels \\('class'\\)"):
        import_model(tmp_path / "g.onnx", ImportOptions(out=tmp_path / "c"))
    card, _ = import_model(tmp_path / "g.onnx", ImportOptions(out=tmp_path / "c", num_classes=3))
    engine = Engine(tmp_path / "c", threads=1)
    assert card["num_classes"] == 3 and not np.array_equal(engine.generate([1], [0]), engine.generate([1], [2]))


def test_onnx_generators_that_break_the_seed_contract_are_refused(tmp_path):
    hand_built_generator(tmp_path / "fixed.onnx", batch=1)
    with pytest.raises(ExportError, match="fixed batch size of 1; export the generator with a dynamic batch axis"):
        import_model(tmp_path / "fixed.onnx", ImportOptions(out=tmp_path / "x"))
    hand_built_generator(tmp_path / "noisy.onnx", noise=True)
    with pytest.raises(ExportError, match="not deterministic"):
        import_model(tmp_path / "noisy.onnx", ImportOptions(out=tmp_path / "x"))
    assert not (tmp_path / "x").exists()


def test_the_command_says_what_it_found_and_refuses_options_of_the_other_kind(tutorial_nets, tmp_path, capsys):
    torch.save(tutorial_nets[0].state_dict(), tmp_path / "netG.pth")
    assert main(["import", str(tmp_path / "netG.pth"), "--out", str(tmp_path / "m"), "--nz", str(NZ), "--ngf",
                 str(NGF), "--layout", "nhwc"]) == 2
    assert capsys.readouterr().err.strip() == (f"ganserve import: error: --layout: applies to ONNX generators; "
                                               f"{tmp_path / 'netG.pth'} is a PyTorch file")
    assert main(["import", str(tmp_path / "netG.pth"), "--out", str(tmp_path / "m"), "--nz", str(NZ), "--ngf",
                 str(NGF), "--ndf", str(NDF)]) == 0
    printed = capsys.readouterr().out
    assert f"imported {tmp_path / 'netG.pth'} as m imported-" in printed and "(64x64x3, latent 16)" in printed
    assert f"serve it: ganserve serve {tmp_path / 'm'}" in printed


@pytest.mark.slow
def test_a_repository_of_imported_and_exported_models_serves_over_http(tutorial_nets, model_dir, other_model_dir,
                                                                       tmp_path):
    """The repository of the README: a state-dict import, an ONNX import, and a ganserve export
    with two versions, behind one real server; HTTP gives the bytes `ganserve sample` writes."""
    import httpx

    from tests.conftest import ganserve_serve
    from tests.serving.versions import copy_version

    repo = tmp_path / "repo"
    torch.save(tutorial_nets[0].state_dict(), tmp_path / "netG.pth")
    torch.save(tutorial_nets[1].state_dict(), tmp_path / "netD.pth")
    import_model(tmp_path / "netG.pth", _options(repo / "tutorial", discriminator=tmp_path / "netD.pth"))
    hand_built_generator(tmp_path / "g.onnx")
    import_model(tmp_path / "g.onnx", ImportOptions(out=repo / "handmade"))
    copy_version(model_dir, (repo / "digits").mkdir(parents=True) or repo / "digits" / "1")
    copy_version(other_model_dir, repo / "digits" / "2")
    assert main(["sample", str(repo / "tutorial"), "--seeds", "10-12", "--out", str(tmp_path / "cli"), "--format",
                 "npz", "--no-progress", "--workers", "1"]) == 0
    cli_images = np.load(tmp_path / "cli" / "part-00000.npz")["images"]
    with ganserve_serve(repo, tmp_path, "--workers", "1", "--default-model", "digits") as base:
        view = httpx.get(f"{base}/models").json()
        tutorial = httpx.post(f"{base}/models/tutorial/generate", json={"seeds": [10, 11, 12], "format": "npy"})
        scored = httpx.post(f"{base}/models/tutorial/score", files=[("array", ("a.npy", _npy_bytes(cli_images)))])
        handmade = httpx.post(f"{base}/models/handmade/generate", json={"seed": 4})
        no_d = httpx.post(f"{base}/models/handmade/score", files=[("array", ("a.npy", _npy_bytes(cli_images)))])
        plain = httpx.post(f"{base}/generate", json={"seed": 4})
        docs = httpx.get(f"{base}/docs.json").json()
    live = {m["name"]: m["live"] for m in view["models"]}
    assert live == {"digits": "2", "handmade": live["handmade"], "tutorial": live["tutorial"]}
    assert live["handmade"].startswith("imported-") and view["default"] == "digits"
    assert tutorial.status_code == 200, tutorial.text
    assert np.array_equal(np.load(io.BytesIO(tutorial.content)), cli_images)
    assert tutorial.headers["x-model-name"] == "tutorial" and scored.status_code == 200
    assert [r["image"] for r in scored.json()["results"]] == ["array[0]", "array[1]", "array[2]"]
    assert handmade.status_code == 200 and handmade.headers["x-model-name"] == "handmade"
    assert no_d.status_code == 400 and "has no discriminator" in no_d.json()["error"]
    assert (plain.headers["x-model-name"], plain.headers["x-model-version"]) == ("digits", "2")
    assert docs["paths"]["/models/{name}/score"]["post"]["description"].endswith(
        "Served here without a discriminator (imported as a generator only), so /score, keep_top and drs_accept "
        "answer 400: handmade.")


def _npy_bytes(images: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, images)
    return buffer.getvalue()
