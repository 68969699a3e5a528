"""An encoder E: an image in, the latent G draws it from out (`ganserve train-encoder`).

Projection (finding the z whose G(z) looks like a given image) is usually 1,000 steps of
gradient descent through G and a VGG on a GPU. Here E makes the first guess in one forward
pass, and the server refines it with forward passes only (serving/sampling/projection.py), so
projection is served by ONNX Runtime on a CPU, without torch.

E is trained against the frozen G and D of a release:
- on G's own images, where the true latent is known: E(G(z)) must be z (the latent loss), and
  G(E(G(z))) must look like G(z);
- on real images (the run's training split; never the held-out ones, on which projection is
  measured), through the reconstruction alone: G(E(x)) must look like x.
"Look like" is a pixel distance plus a distance in D's penultimate features: D has learnt what
tells the data's images apart, and it ships with the release (no downloaded VGG).

E's weights are written into the release (encoder.safetensors, hashed in config.json with the
G they fit); `ganserve export` then adds encoder.onnx to the model folder.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from serving.formats.files import sha256_file, write_atomically
from serving.formats.pixels import from_levels

from .checkpoints import load_state
from .config import EncoderOptions
from .errors import DataError
from .networks import build_encoder
from .release import CONFIG_FILE, ENCODER_FILE, GENERATOR_FILE, Release, read_release, training_images
from .samples import to_uint8

log = logging.getLogger(__name__)
STATE_FILE = "encoder-state.pt"  # in the release folder while training; removed when done
MEASURE_IMAGES = 256  # G's own and held-out real images the end-of-training figures are on
MEASURE_SEED = 4321


class Reconstruction:
    """How far G's images are from targets: pixels (mean squared, [-1, 1]) and D's penultimate
    features (mean squared, relative to the targets' feature power, so both weigh alike at any size)."""

    def __init__(self, discriminator: torch.nn.Module):
        self.features = discriminator.body

    def __call__(self, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pixel = F.mse_loss(images, targets)
        have, want = self.features(images), self.features(targets)
        feature = F.mse_loss(have, want) / want.pow(2).mean().clamp_min(1e-8)
        return pixel, feature


def train_encoder(source: Path, options: EncoderOptions, progress: bool = True) -> dict:
    """Train E for the release at `source` (a run or release folder), write it into the
    release, and return its figures. Resumes from encoder-state.pt when a run was interrupted."""
    options = options.validate()
    release = read_release(source)
    release_dir = release.path
    spec = release.spec
    generator, discriminator = release.build_generator(), release.build_discriminator()
    distance = Reconstruction(discriminator)
    real = _real_images(release, options) if options.real_share > 0 else None
    torch.manual_seed(options.seed)
    encoder = build_encoder(spec, options.width)
    optimizer = torch.optim.Adam(encoder.parameters(), lr=options.lr, betas=(0.9, 0.99))
    generator_sha = release.files[GENERATOR_FILE]
    step = _resume(release_dir / STATE_FILE, encoder, optimizer, generator_sha, options)
    real_count = round(options.batch * options.real_share) if real is not None else 0
    fake_count = options.batch - real_count
    bar = tqdm(total=options.steps, initial=step, disable=not progress, unit="step", dynamic_ncols=True)
    encoder.train()
    while step < options.steps:
        for group in optimizer.param_groups:  # cosine decay to a tenth
            group["lr"] = options.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / options.steps)))
        losses = _step(encoder, generator, distance, real, fake_count, real_count, spec, options)
        optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        optimizer.step()
        step += 1
        bar.update(1)
        if step % 50 == 0 or step == options.steps:
            bar.set_postfix({k: f"{v.item():.4f}" for k, v in losses.items() if k != "total"})
        if step % options.checkpoint_every == 0 and step < options.steps:
            _save_state(release_dir / STATE_FILE, step, encoder, optimizer, generator_sha)
    bar.close()
    encoder.eval()
    figures = measure(encoder, generator, release)
    _write_encoder(release_dir, encoder, options, generator_sha, figures)
    (release_dir / STATE_FILE).unlink(missing_ok=True)
    return figures


def _step(encoder, generator, distance, real, fake_count, real_count, spec, options) -> dict[str, torch.Tensor]:
    z = torch.randn(fake_count, spec.latent_dim)
    labels = torch.randint(0, spec.num_classes, (fake_count,)) if spec.num_classes else None
    with torch.no_grad():
        drawn = generator(z, labels)
    guessed = encoder(drawn)
    latent = F.mse_loss(guessed, z)
    pixel, feature = distance(generator(guessed, labels), drawn)
    losses = {"latent": latent, "pixel": pixel, "feature": feature}
    if real_count:
        rows = torch.randint(0, len(real), (real_count,)).numpy()
        images = real.batch(rows)
        real_labels = real.labels[torch.as_tensor(rows)] if spec.num_classes else None
        real_pixel, real_feature = distance(generator(encoder(images), real_labels), images)
        losses.update(real_pixel=real_pixel, real_feature=real_feature)
        pixel, feature = pixel + real_pixel, feature + real_feature
    losses["total"] = latent + options.pixel_weight * pixel + options.feature_weight * feature
    return losses


