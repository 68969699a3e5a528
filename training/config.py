"""The training configuration: one frozen dataclass, checked in one place."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from .errors import ConfigError

ARCHITECTURES = ("dcgan", "mlp")
LOSSES = ("nonsat", "hinge", "wgan-gp")
DEVICES = ("auto", "cpu", "cuda")
AUGMENTATIONS = ("color", "translation", "cutout")  # DiffAugment policies (training/augment.py)


def _opt(default, help_text: str):
    """A config field whose help text the command line shows."""
    return field(default=default, metadata={"help": help_text})


@dataclass(frozen=True)
class TrainConfig:
    # data
    data: str = _opt("digits", "digits | mnist | fashion-mnist | idx:DIR | folder:DIR | npz:FILE")
    resolution: int | None = _opt(None, "square side in pixels; default: the data's own size")
    channels: int | None = _opt(None, "1 (grayscale) or 3 (RGB); default: the data's own")
    holdout: float = _opt(0.1, "fraction of images kept out of training (export calibrates D on them)")
    # networks
    arch: str = _opt("dcgan", "dcgan | mlp (the tutorial's fully connected GAN)")
    latent_dim: int = _opt(100, "size of the latent vector z")
    width: int = _opt(16, "dcgan: channels of the largest-image stage (16 won on CPU budgets, docs/quality.md; "
                          "64, the canonical DCGAN width, for GPUs and long runs); mlp: fixed at 128")
    spectral_norm: bool = _opt(True, "spectral normalisation on D's weights")
    conditional: bool = _opt(False, "class-conditional G (embedding) and D (projection); needs labels")
    # objective and optimiser
    loss: str = _opt("nonsat", "nonsat | hinge | wgan-gp")
    gp_weight: float = _opt(10.0, "WGAN-GP gradient-penalty weight")
    r1_gamma: float = _opt(0.0, "R1 penalty on real images (0 turns it off)")
    lr_g: float = _opt(2e-4, "Adam learning rate of G")
    lr_d: float = _opt(2e-4, "Adam learning rate of D")
    beta1: float = _opt(0.5, "Adam beta1 (both networks)")
    beta2: float = _opt(0.999, "Adam beta2 (both networks)")
    batch_size: int = _opt(64, "global batch: split across processes under torchrun")
    steps: int = _opt(10000, "generator updates")
    ema_decay: float = _opt(0.999, "EMA of G's weights (what gets released); 0 copies G")
    augment: str = _opt("", "DiffAugment before D: a comma list of color, translation, cutout (empty: off)")
    # run bookkeeping
    seed: int = _opt(0, "seeds weights, data order, latents and the holdout split")
    device: str = _opt("auto", "auto | cpu | cuda")
    amp: bool = _opt(True, "mixed precision (CUDA only; ignored on CPU)")
    log_every: int = _opt(50, "steps between metrics.jsonl records")
    sample_every: int = _opt(500, "steps between sample grids (samples/step-N.png)")
    eval_every: int = _opt(0, "steps between evaluations (FD, precision/recall...) logged to metrics.jsonl; the "
                              "best FD so far is kept in release-best/ (0: off)")
    eval_samples: int = _opt(1000, "images per evaluation (at most the training set's size)")
    checkpoint_every: int = _opt(1000, "steps between resumable states and release updates")
    keep_checkpoints: int = _opt(3, "how many state-*.pt files to keep")
    tensorboard: bool = _opt(False, "also log to TensorBoard (needs the tensorboard package)")

    def validate(self) -> TrainConfig:
        """Raise ConfigError naming the flag, the value and what is allowed."""
        _choice("--arch", self.arch, ARCHITECTURES)
        _choice("--loss", self.loss, LOSSES)
        _choice("--device", self.device, DEVICES)
        if self.resolution is not None and not 4 <= self.resolution <= 256:
            raise ConfigError(f"--resolution must be between 4 and 256 pixels, got {self.resolution}")
        if self.channels not in (None, 1, 3):
            raise ConfigError(f"--channels must be 1 or 3, got {self.channels}")
        if not 0.0 <= self.holdout < 0.5:
            raise ConfigError(f"--holdout must be in [0, 0.5), got {self.holdout}")
        for flag, value in (("--latent-dim", self.latent_dim), ("--width", self.width),
                            ("--batch-size", self.batch_size), ("--steps", self.steps),
                            ("--log-every", self.log_every), ("--sample-every", self.sample_every),
                            ("--checkpoint-every", self.checkpoint_every),
                            ("--keep-checkpoints", self.keep_checkpoints), ("--eval-samples", self.eval_samples)):
            if value < 1:
                raise ConfigError(f"{flag} must be a positive integer, got {value}")
        for flag, value in (("--lr-g", self.lr_g), ("--lr-d", self.lr_d)):
            if not 0.0 < value < 1.0:
                raise ConfigError(f"{flag} must be in (0, 1), got {value}")
        for flag, value in (("--beta1", self.beta1), ("--beta2", self.beta2), ("--ema-decay", self.ema_decay)):
            if not 0.0 <= value < 1.0:
                raise ConfigError(f"{flag} must be in [0, 1), got {value}")
        for flag, value in (("--gp-weight", self.gp_weight), ("--r1-gamma", self.r1_gamma)):
            if value < 0:
                raise ConfigError(f"{flag} must be non-negative, got {value}")
        parse_policy(self.augment)
        if self.eval_every < 0:
            raise ConfigError(f"--eval-every must be 0 (off) or a positive number of steps, got {self.eval_every}")
        if self.seed < 0:
            raise ConfigError(f"--seed must be non-negative, got {self.seed}")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown training option(s) {unknown}; known: {sorted(known)}")
        return cls(**values)


def parse_policy(text: str) -> tuple[str, ...]:
    """'color,translation' -> ("color", "translation"); refuses names that are not augmentations."""
    parts = tuple(p.strip() for p in text.split(",") if p.strip())
    unknown = [p for p in parts if p not in AUGMENTATIONS]
    if unknown:
        raise ConfigError(f"--augment: {unknown[0]!r} is not an augmentation; use a comma list of "
                          f"{', '.join(AUGMENTATIONS)} (or leave it empty)")
    return parts


def _choice(flag: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{flag} must be one of {', '.join(allowed)}; got {value!r}")
