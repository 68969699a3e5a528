"""`ganserve serve`, `sample`, `interpolate`, `score`, `project` and `audit`: the serving side's commands
(no torch).

Each value goes through the same request builders as HTTP (`serving/requests.py`), spelled as
the command line spells it, so a rule and its message are the same on every path.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path

from ..errors import ServingError
from ..formats.model_card import ModelCard
from ..repository.layout import resolve_model_folder, scan
from ..requests import INTERPOLATE_FIELDS, Field, generate_fields, project_fields
from ..settings import SETTING, SETTINGS, Setting

GENERATE = generate_fields(None)
# How the command line spells the request fields (serving/requests.py names them as HTTP does).
SAMPLE_FLAGS = {"keep_top": "--keep-top", "drs_accept": "--drs-accept", "drs_max_candidates": "--drs-max-candidates",
                "truncation": "--truncation", "labels": "--labels", "max_train_similarity": "--max-train-similarity"}
INTERPOLATE_FLAGS = {"seed_from": "--from", "seed_to": "--to", "frames": "--frames", "class_label": "--label",
                     "label_to": "--label-to", "truncation": "--truncation", "frame_ms": "--frame-ms",
                     "format": "--out"}
SCORE_FLAGS = {"labels": "--labels", "images": "IMAGES"}
PROJECT = project_fields(None)
PROJECT_FLAGS = {"labels": "--labels", "images": "IMAGES", "rounds": "--rounds", "candidates": "--candidates"}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
MODEL_HELP = ("model folder written by 'ganserve export' or 'ganserve import', or a model of a repository: DIR/NAME "
              "(its newest version) or DIR/NAME/VERSION")


PYTHON_TYPES = {"integer": int, "number": float, "string": str}


def _field_flag(parser, field: Field, flag: str, spelling: dict[str, str], **options) -> None:
    """A flag for a request field, whose type, default, range and meaning come from the field
    (serving/requests.py), so they are written once for HTTP and the command line alike; the
    fields its help names are spelled as flags (`spelling`: field name -> flag)."""
    default = f" (default: {field.default})" if field.default is not None else ""
    rule = f"; {field.rule()}" if field.allowed and "{" not in field.allowed else ""
    text = re.sub(r"\b[a-z]+(?:_[a-z]+)+\b", lambda m: spelling.get(m.group(0), m.group(0)), field.description)
    settings = {"dest": field.name, "type": PYTHON_TYPES.get(field.kind, str), "default": field.default,
                "help": text + rule + default, **({"required": True} if field.required else {})}
    parser.add_argument(flag, **{**settings, **options})


def _setting_flag(parser, setting: Setting) -> None:
    """`setting`'s flag (serving/settings.py), unset by default: a flag given wins, else its
    GANSERVE_ variable, else the setting's default. Values are checked by Setting.from_flag, so a bad
    one is one line naming the flag."""
    options = {"dest": setting.name, "default": None, "help": setting.help().replace("%", "%%")}
    if setting.kind == "switch":
        options["action"] = "store_true"
    elif setting.kind == "choice":
        options["choices"] = setting.choices
    else:
        options["metavar"] = setting.metavar
    parser.add_argument(setting.option, **options)


DEVICE_SETTINGS = ("device", "engine", "precision")


def _device_flags(parser) -> None:
    """--device, --engine and --precision: one rule for every command that runs a model."""
    for name in DEVICE_SETTINGS:
        _setting_flag(parser, SETTING[name])


def _device_choice(args) -> dict[str, str]:
    """The device, engine and precision a command runs on: its flags, else the environment, else auto."""
    return {name: getattr(args, name) or SETTING[name].from_env(os.environ) for name in DEVICE_SETTINGS}


def _spelling(flags: dict[str, str]):
    return lambda name: flags.get(name, name)


def register(subparsers) -> None:
    serve = subparsers.add_parser("serve", help="serve a model, or a repository of models, over HTTP (BentoML)",
                                  description="Serve MODEL (a model folder, a repository of model folders, or a "
                                              "BentoML model tag) with /generate, /interpolate, /score, /model, "
                                              "/models, /docs, /readyz, /livez and /metrics. In a repository, "
                                              "DIR/NAME is a model and DIR/NAME/1, DIR/NAME/2, ... its versions (the "
                                              "highest is the newest); the plain routes serve the default model, "
                                              "/models/NAME/... any of them.")
    serve.add_argument("model", metavar="MODEL",
                       help="model folder (models/NAME), repository (models/), or BentoML model tag")
    serve.add_argument("--port", type=int, default=3000, help="default: 3000")
    serve.add_argument("--host", default="0.0.0.0", help="default: 0.0.0.0 (every interface)")
    for setting in SETTINGS[1:]:  # all but MODEL, the positional argument above
        _setting_flag(serve, setting)
    serve.set_defaults(handler=run_serve)

    sample = subparsers.add_parser("sample", help="write many generated images to files",
                                   description="Generate images for a list of seeds into --out, with a "
                                               "manifest (seed, label, file, sha256). Resumable and shardable.")
    sample.add_argument("model", metavar="MODEL", type=Path, help=MODEL_HELP)
    sample.add_argument("--seeds", required=True, help="seeds and ranges, e.g. 0-99999 or 0-99,200")
    sample.add_argument("--out", type=Path, required=True, help="output folder")
    sample.add_argument("--format", default="png", choices=["png", "npz", "tar"],
                        help="png files, or parts of --part-size images as npz arrays or tar archives of PNGs "
                             "(default: png)")
    sample.add_argument("--batch-size", type=int, default=256, help="images per engine run (default: 256)")
    sample.add_argument("--part-size", type=int, default=10_000, help="images per npz/tar part (default: 10000)")
    sample.add_argument("--shard", default="0/1", metavar="K/N", help="write only shard K of N (K from 0; default 0/1)")
    sample.add_argument("--labels", help="class labels for conditional models, cycled over the seeds "
                                         "(e.g. 3, 0-9 or 1,1,2); default: seed modulo the class count")
    for name, metavar in (("truncation", "PSI"), ("keep_top", "FRACTION"), ("drs_accept", "RATE"),
                          ("drs_max_candidates", "N"), ("max_train_similarity", "SIMILARITY")):
        _field_flag(sample, GENERATE[name], SAMPLE_FLAGS[name], SAMPLE_FLAGS, metavar=metavar)
    sample.add_argument("--resume", action="store_true", help="skip images already written and valid")
    sample.add_argument("--merge", action="store_true",
                        help="after every --shard K/N has run into --out: check that their manifests cover each "
                             "seed exactly once (files present, sha256 matching) and write one manifest.jsonl")
    sample.add_argument("--force", action="store_true",
                        help="write over earlier output in --out (without it, or --resume, a folder that holds "
                             "output is refused)")
    sample.add_argument("--workers", type=int, default=0, help="PNG encoding processes (default 0: one per core)")
    _device_flags(sample)
    sample.add_argument("--no-progress", action="store_true", help="no progress bar")
    sample.set_defaults(handler=run_sample_command)

    interpolate = subparsers.add_parser("interpolate", help="frames between two seeds (PNG strip or GIF)",
                                        description="Spherical interpolation between two seeds' latents; the "
                                                    "first and last frames are the seeds' own images.")
    interpolate.add_argument("model", metavar="MODEL", type=Path, help=MODEL_HELP)
    options = {"seed_from": {"metavar": "SEED"}, "seed_to": {"metavar": "SEED"}, "frames": {"metavar": "N"},
               "class_label": {"dest": "label", "type": str, "metavar": "LABEL"},  # labels stay text, read by
               "label_to": {"type": str, "metavar": "LABEL"},  # _one_label: a class index or name
               "truncation": {"metavar": "PSI"}, "frame_ms": {"metavar": "MS"}}
    for name, extra in options.items():
        _field_flag(interpolate, INTERPOLATE_FIELDS[name], INTERPOLATE_FLAGS[name], INTERPOLATE_FLAGS, **extra)
    interpolate.add_argument("--out", type=Path, required=True, help="a .png (strip) or .gif (animation) file")
    _device_flags(interpolate)
    interpolate.set_defaults(handler=run_interpolate)

    score = subparsers.add_parser("score", help="score image files with the model's calibrated D",
                                  description="Print, per image, D's logit and the calibrated probability "
                                              "that it looks like the model's training data.")
    score.add_argument("model", metavar="MODEL", type=Path, help=MODEL_HELP)
    score.add_argument("images", metavar="IMAGES", type=Path, nargs="+", help="PNG or JPEG files")
    score.add_argument("--labels", help="labels for conditional models, one per image (e.g. 3,1,4 or 0-9)")
    score.add_argument("--resize", action="store_true", help="convert images of another size or colour type")
    score.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _device_flags(score)
    score.set_defaults(handler=run_score)

    project = subparsers.add_parser(
        "project", help="find the latents that draw image files (needs a model with an encoder)",
        description="Project images into the model's latent space: the encoder's guess, refined by batched runs of "
                    "G. Writes --out/latents.npy (float32 [N, latent_dim], in manifest order), each reconstruction "
                    "as a PNG, and manifest.jsonl (per image: file, distances before and after refinement, PSNR, "
                    "D's p_real). A latent goes back to 'ganserve serve' as /generate's latents.")
    project.add_argument("model", metavar="MODEL", type=Path, help=MODEL_HELP)
    project.add_argument("images", metavar="IMAGES", type=Path, nargs="+",
                         help="PNG, JPEG or WebP files, or folders of them")
    project.add_argument("--out", type=Path, required=True, help="output folder")
    for name in ("rounds", "candidates"):
        _field_flag(project, PROJECT[name], PROJECT_FLAGS[name], PROJECT_FLAGS, metavar="N")
    project.add_argument("--labels", help="labels for conditional models, one per image (e.g. 3,1,4 or 0-9)")
    project.add_argument("--resize", action="store_true", help="convert images of another size or colour type")
    project.add_argument("--batch-size", type=int, default=64, help="images per engine run (default: 64)")
    project.add_argument("--force", action="store_true", help="write over an --out that holds a projection")
    _device_flags(project)
    project.add_argument("--no-progress", action="store_true", help="no progress bar")
    project.set_defaults(handler=run_project)

    audit = subparsers.add_parser(
        "audit", help="find generated images that copy training images (needs a model with a training index)",
        description="Compare generated images (--seeds) or image files (--images) with the model's training "
                    "images, by the cosine similarity of their thumbnails (1: the same picture). Prints the closest, "
                    "writes --out/audit.json and --out/closest.png (each image beside its nearest training image's "
                    "thumbnail).")
    audit.add_argument("model", metavar="MODEL", type=Path, help=MODEL_HELP)
    audit.add_argument("--seeds", default="0-9999", help="seeds to generate and check (default: 0-9999)")
    audit.add_argument("--images", type=Path, nargs="+", metavar="IMAGE",
                       help="check these image files (or folders) instead of generated images")
    audit.add_argument("--top", type=int, default=16, help="how many of the closest to show (default: 16)")
    audit.add_argument("--threshold", type=float,
                       help="count images above this similarity as near-copies (default: the 99th percentile of "
                            "held-out real images' similarity, recorded at export, else 0.95)")
    audit.add_argument("--resize", action="store_true", help="with --images: convert images of another size")
    audit.add_argument("--out", type=Path, help="folder for audit.json and closest.png")
    audit.add_argument("--batch-size", type=int, default=256, help="images per engine run (default: 256)")
    _device_flags(audit)
    audit.add_argument("--no-progress", action="store_true", help="no progress bar")
    audit.set_defaults(handler=run_audit)


def run_serve(args) -> int:
    given = {setting: setting.from_flag(getattr(args, setting.name)) for setting in SETTINGS[1:]}
    given = {setting: value for setting, value in given.items() if value is not None}
    in_force = {setting.name: given.get(setting, setting.from_env(os.environ)) for setting in SETTINGS[1:]}
    model = Path(args.model)
    if model.is_dir():
        # fail here, in one line, rather than inside the server; the flag's or else its variable's value
        spelled = "--default-model" if args.default_model is not None else SETTING["default_model"].variable
        _check_repository(model, in_force["default_model"], spelled)
        reference = str(model.resolve())
    elif not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*(:[A-Za-z0-9._-]+)?", args.model):
        raise ServingError(f"MODEL: {args.model!r} is neither a model folder nor a BentoML model tag")
    else:
        reference = args.model
        _check_store_has(reference)
    if not 1 <= args.port <= 65535:
        raise ServingError(f"--port: {args.port} is not allowed; use 1 to 65535")
    _check_key_files(in_force["api_keys_file"], in_force["admin_keys_file"], in_force["protect_metrics"])
    _check_port_free(args.host, args.port)
    env = {**os.environ, SETTING["model"].variable: reference,
           **{setting.variable: setting.as_variable(value) for setting, value in given.items()}}
    print(usage_examples(args.port), flush=True)
    bentoml = shutil.which("bentoml", path=str(Path(sys.executable).parent)) or shutil.which("bentoml")
    if bentoml is None:
        raise ServingError("the bentoml command is not installed; pip install ganserve")
    os.execve(bentoml, [bentoml, "serve", "serving.service:GanService", "--host", args.host,
                        "--port", str(args.port)], env)
    return 0  # not reached


def _check_key_files(api_keys: str | None, admin_keys: str | None, protect_metrics: bool) -> None:
    """Key files that are missing, empty or share a key fail here, in one line."""
    from ..http.auth import read_keys

    if protect_metrics and not api_keys:
        raise ServingError("--protect-metrics needs --api-key-file")  # or their variables
    if api_keys:
        read_keys(api_keys)
    if admin_keys and set(read_keys(admin_keys)) & set(read_keys(api_keys) if api_keys else ()):
        raise ServingError(f"--admin-key-file {admin_keys}: an admin key is also an API key; admin keys must be "
                           "their own")


def _check_repository(folder: Path, default: str | None, spelled: str = "--default-model") -> None:
    """A model folder is verified whole; in a repository, the default model must exist and
    the rest is checked by the server, which lists what it refused at /models."""
    listing = scan(folder)
    if listing.kind == "model folder":
        ModelCard.read(folder)
        return
    if default is not None and default not in listing.models:
        raise ServingError(f"{spelled}: {default!r} is not a model in {folder} (it holds "
                           f"{', '.join(sorted(listing.models))})")


def _check_store_has(tag: str) -> None:
    """A tag missing from the BentoML model store fails here, naming what the store holds."""
    import bentoml

    try:
        bentoml.models.get(tag)
    except bentoml.exceptions.NotFound:
        held = ", ".join(str(model.tag) for model in bentoml.models.list()) or "no models"
        raise ServingError(f"MODEL: {tag!r} is neither a model folder nor in the BentoML model store (it holds "
                           f"{held})") from None


def _check_port_free(host: str, port: int) -> None:
    """A port already in use fails here in one line (BentoML's own failure is 55 lines)."""
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        # as the server binds: connections of a server just stopped (TIME_WAIT) do not hold the port
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise ServingError(f"--port {port}: cannot listen on {host}:{port} ({error.strerror}); is another "
                               "server running there? choose another --port") from None


def usage_examples(port: int) -> str:
    base = f"http://localhost:{port}"
    json_header = "-H 'content-type: application/json'"
    return "\n".join([
        f"ganserve: serving on {base} once /readyz answers 200 (playground: {base}/, API docs: {base}/docs). Try:",
        f"  curl -s {base}/readyz",
        f"  curl -s -X POST {base}/generate {json_header} -d '{{\"n\": 16, \"seed\": 0}}' -o grid.png",
        f"  curl -s -X POST {base}/generate {json_header} -d '{{\"seeds\": [1, 2, 3], \"format\": \"zip\"}}' "
        "-o images.zip",
        f"  curl -s -X POST {base}/score -F images=@grid.png -F resize=true",
        f"  curl -s -X POST {base}/model",
        f"  curl -s {base}/metrics | grep ganserve_",
    ])


def run_sample_command(args) -> int:
    from ..engine import Engine
    from ..requests import check_labels, generate_request, mode_for, parse_labels, parse_seeds, sampling_mode
    from .sampler import SampleJob, merge_shards, parse_shard, run_sample, shard_of

    for flag, value in (("--batch-size", args.batch_size), ("--part-size", args.part_size)):
        if value < 1:
            raise ServingError(f"{flag}: {value} is not allowed; use a positive integer")
    if args.workers < 0:
        raise ServingError(f"--workers: {args.workers} is not allowed; use 0 (one per core) or more")
    spell = _spelling(SAMPLE_FLAGS)
    seeds = parse_seeds(args.seeds)
    index, count = parse_shard(args.shard)
    if args.merge:
        if count != 1:
            raise ServingError(f"--merge checks every shard at once; drop --shard {args.shard}")
        merged = merge_shards(args.out, seeds, args.format, args.part_size)
        print(f"merged {merged['shards']} shards: {merged['seeds']} seeds, each exactly once, every file's sha256 "
              f"checked; manifest: {merged['manifest']}")
        return 0
    labels = parse_labels(args.labels) if args.labels else None
    mode = sampling_mode(args.keep_top, args.drs_accept, args.drs_max_candidates, spell=spell)
    truncation = None if args.truncation is None else GENERATE["truncation"].check(args.truncation, "--truncation")
    engine = Engine(_model_folder(args.model), max_batch=args.batch_size, **_device_choice(args))
    mode = mode_for(engine.card, mode, spell)
    guard = None
    if args.max_train_similarity is not None:  # the request builder's rules: plain mode, a model with an index
        guard = generate_request(engine.card, seed=0, keep_top=args.keep_top, drs_accept=args.drs_accept,
                                 max_train_similarity=args.max_train_similarity, spell=spell).max_train_similarity
    if labels is not None:
        labels = check_labels(engine.card.num_classes, labels, spell)
    job = SampleJob(seeds=shard_of(seeds, index, count), out=args.out, format=args.format, labels=labels,
                    truncation=truncation, max_train_similarity=guard, mode=mode, batch_size=args.batch_size,
                    part_size=args.part_size,
                    shard=(index, count), resume=args.resume, force=args.force, workers=args.workers)
    result = run_sample(engine, job, progress=not args.no_progress)
    print(f"wrote {result['written']} images ({result['skipped']} already done) to {args.out} at "
          f"{result['images_per_s']} images/s on {engine.provider} ({engine.precision}); manifest: "
          f"{result['manifest']}")
    return 0


def run_interpolate(args) -> int:
    from ..engine import Engine
    from ..formats.images import encode_frames
    from ..requests import interpolate_request
    from ..sampling import modes

    spell = _spelling(INTERPOLATE_FLAGS)
    fmt = args.out.suffix.lower().lstrip(".")
    if fmt not in ("png", "gif"):
        raise ServingError(f"--out: {args.out} must end in .png (a strip) or .gif (an animation)")
    label, label_to = (_one_label(text, flag) for text, flag in ((args.label, "--label"),
                                                                  (args.label_to, "--label-to")))
    engine = Engine(_model_folder(args.model), warmup=False, **_device_choice(args))
    request = interpolate_request(engine.card, seed_from=args.seed_from, seed_to=args.seed_to, frames=args.frames,
                                  class_label=label, label_to=label_to, truncation=args.truncation, format=fmt,
                                  frame_ms=args.frame_ms, spell=spell)
    frames = modes.run_now(modes.interpolate(request, engine.graphs))
    args.out.parent.mkdir(parents=True, exist_ok=True)  # like --out of sample and export: made if missing
    args.out.write_bytes(encode_frames(frames, fmt, request.frame_ms))
    classes = f", class {label} to {label_to}" if label_to is not None else ""
    print(f"wrote {len(frames)} frames from seed {args.seed_from} to seed {args.seed_to}{classes} to {args.out}")
    return 0


def _model_folder(path: Path) -> Path:
    """The folder to open for MODEL; says on stderr which version of a repository's model it took."""
    folder, note = resolve_model_folder(path)
    if note:
        print(f"ganserve: {note} ({folder})", file=sys.stderr)
    return folder


def _one_label(text: str | None, flag: str) -> int | None:
    from ..requests import parse_labels

    if text is None:
        return None
    labels = parse_labels(text, flag)
    if len(labels) != 1:
        raise ServingError(f"{flag}: {text!r} is {len(labels)} classes; give one class index")
    return labels[0]


def run_score(args) -> int:
    from ..engine import Engine
    from ..requests import parse_labels, score_request

    engine = Engine(_model_folder(args.model), warmup=False, **_device_choice(args))
    labels = parse_labels(args.labels) if args.labels else None
    for path in args.images:
        if not path.is_file():
            raise ServingError(f"IMAGES: {path} is not a file")
    request = score_request(engine.card, decode_files(args.images, engine.card, args.resize), labels,
                            [str(p) for p in args.images], spell=_spelling(SCORE_FLAGS))
    logits, probabilities = engine.score_images(request)
    rows = [{"image": name, "logit": float(logit), "p_real": float(p)}
            for name, logit, p in zip(request.names, logits, probabilities)]
    if args.json:
        print(json.dumps({"model": {"name": engine.card.name, "version": engine.card.version}, "results": rows},
                         indent=2))
    else:
        width = max(len(r["image"]) for r in rows)
        print(f"{'image':<{width}}  {'logit':>8}  {'p_real':>6}")
        for r in rows:
            print(f"{r['image']:<{width}}  {r['logit']:8.3f}  {r['p_real']:6.3f}")
    return 0


def image_files(paths: list[Path]) -> list[Path]:
    """The files given, and the image files of the folders given (sorted), in order."""
    files = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.is_file():
            files.append(path)
        else:
            raise ServingError(f"IMAGES: {path} is neither a file nor a folder")
    if not files:
        raise ServingError(f"IMAGES: no {', '.join(IMAGE_SUFFIXES)} files in {', '.join(map(str, paths))}")
    return files


def decode_files(files: list[Path], card: ModelCard, resize: bool):
    """uint8 (N, H, W, C): the image files, each decoded to the model's size (converted with --resize)."""
    import numpy as np

    from ..formats.images import decode_image

    return np.stack([decode_image(path.read_bytes(), str(path), card.image_shape, resize, resize_hint="pass --resize")
                     for path in files])


def run_project(args) -> int:
    import numpy as np
    from tqdm import tqdm

    from ..engine import Engine
    from ..formats.files import write_atomically
    from ..formats.images import encode_png
    from ..requests import parse_labels, project_request, projection_search, require_encoder

    if args.batch_size < 1:
        raise ServingError(f"--batch-size: {args.batch_size} is not allowed; use a positive integer")
    manifest_path = args.out / "manifest.jsonl"
    if manifest_path.exists() and not args.force:
        raise ServingError(f"--out: {args.out} already holds a projection; pass --force to write over it")
    spell = _spelling(PROJECT_FLAGS)
    projection_search(args.rounds, args.candidates, spell)  # every mistake is found before the work starts
    engine = Engine(_model_folder(args.model), warmup=False, **_device_choice(args))
    require_encoder(engine.card)
    files = image_files(args.images)
    labels = parse_labels(args.labels) if args.labels else None
    if labels is not None and len(labels) != len(files):
        raise ServingError(f"--labels: {len(labels)} labels for {len(files)} images; give one per image")
    decoded = decode_files(files, engine.card, args.resize)
    (args.out / "reconstructions").mkdir(parents=True, exist_ok=True)
    latents, rows = [], []
    bar = tqdm(total=len(files), unit="img", disable=args.no_progress, dynamic_ncols=True)
    for start in range(0, len(files), args.batch_size):
        chunk = files[start:start + args.batch_size]
        images = decoded[start:start + len(chunk)]
        chunk_labels = None if labels is None else labels[start:start + len(chunk)]
        request = project_request(engine.card, images, chunk_labels, [str(p) for p in chunk], rounds=args.rounds,
                                  candidates=args.candidates, spell=spell)
        projected = engine.project_images(request)
        for i, row in enumerate(projected.figures(request.names)):
            name = f"{start + i:08d}.png"
            write_atomically(args.out / "reconstructions" / name, encode_png(projected.images[i]))
            rows.append({"index": start + i, **row, "reconstruction": f"reconstructions/{name}",
                         "label": None if chunk_labels is None else chunk_labels[i]})
        latents.append(projected.latents)
        bar.update(len(chunk))
    bar.close()
    np.save(args.out / "latents.npy", np.concatenate(latents), allow_pickle=False)
    write_atomically(manifest_path, "".join(json.dumps(row) + "\n" for row in rows).encode())
    before = float(np.mean([r["psnr_encoder_db"] for r in rows]))
    after = float(np.mean([r["psnr_db"] for r in rows]))
    print(f"projected {len(rows)} images into {args.out}: mean PSNR {before:.2f} dB from the encoder, {after:.2f} dB "
          f"after {args.rounds} rounds of {args.candidates} candidates; latents.npy row i is manifest line i")
    return 0


def run_audit(args) -> int:
    import numpy as np
    from tqdm import tqdm

    from ..engine import Engine
    from ..requests import parse_seeds

    if not 0 < args.top:
        raise ServingError(f"--top: {args.top} is not allowed; use a positive integer")
    if args.threshold is not None and not 0 <= args.threshold <= 1:
        raise ServingError(f"--threshold: {args.threshold} is not allowed; use a number from 0 to 1")
    engine = Engine(_model_folder(args.model), warmup=False, **_device_choice(args))
    index = engine.train_index()
    held_out = (engine.card.train_index or {}).get("held_out")
    threshold = args.threshold if args.threshold is not None else held_out["p99"] if held_out else 0.95
    if args.images:
        files = image_files(args.images)
        names = [str(p) for p in files]
        images = decode_files(files, engine.card, args.resize)
        similarity, rows = engine.nearest_training(images)
    else:
        seeds = parse_seeds(args.seeds)
        names = [f"seed {seed}" for seed in seeds]
        similarity, rows = np.empty(len(seeds), np.float32), np.empty(len(seeds), np.int64)
        with tqdm(total=len(seeds), unit="img", disable=args.no_progress, dynamic_ncols=True) as bar:
            for start in range(0, len(seeds), args.batch_size):
                chunk = seeds[start:start + args.batch_size]
                similarity[start:start + len(chunk)], rows[start:start + len(chunk)] = \
                    engine.nearest_training(engine.generate(chunk))
                bar.update(len(chunk))
        images = None
    order = np.argsort(-similarity, kind="stable")[:args.top]
    closest = [{"image": names[i], "similarity": round(float(similarity[i]), 4), "training_row": int(rows[i])}
               for i in order]
    near = int((similarity > threshold).sum())
    report = {"model": {"name": engine.card.name, "version": engine.card.version}, "checked": len(names),
              "index": engine.card.train_index, "threshold": threshold, "near_copies": near,
              "similarity_percentiles": {str(q): round(float(np.percentile(similarity, q)), 4) for q in (50, 90, 99,
                                                                                                       100)},
              "closest": closest}
    width = max(len(row["image"]) for row in closest)
    basis = "" if args.threshold is not None or not held_out else \
        f", as close as the closest 1% of {held_out['count']} held-out real images"
    print(f"{len(names)} images checked against {index.thumbs.shape[0]} training images: {near} above "
          f"{threshold:g} similarity{basis} (median {report['similarity_percentiles']['50']}, highest "
          f"{report['similarity_percentiles']['100']})")
    print(f"  {'image':<{width}}  similarity  training image")
    for row in closest:
        print(f"  {row['image']:<{width}}  {row['similarity']:>10.4f}  #{row['training_row']}")
    if args.out:
        chosen = images[order] if images is not None else engine.generate([seeds[i] for i in order])
        _write_audit(args.out, report, chosen, index.thumbs[rows[order]])
        print(f"  wrote {args.out / 'audit.json'} and {args.out / 'closest.png'}")
    return 0


def _write_audit(out: Path, report: dict, images, thumbs) -> None:
    """audit.json, and closest.png: each image beside its nearest training image's thumbnail (blown up to size)."""
    import numpy as np

    from ..formats.files import write_atomically
    from ..formats.images import encode_png, tile

    out.mkdir(parents=True, exist_ok=True)
    scale = images.shape[1] // thumbs.shape[1]
    blown_up = thumbs.repeat(scale, axis=1).repeat(scale, axis=2)
    pairs = np.stack([images, blown_up], axis=1).reshape(-1, *images.shape[1:])  # image, its neighbour, ...
    write_atomically(out / "audit.json", (json.dumps(report, indent=2) + "\n").encode())
    write_atomically(out / "closest.png", encode_png(tile(pairs, columns=min(8, len(pairs)))))  # pairs side by side
