"""The service's settings (serving/settings.py): the worker layout on a CPU and a GPU, and a
container's environment taking the same layout as `ganserve serve`."""

import pytest


def test_serve_worker_layout_defaults_to_one_single_threaded_worker_per_core(monkeypatch):
    from serving.settings import worker_layout

    monkeypatch.setattr("serving.settings.available_cpus", lambda: 6)
    assert worker_layout("cpu", 0, 0) == (6, 1)
    assert worker_layout("auto", 0, 0) == (6, 1)  # no GPU provider on this machine
    assert worker_layout("cpu", 3, 2) == (3, 2)  # explicit values win


def test_service_settings_take_the_same_layout_when_workers_are_unset(monkeypatch):
    """A container runs `bentoml serve` itself: unset GANSERVE_WORKERS gets serve's layout."""
    from serving.settings import Settings

    monkeypatch.setattr("serving.settings.available_cpus", lambda: 6)
    for name in ("GANSERVE_WORKERS", "GANSERVE_THREADS", "GANSERVE_DEVICE"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings.from_env()
    assert (settings.workers, settings.threads) == (6, 1)
    monkeypatch.setenv("GANSERVE_WORKERS", "2")
    assert (Settings.from_env().workers, Settings.from_env().threads) == (2, 0)
    monkeypatch.setenv("GANSERVE_DEVICE", "gpu")
    with pytest.raises(SystemExit, match="GANSERVE_DEVICE='gpu': use one of auto, cpu, cuda, tensorrt"):
        Settings.from_env()


def test_serve_worker_layout_on_a_gpu_is_a_few_workers(monkeypatch):
    """This machine has no GPU provider; provider detection is replaced to reach the GPU branch."""
    from serving.runtime import providers
    from serving.settings import GPU_WORKERS, worker_layout

    monkeypatch.setattr(providers, "gpu_wanted", lambda device: True)
    monkeypatch.setattr("serving.settings.available_cpus", lambda: 16)
    assert worker_layout("cuda", 0, 0) == (GPU_WORKERS, 0) == (4, 0)
    monkeypatch.setattr("serving.settings.available_cpus", lambda: 2)
    assert worker_layout("cuda", 0, 0) == (2, 0)  # never more workers than cores
    assert worker_layout("cuda", 1, 0) == (1, 0)
