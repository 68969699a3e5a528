"""`ganserve train` and `ganserve eval`: a thin layer that fills TrainConfig / EvalOptions.

Imports nothing heavy at module level, so `ganserve --help` works without torch."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import re
import sys
from pathlib import Path

RESUMABLE_OVERRIDES = {"steps", "device", "log_every", "sample_every", "checkpoint_every",
                       "keep_checkpoints", "tensorboard", "amp"}


def register(subparsers) -> None:
    from .config import FEATURE_KINDS, TrainConfig

    train = subparsers.add_parser(
        "train", help="train a GAN into a run folder (resumable states + release/)",
        description="Train a GAN. With no options: dcgan on the built-in digits. "
                    "Scale out with the same command under torchrun: "
                    "torchrun --nproc-per-node N $(which ganserve) train ...")
    for field in dataclasses.fields(TrainConfig):
        flag = "--" + field.name.replace("_", "-")
        help_text = field.metadata.get("help") or None
        # an unset option's default is in its help text (it depends on --arch: config.RECIPES)
        shown = f"{help_text} (default: {field.default})" if field.default is not None else help_text
        if str(field.type) in ("bool", "bool | None"):
            train.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=shown)
        else:
            kind = {"int": int, "float": float, "int | None": int, "float | None": float}.get(str(field.type), str)
            train.add_argument(flag, type=kind, default=None, help=shown)
    train.add_argument("--out", type=Path, default=Path("runs"), help="folder that holds numbered run folders")
    train.add_argument("--run-dir", type=Path, help="exact run folder (instead of a numbered one under --out)")
    train.add_argument("--resume", type=Path, metavar="RUN_DIR",
                       help="continue this run from its last complete state (only --steps, --device and "
                            "logging options may change)")
    train.add_argument("--dry-run", action="store_true", help="print the resolved config and run folder, then exit")
    train.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")
    train.set_defaults(handler=run_train)

    evaluate = subparsers.add_parser(
        "eval", help="Fréchet distance and class coverage of a run, next to the real-vs-real floor",
        description="Compare a run's generator with real data in the feature space of a network trained "
                    "on that data (cached): a classifier where it has labels, else a contrastive encoder. "
                    "The same figures for two halves of the real data are printed beside them: the floor "
                    "a perfect generator would reach.")
    evaluate.add_argument("source", type=Path, nargs="?", metavar="RUN_DIR|RELEASE_DIR|MODEL_DIR",
                          help="a run, release or exported model folder (it generates its own images, "
                               "a model folder seeds 0..N-1 as 'ganserve sample' does); or use --samples")
    evaluate.add_argument("--samples", metavar="SPEC",
                          help="evaluate these images instead (npz:FILE from 'ganserve sample --format npz', "
                               "folder:DIR); needs --data")
    evaluate.add_argument("--data", help="real data (default: the data the run was trained on)")
    evaluate.add_argument("--num-samples", type=int,
                          help="images per set (default: a run's --eval-samples, so the figures match its log; "
                               "otherwise half the real data)")
    evaluate.add_argument("--seed", type=int, default=0,
                          help="which real images are drawn, and which seeds generate (seed S: S * 1,000,000 onwards; "
                               "default 0: seeds 0..N-1, as 'ganserve sample' and --eval-every draw them)")
    evaluate.add_argument("--report", type=Path, metavar="DIR",
                          help="also write DIR/report.md with the sample grid, loss curves, D's calibrated "
                               "probability on real vs generated images, and FD against truncation")
    evaluate.add_argument("--inception", type=Path, metavar="FILE.onnx",
                          help="compute FD, KID, precision/recall in the space of this Inception-v3 (ONNX, "
                               "input (N, 3, H, W) RGB in [0, 1]; see docs/quality.md) for the standard FID")
    evaluate.add_argument("--features", default="auto", choices=FEATURE_KINDS,
                          help="the feature space: auto (a classifier for labelled data, a contrastive encoder "
                               "trained on the real images for unlabelled data), classifier or contrastive")
    evaluate.add_argument("--json", action="store_true", help="print JSON")
    evaluate.set_defaults(handler=run_eval)
    register_encoder(subparsers)


def register_encoder(subparsers) -> None:
    from .config import EncoderOptions

    defaults = EncoderOptions()
    encoder = subparsers.add_parser(
        "train-encoder", help="train an encoder E (image -> latent) for projection, into the release",
        description="Train an encoder for a run's generator: it maps an image to the latent G draws it from, so "
                    "a server can project images (POST /project, 'ganserve project') with forward passes only. "
                    "Trained on G's own images (the true latent known) and on the run's real training images "
                    "(through the reconstruction, in pixels and D's features); written into the release as "
                    "encoder.safetensors. Export again afterwards to add encoder.onnx to the model folder. "
                    "Interrupted, the same command resumes.")
    encoder.add_argument("source", type=Path, metavar="RUN_DIR|RELEASE_DIR", help="a run folder or its release/")
    encoder.add_argument("--steps", type=int, default=defaults.steps, help=f"default: {defaults.steps}")
    encoder.add_argument("--batch", type=int, default=defaults.batch,
                         help=f"images per step (default: {defaults.batch})")
    encoder.add_argument("--width", type=int, default=defaults.width,
                         help=f"channels of E's first stage, doubling per stage (default: {defaults.width})")
    encoder.add_argument("--lr", type=float, default=defaults.lr, help=f"Adam's learning rate, decayed "
                         f"to a tenth (default: {defaults.lr:g})")
    encoder.add_argument("--real-share", type=float, default=defaults.real_share,
                         help="share of each batch that is real images; 0 trains on G's images alone "
                              f"(default: {defaults.real_share:g})")
    encoder.add_argument("--data", help="real images (default: the data the run trained on, without its "
                                        "held-out split)")
    encoder.add_argument("--seed", type=int, default=defaults.seed, help=f"default: {defaults.seed}")
    encoder.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    encoder.add_argument("--no-progress", action="store_true", help="no progress bar")
    encoder.set_defaults(handler=run_train_encoder)


def run_train_encoder(args) -> int:
    import torch

    from .config import EncoderOptions
    from .encoder import train_encoder

    if args.threads:
        torch.set_num_threads(args.threads)
    options = EncoderOptions(steps=args.steps, batch=args.batch, width=args.width, lr=args.lr,
                             real_share=args.real_share, data=args.data, seed=args.seed)
    with _quiet_bar():
        figures = train_encoder(args.source, options, progress=not args.no_progress)
    own, real = figures["own_images"], figures.get("held_out_real")
    print(f"encoder written to the release; reconstruction PSNR by E alone: G's own images {own['psnr_db']} dB "
          f"(latent RMSE {own['latent_rmse']})" + (f", held-out real images {real['psnr_db']} dB" if real else ""))
    print(f"next: ganserve export {args.source} --out models/NAME --force (adds encoder.onnx)")
    return 0


def _quiet_bar():
    from tqdm.contrib.logging import logging_redirect_tqdm

    return logging_redirect_tqdm(loggers=[_console_log()])


def resolve(args) -> tuple:
    """The config and run folder this invocation means."""
    from .config import TrainConfig
    from .errors import ConfigError

    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
             if getattr(args, f.name) is not None}
    if args.resume:
        saved = args.resume / "config.json"
        if not saved.is_file():
            raise ConfigError(f"--resume {args.resume}: no config.json there; is it a run folder?")
        fixed = sorted(set(given) - RESUMABLE_OVERRIDES)
        if fixed:
            flags = ", ".join("--" + name.replace("_", "-") for name in fixed)
            raise ConfigError(f"--resume continues the run's saved config; {flags} cannot change "
                              "(start a new run instead)")
        before = TrainConfig.from_dict(json.loads(saved.read_text()))
        config = dataclasses.replace(before, **given).validate()
        _note_a_retimed_decay(config.resolved(), saved_steps=before.steps)
        return config, args.resume
    config = TrainConfig(**given).validate()
    return config, args.run_dir or next_run_dir(args.out, config)


def _note_a_retimed_decay(config, saved_steps: int) -> None:
    """A learning-rate decay follows --steps, so extending a run moves it: say so before it happens.
    `config` is the resumed run's, resolved; only --steps may differ from the saved one."""
    from .schedules import decay

    if config.steps == saved_steps or config.lr_decay_from >= 1.0:
        return
    step = min(saved_steps, config.steps)  # where the longer (or shorter) run takes over
    was = decay(step, saved_steps, config.lr_g, config.lr_final, config.lr_decay_from)
    now = decay(step, config.steps, config.lr_g, config.lr_final, config.lr_decay_from)
    print(f"note: the learning rates decay from {config.lr_decay_from:g} of --steps, so changing --steps from "
          f"{saved_steps} to {config.steps} re-times the decay: G's rate at step {step} becomes {now:.3g} "
          f"(it was {was:.3g}), falling to --lr-final from step {round(config.lr_decay_from * config.steps)}",
          file=sys.stderr)


