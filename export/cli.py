"""`ganserve export`: a release into a verified ONNX model folder."""

from __future__ import annotations

from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "export", help="export a run's release to a verified ONNX model folder",
        description="Export G (EMA weights) and D to ONNX with uint8 image I/O, verify them against "
                    "PyTorch, calibrate D, and write models/NAME with model.json.")
    parser.add_argument("source", type=Path, metavar="RUN_DIR|RELEASE_DIR")
    parser.add_argument("--out", type=Path, help="model folder to write (default: models/<run folder name>)")
    parser.add_argument("--name", help="model name in model.json (default: the --out folder's name)")
    parser.add_argument("--fp16", action="store_true", help="also write float16 graphs for GPUs")
    parser.add_argument("--force", action="store_true", help="replace --out if it exists")
    parser.add_argument("--calibration-data", metavar="SPEC",
                        help="real images for D's calibration (default: the run's held-out split)")
    parser.add_argument("--calibration-samples", type=int, default=2000, metavar="N",
                        help="at most N real and N generated images for calibration (default: 2000)")
    parser.add_argument("--bentoml", metavar="NAME", dest="bentoml_name",
                        help="also save the model folder in the local BentoML model store as NAME")
    parser.add_argument("--index-data", metavar="SPEC",
                        help="the training images to index for memorisation checks (default: the run's data without "
                             "its held-out split)")
    parser.add_argument("--no-train-index", dest="train_index", action="store_false",
                        help="no index of the training images (ganserve audit and max_train_similarity then off)")
    parser.set_defaults(handler=run_export)
    register_import(subparsers)


def run_export(args) -> int:
    from .exporter import ExportOptions, export_model
    from .verify import ExportError

    if args.calibration_samples < 10:
        raise ExportError(f"--calibration-samples must be at least 10, got {args.calibration_samples}")
    source = args.source.resolve()
    default_name = (source.parent.name if source.name.startswith("release") else source.name).lower()
    default_name = "-".join(part for part in default_name.split("-") if not part.isdigit()) or "model"
    out = args.out or Path("models") / default_name
    card = export_model(args.source, ExportOptions(
        out=out, name=args.name, fp16=args.fp16, force=args.force, calibration_data=args.calibration_data,
        calibration_samples=args.calibration_samples, bentoml_name=args.bentoml_name, train_index=args.train_index,
        index_data=args.index_data))
    print(summary(out, card))
    return 0


def summary(out: Path, card: dict) -> str:
    lines = [f"exported {card['name']} {card['version']} ({card['architecture']}, "
             f"{card['height']}x{card['width']}x{card['channels']}) to {out}"]
    for key, entry in card["graphs"].items():
        size = (out / entry["file"]).stat().st_size / 1e6
        diffs = card["parity"][key]["max_abs_diff"]
        lines.append(f"  {entry['file']:<26} {size:7.2f} MB  max |ONNX - PyTorch| "
                     + " ".join(f"b{b}={d:.3g}" for b, d in diffs.items()))
    cal = card["calibration"]
    lines.append(f"  D calibration: AUROC {cal['auroc']:.3f} on {cal['num_real']} real ({cal['split']}) "
                 f"+ {cal['num_fake']} generated images; p(real) = sigmoid({cal['a']:.3f} * logit + {cal['b']:.3f})")
    for warning in cal.get("warnings", []):
        lines.append(f"  warning: D calibration is degenerate ({warning})")
    index = card.get("train_index")
    if index:
        lines.append(f"  training-image index: {index['count']} of {index['of']} images ({index['split']}), for "
                     "ganserve audit and max_train_similarity")
    lines.append(f"  verified with {card['parity']['generator']['runtime']}")
    if card.get("bentoml_tag"):
        lines.append(f"  BentoML model store: {card['bentoml_tag']}")
    return "\n".join(lines)


