"""deploy/: every manifest validated against the Kubernetes API schemas (kubernetes-validate,
strict: unknown fields are errors), the values that tie them to ganserve checked, and the
Indexed Job's sampling command run locally, one process per index, then merged."""

import hashlib
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from serving.http import openapi

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
MANIFESTS = sorted(DEPLOY.glob("*/*.yaml"))
GANSERVE = str(Path(sys.executable).with_name("ganserve"))
PATHS = openapi.document(max_images=64, max_score_images=256)["paths"]


def _documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _by_kind(kind: str) -> list[dict]:
    return [doc for path in MANIFESTS for doc in _documents(path) if doc["kind"] == kind]


CUSTOM_KINDS = {"PrometheusRule"}  # the Prometheus Operator's: not in the Kubernetes API schemas (checked below)


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_manifest_is_valid_kubernetes(path):
    for document in _documents(path):
        if document["kind"] not in CUSTOM_KINDS:
            kubernetes_validate.validate(document, kubernetes_validate.latest_version(), strict=True)


def drift_alerts() -> dict[str, tuple[str, float]]:
    """The PrometheusRule's alerts: name -> (the drift stream it watches, its threshold). Each
    expression must be `max by (model) (ganserve_drift_psi{stream="S"}) > T`, the one form the
    tests evaluate against a real server's /metrics (tests/serving/http/test_drift_http.py)."""
    rule = _by_kind("PrometheusRule")[0]
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    alerts = {}
    for group in rule["spec"]["groups"]:
        for entry in group["rules"]:
            found = re.fullmatch(r'max by \(model\) \(ganserve_drift_psi\{stream="(\w+)"\}\) > ([0-9.]+)',
                                 entry["expr"])
            assert found, entry["expr"]
            assert re.fullmatch(r"\d+m", entry["for"]) and entry["labels"]["severity"] in ("warning", "critical")
            alerts[entry["alert"]] = (found.group(1), float(found.group(2)))
    return alerts


def test_the_drift_alerts_watch_both_streams_at_the_servers_threshold():
    from serving.formats.drift import ALERT_PSI
    from serving.http.drift import STREAMS
    from serving.http.metrics import DRIFT_PSI

    alerts = drift_alerts()
    assert sorted(stream for stream, _ in alerts.values()) == sorted(STREAMS)
    assert {threshold for _, threshold in alerts.values()} == {ALERT_PSI}
    assert DRIFT_PSI._name == "ganserve_drift_psi" and DRIFT_PSI._labelnames == ("model", "stream")


def test_the_validator_does_refuse_a_broken_manifest():
    deployment = _by_kind("Deployment")[0]
    broken = {**deployment, "spec": {**deployment["spec"], "replicas": "two"}}
    with pytest.raises(kubernetes_validate.ValidationError, match="'two' is not of type"):
        kubernetes_validate.validate(broken, kubernetes_validate.latest_version(), strict=True)


def test_serving_deployments_probe_ganserve_routes_and_mount_the_api_keys():
    deployments = {d["metadata"]["name"]: d for d in _by_kind("Deployment")}
    assert set(deployments) == {"ganserve", "ganserve-gpu"}
    for deployment in deployments.values():
        pod = deployment["spec"]["template"]["spec"]
        container = pod["containers"][0]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
        assert {"/readyz", "/livez"} <= set(PATHS)  # the probes are routes the server documents
        env = {e["name"]: e["value"] for e in container["env"]}
        keys = Path(env["GANSERVE_API_KEYS_FILE"])
        mount = next(m for m in container["volumeMounts"] if m["name"] == "api-keys")
        assert keys.parent == Path(mount["mountPath"])
        volume = next(v for v in pod["volumes"] if v["name"] == "api-keys")
        secret = next(s for s in _by_kind("Secret") if s["metadata"]["name"] == volume["secret"]["secretName"])
        assert keys.name in secret["stringData"]
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/path"] == "/metrics"
    assert deployments["ganserve-gpu"]["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"][
        "nvidia.com/gpu"] == 1
    hpa = _by_kind("HorizontalPodAutoscaler")[0]
    assert hpa["spec"]["scaleTargetRef"]["name"] == "ganserve"


def _sampling_command(model: Path, out: Path, seeds: str) -> tuple[list[str], int]:
    """The Indexed Job's shell line with this machine's paths and a small seed range."""
    job = next(j for j in _by_kind("Job") if j["metadata"]["name"] == "ganserve-sample")
    shell = job["spec"]["template"]["spec"]["containers"][0]["args"][0]
    shell = shell.replace("/models/digits", str(model)).replace("/out/digits", str(out))
    shell = shell.replace("0-999999", seeds).replace("exec ganserve", f"exec {GANSERVE}")
    assert job["spec"]["completionMode"] == "Indexed"
    return shell, job["spec"]["completions"]


@pytest.mark.slow
def test_the_indexed_jobs_shards_merge_into_one_unsharded_run(model_dir, tmp_path):
    shell, completions = _sampling_command(model_dir, tmp_path / "sharded", "0-39")
    assert f'"$JOB_COMPLETION_INDEX/{completions}"' in shell  # as many shards as the Job has indexes
    pods = [subprocess.Popen(["sh", "-c", shell], env={**os.environ, "JOB_COMPLETION_INDEX": str(index)},
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for index in range(completions)]
    for pod in pods:
        output = pod.communicate(timeout=300)[0].decode()
        assert pod.returncode == 0, output
    merge = subprocess.run([GANSERVE, "sample", str(model_dir), "--seeds", "0-39", "--out",
                            str(tmp_path / "sharded"), "--merge"], capture_output=True, text=True)
    assert merge.returncode == 0 and f"merged {completions} shards: 40 seeds, each exactly once" in merge.stdout
    whole = subprocess.run([GANSERVE, "sample", str(model_dir), "--seeds", "0-39", "--out", str(tmp_path / "whole"),
                            "--no-progress"], capture_output=True, text=True)
    assert whole.returncode == 0, whole.stderr
    assert (tmp_path / "sharded" / "manifest.jsonl").read_text() == (tmp_path / "whole" / "manifest.jsonl").read_text()
    for png in (tmp_path / "whole").glob("*.png"):
        assert hashlib.sha256((tmp_path / "sharded" / png.name).read_bytes()).digest() == \
            hashlib.sha256(png.read_bytes()).digest()
    # a lost file is found by --merge, which names the shard to run again
    (tmp_path / "sharded" / "seed00000005.png").unlink()
    again = subprocess.run([GANSERVE, "sample", str(model_dir), "--seeds", "0-39", "--out",
                            str(tmp_path / "sharded"), "--merge"], capture_output=True, text=True)
    assert again.returncode == 2 and f"shard 5/{completions} lacks 1" in again.stderr
    assert shlex.split(shell)  # the line stays a plain shell line
