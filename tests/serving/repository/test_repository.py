"""The model repository: its layout rules, the quality gate, and the registry that swaps a
worker's live versions (serving/repository/). Real model folders, real ONNX Runtime."""

import asyncio
import json

import numpy as np
import pytest

from serving.engine import Engine
from serving.errors import ModelFolderError
from serving.repository import gate
from serving.repository.layout import resolve_model_folder, scan
from serving.repository.registry import Registry, UnknownModel, VersionNotLive
from tests.serving.versions import (
    constant_generator,
    copy_version,
    damaged,
    edited_calibration,
    nan_generator,
    two_models,
)


def _card(folder, name="m", version="s1-abc"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.json").write_text(json.dumps({"name": name, "version": version}))
    return folder


# --- layout ----------------------------------------------------------------------------------------

def test_a_model_folder_is_a_repository_of_one_model_named_by_its_card(tmp_path):
    listing = scan(_card(tmp_path / "anything", name="digits", version="s100-1234abcd"))
    assert listing.kind == "model folder" and list(listing.models) == ["digits"]
    assert list(listing.models["digits"].versions) == ["s100-1234abcd"]


def test_versions_are_numbers_and_the_highest_is_newest(tmp_path):
    for version in ("1", "2", "10"):
        _card(tmp_path / "repo" / "faces" / version)
    _card(tmp_path / "repo" / "digits")
    (tmp_path / "repo" / "faces" / "tmp").mkdir()
    (tmp_path / "repo" / "faces" / ".11.tmp-42").mkdir()  # where export writes before renaming: skipped
    (tmp_path / "repo" / "Not A Name").mkdir()
    listing = scan(tmp_path / "repo")
    assert listing.kind == "repository" and sorted(listing.models) == ["digits", "faces"]
    faces = listing.models["faces"]
    assert list(faces.versions) == ["1", "2", "10"] and faces.newest.version == "10"
    assert "not a version number" in faces.ignored["tmp"] and ".11.tmp-42" not in faces.ignored
    assert "not a model name" in listing.ignored["Not A Name"]
    assert list(listing.models["digits"].versions) == ["s1-abc"]


def test_a_folder_of_versions_is_one_model(tmp_path):
    _card(tmp_path / "faces" / "1")
    _card(tmp_path / "faces" / "3")
    listing = scan(tmp_path / "faces")
    assert listing.kind == "versions" and listing.models["faces"].newest.version == "3"


def test_a_model_with_both_layouts_is_refused_with_why(tmp_path):
    _card(tmp_path / "repo" / "mixed")
    _card(tmp_path / "repo" / "mixed" / "2")
    problem = scan(tmp_path / "repo").models["mixed"].problem
    assert "both model.json and version folders (2)" in problem


def test_a_version_without_model_json_is_incomplete(tmp_path):
    (tmp_path / "faces" / "1").mkdir(parents=True)
    (tmp_path / "faces" / "1" / "generator.onnx").write_bytes(b"half a copy")
    assert not scan(tmp_path / "faces").models["faces"].newest.complete


def test_commands_resolve_a_model_to_its_newest_version(tmp_path):
    _card(tmp_path / "repo" / "faces" / "1")
    _card(tmp_path / "repo" / "faces" / "2")
    _card(tmp_path / "repo" / "digits")
    folder, note = resolve_model_folder(tmp_path / "repo" / "faces")
    assert folder == tmp_path / "repo" / "faces" / "2" and note == "faces: version 2, the newest of 2"
    assert resolve_model_folder(tmp_path / "repo" / "faces" / "1") == (tmp_path / "repo" / "faces" / "1", None)
    with pytest.raises(ModelFolderError, match=r"several models \(digits, faces\); name one"):
        resolve_model_folder(tmp_path / "repo")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelFolderError, match="holds no model.json and no model folders"):
        resolve_model_folder(tmp_path / "empty")


# --- the gate --------------------------------------------------------------------------------------

def test_a_good_version_passes_every_check(model_dir):
    verdict = gate.evaluate(Engine(model_dir, threads=1))
    assert verdict.passed and verdict.reason is None
    checks = {c.name: c for c in verdict.checks}
    assert checks["varies"].value > gate.MIN_SPREAD
    assert checks["not collapsed against live"].value is None  # nothing live to compare with
    reference = Engine(model_dir, warmup=False).card.calibration["reference"]["generated"]
    assert reference["p05"] - gate.P_REAL_MARGIN <= checks["D scores as at export"].value <= \
        reference["p95"] + gate.P_REAL_MARGIN


