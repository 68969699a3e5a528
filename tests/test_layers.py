"""Which package may import which (docs/DESIGN.md, "Layers"), read from the source itself.

`serving` is the base install and never imports `training` or `export` (the command line
reaches their commands by name, and says what to install when they are missing). `training`
and `export` import from `serving` only its contracts and the few pieces that must behave the
same on both sides, listed here with the reason.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# What training/ and export/ may take from serving/, and why it is shared rather than copied.
SHARED_WITH_TRAINING = {
    "serving.formats": "the contracts between the stages: model.json, pixels, files, the spot check",
    "serving.sampling.latents": "the seed contract: a seed's latent is the same in training, export and serving",
    "serving.engine": "evaluate scores an exported model exactly as it is served",
    "serving.runtime.cpus": "the CPUs this process may use: one rule for training's loaders and serving's workers",
}


def imported_modules(path: Path) -> set[str]:
    """Every absolute module a file imports, at any depth (inside functions too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


def _sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", ["training", "export"])
def test_training_and_export_take_only_the_shared_parts_of_serving(package):
    strays = {}
    for path in _sources(package):
        for module in imported_modules(path):
            # `serving` itself holds only __version__, the package's one version
            if module.split(".")[0] == "serving" and module != "serving" and not any(
                    module == allowed or module.startswith(allowed + ".") for allowed in SHARED_WITH_TRAINING):
                strays.setdefault(module, []).append(str(path.relative_to(ROOT)))
    assert not strays, f"serving modules that {package}/ may not import (or add them, with why): {strays}"


def test_serving_never_imports_training_or_export():
    for path in _sources("serving"):
        reached = {module.split(".")[0] for module in imported_modules(path)} & {"training", "export"}
        assert not reached, f"{path.relative_to(ROOT)} imports {reached}"


def test_the_rule_sees_imports_inside_functions(tmp_path):
    source = tmp_path / "late.py"
    source.write_text("def f():\n    from serving.http.app import create_app\n    import training.loop\n")
    assert imported_modules(source) == {"serving.http.app", "training.loop"}
