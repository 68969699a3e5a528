"""Schema-driven fuzzing: schemathesis generates requests from the server's own OpenAPI
document (/docs.json) against a real `ganserve serve` process, and every answer must be
something other than a 5xx. A short run here; `make fuzz` runs many more cases and records
the figures (GANSERVE_FUZZ_EXAMPLES, GANSERVE_FUZZ_RESULT)."""

import json
import os
import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from tests.conftest import ganserve_serve

pytestmark = pytest.mark.slow
SCHEMATHESIS = Path(sys.executable).with_name("st")


def test_no_request_the_schema_allows_gets_a_server_error(model_dir, tmp_path):
    examples = int(os.environ.get("GANSERVE_FUZZ_EXAMPLES", "60"))
    seeds = [int(seed) for seed in os.environ.get("GANSERVE_FUZZ_SEEDS", "1").split()]
    cases, summaries = 0, []
    with ganserve_serve(model_dir, tmp_path, "--workers", "1") as base:
        for seed in seeds:  # each seed draws other cases: how `make fuzz` runs thousands
            run = subprocess.run([str(SCHEMATHESIS), "run", f"{base}/docs.json", "--checks", "not_a_server_error",
                                  "--max-examples", str(examples), "--seed", str(seed), "--no-color",
                                  "--request-timeout", "30"], capture_output=True, text=True, timeout=1200)
            output = run.stdout + run.stderr
            assert run.returncode == 0, output[-4000:]
            generated = re.search(r"(\d+) generated, (\d+) passed", output)
            assert generated and generated.group(1) == generated.group(2), output[-2000:]
            cases += int(generated.group(1))
            summaries.append(generated.group(0))
        log = (tmp_path / "server.log").read_text()
    assert cases >= 3 * examples * len(seeds)  # every operation was exercised, not just a few cases
    assert "Traceback" not in log, log[-3000:]  # no fault on the server's side either
    if os.environ.get("GANSERVE_FUZZ_RESULT"):
        Path(os.environ["GANSERVE_FUZZ_RESULT"]).write_text(json.dumps(
            {"tool": "schemathesis " + version("schemathesis"), "checks": "not_a_server_error",
             "max_examples_per_operation": examples, "seeds": seeds, "cases": cases, "server_errors": 0,
             "per_seed": summaries}, indent=2) + "\n")
