"""The training configuration: one frozen dataclass, checked in one place."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from .errors import ConfigError

ARCHITECTURES = ("dcgan", "mlp", "resnet")
LOSSES = ("nonsat", "hinge", "wgan-gp", "rpgan")
DEVICES = ("auto", "cpu", "cuda")
AMP_MODES = ("auto", "on", "off", "cuda")  # training/precision.py
AUGMENTATIONS = ("flip", "color", "translation", "cutout")  # training/augment.py
FEATURE_KINDS = ("auto", "classifier", "contrastive")  # ganserve eval --features (training/evaluate.py)

# What an option left unset means, per architecture: each architecture comes with the recipe
# it trains best with (docs/quality.md). The resolved values are what config.json records.
RECIPES = {
    "dcgan": {"spectral_norm": True, "loss": "nonsat", "r1_gamma": 0.0, "r2_gamma": 0.0, "penalty_every": 1,
              "lr_g": 5e-4, "lr_d": 5e-4, "beta1": 0.0, "beta2": 0.99, "schedules": False, "lr_decay_from": 0.6},
    "resnet": {"spectral_norm": False, "loss": "rpgan", "r1_gamma": 0.1, "r2_gamma": 0.1, "penalty_every": 1,
               "lr_g": 2e-4, "lr_d": 2e-4, "beta1": 0.0, "beta2": 0.9, "schedules": True, "ema_half_life": 10.0,
               "lr_decay_from": 1.0},
}
RECIPES["mlp"] = {**RECIPES["dcgan"], "lr_g": 2e-4, "lr_d": 2e-4, "beta1": 0.5, "beta2": 0.999,  # the tutorial's
                  "lr_decay_from": 1.0}  # Adam, at a constant rate
# dcgan from 64 px: spectral norm's D lost its features and fell to chance on 64 px photos (its gain on the
# images fell 100x, its gradients 500x: benchmarks/quality/d_diagnosis.py); R1 on real images every 16th step keeps D
# learning instead: on 10,000 faces at 30 minutes of one core, FD 2.26 against 7.78, recall 0.46 against 0.03
# (docs/quality.md, "Photos at 64 px").
PHOTO_MIN_RESOLUTION = 64
PHOTO_RECIPE = {**RECIPES["dcgan"], "spectral_norm": False, "r1_gamma": 1.0, "penalty_every": 16}


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
    arch: str = _opt("dcgan", "dcgan | mlp (the tutorial's fully connected GAN) | resnet (residual, "
                              "normalisation-free, after R3GAN; 8 to 256 px)")
    latent_dim: int = _opt(100, "size of the latent vector z")
    width: int | None = _opt(None, "channels of the widest stage; default: dcgan 16 (it won on CPU budgets, "
                                   "docs/quality.md; 64 for GPUs and long runs), resnet 32 up to 32 px and 64 above "
                                   "(stages past 32 px halve it); mlp: fixed at 128")
    spectral_norm: bool | None = _opt(None, "spectral normalisation on D's weights; default: on for dcgan and "
                                            "mlp, off for resnet (normalisation-free) and for dcgan from 64 px "
                                            "(R1 instead)")
    conditional: bool = _opt(False, "class-conditional G (embedding) and D (projection); needs labels")
    # objective and optimiser
    loss: str | None = _opt(None, "nonsat | hinge | wgan-gp | rpgan (relativistic pairing, R3GAN's); "
                                  "default: nonsat, rpgan for resnet")
    gp_weight: float = _opt(10.0, "WGAN-GP gradient-penalty weight")
    r1_gamma: float | None = _opt(None, "zero-centred R1 penalty on real images (0: off); default 0, resnet 0.1, "
                                        "dcgan from 64 px 1")
    r2_gamma: float | None = _opt(None, "zero-centred R2 penalty on generated images (0: off); default 0, "
                                        "resnet 0.1")
    penalty_every: int | None = _opt(None, "apply R1/R2 every N steps, weighted by N (lazy regularisation); "
                                           "default 1, dcgan from 64 px 16")
    lr_g: float | None = _opt(None, "Adam learning rate of G (at the start, with --schedules); default: dcgan 5e-4 "
                                    "(it won at the CPU budget, docs/quality.md), mlp and resnet 2e-4")
    lr_d: float | None = _opt(None, "Adam learning rate of D (at the start, with --schedules); default: dcgan 5e-4, "
                                    "mlp and resnet 2e-4")
    beta1: float | None = _opt(None, "Adam beta1 (both networks); default: dcgan 0 (it won at the CPU budget, "
                                      "docs/quality.md), resnet 0 (R3GAN's), mlp 0.5")
    beta2: float | None = _opt(None, "Adam beta2 (both networks; at the start, with --schedules); default: "
                                     "dcgan 0.99, resnet 0.9, mlp 0.999")
    batch_size: int = _opt(64, "global batch: split across processes under torchrun")
    steps: int = _opt(10000, "generator updates")
    ema_decay: float = _opt(0.999, "EMA of G's weights (what gets released); 0 copies G")
    ema_half_life: float | None = _opt(None, "EMA half-life in thousands of images, in place of --ema-decay; "
                                             "with --schedules ramped from 0; default: off, resnet 10")
    augment: str = _opt("", "augmentations before D (of real and generated images alike): a comma list of flip, "
                            "color, translation, cutout (DiffAugment); for small photo sets flip,translation; "
                            "empty: off")
    augment_p: float = _opt(1.0, "probability of each augmentation per image (with --schedules: ramped from 0)")
    schedules: bool | None = _opt(None, "R3GAN's schedules, every one a function of the step (cosine over the "
                                        "run): learning rates to --lr-final, Adam beta2 to --beta2-final, R1/R2 "
                                        "to --gamma-final of their start, the EMA half-life and --augment-p ramped "
                                        "from 0; default: on for resnet")
    lr_decay_from: float | None = _opt(None, "fraction of the run after which the learning rates fall along a "
                                             "half cosine to --lr-final (1: never); default: 0 with --schedules "
                                             "(over the whole run, as R3GAN), else dcgan 0.6 (it won at the CPU "
                                             "budget, docs/quality.md), mlp and resnet 1")
    lr_final: float = _opt(5e-5, "the learning rates at the end of the run, where they decay (--schedules or "
                                 "--lr-decay-from)")
    beta2_final: float = _opt(0.99, "with --schedules: Adam beta2 at the end of the run")
    gamma_final: float = _opt(0.1, "with --schedules: R1/R2 at the end, as a fraction of their start")
    # run bookkeeping
    seed: int = _opt(0, "seeds weights, data order, latents and the holdout split")
    device: str = _opt("auto", "auto | cpu | cuda")
    amp: str = _opt("auto", "mixed precision: auto (CUDA's; on a CPU with native bfloat16 (AMX, AVX-512 BF16), "
                            "bfloat16 for the architectures it was measured to help), on, off, or cuda (CUDA "
                            "only, as runs made before CPU bfloat16); losses and the EMA stay float32")
    log_every: int = _opt(50, "steps between metrics.jsonl records")
    sample_every: int = _opt(500, "steps between sample grids (samples/step-N.png)")
    eval_every: int = _opt(0, "steps between evaluations (FD, precision/recall...) logged to metrics.jsonl; the "
                              "best FD so far is kept in release-best/ (0: off)")
    eval_samples: int = _opt(1000, "images per evaluation (at most the training set's size)")
    checkpoint_every: int = _opt(1000, "steps between resumable states and release updates")
    keep_checkpoints: int = _opt(3, "how many state-*.pt files to keep")
    tensorboard: bool = _opt(False, "also log to TensorBoard (needs the tensorboard package)")

    def resolved(self, resolution: int | None = None) -> TrainConfig:
        """Every unset option filled from the architecture's recipe (and, for the width, the
        image side: `resolution`, the data's own when --resolution was not given)."""
        _choice("--arch", self.arch, ARCHITECTURES)
        side = self.resolution or resolution
        recipe = RECIPES[self.arch]
        if self.arch == "dcgan" and side is not None and side >= PHOTO_MIN_RESOLUTION:
            recipe = PHOTO_RECIPE
        recipe = {k: v for k, v in recipe.items() if getattr(self, k) is None}
        width = self.width
        if width is None:
            width = resnet_width(side or 32) if self.arch == "resnet" else 16
        schedules = recipe.get("schedules", self.schedules)
        if self.lr_decay_from is None and schedules:
            recipe["lr_decay_from"] = 0.0  # --schedules anneals the rates over the whole run, as R3GAN
        return dataclasses.replace(self, **recipe, width=width)

    def validate(self) -> TrainConfig:
        """Raise ConfigError naming the flag, the value and what is allowed."""
        _choice("--arch", self.arch, ARCHITECTURES)
        if self.loss is not None:
            _choice("--loss", self.loss, LOSSES)
        _choice("--device", self.device, DEVICES)
        _choice("--amp", self.amp, AMP_MODES)
        if self.resolution is not None and not 4 <= self.resolution <= 256:
            raise ConfigError(f"--resolution must be between 4 and 256 pixels, got {self.resolution}")
        if self.channels not in (None, 1, 3):
            raise ConfigError(f"--channels must be 1 or 3, got {self.channels}")
        if not 0.0 <= self.holdout < 0.5:
            raise ConfigError(f"--holdout must be in [0, 0.5), got {self.holdout}")
        for flag, value in (("--latent-dim", self.latent_dim), ("--width", self.width or 1),
                            ("--batch-size", self.batch_size), ("--steps", self.steps),
                            ("--penalty-every", self.penalty_every or 1),
                            ("--log-every", self.log_every), ("--sample-every", self.sample_every),
                            ("--checkpoint-every", self.checkpoint_every),
                            ("--keep-checkpoints", self.keep_checkpoints), ("--eval-samples", self.eval_samples)):
            if value < 1:
                raise ConfigError(f"{flag} must be a positive integer, got {value}")
        for flag, value in (("--lr-g", self.lr_g), ("--lr-d", self.lr_d)):
            if value is not None and not 0.0 < value < 1.0:
                raise ConfigError(f"{flag} must be in (0, 1), got {value}")
        if self.lr_decay_from is not None and not 0.0 <= self.lr_decay_from <= 1.0:
            raise ConfigError(f"--lr-decay-from must be a fraction of the run in [0, 1], got {self.lr_decay_from}")
        if not 0.0 < self.lr_final < 1.0:
            raise ConfigError(f"--lr-final must be in (0, 1), got {self.lr_final}")
        for flag, value in (("--beta1", self.beta1), ("--beta2", self.beta2), ("--ema-decay", self.ema_decay),
                            ("--beta2-final", self.beta2_final)):
            if value is not None and not 0.0 <= value < 1.0:
                raise ConfigError(f"{flag} must be in [0, 1), got {value}")
        for flag, value in (("--gp-weight", self.gp_weight), ("--r1-gamma", self.r1_gamma),
                            ("--r2-gamma", self.r2_gamma), ("--gamma-final", self.gamma_final)):
            if value is not None and not (value >= 0 and value == value and value != float("inf")):
                raise ConfigError(f"{flag} must be a non-negative number, got {value}")
        if self.ema_half_life is not None and not self.ema_half_life > 0:
            raise ConfigError(f"--ema-half-life must be positive (thousands of images), got {self.ema_half_life}")
        if not 0.0 <= self.augment_p <= 1.0:
            raise ConfigError(f"--augment-p must be in [0, 1], got {self.augment_p}")
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
        if isinstance(values.get("amp"), bool):
            # a run saved when --amp was on or off, and on meant CUDA only: it stays as it began
            values = {**values, "amp": "cuda" if values["amp"] else "off"}
        if "lr_decay_from" not in values and "schedules" in values:
            # a run saved before --lr-decay-from existed: its rates decayed with --schedules only
            values = {**values, "lr_decay_from": 0.0 if values["schedules"] else 1.0}
        return cls(**values)


