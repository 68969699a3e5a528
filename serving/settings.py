"""Service settings: each written once here (its environment variable, `ganserve serve`'s flag,
type, default and meaning), read from the environment so that `ganserve serve`, a bento and a
container are configured the same way. `ganserve serve` generates its flags from SETTINGS and
passes what was given on as variables; `Settings.from_env()` is read once, by
`serving/service.py`, and passed down from there. The README's table is checked against SETTINGS
(tests/serving/test_settings.py)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from .errors import ServingError
from .runtime import providers
from .runtime.cpus import available_cpus
from .runtime.engines import ENGINES

DEFAULT_MODEL_TAG = "ganserve-digits:latest"
PRECISIONS = ("auto", "fp32", "fp16", "bf16")  # serving/engine.py


@dataclass(frozen=True)
class Setting:
    """One setting. `kind`: integer (at least `low`), seconds (0 or more), switch (0 or 1),
    choice (one of `choices`, the first the default), text, or file (a path)."""

    name: str  # the Settings field; its variable is GANSERVE_<NAME>
    kind: str
    meaning: str
    default: object = None
    low: int = 1
    choices: tuple[str, ...] = ()
    flag: str | None = None  # default: --name-with-dashes
    metavar: str | None = None

    @property
    def variable(self) -> str:
        return "GANSERVE_" + self.name.upper()

    @property
    def option(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")

    def parse(self, raw: str):
        """The value `raw` spells; ValueError saying what is allowed when it spells none."""
        if self.kind == "integer":
            try:
                value = int(raw)
            except ValueError:
                raise ValueError(f"use an integer of at least {self.low}") from None
            if value < self.low:
                raise ValueError(f"use an integer of at least {self.low}")
            return value
        if self.kind == "seconds":
            try:
                value = float(raw)
            except ValueError:
                value = math.nan
            if not 0 <= value < math.inf:  # NaN too
                raise ValueError("use 0 (off) or a positive number of seconds")
            return value
        if self.kind == "switch":
            if raw not in ("0", "1"):
                raise ValueError("use 1 (on) or 0 (off)")
            return raw == "1"
        if self.kind == "choice" and raw not in self.choices:
            raise ValueError(f"use one of {', '.join(self.choices)}")
        return raw

    def from_env(self, environ) -> object:
        raw = environ.get(self.variable)
        if raw is None or raw == "":
            return self.default
        try:
            return self.parse(raw)
        except ValueError as rule:
            raise SystemExit(f"{self.variable}={raw!r}: {rule}") from None

    def from_flag(self, raw: str | bool | None) -> object:
        """A `ganserve serve` flag's value (None: not given); ServingError naming the flag."""
        if raw is None or isinstance(raw, bool):
            return raw
        try:
            return self.parse(raw)
        except ValueError as rule:
            raise ServingError(f"{self.option}: {raw!r} is not allowed; {rule}") from None

    def as_variable(self, value) -> str:
        if self.kind == "switch":
            return "1" if value else "0"
        if self.kind == "file":
            return str(Path(value).resolve())  # the server runs from another folder
        return str(value)

    def help(self) -> str:
        if self.kind == "switch":
            return f"{self.meaning} (off by default); also {self.variable}=1"
        default = "" if self.default is None else f" (default: {self.as_variable(self.default)})"
        return f"{self.meaning}{default}; also {self.variable}"