def register_import(subparsers) -> None:
    parser = subparsers.add_parser(
        "import", help="turn a GAN trained elsewhere (a PyTorch state dict or an ONNX generator) into a model folder",
        description="Import a generator (and optionally its discriminator) trained outside ganserve into a model "
                    "folder that serves, samples and scores like an exported one, with the same checks. GENERATOR is "
                    "a state dict of the PyTorch DCGAN tutorial's network (pytorch/examples dcgan/main.py), as "
                    "torch.save(netG.state_dict(), ...) writes it, possibly inside a dict of several, or an ONNX "
                    "generator written by other code. Pickles that carry code (StyleGAN/R3GAN .pkl) are refused.")
    parser.add_argument("generator", type=Path, metavar="GENERATOR", help="netG.pth (a state dict) or generator.onnx")
    parser.add_argument("--out", type=Path, help="model folder to write (default: models/<GENERATOR's name>)")
    parser.add_argument("--name", help="model name in model.json (default: the --out folder's name)")
    parser.add_argument("--force", action="store_true", help="replace --out if it exists")
    tutorial = parser.add_argument_group("a PyTorch state dict of the DCGAN tutorial's networks")
    tutorial.add_argument("--discriminator", type=Path, metavar="FILE",
                          help="D's state dict (may be GENERATOR's file, e.g. a checkpoint holding both); without it "
                               "the model serves generation only")
    tutorial.add_argument("--key", help="the entry of GENERATOR's file holding G's state dict, e.g. netG_state_dict "
                                        "(default: the file itself, or the one entry that fits)")
    tutorial.add_argument("--discriminator-key", metavar="KEY", help="likewise for --discriminator")
    for flag, default, meaning in (("--nz", 100, "latent size"), ("--ngf", 64, "G's width"),
                                   ("--ndf", 64, "D's width"), ("--nc", 3, "image channels, 1 or 3"),
                                   ("--image-size", 64, "image height and width, a power of two")):
        tutorial.add_argument(flag, type=int, default=None, help=f"{meaning} (default: {default}, the tutorial's)")
    tutorial.add_argument("--data", metavar="SPEC",
                          help="real images like G's training data (a --data spec of 'ganserve train') to calibrate "
                               "D's p_real on; without it p_real is D's own sigmoid, flagged uncalibrated")
    tutorial.add_argument("--calibration-samples", type=int, default=None, metavar="N",
                          help="at most N real and N generated images for calibration (default: 2000)")
    foreign = parser.add_argument_group("an ONNX generator (detected from the graph and a run; state what is not)")
    foreign.add_argument("--latent-input", metavar="NAME", help="the latent input: shape (N, z) or (N, z, 1, 1)")
    foreign.add_argument("--label-input", metavar="NAME", help="the class-label input, integers of shape (N,)")
    foreign.add_argument("--num-classes", type=int, default=None, metavar="K", help="classes of --label-input")
    foreign.add_argument("--layout", choices=("nchw", "nhwc"), help="the output's layout")
    foreign.add_argument("--range", choices=("tanh", "unit"), help="the output's values: tanh [-1, 1] or unit [0, 1]")
    parser.set_defaults(handler=run_import)


def run_import(args) -> int:
    from .importer import ImportOptions, import_model
    from .tutorial_dcgan import TutorialSpec
    from .verify import ExportError

    given = tuple(name for name in ("discriminator", "key", "discriminator_key", "nz", "ngf", "ndf", "nc",
                                    "image_size", "data", "calibration_samples", "latent_input", "label_input",
                                    "num_classes", "layout", "range") if getattr(args, name) is not None)
    if args.calibration_samples is not None and args.calibration_samples < 10:
        raise ExportError(f"--calibration-samples must be at least 10, got {args.calibration_samples}")
    sizes = {name: getattr(args, name) for name in ("nz", "ngf", "ndf", "nc", "image_size")
             if getattr(args, name) is not None}
    default_name = "-".join(part for part in args.generator.stem.lower().replace("_", "-").split("-") if part)
    out = args.out or Path("models") / (default_name or "imported")
    card, notes = import_model(args.generator, ImportOptions(
        out=out, name=args.name, force=args.force, tutorial=TutorialSpec(**sizes), discriminator=args.discriminator,
        key=args.key, discriminator_key=args.discriminator_key, data=args.data,
        calibration_samples=args.calibration_samples or 2000, latent_input=args.latent_input,
        label_input=args.label_input, num_classes=args.num_classes or 0, layout=args.layout, range=args.range,
        given=given))
    graphs = ", ".join(entry["file"] for entry in card["graphs"].values())
    print(f"imported {args.generator} as {card['name']} {card['version']} ({card['height']}x{card['width']}x"
          f"{card['channels']}, latent {card['latent_dim']}) to {out}: {graphs}")
    for note in notes:
        print(f"  {note}")
    for key, record in card["parity"].items():
        diffs = record["max_abs_diff"]
        print(f"  {key}: max |ONNX - reference| " + " ".join(f"b{b}={d:.3g}" for b, d in diffs.items()))
    print(f"  serve it: ganserve serve {out}")
    return 0
