"""Memorisation measured: which feature space finds copies of training images, and how often
the default digits model and a small photo model draw near-copies.

1. Copies found: 500 training images, each altered (exactly copied, JPEG quality 50, shifted 2
   px, 25 levels brighter), and 500 held-out images (new images of the same kind: not copies),
   are compared with every training image in three spaces: thumbnails (what ganserve indexes:
   serving/formats/train_index.py), raw pixels, and D's penultimate features. Per space and
   alteration: how often the nearest training image is the source (retrieval), and how well
   the nearest similarity tells copies from held-out images (AUROC).
2. Near-copies drawn: 10,000 seeds of each model, against its training index; a generated image
   counts as a near-copy when it is closer to a training image than 99% of held-out images are
   (a held-out image is by definition no copy), and at the audit's default threshold (0.95).

Models: the 28 px digits model of benchmarks/quality/projection.py (the default recipe, 2,000
steps on 8,000 MNIST digits), and the first hour's small photo model (benchmarks/quality/first_hour.py:
the recipe it recommends for a few hundred photos, --augment flip,translation, at 32 px on 459
training crops of two photos).

    python -m benchmarks.quality.memorisation [--photos-run RUN]
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np

from benchmarks.common import ROOT, WORK, machine, parse_args, quick, write_result
from benchmarks.models import _folder, trained

ALTERED = 500
SEEDS = 10_000


def altered(images: np.ndarray) -> dict[str, np.ndarray]:
    from PIL import Image

    def jpeg(image):
        buffer = io.BytesIO()
        Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image).save(buffer, format="JPEG", quality=50)
        decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())))
        return decoded[:, :, None] if decoded.ndim == 2 else decoded

    return {"exact": images, "jpeg50": np.stack([jpeg(i) for i in images]),
            "shift2": np.roll(images, 2, axis=2),
            "brighter25": np.clip(images.astype(np.int16) + 25, 0, 255).astype(np.uint8)}


def spaces(release: Path):
    """name -> images (uint8 NHWC) -> unit vectors."""
    import torch

    from serving.formats.train_index import directions, thumbnails
    from training.release import read_release

    body = read_release(release).build_discriminator().body

    def d_features(images):
        out = []
        with torch.no_grad():
            for start in range(0, len(images), 512):
                x = torch.from_numpy(images[start:start + 512]).permute(0, 3, 1, 2).float() / 127.5 - 1
                out.append(torch.nn.functional.normalize(body(x).flatten(1), dim=1).numpy())
        return np.concatenate(out)

    def pixels(images):
        return directions(images)

    return {"thumbnails": lambda images: directions(thumbnails(images)), "pixels": pixels, "d_features": d_features}


def nearest(queries: np.ndarray, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    similarity = queries @ index.T
    return similarity.max(axis=1), similarity.argmax(axis=1)


def copies_found(release: Path, train: np.ndarray, held_out: np.ndarray, rng) -> dict:
    from sklearn.metrics import roc_auc_score

    rows = rng.choice(len(train), min(ALTERED, len(train)), replace=False)
    variants = altered(train[rows])
    new = held_out[:ALTERED]
    found = {}
    for name, embed in spaces(release).items():
        index = embed(train)
        new_similarity, _ = nearest(embed(new), index)
        found[name] = {"held_out_nearest_median": round(float(np.median(new_similarity)), 4)}
        for variant, images in variants.items():
            similarity, where = nearest(embed(images), index)
            truth = np.r_[np.ones(len(similarity)), np.zeros(len(new_similarity))]
            found[name][variant] = {"retrieval": round(float(np.mean(where == rows)), 4),
                                    "auroc_vs_held_out": round(float(roc_auc_score(
                                        truth, np.r_[similarity, new_similarity])), 4)}
        print(f"  {name}: {found[name]}", flush=True)
    return found


def near_copies(model: Path, held_out: np.ndarray, seeds: int) -> tuple[dict, np.ndarray]:
    from serving.engine import Engine

    engine = Engine(model, engine="onnxruntime", precision="fp32")
    held_out_similarity, _ = engine.nearest_training(held_out)
    similarity = np.concatenate([engine.nearest_training(engine.generate(list(range(s, min(s + 512, seeds)))))[0]
                                 for s in range(0, seeds, 512)])
    bar = float(np.percentile(held_out_similarity, 99))
    order = np.argsort(-similarity)[:8]
    generated = engine.generate([int(i) for i in order])
    _, rows = engine.nearest_training(generated)
    thumbs = engine.train_index().thumbs[rows]
    scale = generated.shape[1] // thumbs.shape[1]
    pairs = np.stack([generated, thumbs.repeat(scale, axis=1).repeat(scale, axis=2)], axis=1)
    figures = {"seeds": seeds, "held_out": len(held_out), "held_out_p99": round(bar, 4),
               "share_above_held_out_p99": round(float(np.mean(similarity > bar)), 4),
               "share_above_0.95": round(float(np.mean(similarity > 0.95)), 4),
               "generated_percentiles": {str(q): round(float(np.percentile(similarity, q)), 4) for q in (50, 99, 100)},
               "held_out_percentiles": {str(q): round(float(np.percentile(held_out_similarity, q)), 4)
                                        for q in (50, 99, 100)},
               "closest_seeds": [{"seed": int(i), "similarity": round(float(similarity[i]), 4)} for i in order]}
    print(f"  near-copies: {figures}", flush=True)
    return figures, pairs.reshape(-1, *generated.shape[1:])


def main() -> None:
    from export.exporter import ExportOptions, export_model
    from serving.formats.images import encode_png, tile
    from training.data import load_dataset, split_holdout
    from training.release import read_release
    from training.samples import to_uint8

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos-run", type=Path, default=WORK / "first-hour" / "runs" / "flip",
                        help="the small photo model's run (default: the one benchmarks.quality.first_hour trains)")
    parser.add_argument("--digits-steps", type=int, default=2000)
    parser.add_argument("--seeds", type=int, default=SEEDS)
    parser.add_argument("--name", default="memorisation")
    args = parse_args(parser, digits_steps=10, seeds=256)
    digits = WORK / "runs" / trained("projection28", "dcgan", 28, 1, None, False, "mnist", args.digits_steps).name
    photos = args.photos_run
    if quick() or not (photos / "release").is_dir():
        if not quick():
            parser.error(f"--photos-run {photos}: no release there; run python -m benchmarks.quality.first_hour")
        photos = WORK / "runs" / trained("memorisation-photos", "dcgan", 32, 3, None, False, "digits", 10).name
    results, rng = {}, np.random.default_rng(0)
    for name, run in {"28px-digits": digits, "32px-photos": photos}.items():
        print(f"{name}: {run}", flush=True)
        release = read_release(run / "release")
        meta = release.metadata
        data = load_dataset(meta.dataset, release.spec.resolution, release.spec.channels)
        train_set, held_set = split_holdout(data, meta.holdout, meta.seed)
        train = to_uint8(train_set.images)
        held_out = to_uint8(held_set.images)
        model = WORK / "memorisation" / _folder(name)
        export_model(run / "release", ExportOptions(out=model, force=True, calibration_samples=500))
        found = copies_found(run / "release", train, held_out, rng)
        drawn, pairs = near_copies(model, held_out, args.seeds)
        if not quick():
            grid = tile(pairs, columns=8)
            scale = max(1, 700 // grid.shape[1])  # small images blown up by whole pixels
            (ROOT / "docs" / f"memorisation-{name}.png").write_bytes(
                encode_png(grid.repeat(scale, axis=0).repeat(scale, axis=1)))
        results[name] = {"run": str(run), "training_images": len(train), "held_out_images": len(held_out),
                         "copies_found": found, "near_copies": drawn}
    write_result(args.name, {"machine": machine(), "models": results})


if __name__ == "__main__":
    main()