def next_run_dir(out: Path, config) -> Path:
    """runs/00003-dcgan-digits: numbered, named by architecture and data."""
    numbers = [int(m.group(1)) for p in out.glob("*") if (m := re.match(r"^(\d{5})-", p.name))]
    data_name = re.sub(r"[^A-Za-z0-9]+", "-", Path(config.data.split(":", 1)[-1]).name or config.data).strip("-")
    return out / f"{max(numbers, default=-1) + 1:05d}-{config.arch}-{data_name or 'data'}"


def _data_shape(config) -> list[int]:
    """(channels, height, width) the run will train on: the data is read (and, for a folder, its decoded
    cache made) as training would, so the dry run also says whether the data can be used."""
    from .data import load_dataset

    return list(load_dataset(config.data, config.resolution, config.channels).shape)


def run_train(args) -> int:
    config, run_dir = resolve(args)
    if args.dry_run:
        from .schedules import table

        shape = None if args.resume else _data_shape(config)  # the recipe and width follow the data's size
        resolved = config.resolved(shape[1] if shape else config.resolution)
        print(json.dumps({"run_dir": str(run_dir), "resume": bool(args.resume), "data_shape": shape,
                          **resolved.to_dict(), "schedule": table(resolved)}, indent=2))
        return 0
    from tqdm.contrib.logging import logging_redirect_tqdm

    from .loop import train

    with logging_redirect_tqdm(loggers=[_console_log()]):  # log lines above the progress bar, not through it
        release = train(config, run_dir, resume=bool(args.resume), progress=not args.no_progress)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one process speaks
        print(f"release written to {release}; next: ganserve export {run_dir} --out models/NAME")
    return 0


