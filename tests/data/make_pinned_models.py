"""How tests/data/pinned-* were made (run once; the tests never run this): tiny dcgan model
folders with fixed weights, so tests/serving/test_pinned.py can compare served pixels with
values stored in the test. Re-running it makes new weights, and the stored values must then
be written again: that is the point of pinning them.

    python tests/data/make_pinned_models.py
"""

import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from export.exporter import ExportOptions, export_model  # noqa: E402
from tests.conftest import make_release  # noqa: E402

for name, classes in (("pinned-dcgan", 0), ("pinned-dcgan-conditional", 3)):
    work = HERE / f".{name}-work"
    shutil.rmtree(work, ignore_errors=True)
    release = make_release(work, num_classes=classes, seed=7)
    export_model(release, ExportOptions(out=HERE / name, name=name, calibration_samples=20, force=True))
    shutil.rmtree(work)
