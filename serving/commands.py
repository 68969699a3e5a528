"""`ganserve serve`, `ganserve sample` and `ganserve score` (the serving side: no torch)."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path

from .errors import ServingError
from .settings import worker_layout


def register(subparsers) -> None:
    serve = subparsers.add_parser("serve", help="serve a model over HTTP (BentoML)",
                                  description="Serve MODEL (a model folder or a BentoML model tag) with "
                                              "/generate, /score, /model, /readyz, /livez and /metrics.")
    serve.add_argument("model", metavar="MODEL", help="model folder (models/NAME) or BentoML model tag")
    serve.add_argument("--port", type=int, default=3000)
    serve.add_argument("--host", default="0.0.0.0")
    serve.add_argument("--workers", type=int, default=0,
                       help="worker processes (default 0: one per CPU core with one ONNX Runtime thread each "
                            "on the CPU; on a GPU, 4 or one per core if fewer)")
    serve.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "tensorrt"])
    serve.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads per worker (0: its default)")
    serve.add_argument("--max-images", type=int, default=64, help="most images per /generate request")
    serve.add_argument("--access-log", action="store_true", help="log every request (off by default)")
    serve.set_defaults(handler=run_serve)

    sample = subparsers.add_parser("sample", help="write many generated images to files",
                                   description="Generate images for a list of seeds into --out, with a "
                                               "manifest (seed, label, file, sha256). Resumable and shardable.")
    sample.add_argument("model", metavar="MODEL", type=Path, help="model folder written by 'ganserve export'")
    sample.add_argument("--seeds", required=True, help="seeds and ranges, e.g. 0-99999 or 0-99,200")
    sample.add_argument("--out", type=Path, required=True, help="output folder")
    sample.add_argument("--format", default="png", choices=["png", "npz", "tar"])
    sample.add_argument("--batch-size", type=int, default=256, help="images per engine run (default: 256)")
    sample.add_argument("--part-size", type=int, default=10_000, help="images per npz/tar part (default: 10000)")
    sample.add_argument("--shard", default="0/1", metavar="K/N", help="write only shard K of N (K from 0)")
    sample.add_argument("--labels", help="class labels for conditional models, cycled over the seeds "
                                         "(e.g. 3, 0-9 or 1,1,2); default: seed modulo the class count")
    sample.add_argument("--truncation", type=float, help="truncation psi (0.1 to 10)")
    sample.add_argument("--keep-top", type=float, default=1.0, metavar="FRACTION",
                        help="discriminator rejection sampling: each image is the best of 1/FRACTION candidates "
                             "by D (e.g. 0.25: best of 4); default 1 (off)")
    sample.add_argument("--drs-accept", type=float, metavar="RATE",
                        help="discriminator rejection sampling (Azadi et al. 2019) at this acceptance rate")
    sample.add_argument("--drs-max-candidates", type=int, default=16, metavar="N",
                        help="with --drs-accept: most candidates per image (default: 16)")
    sample.add_argument("--resume", action="store_true", help="skip images already written and valid")
    sample.add_argument("--workers", type=int, default=0, help="PNG encoding processes (0: one per core)")
    sample.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "tensorrt"])
    sample.add_argument("--no-progress", action="store_true")
    sample.set_defaults(handler=run_sample_command)

    interpolate = subparsers.add_parser("interpolate", help="frames between two seeds (PNG strip or GIF)",
                                        description="Spherical interpolation between two seeds' latents; the "
                                                    "first and last frames are the seeds' own images.")
    interpolate.add_argument("model", metavar="MODEL", type=Path)
    interpolate.add_argument("--from", dest="seed_from", type=int, required=True, metavar="SEED")
    interpolate.add_argument("--to", dest="seed_to", type=int, required=True, metavar="SEED")
    interpolate.add_argument("--frames", type=int, default=8, help="2 to 64 (default: 8)")
    interpolate.add_argument("--label", help="class of every frame (conditional models)")
    interpolate.add_argument("--label-to", help="conditional models: blend the class from --label to "
                                                "this one across the frames")
    interpolate.add_argument("--truncation", type=float)
    interpolate.add_argument("--frame-ms", type=int, default=100, help="GIF: milliseconds per frame")
    interpolate.add_argument("--out", type=Path, required=True, help="a .png (strip) or .gif (animation) file")
    interpolate.set_defaults(handler=run_interpolate)

    score = subparsers.add_parser("score", help="score image files with the model's calibrated D",
                                  description="Print, per image, D's logit and the calibrated probability "
                                              "that it looks like the model's training data.")
    score.add_argument("model", metavar="MODEL", type=Path)
    score.add_argument("images", metavar="IMAGES", type=Path, nargs="+")
    score.add_argument("--labels", help="labels for conditional models, one per image (e.g. 3,1,4 or 0-9)")
    score.add_argument("--resize", action="store_true", help="convert images of another size or colour type")
    score.add_argument("--json", action="store_true", help="print JSON instead of a table")
    score.set_defaults(handler=run_score)


def run_serve(args) -> int:
    model = Path(args.model)
    if model.is_dir():
        from .model_card import open_model_folder

        open_model_folder(model)  # fail here, in one line, rather than inside the server
        reference = str(model.resolve())
    elif not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*(:[A-Za-z0-9._-]+)?", args.model):
        raise ServingError(f"MODEL: {args.model!r} is neither a model folder nor a BentoML model tag")
    else:
        reference = args.model
    for flag, value, low in (("--port", args.port, 1), ("--workers", args.workers, 0),
                             ("--threads", args.threads, 0), ("--max-images", args.max_images, 1)):
        if value < low:
            raise ServingError(f"{flag}: {value} is not allowed; use at least {low}")
    workers, threads = worker_layout(args.device, args.workers, args.threads)
    env = {**os.environ, "GANSERVE_MODEL": reference, "GANSERVE_DEVICE": args.device,
           "GANSERVE_WORKERS": str(workers), "GANSERVE_THREADS": str(threads),
           "GANSERVE_MAX_IMAGES": str(args.max_images), "GANSERVE_ACCESS_LOG": "1" if args.access_log else "0"}
    print(usage_examples(args.port), flush=True)
    bentoml = shutil.which("bentoml", path=str(Path(sys.executable).parent)) or shutil.which("bentoml")
    if bentoml is None:
        raise ServingError("the bentoml command is not installed; pip install ganserve")
    os.execve(bentoml, [bentoml, "serve", "serving.service:GanService", "--host", args.host,
                        "--port", str(args.port)], env)
    return 0  # not reached


def usage_examples(port: int) -> str:
    base = f"http://localhost:{port}"
    json_header = "-H 'content-type: application/json'"
    return "\n".join([
        f"ganserve: serving on {base} once /readyz answers 200. Try:",
        f"  curl -s {base}/readyz",
        f"  curl -s -X POST {base}/generate {json_header} -d '{{\"n\": 16, \"seed\": 0}}' -o grid.png",
        f"  curl -s -X POST {base}/generate {json_header} -d '{{\"seeds\": [1, 2, 3], \"format\": \"zip\"}}' "
        "-o images.zip",
        f"  curl -s -X POST {base}/score -F images=@grid.png -F resize=true",
        f"  curl -s -X POST {base}/model",
        f"  curl -s {base}/metrics | grep ganserve_",
    ])


def run_sample_command(args) -> int:
    from .engine import Engine
    from .latent_paths import candidates_for
    from .latents import check_truncation
    from .rejection import check_rejection
    from .sampler import SampleJob, run_sample
    from .seeds import parse_labels, parse_seeds, parse_shard, shard_of

    for flag, value in (("--batch-size", args.batch_size), ("--part-size", args.part_size)):
        if value < 1:
            raise ServingError(f"{flag}: {value} is not allowed; use a positive integer")
    if args.workers < 0:
        raise ServingError(f"--workers: {args.workers} is not allowed; use 0 (one per core) or more")
    seeds = parse_seeds(args.seeds)
    index, count = parse_shard(args.shard)
    labels = parse_labels(args.labels) if args.labels else None
    engine = Engine(args.model, device=args.device, max_batch=args.batch_size)
    if labels is not None and not engine.card.num_classes:
        raise ServingError("--labels: this model is unconditional; leave --labels out")
    candidates_for(args.keep_top, "--keep-top")  # validates it
    if args.drs_accept is not None:
        check_rejection(args.drs_accept, args.drs_max_candidates, "--drs-accept")
        if args.keep_top != 1.0:
            raise ServingError("--drs-accept: give --keep-top or --drs-accept, not both")
    job = SampleJob(seeds=shard_of(seeds, index, count), out=args.out, format=args.format, labels=labels,
                    truncation=check_truncation(args.truncation), keep_top=args.keep_top,
                    drs_accept=args.drs_accept, drs_max_candidates=args.drs_max_candidates, batch_size=args.batch_size,
                    part_size=args.part_size, shard=(index, count), resume=args.resume, workers=args.workers)
    result = run_sample(engine, job, progress=not args.no_progress)
    print(f"wrote {result['written']} images ({result['skipped']} already done) to {args.out} at "
          f"{result['images_per_s']} images/s on {engine.provider}; manifest: {result['manifest']}")
    return 0


def run_interpolate(args) -> int:
    from .engine import Engine
    from .latents import check_seed
    from .responses import encode_frames

    fmt = args.out.suffix.lower().lstrip(".")
    if fmt not in ("png", "gif"):
        raise ServingError(f"--out: {args.out} must end in .png (a strip) or .gif (an animation)")
    if not 20 <= args.frame_ms <= 5000:
        raise ServingError(f"--frame-ms: {args.frame_ms} is not allowed; use 20 to 5000")
    label, label_to = (_one_label(text, flag) for text, flag in ((args.label, "--label"),
                                                                  (args.label_to, "--label-to")))
    engine = Engine(args.model, warmup=False)
    if label is not None and not engine.card.num_classes:
        raise ServingError("--label: this model is unconditional; leave --label out")
    if label_to is not None and label is None:
        raise ServingError("--label-to: give the first frame's class with --label too")
    frames = engine.interpolate(check_seed(args.seed_from, "--from"), check_seed(args.seed_to, "--to"), args.frames,
                                label, args.truncation, label_to)
    args.out.write_bytes(encode_frames(frames, fmt, args.frame_ms))
    classes = f", class {label} to {label_to}" if label_to is not None else ""
    print(f"wrote {len(frames)} frames from seed {args.seed_from} to seed {args.seed_to}{classes} to {args.out}")
    return 0


def _one_label(text: str | None, flag: str) -> int | None:
    from .seeds import parse_labels

    if text is None:
        return None
    labels = parse_labels(text, flag)
    if len(labels) != 1:
        raise ServingError(f"{flag}: {text!r} is {len(labels)} classes; give one class index")
    return labels[0]


def run_score(args) -> int:
    import numpy as np

    from .engine import Engine
    from .imaging import decode_image
    from .seeds import parse_labels

    engine = Engine(args.model, device="cpu", warmup=False)
    labels = parse_labels(args.labels) if args.labels else None
    images = []
    for path in args.images:
        if not path.is_file():
            raise ServingError(f"IMAGES: {path} is not a file")
        images.append(decode_image(path.read_bytes(), str(path), engine.card.image_shape, args.resize))
    logits, probabilities = engine.score(np.stack(images), labels)
    rows = [{"image": str(path), "logit": float(logit), "p_real": float(p)}
            for path, logit, p in zip(args.images, logits, probabilities)]
    if args.json:
        print(json.dumps({"model": {"name": engine.card.name, "version": engine.card.version}, "results": rows},
                         indent=2))
    else:
        width = max(len(r["image"]) for r in rows)
        print(f"{'image':<{width}}  {'logit':>8}  {'p_real':>6}")
        for r in rows:
            print(f"{r['image']:<{width}}  {r['logit']:8.3f}  {r['p_real']:6.3f}")
    return 0
