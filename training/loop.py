"""The training loop: one function, `train(config, run_dir)`.

    >>> train(TrainConfig(steps=100), Path("runs/demo"))
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch
from tqdm import tqdm

from . import distributed, precision, schedules
from .augment import augment
from .checkpoints import list_states, load_latest_state, remove_partial_states, save_state
from .config import TrainConfig, parse_policy
from .data import ImageDataset, load_dataset, split_holdout
from .diversity import collapse_warning, spread
from .errors import CheckpointError, ConfigError, layout_mismatch
from .losses import discriminator_loss, generator_loss, gradient_penalty, zero_centred_penalty
from .networks import NetworkSpec, build_discriminator, build_generator
from .release import CalibrationSet, ReleaseMetadata, write_release
from .samples import save_grid
from .stalled import StalledDiscriminator

log = logging.getLogger(__name__)
# dcgan trains in channels_last (NHWC), the layout its convolutions run fastest in on a CPU: a step at 28 px
# is 1.2x as fast, at 64 px RGB 1.1x, at 8 px the same (benchmarks/training_speed/channels_last.py). resnet's grouped
# convolutions lost (0.9x) and mlp has none, so they keep PyTorch's default. Releases store weights contiguous.
LAYOUTS = {"dcgan": torch.channels_last}
SAMPLE_COUNT = 64  # images in each sample grid (fixed latents, so grids are comparable over time)


@contextmanager
def frozen(net: torch.nn.Module):
    """Within the block, no gradients for net's weights: G's step would compute D's and throw them away."""
    trainable = [p for p in net.parameters() if p.requires_grad]
    for p in trainable:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in trainable:
            p.requires_grad_(True)