@pytest.mark.parametrize("breaks, check, says", [
    (constant_generator, "varies", "spread 0.0000 across 64 seeds"),
    (nan_generator, "varies", "every pixel of every image is 0 (a generator whose output is NaN comes out black)"),
    (edited_calibration, "D scores as at export", "median p_real 1.000"),
])
def test_a_version_that_loads_but_draws_badly_is_refused(model_dir, tmp_path, breaks, check, says):
    folder = breaks(model_dir, tmp_path / "broken")
    verdict = gate.evaluate(Engine(folder, threads=1))  # it loads: hashes and spot check agree with it
    failed = [c for c in verdict.checks if not c.passed]
    assert not verdict.passed and [c.name for c in failed] == [check]
    assert says in failed[0].rule


def test_a_version_collapsed_against_the_live_one_is_refused(model_dir):
    engine = Engine(model_dir, threads=1)
    own = gate.evaluate(engine).spread
    verdict = gate.evaluate(engine, live_spread=4 * own)
    assert not verdict.passed and "at least 50% of it needed" in verdict.reason
    assert gate.evaluate(engine, live_spread=1.5 * own).passed


# --- the registry ----------------------------------------------------------------------------------

class Opened:
    """What the HTTP service wraps an engine in, reduced to what the registry uses."""

    def __init__(self, version):
        self.engine = Engine(version.folder, threads=1)
        self.version, self.in_flight, self.closed = version.version, 0, False

    def close(self):
        self.closed = True


def _repository(tmp_path, model_dir, other_model_dir):
    return two_models(tmp_path / "repo", model_dir, other_model_dir)


def test_start_serves_each_models_newest_version(tmp_path, model_dir, other_model_dir):
    registry = Registry(_repository(tmp_path, model_dir, other_model_dir), Opened)
    registry.start()
    assert registry.default == "digits"
    assert registry.default_reason == "the first by name (set --default-model to choose)"
    assert registry.lookup("faces", None).version == "2" and registry.lookup("faces", "2").version == "2"
    with pytest.raises(VersionNotLive, match="'1' of model 'faces' is not live; the live version is '2'"):
        registry.lookup("faces", "1")
    with pytest.raises(UnknownModel, match="model 'faces' has no version '7'"):
        registry.lookup("faces", "7")
    with pytest.raises(UnknownModel, match=r"model 'nope' is not served here; GET /models lists the models"):
        registry.lookup("nope", None)


def test_start_falls_back_past_a_refused_newest_version(tmp_path, model_dir, other_model_dir):
    repo = _repository(tmp_path, model_dir, other_model_dir)
    damaged(model_dir, repo / "faces" / "3")
    registry = Registry(repo, Opened, default="faces")
    registry.start()
    assert registry.lookup(None, None).version == "2"
    versions = {v["version"]: v for v in registry.view()["models"][1]["versions"]}
    assert versions["3"]["state"] == "refused" and versions["3"]["refused"]["stage"] == "load"
    assert "sha256 does not match model.json" in versions["3"]["refused"]["reason"]


def test_a_default_model_with_nothing_to_serve_stops_the_start(tmp_path, model_dir):
    repo = tmp_path / "repo"
    (repo / "faces").mkdir(parents=True)
    constant_generator(model_dir, repo / "faces" / "1")
    with pytest.raises(ModelFolderError, match=r"model 'faces': no version can be served \(version 1: varies"):
        Registry(repo, Opened).start()


def test_polling_swaps_in_a_good_version_and_never_a_broken_one(tmp_path, model_dir, other_model_dir):
    repo = _repository(tmp_path, model_dir, other_model_dir)
    events = []
    registry = Registry(repo, Opened, default="faces", on_change=lambda *event: events.append(event))
    registry.start()
    first = registry.lookup("faces", None)

    async def push_and_poll():
        outcomes = {}
        for version, make in (("3", damaged), ("4", edited_calibration), ("5", constant_generator),
                              ("6", nan_generator)):
            make(model_dir, repo / "faces" / version)
            (outcome,) = await registry.poll()
            outcomes[version] = outcome
            assert registry.lookup("faces", None) is first  # the live version serves on
        copy_version(model_dir, repo / "faces" / "7")
        first.in_flight = 1  # a request still running on the old version...
        (outcomes["7"],) = await registry.poll()
        assert await registry.poll() == []  # nothing new: nothing tried
        await asyncio.sleep(0.2)
        assert not first.closed  # ...keeps it loaded after the switch
        first.in_flight = 0
        await asyncio.sleep(0.2)
        return outcomes

    outcomes = asyncio.run(push_and_poll())
    assert [v for v, o in outcomes.items() if o.served] == ["7"]
    assert "sha256 does not match" in outcomes["3"].reason and "D scores as at export" in outcomes["4"].reason
    assert "varies" in outcomes["5"].reason and "every pixel of every image is 0" in outcomes["6"].reason
    assert registry.lookup("faces", None).version == "7" and first.closed
    assert registry.models["faces"].previous == "2"
    assert ("faces", "3", "refused_load") in events and ("faces", "5", "refused_gate") in events
    assert events[-1] == ("faces", "7", "live")


