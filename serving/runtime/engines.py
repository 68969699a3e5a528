"""Which engine runs a model's graphs on this machine, in which precision, and why.

Two engines read the same .onnx files: ONNX Runtime (float32 on a CPU; the GPU's providers)
and OpenVINO's CPU plugin (bfloat16 where the CPU computes it natively, else float32;
openvino_graph.py). Neither wins everywhere: for a compute-heavy graph on a CPU with bfloat16
OpenVINO is several times faster, for a small one ONNX Runtime is as fast or faster. So with
`--engine auto` (the default) ganserve measures, on this machine, the model's own generator at
the batch sizes a server runs (1 and 16 rows, one thread: a worker's share) and takes OpenVINO
only where it is at least MIN_GAIN as fast at 16 rows and not slower at one. The choice is
cached per (graphs, engine versions, CPU), so every worker of a server and `ganserve sample`
on the same machine take the same one and give the same bytes. A reduced precision is then
held to its pixel tolerance by the start-up spot check (spot_check.LEVELS_ALLOWED); an engine
beyond it is not used.

    >>> choose(card, "cpu", "auto", "auto")
    Choice(engine='openvino', precision='bf16', reason='OpenVINO in bf16: 3.1x ONNX Runtime at 16 rows ...')
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import ServingError
from ..formats.files import cache_dir, write_atomically
from ..sampling.latents import generator_feeds, label_array, latents
from . import openvino_graph
from .providers import CPU, usable_providers

ENGINES = ("auto", "onnxruntime", "openvino")
MIN_GAIN = 1.2  # OpenVINO's speed over ONNX Runtime's at 16 rows, below which ONNX Runtime stays
MIN_SINGLE = 0.95  # ...and at one row, below which it would make single-image requests slower
MEASURE_ROWS = (1, 16)
MEASURE_SECONDS = 0.3  # per engine and batch size


@dataclass(frozen=True)
class Choice:
    engine: str  # onnxruntime | openvino
    precision: str  # fp32 | fp16 | bf16
    reason: str
    measured: dict | None = None  # images/s per engine and rows, when measured

    def to_json(self) -> dict:
        return asdict(self)


def native_bf16() -> str | None:
    """The CPU's native bfloat16 as OpenVINO reports it (None without OpenVINO or without it)."""
    if not openvino_graph.available():
        return None
    import openvino as ov

    return "bf16" if "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES") else None


def choose(card, device: str, engine: str = "auto", precision: str = "auto") -> Choice:
    """The engine and precision for `card`'s graphs; ServingError for a combination that cannot be."""
    if engine not in ENGINES:
        raise ServingError(f"engine: {engine!r} is not allowed; use one of {', '.join(ENGINES)}")
    on_gpu = usable_providers(device)[0] != CPU
    if engine == "openvino" or (engine == "auto" and not on_gpu and precision == "bf16"):
        if on_gpu:
            raise ServingError("engine: openvino runs on the CPU; use --device cpu, or --engine onnxruntime")
        if not openvino_graph.available():
            raise ServingError("engine: openvino is not installed; pip install 'ganserve[openvino]'")
        return _openvino(precision, "asked for")
    if engine == "onnxruntime" or on_gpu:
        if precision == "bf16":
            raise ServingError("precision: bf16 runs on OpenVINO; use --engine openvino (or auto), or --precision "
                               "fp32")
        why = "asked for" if engine == "onnxruntime" else "the GPU runs on ONNX Runtime's providers"
        return Choice("onnxruntime", "fp16" if precision == "fp16" else "fp32", f"ONNX Runtime: {why}")
    if precision == "fp16":
        raise ServingError("precision: fp16 graphs are for GPUs; on a CPU use fp32 or bf16")
    if not openvino_graph.available():
        return Choice("onnxruntime", "fp32", "ONNX Runtime: OpenVINO is not installed (pip install "
                                             "'ganserve[openvino]' lets ganserve measure it against ONNX Runtime)")
    return _measured(card, _openvino(precision, "measured").precision)


def _openvino(precision: str, how: str) -> Choice:
    if precision == "fp16":
        raise ServingError("precision: fp16 graphs are for GPUs; OpenVINO serves fp32 or bf16")
    native = native_bf16()
    if precision == "bf16" and native is None:
        raise ServingError("precision: bf16 needs a CPU with native bfloat16 (AMX or AVX-512 BF16); this one has "
                           "none: use --precision fp32")
    chosen = precision if precision in ("fp32", "bf16") else ("bf16" if native else "fp32")
    where = "bfloat16, which this CPU computes natively" if chosen == "bf16" else "float32"
    return Choice("openvino", chosen, f"OpenVINO in {where} ({how})")


def _measured(card, precision: str) -> Choice:
    """ONNX Runtime against OpenVINO on this machine, once per (graphs, versions, CPU): the
    first process to ask measures, under a file lock; the others read its answer."""
    folder = cache_dir() / "engines"
    folder.mkdir(parents=True, exist_ok=True)
    key = _cache_key(card, precision)
    path = folder / f"{key}.json"
    with open(folder / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.is_file():
            return Choice(**json.loads(path.read_text()))
        choice = _measure(card, precision)
        write_atomically(path, json.dumps(choice.to_json()).encode())
        return choice


def _measure(card, precision: str) -> Choice:
    from .graph import Graph

    path = card.graph_path("generator")
    engines = {"onnxruntime": Graph(path, "cpu", threads=1, max_batch=64),
               "openvino": openvino_graph.OpenVinoGraph(path, precision, threads=1, max_batch=64)}
    rates: dict[str, dict[str, float]] = {name: {} for name in engines}
    for rows in MEASURE_ROWS:
        seeds = list(range(rows))
        feeds = generator_feeds(latents(seeds, card.latent_dim), label_array(seeds, None, card.num_classes))
        for name, graph in engines.items():
            graph.run(feeds)  # first run: kernels chosen, memory allocated
            rates[name][str(rows)] = _images_per_s(graph, feeds, rows)
    for graph in engines.values():
        graph.close()
    gains = {rows: rates["openvino"][rows] / rates["onnxruntime"][rows] for rows in rates["onnxruntime"]}
    wins = gains["16"] >= MIN_GAIN and gains["1"] >= MIN_SINGLE
    figures = ", ".join(f"{gains[str(r)]:.2f}x at {r} row{'s' if r > 1 else ''}" for r in MEASURE_ROWS)
    measured = {"images_per_s": rates, "openvino_vs_onnxruntime": {k: round(v, 3) for k, v in gains.items()}}
    if wins:
        return Choice("openvino", precision, f"OpenVINO in {precision}: measured here at {figures} against ONNX "
                                             f"Runtime's speed (at least {MIN_GAIN}x at 16 rows takes it)", measured)
    return Choice("onnxruntime", "fp32", f"ONNX Runtime: OpenVINO in {precision} measured here at {figures} of its "
                                         f"speed, short of {MIN_GAIN}x at 16 rows", measured)


def _images_per_s(graph, feeds: dict, rows: int) -> float:
    best, deadline = 0.0, time.perf_counter() + MEASURE_SECONDS
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        graph.run(feeds)
        best = max(best, rows / (time.perf_counter() - start))
    return round(best, 1)


def _cache_key(card, precision: str) -> str:
    import onnxruntime as ort

    parts = [card.files.get(card.graphs["generator"]["file"], ""), precision, ort.__version__,
             openvino_graph.version(), platform.machine(), _cpu_model()]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]


def _cpu_model() -> str:
    """The CPU's model and flags: another CPU measures anew."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor()
    return "|".join(dict.fromkeys(line for line in lines if line.startswith(("model name", "flags"))))
