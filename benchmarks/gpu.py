"""GPU figures, for a machine with a CUDA device (not run by `make bench`).

The engine on CUDA when onnxruntime-gpu is installed (fp32 and fp16 graphs); always PyTorch
CUDA eager fp32 vs fp16 vs a captured CUDA graph, for G at batch 1 to 1024. Prints the
providers ONNX Runtime offers first, and writes results/gpu.json.

    python benchmarks/gpu.py MODEL_DIR RUN_DIR
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from common import summary, write_result

BATCHES = (1, 8, 64, 256, 1024)


def cuda_rate(run, count: int, repeats: int = 5, iters: int = 20) -> list[float]:
    rates = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(iters):
            run()
        torch.cuda.synchronize()
        rates.append(iters * count / (time.perf_counter() - start))
    return rates


def torch_rows(run_dir: Path) -> list[dict]:
    from export.graphs import GeneratorGraph
    from training.release import read_release

    release = read_release(run_dir)
    rows = []
    for precision, dtype in (("fp32", torch.float32), ("fp16", torch.float16)):
        graph = GeneratorGraph(release.build_generator(), dtype).cuda().eval()
        for batch in BATCHES:
            z = torch.randn(batch, release.spec.latent_dim, device="cuda")
            with torch.inference_mode():
                graph(z)
                eager = summary(cuda_rate(lambda: graph(z), batch))  # noqa: B023 (called at once)
                captured = torch.cuda.CUDAGraph()
                static_z = z.clone()
                with torch.cuda.graph(captured):
                    static_out = graph(static_z)  # noqa: F841 (kept alive by the graph)
                graphed = summary(cuda_rate(captured.replay, batch))
            rows.append({"runtime": f"torch {precision}", "batch": batch, "eager_images_per_s": eager,
                         "cuda_graph_images_per_s": graphed})
            print(f"torch {precision} batch {batch:5}: eager {eager['median']:10.0f} img/s, "
                  f"CUDA graph {graphed['median']:10.0f} img/s", flush=True)
    return rows


def engine_rows(model_dir: Path) -> list[dict]:
    import onnxruntime as ort

    from serving.engine import Engine

    print("ONNX Runtime providers:", ort.get_available_providers())
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return []
    rows = []
    for precision in ("fp32", "fp16"):
        engine = Engine(model_dir, device="cuda", precision=precision, max_batch=max(BATCHES))
        for batch in BATCHES:
            z = np.random.default_rng(0).standard_normal((batch, engine.card.latent_dim), dtype=np.float32)
            rates = []
            for _ in range(5):
                start = time.perf_counter()
                for _ in range(20):
                    engine.run_generator({"z": z})
                rates.append(20 * batch / (time.perf_counter() - start))
            rows.append({"runtime": f"onnxruntime {engine.provider} {precision}", "batch": batch,
                         "images_per_s": summary(rates)})
            print(f"engine {engine.provider} {precision} batch {batch:5}: {summary(rates)['median']:10.0f} img/s")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("run_dir", type=Path)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this benchmark is for a machine with a GPU")
    result = {"device": torch.cuda.get_device_name(), "engine": engine_rows(args.model_dir),
              "torch": torch_rows(args.run_dir)}
    write_result("gpu", result)


if __name__ == "__main__":
    main()
