"""Projection measured: how close the latents found by `ganserve train-encoder`'s E and the
served refinement come, on G's own images (the true latent known) and on held-out real images,
at 28 px (the default recipe on MNIST-format digits) and 64 px (the photo recipe on the faces),
and what it costs per image on this CPU.

For each model: E is trained with the defaults into a copy of the release, the release is
exported, and the served engine (ONNX Runtime, no torch) projects 256 of G's own images (seeds
10,000 on) and 256 held-out real images (the release's calibration.npz) at 0 (E alone), 8 (the
default) and 32 rounds of 32 candidates. Figures: PSNR (dB, uint8 pixels), the distance in D's
penultimate features (relative mean squared, as E is trained on), for G's own images the RMSE of
the latent against the true one, and seconds per image, alone (batch 1, the median of 32) and in
batches of 64. A picture of held-out originals beside E's and the refined reconstructions goes
to docs/.

    python -m benchmarks.quality.projection [--faces-run RUN] [--threads 2]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import time
from pathlib import Path

import numpy as np

from benchmarks.common import ROOT, WORK, machine, parse_args, quick, write_result
from benchmarks.models import _folder, trained

OWN_SEEDS = range(10_000, 10_256)
ROUNDS = (0, 8, 32)
PICTURE_IMAGES = 8


def prepared(name: str, run: Path, encoder_steps: int, threads: int) -> tuple[Path, float, dict]:
    """A copy of `run`'s release with E trained into it, exported; (model folder, E's training
    seconds, E's own figures)."""
    import torch

    from export.exporter import ExportOptions, export_model
    from training.config import EncoderOptions
    from training.encoder import train_encoder

    root = WORK / "projection" / _folder(name)
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(Path(run) / "release", root / "release")
    torch.set_num_threads(threads)
    started = time.perf_counter()
    figures = train_encoder(root / "release", EncoderOptions(steps=encoder_steps), progress=False)
    seconds = time.perf_counter() - started
    export_model(root / "release", ExportOptions(out=root / "model", force=True, calibration_samples=500))
    return root / "model", seconds, figures


def d_feature_distance(release: Path, images: np.ndarray, targets: np.ndarray) -> float:
    """Mean over images of D's penultimate features' squared distance, relative to the targets'."""
    import torch

    from training.release import read_release

    features = read_release(release).build_discriminator().body
    with torch.no_grad():
        have = features(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1)
        want = features(torch.from_numpy(targets).permute(0, 3, 1, 2).float() / 127.5 - 1)
    per_image = ((have - want) ** 2).mean(dim=1) / (want ** 2).mean(dim=1).clamp_min(1e-8)
    return round(float(per_image.mean()), 4)


def measure(model: Path, release: Path, threads: int) -> dict:
    from serving.engine import Engine
    from serving.sampling.latents import latents
    from serving.sampling.projection import psnr_db
    from training.release import read_release

    engine = Engine(model, threads=threads, engine="onnxruntime", precision="fp32")
    seeds = list(OWN_SEEDS)[:8 if quick() else None]
    own = engine.generate(seeds)
    true_latents = latents(seeds, engine.card.latent_dim)
    real = read_release(release).calibration().images[:len(seeds)]
    sets = {"own_images": own, "held_out_real": real}
    figures: dict = {}
    for set_name, images in sets.items():
        rows = {}
        for rounds in (0, 2) if quick() else ROUNDS:
            started = time.perf_counter()
            projected = engine.project(images, rounds=rounds)
            batched = (time.perf_counter() - started) / len(images)
            alone = []
            for image in images[:2 if quick() else 32]:
                started = time.perf_counter()
                engine.project(image[None], rounds=rounds)
                alone.append(time.perf_counter() - started)
            row = {"psnr_db": round(float(psnr_db(projected.mse).mean()), 2),
                   "psnr_db_worst_decile": round(float(np.percentile(psnr_db(projected.mse), 10)), 2),
                   "d_feature_distance": d_feature_distance(release, projected.images, images),
                   "p_real_mean": round(float(projected.p_real.mean()), 3),
                   "seconds_per_image_alone": round(statistics.median(alone), 4),
                   "seconds_per_image_batched": round(batched, 5),
                   "generator_rows_per_image": 1 + rounds * 32}
            if set_name == "own_images":
                row["latent_rmse"] = round(float(np.sqrt(((projected.latents - true_latents) ** 2).mean())), 4)
            rows[str(rounds)] = row
            print(f"  {set_name:<14} rounds {rounds:>2}: {row}", flush=True)
        figures[set_name] = rows
    figures["picture"] = picture(engine, real[:PICTURE_IMAGES])
    return figures


def picture(engine, originals: np.ndarray) -> np.ndarray:
    """Rows: held-out originals, E alone, refined at the default budget."""
    return np.stack([originals, engine.project(originals, rounds=0).images, engine.project(originals).images])


def save_picture(rows: np.ndarray, path: Path) -> None:
    from PIL import Image

    count, height, width, channels = rows.shape[1:]
    canvas = np.full((3 * (height + 2) + 2, count * (width + 2) + 2, channels), 255, np.uint8)
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            top, left = 2 + r * (height + 2), 2 + c * (width + 2)
            canvas[top:top + height, left:left + width] = image
    picture = Image.fromarray(canvas[:, :, 0] if channels == 1 else canvas)
    scale = max(1, 700 // picture.width)  # small images blown up by whole pixels
    picture.resize((picture.width * scale, picture.height * scale), Image.Resampling.NEAREST).save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces-run", type=Path, help="a run trained on the 64 px faces (default: train one "
                                                       "with the photo recipe for --faces-steps)")
    parser.add_argument("--faces-steps", type=int, default=5400, help="default: 5400 (30 minutes of one core)")
    parser.add_argument("--digits-steps", type=int, default=2000)
    parser.add_argument("--encoder-steps", type=int, default=2000, help="E's training (the default of "
                                                                        "ganserve train-encoder)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--name", default="projection")
    args = parse_args(parser, encoder_steps=20, digits_steps=10, faces_steps=10)
    digits = trained("projection28", "dcgan", 28, 1, None, False, "mnist", args.digits_steps)
    runs = {"28px-digits": WORK / "runs" / digits.name}  # trained() exports runs/NAME to models/NAME
    if args.faces_run and not quick():
        runs["64px-faces"] = args.faces_run
    else:
        data = "digits" if quick() else "faces"  # --quick: no faces needed (the built-in digits at 64 px RGB)
        runs["64px-faces"] = WORK / "runs" / trained("projection64", "dcgan", 64, 3, None, False, data,
                                                      args.faces_steps).name
    results = {}
    for name, run in runs.items():
        print(f"{name}: training E on {run}", flush=True)
        model, seconds, own = prepared(f"projection-{name}", run, args.encoder_steps, args.threads)
        figures = measure(model, model.parent / "release", args.threads)
        rows = figures.pop("picture")
        if not quick():
            save_picture(rows, ROOT / "docs" / f"projection-{name}.png")
        results[name] = {"run": str(run), "encoder_training_seconds": round(seconds, 1),
                         "encoder_steps": args.encoder_steps, "encoder_figures": own, **figures}
    write_result(args.name, {"machine": machine(), "threads": args.threads, "candidates": 32,
                             "rounds": list(ROUNDS), "models": results})


if __name__ == "__main__":
    main()
