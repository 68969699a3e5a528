import hashlib
import json
import tarfile

import numpy as np
import pytest

from serving.cli.sampler import SampleJob, parse_shard, run_sample, shard_of
from serving.engine import Engine
from serving.errors import ServingError
from serving.formats.images import encode_png
from serving.requests import BestOf, generate_request, parse_seeds
from tests.conftest import command_options


@pytest.fixture(scope="module")
def engine(model_dir):
    return Engine(model_dir, max_batch=32)


def test_shard_specs_and_errors():
    assert parse_shard("2/5") == (2, 5)
    with pytest.raises(ServingError, match="--shard"):
        parse_shard("5/5")


def _manifest(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_png_files_are_named_by_seed_with_a_manifest(engine, tmp_path):
    result = run_sample(engine, SampleJob(seeds=parse_seeds("0-9,100"), out=tmp_path, batch_size=4, workers=2),
                        progress=False)
    assert result["written"] == 11
    lines = _manifest(tmp_path / "manifest.jsonl")
    assert [line["seed"] for line in lines] == [*range(10), 100]
    for line in lines:
        data = (tmp_path / line["file"]).read_bytes()
        assert line["file"] == f"seed{line['seed']:08d}.png"
        assert hashlib.sha256(data).hexdigest() == line["sha256"]
        assert data == encode_png(engine.generate([line["seed"]])[0])


def test_resume_redoes_only_missing_or_damaged_files(engine, tmp_path):
    job = SampleJob(seeds=list(range(20)), out=tmp_path, workers=1)
    run_sample(engine, job, progress=False)
    (tmp_path / "seed00000003.png").unlink()
    (tmp_path / "seed00000007.png").write_bytes(b"damaged")
    # a crash mid-write: the file is cut short and its manifest line was never written
    cut = tmp_path / "seed00000012.png"
    cut.write_bytes(cut.read_bytes()[:40])
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("".join(line + "\n" for line in manifest.read_text().splitlines() if '"seed": 12,' not in line))
    before = (tmp_path / "seed00000001.png").stat().st_mtime_ns
    result = run_sample(engine, SampleJob(seeds=list(range(20)), out=tmp_path, workers=1, resume=True),
                        progress=False)
    assert result["written"] == 3 and result["skipped"] == 17
    assert cut.read_bytes() == encode_png(engine.generate([12])[0])
    assert (tmp_path / "seed00000001.png").stat().st_mtime_ns == before
    lines = _manifest(tmp_path / "manifest.jsonl")
    assert sorted(line["seed"] for line in lines) == list(range(20))  # one line per image
    assert (tmp_path / "seed00000007.png").read_bytes() == encode_png(engine.generate([7])[0])


@pytest.mark.parametrize("fmt", ["png", "npz", "tar"])
def test_shards_together_equal_the_unsharded_run(engine, tmp_path, fmt):
    seeds = list(range(30))
    run_sample(engine, SampleJob(seeds=seeds, out=tmp_path / "whole", format=fmt, part_size=8, workers=1),
               progress=False)
    for k in range(3):
        run_sample(engine, SampleJob(seeds=shard_of(seeds, k, 3), out=tmp_path / "sharded", format=fmt,
                                     part_size=8, shard=(k, 3), workers=1), progress=False)
    whole = {line["seed"]: line["sha256"] for line in _manifest(tmp_path / "whole" / "manifest.jsonl")}
    sharded = {}
    for manifest in sorted((tmp_path / "sharded").glob("manifest-*.jsonl")):
        sharded.update({line["seed"]: line["sha256"] for line in _manifest(manifest)})
    assert sharded == whole and sorted(whole) == seeds


def test_npz_and_tar_parts_hold_the_images(engine, tmp_path):
    run_sample(engine, SampleJob(seeds=list(range(12)), out=tmp_path / "n", format="npz", part_size=5, workers=1),
               progress=False)
    part = np.load(tmp_path / "n" / "part-00001.npz")
    assert part["seeds"].tolist() == [5, 6, 7, 8, 9]
    assert np.array_equal(part["images"], engine.generate(range(5, 10)))
    run_sample(engine, SampleJob(seeds=list(range(6)), out=tmp_path / "t", format="tar", part_size=4, workers=1),
               progress=False)
    with tarfile.open(tmp_path / "t" / "part-00001.tar") as archive:
        assert archive.getnames() == ["seed00000004.png", "seed00000005.png"]
        assert archive.extractfile("seed00000005.png").read() == encode_png(engine.generate([5])[0])


def test_npz_resume_rewrites_a_damaged_part_whole(engine, tmp_path):
    job = SampleJob(seeds=list(range(10)), out=tmp_path, format="npz", part_size=5, workers=1)
    run_sample(engine, job, progress=False)
    (tmp_path / "part-00000.npz").write_bytes(b"cut short")
    result = run_sample(engine, SampleJob(**{**job.__dict__, "resume": True}), progress=False)
    assert result["written"] == 5 and result["skipped"] == 5
    assert sorted(line["seed"] for line in _manifest(tmp_path / "manifest.jsonl")) == list(range(10))


def test_sample_cli_labels_for_conditional_models(conditional_model_dir, tmp_path):
    from serving.cli import main

    assert main(["sample", str(conditional_model_dir), "--seeds", "0-5", "--labels", "2", "--out",
                 str(tmp_path), "--no-progress", "--workers", "1"]) == 0
    assert {line["label"] for line in _manifest(tmp_path / "manifest.jsonl")} == {2}
    engine = Engine(conditional_model_dir, warmup=False)
    assert (tmp_path / "seed00000004.png").read_bytes() == encode_png(engine.generate([4], labels=[2])[0])


def test_sample_cli_bad_input_is_one_line(model_dir, tmp_path, capsys):
    from serving.cli import main

    assert main(["sample", str(model_dir), "--seeds", "9-1", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--seeds: '9-1' is not allowed" in err[0]


def test_score_cli_prints_a_table_and_json(model_dir, tmp_path, capsys):
    from serving.cli import main

    engine = Engine(model_dir, warmup=False)
    (tmp_path / "a.png").write_bytes(encode_png(engine.generate([1])[0]))
    assert main(["score", str(model_dir), str(tmp_path / "a.png"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)["results"][0]
    assert result["p_real"] == pytest.approx(float(engine.score(engine.generate([1]))[1][0]), abs=1e-6)
    assert main(["score", str(model_dir), str(tmp_path / "a.png")]) == 0
    assert "p_real" in capsys.readouterr().out


def test_sample_with_rejection_sampling_matches_the_engine(engine, tmp_path):
    run_sample(engine, SampleJob(seeds=[3, 4, 5], out=tmp_path, mode=BestOf(2), workers=1), progress=False)
    expected = engine.sample(generate_request(engine.card, seeds=[3, 4, 5], keep_top=0.5)).images
    assert (tmp_path / "seed00000004.png").read_bytes() == encode_png(expected[1])


def test_interpolate_cli_writes_a_gif(model_dir, tmp_path):
    from PIL import Image

    from serving.cli import main

    assert main(["interpolate", str(model_dir), "--from", "1", "--to", "2", "--frames", "5",
                 "--out", str(tmp_path / "new" / "a.gif")]) == 0  # a folder that did not exist yet
    assert Image.open(tmp_path / "new" / "a.gif").n_frames == 5
    assert main(["interpolate", str(model_dir), "--from", "1", "--to", "2", "--out", str(tmp_path / "a.jpg")]) == 2


def test_interpolate_cli_between_classes(conditional_model_dir, tmp_path, capsys):
    from PIL import Image

    from serving.cli import main

    out = tmp_path / "morph.png"
    assert main(["interpolate", str(conditional_model_dir), "--from", "4", "--to", "4", "--label", "0",
                 "--label-to", "2", "--frames", "4", "--out", str(out)]) == 0
    assert "class 0 to 2" in capsys.readouterr().out
    strip = np.asarray(Image.open(out))
    engine = Engine(conditional_model_dir, warmup=False)
    assert np.array_equal(strip[1:9, 1:9], engine.generate([4], labels=[0])[0][:, :, 0])
    assert main(["interpolate", str(conditional_model_dir), "--from", "4", "--to", "5", "--label-to", "2",
                 "--out", str(out)]) == 2
    assert "--label-to: give the first frame's class too (--label)" in capsys.readouterr().err


def test_sample_score_and_interpolate_cli_take_repeated_labels(conditional_model_dir, tmp_path, capsys):
    from serving.cli import main

    assert main(["sample", str(conditional_model_dir), "--seeds", "0-5", "--labels", "1,1,2", "--out",
                 str(tmp_path), "--no-progress", "--workers", "1"]) == 0
    assert [line["label"] for line in _manifest(tmp_path / "manifest.jsonl")] == [1, 1, 2, 1, 1, 2]
    capsys.readouterr()
    files = [str(tmp_path / f"seed0000000{i}.png") for i in (0, 1)]
    assert main(["score", str(conditional_model_dir), *files, "--labels", "1,1", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["results"]) == 2
    assert main(["interpolate", str(conditional_model_dir), "--from", "1", "--to", "2", "--label", "1",
                 "--out", str(tmp_path / "walk.png")]) == 0
    capsys.readouterr()
    assert main(["interpolate", str(conditional_model_dir), "--from", "1", "--to", "2", "--label", "1,2",
                 "--out", str(tmp_path / "walk.png")]) == 2
    assert "--label: '1,2' is 2 classes; give one class index" in capsys.readouterr().err


def test_a_fresh_run_into_earlier_output_is_refused_and_loses_nothing(model_dir, tmp_path):
    from serving.cli import main

    out = tmp_path / "out"
    assert main(["sample", str(model_dir), "--seeds", "0-24", "--out", str(out), "--no-progress",
                 "--workers", "1"]) == 0
    manifest = (out / "manifest.jsonl").read_text()
    # the same command again (no --resume): refused, the 25-line manifest untouched
    assert main(["sample", str(model_dir), "--seeds", "0-2", "--out", str(out), "--no-progress"]) == 2
    assert (out / "manifest.jsonl").read_text() == manifest
    # --force writes over it; --resume finishes it
    assert main(["sample", str(model_dir), "--seeds", "0-2", "--out", str(out), "--no-progress", "--force",
                 "--workers", "1"]) == 0
    assert len((out / "manifest.jsonl").read_text().splitlines()) == 3
    assert main(["sample", str(model_dir), "--seeds", "0-4", "--out", str(out), "--no-progress", "--resume",
                 "--workers", "1"]) == 0
    assert len((out / "manifest.jsonl").read_text().splitlines()) == 5


def test_shards_share_a_folder_but_a_shard_rerun_is_refused(engine, tmp_path):
    seeds = list(range(8))
    for k in range(2):
        run_sample(engine, SampleJob(seeds=shard_of(seeds, k, 2), out=tmp_path, shard=(k, 2), workers=1),
                   progress=False)
    with pytest.raises(ServingError, match="already holds output.*--resume"):
        run_sample(engine, SampleJob(seeds=shard_of(seeds, 1, 2), out=tmp_path, shard=(1, 2), workers=1),
                   progress=False)


def test_a_resume_or_a_shard_with_other_settings_is_refused_and_loses_nothing(engine, tmp_path):
    seeds = list(range(12))
    first = SampleJob(seeds=shard_of(seeds, 0, 2), out=tmp_path, truncation=0.7, workers=1, shard=(0, 2))
    run_sample(engine, first, progress=False)
    recorded = json.loads((tmp_path / "sample.json").read_text())
    assert recorded["truncation"] == 0.7 and recorded["model_version"] == engine.card.version
    assert recorded["mode"] == {"name": "plain"}
    manifest = (tmp_path / "manifest-00000-of-00002.jsonl").read_text()
    # a resume without the truncation would mix two samples in one folder
    with pytest.raises(ServingError, match=r"--truncation: .* sampled with truncation 0.7, this run asks for none"):
        run_sample(engine, SampleJob(seeds=shard_of(seeds, 0, 2), out=tmp_path, workers=1, shard=(0, 2),
                                     resume=True), progress=False)
    # so would the other shard in best-of-4 mode
    with pytest.raises(ServingError, match=r"--keep-top .* mode \{\"name\": \"plain\"\}"):
        run_sample(engine, SampleJob(seeds=shard_of(seeds, 1, 2), out=tmp_path, truncation=0.7, mode=BestOf(4),
                                     workers=1, shard=(1, 2)), progress=False)
    assert (tmp_path / "manifest-00000-of-00002.jsonl").read_text() == manifest
    assert not (tmp_path / "manifest-00001-of-00002.jsonl").exists()
    # the same settings resume; --force starts over with new ones and records them
    assert run_sample(engine, SampleJob(seeds=shard_of(list(range(16)), 0, 2), out=tmp_path, truncation=0.7,
                                        workers=1, shard=(0, 2), resume=True), progress=False)["skipped"] == 6
    run_sample(engine, SampleJob(seeds=list(range(3)), out=tmp_path, workers=1, shard=(0, 2), force=True),
               progress=False)
    assert json.loads((tmp_path / "sample.json").read_text())["truncation"] is None


def test_every_command_that_runs_a_model_takes_the_same_device_and_engine_flags(model_dir, tmp_path, capsys):
    from serving.cli import main
    from serving.runtime.engines import ENGINES
    from serving.runtime.providers import DEVICES
    from serving.settings import PRECISIONS

    for command in ("serve", "sample", "interpolate", "score"):
        options = command_options(command)
        assert [(options[name].choices, options[name].default) for name in ("device", "engine", "precision")] == \
            [(DEVICES, None), (ENGINES, None), (PRECISIONS, None)], command  # unset: GANSERVE_*, else auto
    # pinned or left to the defaults (the tests run on ONNX Runtime, conftest.py), the same figures and bytes
    pinned = ["--device", "cpu", "--engine", "onnxruntime", "--precision", "fp32"]
    image = tmp_path / "a.png"
    image.write_bytes(encode_png(Engine(model_dir, engine="onnxruntime").generate([5])[0]))
    outputs = []
    for flags in ([], pinned):
        assert main(["score", str(model_dir), str(image), "--json", *flags]) == 0
        scores = json.loads(capsys.readouterr().out)
        strip = tmp_path / f"walk{len(flags)}.png"
        assert main(["interpolate", str(model_dir), "--from", "1", "--to", "2", "--out", str(strip), *flags]) == 0
        assert capsys.readouterr().out.startswith("wrote 8 frames from seed 1 to seed 2")
        outputs.append((scores, strip.read_bytes()))
    assert outputs[0] == outputs[1]


def test_request_flags_take_their_type_default_and_range_from_the_request_model():
    """serving/requests.py writes each field once; the command line's flags are made from it."""
    from serving.requests import INTERPOLATE_FIELDS, generate_fields

    for command, fields, names in (("sample", generate_fields(None), ("truncation", "keep_top", "drs_accept",
                                                                        "drs_max_candidates")),
                                   ("interpolate", INTERPOLATE_FIELDS, ("seed_from", "seed_to", "frames",
                                                                         "truncation", "frame_ms"))):
        options = command_options(command)
        for name in names:
            field, action = fields[name], options[name]
            assert action.default == field.default and action.required == field.required, (command, name)
            assert action.type is {"integer": int, "number": float}[field.kind], (command, name)
            if field.allowed and "{" not in field.allowed:
                assert field.rule() in action.help, (command, name)
    assert command_options("sample")["drs_max_candidates"].help.startswith("with --drs-accept:")  # flags' spelling
