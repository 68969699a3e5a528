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
    parser.set_defaults(handler=run_export)


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
        calibration_samples=args.calibration_samples, bentoml_name=args.bentoml_name))
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
    lines.append(f"  verified with {card['parity']['generator']['runtime']}")
    if card.get("bentoml_tag"):
        lines.append(f"  BentoML model store: {card['bentoml_tag']}")
    return "\n".join(lines)