def _console_log() -> logging.Logger:
    """The training package's log, shown on the console: the data summary, progress lines
    without a bar, warnings such as collapse."""
    logger = logging.getLogger("training")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return logger


def run_eval(args) -> int:
    from .errors import ConfigError
    from .evaluate import evaluate

    if args.seed < 0:
        raise ConfigError(f"--seed must be non-negative, got {args.seed}")
    result = evaluate(args.source, args.data, args.num_samples, args.seed, args.samples, args.report,
                      args.inception, features=args.features)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    accuracy = result["classifier_accuracy"]
    instances = result["encoder_instance_accuracy"]
    print(f"{result['model']} vs {result['data']} ({result['num_images']} images each; features: "
          f"{result['feature_space']}" + (f", classifier accuracy {accuracy:.3f})" if accuracy else
                                          f", instance accuracy {instances:.3f})" if instances else ")"))
    generated, floor = result["generated"], result["real_vs_real"]
    print(f"  {'':<18} {'generated':>10} {'real vs real':>13}")
    for key, label in (("fd", "Fréchet distance"), ("kid", "KID"), ("precision", "precision"),
                       ("recall", "recall"), ("density", "density"), ("coverage", "coverage"),
                       ("class_kl", "class KL")):
        if key in generated:
            print(f"  {label:<18} {generated[key]:>10.4g} {floor[key]:>13.4g}")
    if "classes_covered" in generated:
        print(f"  {'classes covered':<18} {generated['classes_covered']:>7}/{generated['num_classes']:<2} "
              f"{floor['classes_covered']:>10}/{floor['num_classes']}")
    if result["fd_ratio_to_floor"] is not None:
        print(f"  Fréchet distance is {result['fd_ratio_to_floor']}x the real-vs-real floor")
    else:
        print("  no ratio to the real-vs-real floor: it is 0 in these features")
    if "report" in result:
        print(f"  report: {result['report']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry for `torchrun ... -m training.cli [train options]` (one process per device)."""
    parser = argparse.ArgumentParser(prog="training.cli")
    subparsers = parser.add_subparsers(dest="command")
    register(subparsers)
    args = parser.parse_args(["train", *(sys.argv[1:] if argv is None else argv)])
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