SETTINGS = (
    Setting("model", "text", "a model folder, a repository of them, or a BentoML model tag",
            default=DEFAULT_MODEL_TAG, flag="MODEL"),
    Setting("device", "choice", "auto (TensorRT, CUDA, then the CPU), cpu, cuda or tensorrt",
            default="auto", choices=providers.DEVICES),
    Setting("engine", "choice", "auto (measured per model on this machine: OpenVINO where faster, else ONNX "
            "Runtime), onnxruntime or openvino (pip install 'ganserve[openvino]')", default="auto", choices=ENGINES),
    Setting("precision", "choice", "auto, fp32, fp16 (GPU graphs) or bf16 (OpenVINO on a CPU with native "
            "bfloat16); fp32 on onnxruntime gives the same bytes on every machine", default="auto",
            choices=PRECISIONS),
    Setting("workers", "integer", "worker processes; 0: one per usable core on a CPU, 4 on a GPU", default=0,
            low=0, metavar="N"),
    Setting("threads", "integer", "engine threads per worker; 0: 1 per worker on a CPU, the engine's choice on "
            "a GPU", default=0, low=0, metavar="N"),
    Setting("max_images", "integer", "most images one /generate may ask for", default=64, metavar="N"),
    Setting("max_score_images", "integer", "most images one /score may send", default=256, metavar="N"),
    # 64: past it, per-image speed drops on a CPU
    Setting("max_batch", "integer", "most rows in one engine run", default=64, metavar="N"),
    Setting("max_queue", "integer", "rows waiting before requests are refused (503, Retry-After)", default=8192,
            metavar="N"),
    Setting("max_queue_seconds", "integer", "seconds of queued work before requests are refused", default=10,
            metavar="S"),
    Setting("batch_wait_ms", "integer", "extra wait to grow batches (0: greedy, no added latency)", default=0,
            low=0, metavar="MS"),
    Setting("max_body_bytes", "integer", "request body limit (413 beyond)", default=32 * 1024 * 1024,
            metavar="BYTES"),
    Setting("access_log", "switch", "log every request", default=False),
    # off: the spans cost 22% of a worker's CPU (benchmarks/README.md)
    Setting("tracing", "switch", "BentoML's OpenTelemetry spans on ganserve's routes (22% of a worker's CPU)",
            default=False),
    Setting("api_keys_file", "file", "keys, one per line, for 'Authorization: Bearer KEY' on every route but "
            "the probes and /metrics; unset: the server is open", flag="--api-key-file", metavar="FILE"),
    Setting("protect_metrics", "switch", "with an API keys file: /metrics needs a key too", default=False),
    Setting("default_model", "text", "the repository's model the plain routes serve; unset: the only one, or "
            "the first by name", metavar="NAME"),
    Setting("poll_seconds", "seconds", "how often the repository is scanned for new versions, each verified "
            "and gated on quality before it goes live (0: never, only admin loads)", default=10.0, metavar="S"),
    Setting("max_loaded_models", "integer", "models kept in memory per worker, the least recently used "
            "unloaded (0: no bound)", default=0, low=0, metavar="N"),
    Setting("admin_keys_file", "file", "the admin routes' keys (load, rollback); unset: those routes are off",
            flag="--admin-key-file", metavar="FILE"),
    Setting("drift_window", "integer", "images in each drift window (D's scores of /score's images, and of a "
            "sample of /generate's), compared with the export's", default=512, low=64, metavar="N"),
    Setting("drift_sample_every", "integer", "score one in N of the images plain /generate requests serve, for "
            "the generate drift window (0: none)", default=16, low=0, metavar="N"),
)
SETTING = {setting.name: setting for setting in SETTINGS}


@dataclass(frozen=True)
class Settings:
    """The settings in force: one field per entry of SETTINGS (its meaning is there)."""

    model: str
    device: str
    engine: str
    precision: str
    workers: int
    threads: int
    max_images: int
    max_score_images: int
    max_batch: int
    max_queue: int
    max_queue_seconds: int
    batch_wait_ms: int
    max_body_bytes: int
    access_log: bool
    tracing: bool
    api_keys_file: str | None
    protect_metrics: bool
    default_model: str | None
    poll_seconds: float
    max_loaded_models: int
    admin_keys_file: str | None
    drift_window: int
    drift_sample_every: int

    @property
    def model_is_folder(self) -> bool:
        """A model folder on disk, rather than a BentoML model-store tag."""
        return Path(self.model).is_dir()

    @classmethod
    def from_env(cls, environ=None) -> Settings:
        values = {setting.name: setting.from_env(os.environ if environ is None else environ) for setting in SETTINGS}
        # Unset (or 0) workers: the same layout as `ganserve serve`, so a container gets it too.
        values["workers"], values["threads"] = worker_layout(values["device"], values["workers"], values["threads"])
        return cls(**values)


# On an H200 with 16 cores, 4 CUDA workers served 16-image requests 4.5x faster than one
# (22,568 vs 4,970 images/s at 128 clients) and single images 14% faster at 128 clients; at 32
# clients cuDNN's per-shape searches held both back (benchmarks/README.md, "HTTP on the GPU").
GPU_WORKERS = 4


def worker_layout(device: str, workers: int, threads: int) -> tuple[int, int]:
    """(workers, ONNX Runtime threads per worker). On the CPU one single-threaded worker per
    core served the most requests in benchmarks/ (the HTTP work of one request overlaps the
    compute of another). On a GPU the HTTP work is the bottleneck, and one worker's event loop
    does it on one core: GPU_WORKERS workers, each with its own session on the device."""
    if workers:
        return workers, threads
    if providers.gpu_wanted(device):
        return min(GPU_WORKERS, available_cpus()), threads
    return available_cpus(), threads or 1
