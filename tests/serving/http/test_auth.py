"""API keys over real HTTP: a real `ganserve serve --api-key-file` process."""

import httpx
import pytest

from serving.cli import main
from serving.http.auth import KeyFileError, read_keys
from tests.conftest import ganserve_serve

KEYS = ["k" * 32, "0123456789abcdef0123456789abcdef"]


def test_key_files_that_would_lock_everyone_out_or_hold_weak_keys_are_refused(tmp_path):
    path = tmp_path / "keys"
    path.write_text("# comment only\n\n")
    with pytest.raises(KeyFileError, match="holds no keys"):
        read_keys(path)
    path.write_text("short\n")
    with pytest.raises(KeyFileError, match="key 1 is shorter than 16"):
        read_keys(path)
    path.write_text(f"# ops team\n{KEYS[0]}\n\n  {KEYS[1]}  \n")
    assert read_keys(path) == tuple(k.encode() for k in KEYS)
    with pytest.raises(KeyFileError, match="cannot be read"):
        read_keys(tmp_path / "missing")


def test_serve_refuses_a_bad_key_file_in_one_line(model_dir, tmp_path, capsys):
    assert main(["serve", str(model_dir), "--api-key-file", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "API key file" in err[0] and "cannot be read" in err[0]
    assert main(["serve", str(model_dir), "--protect-metrics"]) == 2
    assert "--protect-metrics needs --api-key-file" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("protect_metrics", [False, True])
def test_every_route_but_the_probes_needs_a_key(model_dir, tmp_path, protect_metrics):
    keys = tmp_path / "keys"
    keys.write_text("\n".join(KEYS) + "\n")
    options = ["--workers", "1", "--api-key-file", str(keys), *(["--protect-metrics"] if protect_metrics else [])]
    with ganserve_serve(model_dir, tmp_path, *options) as base:  # it waits for /readyz: open without a key
        for open_path in ("/livez", "/v2/health/live", "/v2/health/ready", "/", "/ui", "/ui/playground.js"):
            assert httpx.get(base + open_path).status_code == 200, open_path  # probes, and a page with no secret
        infer = {"inputs": [{"name": "SEED", "shape": [1], "datatype": "INT64", "data": [1]}]}
        for method, path, body in (("POST", "/generate", {"seed": 1}), ("POST", "/model", None),
                                   ("GET", "/docs.json", None), ("GET", "/docs", None), ("GET", "/models", None),
                                   ("GET", "/schema.json", None), ("POST", "/models/tiny/generate", {"seed": 1}),
                                   ("POST", "/v2/models/tiny/infer", infer), ("GET", "/v2/models/tiny", None)):
            refused = httpx.request(method, base + path, json=body)
            assert refused.status_code == 401, path
            assert refused.headers["www-authenticate"] == 'Bearer realm="ganserve"'
            assert "Authorization: Bearer KEY" in refused.json()["error"]
            for wrong in ("Bearer " + "x" * 32, "Basic " + KEYS[0], KEYS[0]):
                assert httpx.request(method, base + path, json=body,
                                     headers={"authorization": wrong}).status_code == 401
        for key in KEYS:
            answer = httpx.post(base + "/generate", json={"seed": 1}, headers={"authorization": f"Bearer {key}"})
            assert answer.status_code == 200 and answer.content.startswith(b"\x89PNG")
        metrics = httpx.get(base + "/metrics")
        assert metrics.status_code == (401 if protect_metrics else 200)
        if protect_metrics:
            assert httpx.get(base + "/metrics", headers={"authorization": f"Bearer {KEYS[1]}"}).status_code == 200
    log = (tmp_path / "server.log").read_text()
    assert not any(key in log for key in KEYS)  # keys are never logged


@pytest.mark.slow
def test_an_open_server_says_so_at_start(model_dir, tmp_path):
    with ganserve_serve(model_dir, tmp_path, "--workers", "1") as base:
        assert httpx.post(base + "/generate", json={"seed": 1}).status_code == 200
    assert "no API keys: every client that reaches this port may use it" in (tmp_path / "server.log").read_text()
