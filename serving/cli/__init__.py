"""The `ganserve` command: one entry point whose subcommands live with the stage that owns them.

Stages are found by module name and register their commands without importing anything heavy,
so the serving install (no torch) runs `ganserve serve|sample|score|interpolate`, and
`ganserve train` there says in one line what to install. The serving side's own commands are
in `commands.py`; the batch sampler behind `ganserve sample` is `sampler.py`.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# (module, what it needs): each module has register(subparsers).
STAGES = [
    ("training.cli", "ganserve[train]"),
    ("export.cli", "ganserve[train]"),
    ("serving.cli.commands", "ganserve"),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ganserve",
        description="Train a GAN, export it to verified ONNX, and serve it.",
        epilog="Run 'ganserve COMMAND --help' for a command's options.")
    parser.add_argument("--version", action="version", version=f"ganserve {_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name, extra in STAGES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError:
            continue  # a stage not shipped in this install (the bento carries serving/ only)
        known = set(subparsers.choices)
        module.register(subparsers)
        for name in set(subparsers.choices) - known:
            subparsers.choices[name].set_defaults(extra=extra)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 0
    try:
        return args.handler(args) or 0
    except ModuleNotFoundError as error:
        print(f"ganserve {args.command}: error: {error}; this command needs pip install '{args.extra}'",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ganserve {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # user errors become one line; bugs keep their traceback
        if getattr(error, "is_user_error", False):
            print(f"ganserve {args.command}: error: {error}", file=sys.stderr)
            return 2
        raise


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ganserve")
    except PackageNotFoundError:
        return "unknown"