class Trainer:
    """Holds the networks, optimisers and random streams of one run; `step()` trains once."""

    def __init__(self, config: TrainConfig, data: ImageDataset, ctx: distributed.Context):
        config = config.resolved(data.shape[1])  # the architecture's recipe fills what was left unset
        self.config, self.data, self.ctx = config, data, ctx
        if config.batch_size % ctx.world_size:
            raise ConfigError(f"--batch-size {config.batch_size} must divide evenly across "
                              f"{ctx.world_size} processes")
        if config.conditional and data.labels is None:
            raise ConfigError(f"--conditional needs labelled data, and --data {data.source!r} has no labels")
        channels, height, width = data.shape
        if height != width:
            raise ConfigError(f"--data {data.source!r} has {width}x{height} images; pass --resolution for square ones")
        self.spec = NetworkSpec(arch=config.arch, latent_dim=config.latent_dim, channels=channels,
                                resolution=height, num_classes=data.num_classes if config.conditional else 0,
                                width=config.width)
        torch.manual_seed(config.seed)  # identical initial weights on every rank
        device = ctx.device
        self.G = build_generator(self.spec).to(device)
        self.D = build_discriminator(self.spec, config.spectral_norm).to(device)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        self.use_layout(LAYOUTS.get(config.arch, torch.contiguous_format))
        betas = (config.beta1, config.beta2)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=config.lr_g, betas=betas)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=config.lr_d, betas=betas)
        self.precision = precision.choose(config.amp, config.arch, device, self.spec.resolution)
        self.amp_dtype = self.precision.dtype
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        # Separate generators for data order and latents: the run depends on nothing else.
        self.data_rng = torch.Generator().manual_seed(config.seed + 1)
        self.latent_rng = torch.Generator().manual_seed(config.seed + 2)
        self.augment_rng = torch.Generator().manual_seed(config.seed + 4)
        self.policy = parse_policy(config.augment)
        fixed = torch.Generator().manual_seed(config.seed + 3)
        self.sample_z = torch.randn(SAMPLE_COUNT, config.latent_dim, generator=fixed)
        self.sample_labels = (torch.arange(SAMPLE_COUNT) % self.spec.num_classes) if self.spec.num_classes else None
        self.step_count = 0

    def use_layout(self, layout: torch.memory_format) -> None:
        """The memory layout of the networks' weights and of the batches they train on: their order in
        memory, not their values. Before the first step (it converts the weights, not the optimisers' state)."""
        self.layout = layout
        for net in (self.G, self.D, self.G_ema):
            net.to(memory_format=layout)

    # --- one update of D and one of G --------------------------------------------------------
    def step(self) -> dict[str, float]:
        cfg, ctx, device = self.config, self.ctx, self.ctx.device
        now = schedules.at(cfg, self.step_count)  # a function of the step alone: resumes stay exact
        self._apply(now)
        mine = ctx.local_slice(cfg.batch_size)
        index = torch.randint(len(self.data), (cfg.batch_size,), generator=self.data_rng)[mine]
        real = self.data.batch(index.numpy()).to(device, non_blocking=True, memory_format=self.layout)
        labels = self.data.labels[index].to(device) if self.spec.num_classes else None

        z, fake_labels = self._latents(mine)
        with self._autocast():
            with torch.no_grad():  # D's step needs no gradient through G: no graph to build
                fake = self.G(z, fake_labels)
            real_logits = self.D(self._augment(real, mine, now), labels)
            fake_logits = self.D(self._augment(fake, mine, now), fake_labels)
            loss_d = discriminator_loss(cfg.loss, real_logits.float(), fake_logits.float())
        penalty = torch.zeros((), device=device)
        if cfg.loss == "wgan-gp":
            mix = torch.rand(cfg.batch_size, 1, 1, 1, generator=self.latent_rng)[mine].to(device)
            penalty = penalty + cfg.gp_weight * gradient_penalty(self.D, real, fake.float(), labels, mix)
        if self.step_count % cfg.penalty_every == 0:  # lazy regularisation: weighted by how seldom
            weight = cfg.penalty_every * now.gamma_scale / 2
            if cfg.r1_gamma > 0:
                penalty = penalty + cfg.r1_gamma * weight * zero_centred_penalty(self.D, real, labels)
            if cfg.r2_gamma > 0:
                penalty = penalty + cfg.r2_gamma * weight * zero_centred_penalty(self.D, fake.float(), fake_labels)
        self._update(self.D, self.opt_d, loss_d + penalty)

        z, fake_labels = self._latents(mine)
        with frozen(self.D):  # G's step needs D's gradient for its input only
            with self._autocast():
                g_logits = self.D(self._augment(self.G(z, fake_labels), mine, now), fake_labels).float()
                paired = None
                if cfg.loss == "rpgan":  # the relativistic loss pairs each fake with a real image
                    with torch.no_grad():
                        paired = self.D(self._augment(real, mine, now), labels).float()
                loss_g = generator_loss(cfg.loss, g_logits, paired)
            self._update(self.G, self.opt_g, loss_g)  # backward outside autocast, as for D's step
        self.scaler.update()
        self._update_ema(now)
        self.step_count += 1
        return {"loss_d": loss_d.item(), "loss_g": loss_g.item(), "penalty": penalty.item(),
                "d_real": real_logits.float().mean().item(), "d_fake": fake_logits.float().mean().item()}

    def _augment(self, images: torch.Tensor, mine: slice, now: schedules.Settings) -> torch.Tensor:
        if not self.policy:
            return images
        return augment(images, self.policy, self.augment_rng, self.config.batch_size, mine, now.augment_p)

    def _apply(self, now: schedules.Settings) -> None:
        """This step's learning rates and Adam beta2 (constant without --schedules)."""
        for optimizer, lr in ((self.opt_g, now.lr_g), (self.opt_d, now.lr_d)):
            for group in optimizer.param_groups:
                group["lr"] = lr
                group["betas"] = (self.config.beta1, now.beta2)

    def _latents(self, mine: slice) -> tuple[torch.Tensor, torch.Tensor | None]:
        cfg = self.config
        z = torch.randn(cfg.batch_size, cfg.latent_dim, generator=self.latent_rng)[mine].to(self.ctx.device)
        if not self.spec.num_classes:
            return z, None
        labels = torch.randint(self.spec.num_classes, (cfg.batch_size,), generator=self.latent_rng)[mine]
        return z, labels.to(self.ctx.device)

    def _update(self, net: torch.nn.Module, optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        distributed.average_gradients(net, self.ctx)
        self.scaler.step(optimizer)

    def _update_ema(self, now: schedules.Settings) -> None:
        if now.ema_half_life_images is not None:  # R3GAN's: a half-life in images (ramped up with --schedules)
            decay = 0.5 ** (self.config.batch_size / max(now.ema_half_life_images, 1e-8))
        else:  # ramp the decay up early on (as StyleGAN does) so early samples are not all initial weights
            decay = min(self.config.ema_decay, (1 + self.step_count) / (10 + self.step_count))
        with torch.no_grad():
            for ema, live in zip(self.G_ema.parameters(), self.G.parameters()):
                ema.lerp_(live, 1.0 - decay)

    def _autocast(self):
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.ctx.device.type, dtype=self.amp_dtype)

    # --- state -----------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "step": self.step_count,
            "G": self.G.state_dict(), "D": self.D.state_dict(), "G_ema": self.G_ema.state_dict(),
            "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": {"data": self.data_rng.get_state(), "latent": self.latent_rng.get_state(),
                    "augment": self.augment_rng.get_state(),
                    "torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
            "config": self.config.to_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.G.load_state_dict(state["G"], strict=True)
        self.D.load_state_dict(state["D"], strict=True)
        self.G_ema.load_state_dict(state["G_ema"], strict=True)
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.data_rng.set_state(state["rng"]["data"])
        self.latent_rng.set_state(state["rng"]["latent"])
        self.augment_rng.set_state(state["rng"]["augment"])
        torch.set_rng_state(state["rng"]["torch"])
        if state["rng"]["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        self.step_count = int(state["step"])

    def release_metadata(self) -> ReleaseMetadata:
        cfg = self.config
        return ReleaseMetadata(
            class_names=self.data.class_names if self.spec.num_classes else None,
            dataset=cfg.data, dataset_resolution=cfg.resolution, dataset_channels=cfg.channels,
            holdout=cfg.holdout, seed=cfg.seed, eval_samples=cfg.eval_samples, step=self.step_count,
            training={k: getattr(cfg, k) for k in ("loss", "spectral_norm", "ema_decay", "ema_half_life", "lr_g",
                                                   "lr_d", "batch_size", "r1_gamma", "r2_gamma", "schedules",
                                                   "augment")})

    def sample_images(self) -> torch.Tensor:
        labels = self.sample_labels.to(self.ctx.device) if self.sample_labels is not None else None
        with torch.no_grad():
            return self.G_ema(self.sample_z.to(self.ctx.device), labels)


def _resume(trainer: Trainer, run_dir: Path) -> None:
    try:
        trainer.load_state_dict(load_latest_state(run_dir))
    except RuntimeError as error:  # a state written by a version whose networks had other layers or shapes
        detail = layout_mismatch(error)
        if detail is None:
            raise
        raise CheckpointError(f"{run_dir}: its newest state does not fit the networks this version of ganserve "
                              f"builds ({detail}); resume it with the version that wrote it, or start a new "
                              "run") from None


def train(config: TrainConfig, run_dir: Path, resume: bool = False, progress: bool = True) -> Path:
    """Train (or continue training) into `run_dir`; returns the release folder."""
    config.resolved(config.resolution).validate()
    ctx = distributed.init(config.device)
    try:
        return _train(config, Path(run_dir), resume, progress, ctx)
    finally:
        distributed.shutdown(ctx)


def _train(config: TrainConfig, run_dir: Path, resume: bool, progress: bool, ctx: distributed.Context) -> Path:
    data = load_dataset(config.data, config.resolution, config.channels)
    if ctx.is_main:
        for line in data.report:  # what was loaded, converted and skipped
            log.info(line)
    train_set, held_out = split_holdout(data, config.holdout, config.seed)
    trainer = Trainer(config, train_set, ctx)
    config = trainer.config  # resolved: what config.json records
    # export calibrates D on these real images, so a release needs nothing else to be exported
    calibration = CalibrationSet.from_dataset(held_out, "held-out split", bool(trainer.spec.num_classes)) \
        if len(held_out) else CalibrationSet.from_dataset(train_set, "training data (no holdout)",
                                                          bool(trainer.spec.num_classes))
    if resume:
        _resume(trainer, run_dir)
    elif list_states(run_dir):
        raise ConfigError(f"{run_dir} already holds a run; continue it with --resume {run_dir}, or choose "
                          "another --run-dir (nothing was overwritten)")
    if ctx.is_main:
        log.info("precision: %s", trainer.precision.reason)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")
        _forget_metrics_after(run_dir / "metrics.jsonl", trainer.step_count)  # steps redone after a crash
        remove_partial_states(run_dir)  # what a kill in the middle of a save left behind
    bar = tqdm(total=config.steps, initial=trainer.step_count, disable=not (progress and ctx.is_main),
               unit="step", dynamic_ncols=True)
    logger = _StepLogger(run_dir, config, bar, ctx.is_main, progress)
    logger.real_diversity = spread(train_set.batch(range(min(SAMPLE_COUNT, len(train_set)))))
    evaluator = _BestKeeper(run_dir, data, config, calibration) if config.eval_every and ctx.is_main else None
    while trainer.step_count < config.steps:
        losses = trainer.step()
        step = trainer.step_count
        logger.step(step, losses, trainer)
        if ctx.is_main and (step % config.sample_every == 0 or step == config.steps):
            save_grid(trainer.sample_images(), run_dir / "samples" / f"step-{step:08d}.png", columns=8)
        if config.eval_every and step % config.eval_every == 0:
            if evaluator is not None:
                evaluator.evaluate(trainer)
            distributed.barrier(ctx)
        if step % config.checkpoint_every == 0 or step == config.steps:
            if ctx.is_main:
                save_state(run_dir, step, trainer.state_dict(), config.keep_checkpoints)
                write_release(run_dir / "release", trainer.G_ema, trainer.D, trainer.spec,
                              trainer.release_metadata(), calibration)
            distributed.barrier(ctx)
    bar.close()
    logger.close()
    return run_dir / "release"


class _StepLogger:
    """Losses, images/s and sample diversity to the progress bar (or, without one, a log line),
    metrics.jsonl and (optionally) TensorBoard; warns once if the samples collapse."""

    def __init__(self, run_dir: Path, config: TrainConfig, bar, is_main: bool, progress: bool):
        self.path, self.config, self.bar, self.is_main = run_dir / "metrics.jsonl", config, bar, is_main
        self.progress = progress
        self.writer = _tensorboard(run_dir) if config.tensorboard and is_main else None
        self.window_start, self.window_steps = time.perf_counter(), 0
        self.real_diversity = 0.0
        self.warned = False
        self.stalled = StalledDiscriminator()

    def step(self, step: int, losses: dict[str, float], trainer: Trainer) -> None:
        self.window_steps += 1
        self.bar.update(1)
        if step % self.config.log_every and step != self.config.steps:
            return
        elapsed = time.perf_counter() - self.window_start
        record = {"step": step, **{k: round(v, 5) for k, v in losses.items()},
                  "images_per_s": round(self.window_steps * self.config.batch_size / max(elapsed, 1e-9), 1)}
        if self.is_main:  # 64 images through G_ema: cheap next to log_every training steps
            record["diversity"] = round(spread(trainer.sample_images()), 5)
            record["diversity_real"] = round(self.real_diversity, 5)
        self.bar.set_postfix(d=f"{losses['loss_d']:.3f}", g=f"{losses['loss_g']:.3f}",
                             img_s=f"{record['images_per_s']:.0f}", div=f"{record.get('diversity', 0):.3f}")
        if self.is_main:
            if not self.progress:
                log.info("step %d/%d  loss_d %.3f  loss_g %.3f  %.0f img/s  diversity %.3f (real %.3f)", step,
                         self.config.steps, losses["loss_d"], losses["loss_g"], record["images_per_s"],
                         record["diversity"], self.real_diversity)
            warning = None if self.warned else collapse_warning(step, record["diversity"], self.real_diversity,
                                                                  augmented=bool(self.config.augment))
            if warning:
                self.warned = True
                log.warning(warning)
            stalled = self.stalled.check(step, losses, self.config.log_every)
            if stalled:
                log.warning(stalled)
            _append_jsonl(self.path, record)
            if self.writer:
                for key, value in record.items():
                    self.writer.add_scalar(key, value, step)
        self.window_start, self.window_steps = time.perf_counter(), 0

    def close(self) -> None:
        if self.writer:
            self.writer.close()


class _BestKeeper:
    """--eval-every: the figures of `ganserve eval` into metrics.jsonl, and the release with the
    best Fréchet distance so far into release-best/."""

    def __init__(self, run_dir: Path, train_set: ImageDataset, config: TrainConfig, calibration: CalibrationSet):
        from .evaluate import RunEvaluator

        self.run_dir, self.calibration = run_dir, calibration
        self.evaluator = RunEvaluator(train_set, config.eval_samples)  # ganserve eval's default draw
        self.best_fd = _best_fd(run_dir / "metrics.jsonl")

    def evaluate(self, trainer: Trainer) -> None:
        figures = self.evaluator(trainer.G_ema, trainer.spec.latent_dim, trainer.spec.num_classes)
        step = trainer.step_count
        _append_jsonl(self.run_dir / "metrics.jsonl", {"step": step, "eval": figures})
        log.info("step %d: FD %.3f, precision %.3f, recall %.3f (ganserve eval's figures for this release)", step,
                 figures["fd"], figures["precision"], figures["recall"])
        if figures["fd"] < self.best_fd:
            self.best_fd = figures["fd"]
            write_release(self.run_dir / "release-best", trainer.G_ema, trainer.D, trainer.spec,
                          dataclasses.replace(trainer.release_metadata(), eval=figures), self.calibration)


def _forget_metrics_after(metrics: Path, step: int) -> None:
    if metrics.is_file():
        kept = [line for line in metrics.read_text().splitlines()
                if (record := _record(line)) is not None and record["step"] <= step]
        metrics.write_text("".join(line + "\n" for line in kept))


def _record(line: str) -> dict | None:
    """One metrics.jsonl record, or None for the torn half line a kill mid-append leaves."""
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        return None


def _best_fd(metrics: Path) -> float:
    """The best evaluated FD of a run so far (so a resumed run keeps release-best honest)."""
    if not metrics.is_file():
        return float("inf")
    records = (_record(line) for line in metrics.read_text().splitlines() if '"eval"' in line)
    scores = [record["eval"]["fd"] for record in records if record is not None]
    return min(scores, default=float("inf"))


def _append_jsonl(path: Path, record: dict) -> None:
    with open(path, "a") as handle:
        handle.write(json.dumps(record) + "\n")


def _tensorboard(run_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log.warning("--tensorboard: the tensorboard package is not installed; pip install tensorboard")
        return None
    return SummaryWriter(str(run_dir / "tensorboard"))
