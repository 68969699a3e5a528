"""The service's settings (serving/settings.py): the worker layout on a CPU and a GPU, and a
container's environment taking the same layout as `ganserve serve`."""

import re

import pytest

from tests.conftest import free_port


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


def readme_table() -> list[str]:
    """The README's settings table as SETTINGS spells it (a failing test prints it to paste)."""
    from serving.settings import SETTINGS

    rows = ["| variable | `ganserve serve` | default | meaning |", "|---|---|---|---|"]
    for setting in SETTINGS:
        default = "unset" if setting.default is None else setting.as_variable(setting.default)
        rows.append(f"| `{setting.variable}` | `{setting.option}` | {default} | {setting.meaning} |")
    return rows


def test_the_readme_settings_table_is_the_code():
    from pathlib import Path

    lines = (Path(__file__).resolve().parents[2] / "README.md").read_text().splitlines()
    first = lines.index("| variable | `ganserve serve` | default | meaning |")
    expected = readme_table()
    assert lines[first:first + len(expected) + 1] == [*expected, ""], "\n".join(expected)


def test_settings_fields_are_the_settings_table():
    import dataclasses

    from serving.settings import SETTINGS, Settings

    assert [field.name for field in dataclasses.fields(Settings)] == [setting.name for setting in SETTINGS]


# A value other than the default for each setting, as a flag spells it.
OTHER_VALUES = {"device": "cpu", "engine": "onnxruntime", "precision": "fp32", "workers": "3", "threads": "2",
                "max_images": "8", "max_score_images": "9", "max_batch": "10", "max_queue": "11",
                "max_queue_seconds": "12", "batch_wait_ms": "13", "max_body_bytes": "1000", "access_log": True,
                "tracing": True, "protect_metrics": True, "default_model": "digits", "poll_seconds": "0.5",
                "max_loaded_models": "2", "drift_window": "100", "drift_sample_every": "4"}


def _serve_environment(monkeypatch, argv: list[str]) -> dict[str, str]:
    """The environment `ganserve serve ARGV` hands the server (its exec is caught)."""
    from serving.cli import main

    handed = {}

    def caught(path, args, env):
        handed.update(env)
        raise SystemExit(0)

    monkeypatch.setattr("serving.cli.commands.os.execve", caught)
    with pytest.raises(SystemExit):
        main(["serve", *argv])
    return handed


def test_every_setting_has_a_serve_flag_that_sets_it(model_dir, tmp_path, monkeypatch):
    """Each flag reaches the server as its variable, read back by Settings as the value given;
    flags not given leave the environment (and so the defaults) alone."""
    from serving.settings import SETTING, SETTINGS, Settings

    for setting in SETTINGS:
        monkeypatch.delenv(setting.variable, raising=False)
    (tmp_path / "api").write_text("a" * 32 + "\n")
    (tmp_path / "admin").write_text("b" * 32 + "\n")
    argv = [str(model_dir), "--port", str(free_port()), "--api-key-file", str(tmp_path / "api"),
            "--admin-key-file", str(tmp_path / "admin")]
    for name, value in OTHER_VALUES.items():
        argv += [SETTING[name].option] if value is True else [SETTING[name].option, value]
    assert set(OTHER_VALUES) | {"model", "api_keys_file", "admin_keys_file"} == set(SETTING)
    settings = Settings.from_env(_serve_environment(monkeypatch, argv))
    for name, value in OTHER_VALUES.items():
        assert getattr(settings, name) == (value if value is True else SETTING[name].parse(value)), name
        assert getattr(settings, name) != SETTING[name].default, name
    assert (settings.model, settings.api_keys_file, settings.admin_keys_file) == (
        str(model_dir.resolve()), str(tmp_path / "api"), str(tmp_path / "admin"))

    handed = _serve_environment(monkeypatch, [str(model_dir), "--port", str(free_port())])
    assert {setting.variable for setting in SETTINGS} & set(handed) == {"GANSERVE_MODEL"}


@pytest.mark.parametrize(("flag", "value", "message"), [
    ("--max-images", "0", "--max-images: '0' is not allowed; use an integer of at least 1"),
    ("--workers", "two", "--workers: 'two' is not allowed; use an integer of at least 0"),
    ("--poll-seconds", "nan", "--poll-seconds: 'nan' is not allowed; use 0 (off) or a positive number of seconds"),
])
def test_a_bad_serve_flag_is_one_line_naming_it(model_dir, capsys, flag, value, message):
    from serving.cli import main

    assert main(["serve", str(model_dir), flag, value]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"ganserve serve: error: {message}"]


def test_a_bad_variable_names_it_and_what_is_allowed(monkeypatch):
    from serving.settings import Settings

    for name, value, rule in (("GANSERVE_MAX_QUEUE", "-1", "use an integer of at least 1"),
                              ("GANSERVE_TRACING", "yes", "use 1 (on) or 0 (off)"),
                              ("GANSERVE_ENGINE", "tensorflow", "use one of auto, onnxruntime, openvino")):
        with pytest.raises(SystemExit, match=re.escape(f"{name}='{value}': {rule}")):
            Settings.from_env({name: value})
