"""The service's settings (serving/settings.py): the worker layout on a CPU and a GPU, and a
container's environment taking the same layout as `ganserve serve`."""

import pytest

from tests.conftest import command_options


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


def _readme_settings() -> list[dict[str, str]]:
    """The README's settings table, row by row."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| `GANSERVE_")]
    cells = [[cell.strip() for cell in row.strip("|").split("|")] for row in rows]
    return [{"variable": c[0].strip("`"), "flag": c[1].strip("`"), "default": c[2].strip("`")} for c in cells]


def _parsed(text: str):
    """A table cell as a value: unset is None, numbers are numbers (0 and 1 also False and True)."""
    if text == "unset":
        return None
    try:
        return float(text)
    except ValueError:
        return text


def test_the_readme_settings_table_is_the_code(monkeypatch):
    """Every variable Settings reads is in the table, with the default Settings takes when it is
    unset, and the `ganserve serve` flag that sets it (no flag where the command sets none)."""
    import re
    from pathlib import Path

    from serving.settings import Settings

    root = Path(__file__).resolve().parents[2]
    read = set(re.findall(r'"(GANSERVE_[A-Z_]+)"', (root / "serving" / "settings.py").read_text()))
    table = _readme_settings()
    variables = [row["variable"] for row in table]
    assert len(variables) == len(set(variables)) and set(variables) == read

    for name in read:
        monkeypatch.delenv(name, raising=False)
    settings = Settings.from_env()
    for row in table:
        value = getattr(settings, row["variable"].removeprefix("GANSERVE_").lower())
        if row["variable"] in ("GANSERVE_WORKERS", "GANSERVE_THREADS"):
            continue  # unset: the machine's layout (test_serve_worker_layout_* above)
        assert value == _parsed(row["default"]), row

    serve_flags = {option for action in command_options("serve").values() for option in action.option_strings}
    commands = (root / "serving" / "cli" / "commands.py").read_text()
    for row in table:
        sets_it = f'"{row["variable"]}"' in commands
        if row["flag"] == "MODEL":
            assert sets_it
        elif row["flag"]:
            assert row["flag"] in serve_flags and sets_it, row
        else:
            assert not sets_it, f"{row['variable']}: `ganserve serve` sets it; name its flag in the README"
