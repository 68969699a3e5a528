"""Engine vs PyTorch eager (same weights, same threads) and vs the machine's matmul peak (float32,
and bfloat16 where the CPU computes it natively: the real peak of such a CPU); ONNX Runtime and
OpenVINO (float32 and bfloat16) each against them; the batch sampler vs the engine alone.
Writes results/engine.json and results/sampler.json.

Contenders are interleaved and repeated; every figure is a median with its spread."""

from __future__ import annotations

import argparse
import shutil
import time

import numpy as np
import torch

from benchmarks.common import WORK, best_rate, parse_args, summary, write_result
from benchmarks.engine.flops import flops_per_image
from benchmarks.models import all_models, http_models

BATCHES = (1, 8, 64, 256)


def matmul_peak_gflops(threads: int, repeats: int = 5, dtype: torch.dtype = torch.float32) -> list[float]:
    """Matrix-multiply throughput of this machine in `dtype` (torch's BLAS / oneDNN), GFLOP/s."""
    torch.set_num_threads(threads)
    n = 2048
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    torch.mm(a, b)
    return [rate * 2 * n**3 / 1e9 for rate in best_rate(lambda: torch.mm(a, b), 1, repeats, 0.5)]


def torch_graph(model_dir):
    """The PyTorch eager generator with the same uint8 post-processing as the ONNX graph."""
    from export.graphs import GeneratorGraph
    from training.release import read_release

    return GeneratorGraph(read_release(WORK / "runs" / model_dir.name).build_generator()).eval()


def engine_vs_torch(models: dict, threads: int, repeats: int, batches=BATCHES) -> list[dict]:
    from serving.engine import Engine
    from serving.runtime import openvino_graph
    from serving.runtime.engines import native_bf16

    torch.set_num_threads(threads)
    peak = summary(matmul_peak_gflops(threads))["median"]
    bf16 = native_bf16()
    # the real peak of this CPU: bfloat16's where it computes it natively, float32's otherwise
    real_peak = summary(matmul_peak_gflops(threads, dtype=torch.bfloat16))["median"] if bf16 else peak
    rows = []
    for name, folder in models.items():
        engines = {"onnxruntime": Engine(folder, device="cpu", threads=threads, max_batch=max(batches),
                                         engine="onnxruntime")}
        if openvino_graph.available():
            for precision in ("fp32", *(["bf16"] if bf16 else [])):
                engines[f"openvino-{precision}"] = Engine(folder, device="cpu", threads=threads,
                                                          max_batch=max(batches), engine="openvino",
                                                          precision=precision)
        graph = torch_graph(folder)
        flops = flops_per_image(folder / "generator.onnx")
        for batch in batches:
            z = np.random.default_rng(0).standard_normal((batch, engines["onnxruntime"].card.latent_dim),
                                                         dtype=np.float32)
            zt = torch.from_numpy(z)
            rates = {name: [] for name in [*engines, "torch"]}
            for _ in range(repeats):  # interleaved
                for engine_name, engine in engines.items():
                    rates[engine_name] += best_rate(lambda: engine.run_generator({"z": z}), batch, 1)  # noqa: B023
                with torch.inference_mode():
                    rates["torch"] += best_rate(lambda: graph(zt), batch, 1)  # noqa: B023 (called at once)
            stats = {engine_name: summary(values) for engine_name, values in rates.items()}
            ort_s, torch_s = stats["onnxruntime"], stats["torch"]
            rows.append({
                "model": name, "batch": batch, "flops_per_image": flops,
                "engine_images_per_s": ort_s, "torch_images_per_s": torch_s,
                "speedup_vs_torch": round(ort_s["median"] / torch_s["median"], 2),
                "engine_gflops": round(ort_s["median"] * flops / 1e9, 2),
                "fraction_of_matmul_peak": round(ort_s["median"] * flops / 1e9 / peak, 3),
                "engines": {engine_name: {"images_per_s": stat,
                                          "share_of_real_peak": round(stat["median"] * flops / 1e9 / real_peak, 3)}
                            for engine_name, stat in stats.items() if engine_name != "torch"},
            })
            shares = ", ".join(f"{engine_name} {stats[engine_name]['median']:.0f} img/s "
                               f"({rows[-1]['engines'][engine_name]['share_of_real_peak']:.0%})"
                               for engine_name in engines)
            print(f"{name:8} batch {batch:4}: {shares}; torch {torch_s['median']:.0f} img/s "
                  f"(of the {'bf16' if bf16 else 'fp32'} peak)", flush=True)
    return [{"matmul_peak_gflops": peak, "real_peak_gflops": real_peak, "real_peak_dtype": "bf16" if bf16 else "fp32",
             "threads": threads}, *rows]


