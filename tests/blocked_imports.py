"""Processes in which some installed packages cannot be imported, as on a machine without them.

A `sitecustomize` module on the processes' PYTHONPATH refuses the named top-level packages, in
them and in every process they start (a server's workers included)."""

import os
import subprocess
import sys
from pathlib import Path

BLOCKER = """
import sys

class _NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {packages!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, _NotInstalled())
"""


def environment_without(packages: tuple[str, ...], folder: Path) -> dict[str, str]:
    """os.environ for processes that cannot import `packages` (checked on the first of them)."""
    (folder / "sitecustomize.py").write_text(BLOCKER.format(packages=set(packages)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(folder), os.environ.get("PYTHONPATH", "")]),
           "BENTOML_HOME": str(folder / "bentoml")}
    probe = subprocess.run([sys.executable, "-c", f"import {packages[0]}"], env=env, capture_output=True, text=True)
    assert probe.returncode == 1 and f"No module named '{packages[0]}'" in probe.stderr  # the blocker works
    return env
