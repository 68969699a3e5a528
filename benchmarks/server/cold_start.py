"""Cold start and footprint: seconds from `ganserve serve` to /readyz 200, resident memory of
the server's processes, and the size of a serving-only install (no torch).
Writes results/cold_start.json."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

from benchmarks.common import WORK, parse_args, summary, write_result

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def cold_start(model_dir: Path, port: int = 3111) -> tuple[float, float]:
    """(seconds to /readyz 200, resident MB of the whole process tree once ready)."""
    start = time.perf_counter()
    process = subprocess.Popen([str(BIN / "ganserve"), "serve", str(model_dir), "--port", str(port), "--host",
                                "127.0.0.1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=0.5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.perf_counter() - start > 120:
                raise RuntimeError("server not ready in 120 s")
            time.sleep(0.05)
        seconds = time.perf_counter() - start
        tree = psutil.Process(process.pid)
        rss = sum(p.memory_info().rss for p in [tree, *tree.children(recursive=True)]) / 2**20
        return seconds, rss
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def serving_install_size() -> dict:
    """Install the package without extras into a fresh venv and measure it."""
    venv = WORK / "serving-venv"
    shutil.rmtree(venv, ignore_errors=True)  # fresh each time: the dependencies may have changed
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(ROOT)], check=True)
    site = next((venv / "lib").glob("python3*/site-packages"))
    size = sum(f.stat().st_size for f in site.rglob("*") if f.is_file())
    has_torch = (site / "torch").exists()
    probe = subprocess.run([str(venv / "bin" / "python"), "-c", "import serving.service"], capture_output=True,
                           text=True, env={**os.environ, "GANSERVE_MODEL": str(WORK / "models" / "dcgan28")})
    return {"site_packages_mb": round(size / 2**20, 1), "torch_installed": has_torch,
            "service_imports_without_torch": probe.returncode == 0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model", type=Path, nargs="?",
                        help="model folder (default: models/digits, which `make serve` makes, else the benchmarks' "
                             "default28)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parse_args(parser, repeats=1)
    if args.model is None:
        args.model = ROOT / "models" / "digits"
        if not (args.model / "model.json").is_file():
            from benchmarks.models import trained_default28

            args.model = trained_default28()
    runs = [cold_start(args.model) for _ in range(args.repeats)]
    result = {"model": args.model.name, "seconds_to_ready": summary([s for s, _ in runs]),
              "resident_mb": summary([m for _, m in runs])}
    if not args.quick:  # a fresh venv and a pip install: most of a quick run's time
        result["serving_install"] = serving_install_size()
    install = result.get("serving_install", {})
    print(f"cold start {result['seconds_to_ready']['median']:.2f} s to /readyz, "
          f"{result['resident_mb']['median']:.0f} MB resident, serving install "
          f"{install.get('site_packages_mb')} MB (torch: {install.get('torch_installed')})")
    write_result("cold_start", result)


if __name__ == "__main__":
    main()
