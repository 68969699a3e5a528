"""GPU figures and checks, for a machine with a CUDA device (not run by `make bench`).

    python -m benchmarks.engine.gpu [--out FILE] [--device cuda|cpu] [--batches 1,8,64,256,1024]

1. Providers: what ONNX Runtime offers on this machine and which provider the engine gets
   when it asks for `cuda` (never assumed: the CPU build falls back, and says so).
2. Training on the device: a short dcgan run (width 64, AMP), resumed from its checkpoint,
   against the same steps on this machine's CPU; the GPU-trained run is then exported with
   float16 graphs, which runs the exporter's own checks.
3. How close the device's images are to the served ones: the same seeds through PyTorch on
   the device (float32 and float16) and through the engine's float32 graph, in grey levels;
   D's logits likewise.
4. G speed at batch 1 to 1024 for the benchmark networks (mlp28, dcgan28, dcgan64, width 64):
   PyTorch eager float32 vs float16 vs a captured CUDA graph (on the device, and with the
   images copied to the host as the engine returns them), and the engine on the same machine
   (CUDA when onnxruntime-gpu is installed; its CPU provider as the same-run baseline).
5. `ganserve sample`'s writer with the engine on the device: PNG and npz vs the engine alone.
6. resnet against dcgan at 64 px RGB with mixed precision, on crops of the photos that ship
   with scikit-learn: training images/s for `--train-seconds` each, then the resnet exported
   (with float16 graphs) and its graphs timed on the device.

`--device cpu` runs everything but the CUDA parts, to check the script on a machine without a GPU.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import parse_args, quick, summary, write_result
from benchmarks.engine.engine_bench import sampler_vs_engine

NETWORKS = {"mlp28": ("mlp", 28), "dcgan28": ("dcgan", 28), "dcgan64": ("dcgan", 64)}
PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16}
AGREEMENT_SEEDS = range(256)


def timed_rates(run, count: int, device: torch.device, repeats: int = 5, iters: int = 20) -> list[float]:
    """Images/s of `run()` (which makes `count` images), once per repeat; waits for the GPU."""
    def wait() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    rates = []
    for _ in range(repeats):
        wait()
        start = time.perf_counter()
        for _ in range(iters):
            run()
        wait()
        rates.append(iters * count / (time.perf_counter() - start))
    return rates


def providers_report(device: torch.device) -> dict:
    import onnxruntime as ort

    report = {"onnxruntime": ort.__version__, "available_providers": ort.get_available_providers(),
              "torch": torch.__version__, "torch_cuda": torch.version.cuda,
              "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu"}
    print(json.dumps(report), flush=True)
    return report


def engine_provider(model_dir: Path) -> dict:
    """Which provider the engine really gets when asked for CUDA."""
    from serving.engine import Engine

    engine = Engine(model_dir, device="cuda", warmup=False)
    got = {"asked": "cuda", "provider": engine.provider, "precision": engine.precision,
           "fell_back": engine.fell_back}
    print("engine asked for cuda:", got, flush=True)
    return got


# --- training ---------------------------------------------------------------------------------
def training_check(work: Path, device: torch.device, steps: int, cpu_steps: int) -> dict:
    from export.exporter import ExportOptions, export_model
    from training.checkpoints import load_latest_state
    from training.config import TrainConfig
    from training.loop import train

    run, model = work / "run", work / "model"
    half = steps // 2
    config = TrainConfig(data="digits", resolution=28, width=64, steps=half, checkpoint_every=half,
                         sample_every=steps, log_every=25, device=device.type)
    start = time.perf_counter()
    train(config, run, progress=False)
    first_part = time.perf_counter() - start
    start = time.perf_counter()
    train(dataclasses.replace(config, steps=steps), run, resume=True, progress=False)
    resumed_part = time.perf_counter() - start
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    logged_steps = [record["step"] for record in records]
    if logged_steps != sorted(set(logged_steps)) or logged_steps[-1] != steps:
        raise SystemExit(f"resume broke the step sequence: {logged_steps}")
    if load_latest_state(run)["step"] != steps:
        raise SystemExit("the newest training state is not at the last step")
    device_rate = summary([record["images_per_s"] for record in records[1:]])  # the first window holds start-up

    cpu_run = work / "cpu-run"
    train(dataclasses.replace(config, device="cpu", steps=cpu_steps, checkpoint_every=cpu_steps,
                              log_every=max(cpu_steps // 4, 1)), cpu_run, progress=False)
    cpu_records = [json.loads(line) for line in (cpu_run / "metrics.jsonl").read_text().splitlines()]
    cpu_rate = summary([record["images_per_s"] for record in cpu_records[1:]] or [cpu_records[0]["images_per_s"]])

    start = time.perf_counter()
    card = export_model(run, ExportOptions(out=model, force=True, fp16=True, calibration_samples=500))
    export_seconds = time.perf_counter() - start
    result = {"config": {"data": "digits", "resolution": 28, "width": 64, "batch_size": config.batch_size,
                         "amp": config.amp, "steps": steps, "resumed_at": half},
              "device_images_per_s": device_rate, "cpu_images_per_s": cpu_rate,
              "speedup_vs_cpu": round(device_rate["median"] / cpu_rate["median"], 2),
              "seconds": {"first_part": round(first_part, 1), "resumed_part": round(resumed_part, 1),
                          "export_with_fp16": round(export_seconds, 1)},
              "exported_graphs": sorted(card["graphs"])}
    print("training:", json.dumps(result), flush=True)
    return result


def photo_folder(folder: Path, count: int = 512) -> str:
    """Crops of scikit-learn's two bundled photos, odd sizes: what a user's folder looks like."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images  # china.jpg and flower.jpg, 427x640 RGB
    rng = np.random.default_rng(0)
    for i in range(count):
        photo, label = photos[i % 2], ("china", "flower")[i % 2]
        side = int(rng.integers(80, 200))
        top, left = int(rng.integers(0, photo.shape[0] - side)), int(rng.integers(0, photo.shape[1] - side))
        (folder / label).mkdir(parents=True, exist_ok=True)
        Image.fromarray(photo[top:top + side, left:left + side]).save(folder / label / f"{i}.jpg")
    return f"folder:{folder}"