def resnet_width(resolution: int) -> int:
    """--width for resnet when not given: sized for this project's users (CPUs, small GPUs)."""
    return 32 if resolution <= 32 else 64


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


@dataclass(frozen=True)
class EncoderOptions:
    steps: int = 2000
    batch: int = 64
    width: int = 32  # channels of E's first stage (doubling per stage, at most 8x)
    lr: float = 1e-3
    real_share: float = 0.5  # of each batch: real images (reconstruction only); 0 trains on G's images alone
    pixel_weight: float = 1.0
    feature_weight: float = 1.0
    data: str | None = None  # real images (default: the data the run trained on, its training split)
    seed: int = 0
    checkpoint_every: int = 250

    def validate(self) -> EncoderOptions:
        checks = {"steps": self.steps >= 1, "batch": self.batch >= 2, "width": self.width >= 4,
                  "lr": 0 < self.lr < 1, "real_share": 0 <= self.real_share < 1,
                  "pixel_weight": self.pixel_weight >= 0, "feature_weight": self.feature_weight >= 0,
                  "checkpoint_every": self.checkpoint_every >= 1}
        allowed = {"steps": "an integer of at least 1", "batch": "an integer of at least 2",
                   "width": "an integer of at least 4", "lr": "a number between 0 and 1",
                   "real_share": "a number from 0 to below 1", "pixel_weight": "a number of at least 0",
                   "feature_weight": "a number of at least 0", "checkpoint_every": "an integer of at least 1"}
        for name, ok in checks.items():
            if not ok:
                flag = "--" + name.replace("_", "-")
                raise ConfigError(f"{flag}: {getattr(self, name)!r} is not allowed; use {allowed[name]}")
        return self
