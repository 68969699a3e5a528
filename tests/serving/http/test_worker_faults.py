"""A serving worker killed with SIGKILL under load: the other worker keeps answering, BentoML
starts a replacement that loads and verifies the model again, /readyz says 503 until it is
ready, and only the requests in flight on the killed worker fail."""

import os
import signal
import threading
import time

import httpx
import psutil
import pytest

from tests.conftest import ganserve_serve

pytestmark = pytest.mark.slow
CLIENTS = 4


def _workers(port: int) -> dict[int, int]:
    """worker id -> pid, for the server listening on `port`."""
    server = next(p for p in psutil.process_iter(["cmdline"])
                  if "serving.service:GanService" in " ".join(p.info["cmdline"] or [])
                  and f"--port {port}" in " ".join(p.info["cmdline"]))
    found = {}
    for child in server.children(recursive=True):
        try:
            command = child.cmdline()
        except psutil.Error:  # the killed worker, a zombie until BentoML reaps it
            continue
        if "--worker-id" in command:
            found[int(command[command.index("--worker-id") + 1])] = child.pid
    return found


def test_a_killed_worker_is_replaced_and_only_its_requests_fail(model_dir, tmp_path):
    with ganserve_serve(model_dir, tmp_path, "--workers", "2") as base:
        port = int(base.rsplit(":", 1)[1])
        before = _workers(port)
        assert sorted(before) == [1, 2]
        outcomes: list[tuple[float, bool]] = []
        stop = threading.Event()

        def client():
            with httpx.Client(timeout=10) as session:
                seed = 0
                while not stop.is_set():
                    seed += 1
                    try:
                        ok = session.post(base + "/generate", json={"seed": seed}).status_code == 200
                    except httpx.HTTPError:
                        ok = False
                    outcomes.append((time.monotonic(), ok))

        threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
        for thread in threads:
            thread.start()
        try:
            time.sleep(2)
            killed_at = time.monotonic()
            os.kill(before[1], signal.SIGKILL)
            saw_not_ready, recovered_at = False, None
            while time.monotonic() - killed_at < 90:
                status = httpx.get(base + "/readyz", timeout=5).status_code
                saw_not_ready |= status == 503
                replacement = _workers(port).get(1)
                if saw_not_ready and status == 200 and replacement not in (None, before[1]):
                    recovered_at = time.monotonic()
                    break
                time.sleep(0.1)
            time.sleep(2)  # load on the recovered server
        finally:  # the clients stop whatever happened, or they would outlive the test
            stop.set()
            for thread in threads:
                thread.join()
    assert saw_not_ready and recovered_at is not None, "/readyz never reflected the killed worker"
    failed = [t for t, ok in outcomes if not ok]
    after_kill = [ok for t, ok in outcomes if t > killed_at]
    assert len(failed) <= CLIENTS  # at most the requests in flight on the killed worker
    assert all(t >= killed_at for t in failed)
    assert sum(after_kill) > 50  # the other worker kept answering meanwhile
    assert all(ok for t, ok in outcomes if t > recovered_at)
    print(f"worker killed: {len(failed)} failed requests, /readyz 200 again after {recovered_at - killed_at:.1f} s")