def resnet_vs_dcgan(work: Path, device: torch.device, seconds: float, batches: list[int]) -> dict:
    from export.exporter import ExportOptions, export_model
    from training.config import TrainConfig
    from training.loop import train

    data = photo_folder(work / "photos")
    rows, least = {}, 2 if quick() else 40  # --quick: a few steps
    for arch in ("dcgan", "resnet"):
        run = work / f"photos-{arch}"
        probe = TrainConfig(data=data, resolution=16 if quick() else 64, arch=arch, steps=least // 2,
                            log_every=max(1, least // 4), sample_every=10_000, checkpoint_every=10_000,
                            device=device.type)
        train(probe, work / f"probe-{arch}", progress=False)  # a first rate, to size the timed run
        rate = json.loads((work / f"probe-{arch}" / "metrics.jsonl").read_text().splitlines()[-1])["images_per_s"]
        steps = max(least, int(seconds * rate / probe.batch_size))
        config = dataclasses.replace(probe, steps=steps, log_every=max(steps // 10, 1), checkpoint_every=steps)
        start = time.perf_counter()
        train(config, run, progress=False)
        records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        rows[arch] = {"steps": steps, "seconds": round(time.perf_counter() - start, 1),
                      "images_per_s": summary([r["images_per_s"] for r in records[1:]]),
                      "diversity_last": records[-1].get("diversity"), "amp": config.amp}
    rows["resnet_over_dcgan_images_per_s"] = round(rows["resnet"]["images_per_s"]["median"]
                                                   / rows["dcgan"]["images_per_s"]["median"], 3)
    model = work / "photos-resnet-model"
    export_model(work / "photos-resnet", ExportOptions(out=model, force=True, fp16=True, calibration_samples=100))
    rows["resnet_engine"] = engine_rows(model, batches)
    print("resnet vs dcgan:", json.dumps(rows)[:2000], flush=True)
    return rows


# --- agreement --------------------------------------------------------------------------------
def grey_level_gap(a: np.ndarray, b: np.ndarray) -> dict:
    gap = np.abs(a.astype(np.int16) - b.astype(np.int16))
    return {"max": int(gap.max()), "mean": round(float(gap.mean()), 4),
            "pixels_over_1_level": round(float((gap > 1).mean()), 6)}


def agreement(run: Path, model: Path, device: torch.device) -> dict:
    """Seeds through the engine (float32, CPU) and through PyTorch on the device."""
    from export.graphs import DiscriminatorGraph, GeneratorGraph
    from serving.engine import Engine
    from serving.sampling.latents import latents
    from training.release import read_release

    release = read_release(run)
    engine = Engine(model, device="cpu", precision="fp32")
    z = latents(list(AGREEMENT_SEEDS), engine.card.latent_dim)
    served = engine.run_generator({"z": z})
    served_logits = engine.run_discriminator({"images": served})
    result = {"seeds": len(AGREEMENT_SEEDS)}
    for precision, dtype in PRECISIONS.items():
        if device.type == "cpu" and dtype == torch.float16:
            continue
        generator = GeneratorGraph(release.build_generator(), dtype).to(device).eval()
        discriminator = DiscriminatorGraph(release.build_discriminator(), dtype).to(device).eval()
        with torch.inference_mode():
            images = generator(torch.from_numpy(z).to(device)).cpu().numpy()
            logits = discriminator(torch.from_numpy(served).to(device)).cpu().numpy()
        result[f"torch_{device.type}_{precision}"] = {
            "images_vs_engine": grey_level_gap(images, served),
            "logits_max_abs_gap": round(float(np.abs(logits - served_logits).max()), 5)}
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():  # the graphs a GPU server runs (a CPU
        for precision in ("fp32", "fp16"):                           # engine refuses fp16 graphs)
            other = Engine(model, device="cuda", precision=precision)
            if other.precision == precision:
                result[f"engine_{other.provider}_{precision}"] = {
                    "images_vs_engine": grey_level_gap(other.run_generator({"z": z}), served),
                    "logits_max_abs_gap": round(float(np.abs(other.run_discriminator({"images": served})
                                                             - served_logits).max()), 5)}
    print("agreement:", json.dumps(result), flush=True)
    return result


# --- speed ------------------------------------------------------------------------------------
def torch_generator_rows(device: torch.device, batches: list[int]) -> list[dict]:
    from export.graphs import GeneratorGraph
    from training.networks import NetworkSpec, build_generator

    rows = []
    for name, (arch, resolution) in NETWORKS.items():
        torch.manual_seed(0)
        base = build_generator(NetworkSpec(arch, latent_dim=100, channels=1, resolution=resolution, width=64)).eval()
        for precision, dtype in PRECISIONS.items():
            if device.type == "cpu" and dtype == torch.float16:
                continue  # CPU float16 kernels are a different story; this is the GPU benchmark
            graph = GeneratorGraph(copy.deepcopy(base), dtype).to(device).eval()
            for batch in batches:
                z = torch.randn(batch, 100, device=device)
                with torch.inference_mode():
                    graph(z)  # warm-up: cuDNN picks its algorithms for this shape
                    row = {"network": name, "runtime": f"torch {device.type} {precision}", "batch": batch,
                           "eager_images_per_s": summary(timed_rates(lambda: graph(z), batch, device)),  # noqa: B023
                           # as served: the images copied to the host, as the engine returns them
                           "eager_to_host_images_per_s": summary(timed_rates(lambda: graph(z).cpu(), batch,  # noqa: B023
                                                                             device))}
                    if device.type == "cuda":
                        try:
                            replay = _captured(graph, z)
                        except RuntimeError as error:  # recorded, so the other figures still come back
                            row["cuda_graph_error"] = str(error).splitlines()[0]
                        else:
                            row["cuda_graph_images_per_s"] = summary(timed_rates(replay, batch, device))
                rows.append(row)
                graphed = row.get("cuda_graph_images_per_s", {}).get("median", 0)
                print(f"{name} {row['runtime']} batch {batch:5}: eager {row['eager_images_per_s']['median']:10.0f}"
                      f" img/s, CUDA graph {graphed:10.0f} img/s", flush=True)
    return rows


def _captured(graph: torch.nn.Module, z: torch.Tensor):
    """G captured once as a CUDA graph; replaying it skips the per-kernel launch cost."""
    captured = torch.cuda.CUDAGraph()
    static_z = z.clone()
    with torch.cuda.graph(captured):
        graph._static_out = graph(static_z)  # kept alive as long as the capture
    return captured.replay


def engine_rows(model: Path, batches: list[int]) -> list[dict]:
    """The engine on the trained dcgan28 export: CUDA when onnxruntime-gpu is here, and the CPU."""
    import onnxruntime as ort

    from serving.engine import Engine

    setups = [("cpu", "fp32")]
    if "CUDAExecutionProvider" in ort.get_available_providers():
        setups += [("cuda", "fp32"), ("cuda", "fp16")]
    rows = []
    for device, precision in setups:
        engine = Engine(model, device=device, precision=precision, max_batch=max(batches))
        for batch in batches:
            z = np.random.default_rng(0).standard_normal((batch, engine.card.latent_dim), dtype=np.float32)
            rates = summary(timed_rates(lambda: engine.run_generator({"z": z}), batch,  # noqa: B023
                                        torch.device("cpu"), iters=5))
            rows.append({"network": "dcgan28", "runtime": f"engine {engine.provider} {engine.precision}",
                         "batch": batch, "images_per_s": rates})
            print(f"dcgan28 engine {engine.provider} {engine.precision} batch {batch:5}: "
                  f"{rates['median']:10.0f} img/s", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--batches", default="1,8,64,256,1024", help="comma list of G batch sizes")
    parser.add_argument("--train-steps", type=int, default=400, help="device training steps (resumed halfway)")
    parser.add_argument("--cpu-train-steps", type=int, default=40, help="the same run's steps on the CPU")
    parser.add_argument("--sampler-images", type=int, default=20_000, help="images per sampler run")
    parser.add_argument("--train-seconds", type=float, default=120, help="resnet and dcgan training time each")
    parser.add_argument("--out", type=Path, help="write the JSON here instead of results/gpu.json")
    args = parse_args(parser, device="cpu", batches="1,8", train_steps=4, cpu_train_steps=2, sampler_images=64,
                      train_seconds=2)
    device = torch.device(args.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("no CUDA device: this benchmark is for a machine with a GPU (--device cpu checks it)")
        torch.backends.cudnn.benchmark = True  # the best convolution algorithm per shape, as a tuned server would
    batches = [int(part) for part in args.batches.split(",")]
    result = {"providers": providers_report(device)}
    with tempfile.TemporaryDirectory(prefix="ganserve-gpu-") as work:
        work = Path(work)
        sections = [("training", lambda: training_check(work, device, args.train_steps, args.cpu_train_steps)),
                    ("engine_asked_for_cuda", lambda: engine_provider(work / "model")),
                    ("agreement", lambda: agreement(work / "run", work / "model", device)),
                    ("torch", lambda: torch_generator_rows(device, batches)),
                    ("engine", lambda: engine_rows(work / "model", batches)),
                    ("sampler", lambda: sampler_vs_engine(work / "model", args.sampler_images, 2,
                                                          "cuda" if device.type == "cuda" else "cpu", work)),
                    ("resnet_vs_dcgan_64px", lambda: resnet_vs_dcgan(work, device, args.train_seconds, batches))]
        for key, section in sections:
            try:
                result[key] = section()
            except Exception as error:  # noqa: BLE001 (recorded; the later sections still run)
                traceback.print_exc()
                result[key] = {"error": f"{type(error).__name__}: {error}"}
            path = write_result("gpu", result, args.out)  # after each section: a cut-short run keeps its figures
    print("wrote", path)

if __name__ == "__main__":
    main()