def _real_images(release: Release, options: EncoderOptions):
    """The real images E learns to reconstruct: --data, else the run's own data without its
    held-out split (projection is measured on those)."""
    try:
        data, source = training_images(release, options.data, "--data")
    except DataError as error:
        raise DataError(f"{error}; pass --data SPEC where the real images are, or --real-share 0 to train on "
                        "G's images alone") from None
    if release.spec.num_classes and data.labels is None:
        raise DataError(f"--data {source!r} has no labels, and the model is conditional on "
                        f"{release.spec.num_classes} classes; give labelled data, or --real-share 0")
    return data


def _resume(path: Path, encoder, optimizer, generator_sha: str, options: EncoderOptions) -> int:
    if not path.is_file():
        return 0
    state = load_state(path)  # weights_only: never runs code
    if state.get("generator_sha256") != generator_sha or state.get("width") != options.width:
        log.warning("%s is for another generator or width; starting the encoder afresh", path)
        return 0
    encoder.load_state_dict(state["encoder"])
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng"])
    log.info("resuming the encoder from step %d (%s)", state["step"], path)
    return min(int(state["step"]), options.steps)


def _save_state(path: Path, step: int, encoder, optimizer, generator_sha: str) -> None:
    state = {"step": step, "encoder": encoder.state_dict(), "optimizer": optimizer.state_dict(),
             "rng": torch.get_rng_state(), "generator_sha256": generator_sha,
             "width": encoder.width}
    write_atomically(path, lambda handle: torch.save(state, handle))


@torch.no_grad()
def measure(encoder, generator, release: Release) -> dict:
    """E's reconstructions, in PSNR (dB, on uint8 levels, as served): of G's own images (and
    how far E's latent is from the true one), and of held-out real images (calibration.npz)."""
    spec = release.spec
    rng = torch.Generator().manual_seed(MEASURE_SEED)
    z = torch.randn(MEASURE_IMAGES, spec.latent_dim, generator=rng)
    labels = torch.randint(0, spec.num_classes, (MEASURE_IMAGES,), generator=rng) if spec.num_classes else None
    drawn = generator(z, labels)
    guessed = encoder(drawn)
    figures = {"own_images": {"count": MEASURE_IMAGES, "psnr_db": psnr(to_uint8(generator(guessed, labels)),
                                                                       to_uint8(drawn)),
                              "latent_rmse": round(float((guessed - z).pow(2).mean().sqrt()), 4)}}
    held_out = release.calibration()
    if held_out is not None:
        images = held_out.images[:MEASURE_IMAGES]
        real_labels = torch.from_numpy(held_out.labels[:len(images)]) if spec.num_classes else None
        x = from_levels(torch.from_numpy(images).permute(0, 3, 1, 2).float())
        figures["held_out_real"] = {"count": len(images), "split": held_out.split,
                                    "psnr_db": psnr(to_uint8(generator(encoder(x), real_labels)), images)}
    return figures


def psnr(images: np.ndarray, targets: np.ndarray) -> float:
    """Mean over images of the peak signal-to-noise ratio, in dB, of uint8 images."""
    error = ((images.astype(np.float64) - targets.astype(np.float64)) ** 2).reshape(len(images), -1).mean(axis=1)
    return round(float(np.mean(10 * np.log10(255.0 ** 2 / np.maximum(error, 1e-10)))), 2)


def _write_encoder(release_dir: Path, encoder, options: EncoderOptions, generator_sha: str,
                   figures: dict) -> None:
    """encoder.safetensors, then config.json naming it, its hash and the G it fits (atomically:
    a reader sees the old config or the new one, and the file it names is complete)."""
    from safetensors.torch import save_file

    tmp = release_dir / (ENCODER_FILE + ".tmp")
    save_file({k: v.contiguous() for k, v in encoder.state_dict().items()}, str(tmp))
    tmp.replace(release_dir / ENCODER_FILE)
    config_path = release_dir / CONFIG_FILE
    config = json.loads(config_path.read_text())
    config["files"][ENCODER_FILE] = sha256_file(release_dir / ENCODER_FILE)
    config["encoder"] = {"file": ENCODER_FILE, "width": options.width, "generator_sha256": generator_sha,
                         "options": asdict(options), "figures": figures}
    write_atomically(config_path, (json.dumps(config, indent=2) + "\n").encode())