def test_a_pin_holds_against_newer_versions_until_released(tmp_path, model_dir, other_model_dir):
    repo = _repository(tmp_path, model_dir, other_model_dir)
    registry = Registry(repo, Opened, default="faces")
    registry.start()

    async def operate():
        pinned = await registry.serve_version("faces", "1", pin=True)
        copy_version(model_dir, repo / "faces" / "3")
        await registry.rescan()
        polled = await registry.poll()
        released = await registry.serve_version("faces", None, pin=False)
        return pinned, polled, released

    pinned, polled, released = asyncio.run(operate())
    assert pinned.served and polled == [] and released.served and released.version == "3"
    assert registry.lookup("faces", None).version == "3" and registry.models["faces"].pinned is None


def test_at_most_max_loaded_models_stay_loaded(tmp_path, model_dir, other_model_dir):
    repo = _repository(tmp_path, model_dir, other_model_dir)
    copy_version(other_model_dir, repo / "zeta")
    registry = Registry(repo, Opened, default="digits", max_loaded=2)
    registry.start()
    assert {n for n, s in registry.models.items() if s.loaded} == {"digits", "faces"}
    assert registry.lookup("zeta", None) is None  # not loaded: the request must bring it in

    async def use_zeta_then_faces():
        zeta = await registry.bring_in("zeta")
        faces_after_zeta = registry.models["faces"].loaded
        await asyncio.sleep(0.1)
        faces = await registry.bring_in("faces")
        await asyncio.sleep(0.1)
        return zeta, faces_after_zeta, faces

    zeta, faces_after_zeta, faces = asyncio.run(use_zeta_then_faces())
    assert faces_after_zeta is None and zeta.closed  # faces was unloaded for zeta, then zeta for faces
    assert faces.version == "2" and registry.models["digits"].loaded is not None  # the default stays
    assert np.array_equal(faces.engine.generate([5]), Engine(other_model_dir, warmup=False).generate([5]))


# --- the command line ------------------------------------------------------------------------------

def test_commands_take_a_repository_model_or_one_of_its_versions(tmp_path, model_dir, other_model_dir, capsys,
                                                                  monkeypatch):
    from serving.cli import main

    repo = _repository(tmp_path, model_dir, other_model_dir)
    assert main(["sample", str(repo / "faces"), "--seeds", "3", "--out", str(tmp_path / "newest"), "--format", "npz",
                 "--no-progress", "--workers", "1"]) == 0
    assert f"ganserve: faces: version 2, the newest of 2 ({repo / 'faces' / '2'})" in capsys.readouterr().err
    assert main(["sample", str(repo / "faces" / "1"), "--seeds", "3", "--out", str(tmp_path / "first"), "--format",
                 "npz", "--no-progress", "--workers", "1"]) == 0
    newest = np.load(tmp_path / "newest" / "part-00000.npz")["images"]
    first = np.load(tmp_path / "first" / "part-00000.npz")["images"]
    assert np.array_equal(newest, Engine(other_model_dir, warmup=False).generate([3]))
    assert np.array_equal(first, Engine(model_dir, warmup=False).generate([3]))
    assert main(["score", str(repo), str(tmp_path / "x.png")]) == 2
    assert "a repository of several models (digits, faces); name one" in capsys.readouterr().err
    assert main(["serve", str(repo), "--default-model", "nope", "--port", "1"]) == 2
    assert capsys.readouterr().err.strip() == (f"ganserve serve: error: --default-model: 'nope' is not a model in "
                                               f"{repo} (it holds digits, faces)")
    monkeypatch.setenv("GANSERVE_DEFAULT_MODEL", "nope")  # the variable is checked as the flag is
    assert main(["serve", str(repo), "--port", "1"]) == 2
    assert capsys.readouterr().err.strip() == (f"ganserve serve: error: GANSERVE_DEFAULT_MODEL: 'nope' is not a "
                                               f"model in {repo} (it holds digits, faces)")