def sampler_vs_engine(model_dir, count: int, repeats: int, device: str = "cpu", work=WORK) -> dict:
    from serving.cli.sampler import SampleJob, run_sample
    from serving.engine import Engine

    engine = Engine(model_dir, device=device, max_batch=256)
    seeds = list(range(count))
    results = {"engine": [], "png": [], "npz": []}
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(0, count, 256):
            engine.generate(seeds[i:i + 256])
        results["engine"].append(count / (time.perf_counter() - start))
        for fmt in ("png", "npz"):
            out = work / "sampler" / fmt
            shutil.rmtree(out, ignore_errors=True)
            result = run_sample(engine, SampleJob(seeds=seeds, out=out, format=fmt), progress=False)
            results[fmt].append(result["written"] / result["seconds"])
    stats = {key: summary(values) for key, values in results.items()}
    ratios = {f"{fmt}_vs_engine": round(stats[fmt]["median"] / stats["engine"]["median"], 3) for fmt in ("png", "npz")}
    print(f"sampler: engine {stats['engine']['median']:.0f} img/s, png {stats['png']['median']:.0f} "
          f"({ratios['png_vs_engine']:.0%}), npz {stats['npz']['median']:.0f} ({ratios['npz_vs_engine']:.0%})")
    return {"model": model_dir.name, "provider": engine.provider, "images": count, "images_per_s": stats, **ratios}


def labelled_sampler(model_dir, count: int, repeats: int, work=WORK) -> dict:
    """PNG output of a conditional model with --labels cycled over the seeds, against the same
    job without labels (each seed's default class): the labels should cost nothing."""
    from serving.cli.sampler import SampleJob, run_sample
    from serving.engine import Engine

    engine = Engine(model_dir, device="cpu", max_batch=256)
    seeds, results = list(range(count)), {"default labels": [], "--labels 0-9": []}
    for _ in range(repeats):
        for name, labels in (("default labels", None), ("--labels 0-9", list(range(10)))):
            out = work / "sampler" / "labelled"
            shutil.rmtree(out, ignore_errors=True)
            result = run_sample(engine, SampleJob(seeds=seeds, out=out, labels=labels), progress=False)
            results[name].append(result["written"] / result["seconds"])
    stats = {name: summary(values) for name, values in results.items()}
    ratio = round(stats["--labels 0-9"]["median"] / stats["default labels"]["median"], 3)
    print(f"sampler with labels: {stats['--labels 0-9']['median']:.0f} img/s vs "
          f"{stats['default labels']['median']:.0f} without ({ratio:.0%})")
    return {"model": model_dir.name, "images": count, "images_per_s": stats, "labels_vs_default": ratio}


def label_bookkeeping(counts=(100_000, 1_000_000, 10_000_000), batch: int = 256) -> list[dict]:
    """Seconds the sampler spends planning a job and finding every batch's labels, without the
    engine: it must grow with the seed count, not with its square (a 10M-seed shard)."""
    from serving.cli.sampler import SampleJob, _labels_for

    rows = []
    for count in counts:
        job = SampleJob(seeds=list(range(count)), out=WORK / "unused", labels=list(range(10)), batch_size=batch)
        start = time.perf_counter()
        for _, positions in job.layout.writes(job, set()):  # one engine batch each
            _labels_for(job, positions)
        seconds = time.perf_counter() - start
        rows.append({"seeds": count, "seconds": round(seconds, 3), "us_per_seed": round(seconds / count * 1e6, 3)})
        print(f"label bookkeeping: {count} seeds in {seconds:.2f} s ({rows[-1]['us_per_seed']} us per seed)")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sampler-images", type=int, default=20_000)
    parser.add_argument("--only", choices=("engine", "sampler"), help="run one of the two parts")
    args = parse_args(parser, repeats=1, sampler_images=256)
    models = all_models()
    if args.only != "sampler":
        chosen = {name: models[name] for name in (("dcgan28",) if args.quick else ("mlp28", "dcgan28", "dcgan64"))}
        if not args.quick:
            chosen["dcgan64rgb"] = http_models()["dcgan64rgb"]()  # the 64 px RGB width-64 model the HTTP tables serve
        rows = engine_vs_torch(chosen, args.threads, args.repeats, BATCHES[:2] if args.quick else BATCHES)
        write_result("engine", {"peak": rows[0], "rows": rows[1:]})
    if args.only != "engine":
        repeats = 1 if args.quick else 3
        write_result("sampler", {**sampler_vs_engine(models["dcgan28"], args.sampler_images, repeats),
                                 "labelled": labelled_sampler(models["dcgan28c"], args.sampler_images, repeats),
                                 "label_bookkeeping": label_bookkeeping()})


if __name__ == "__main__":
    main()
