"""The request timeout that replaces BentoML's: same 504 after the timeout, and no timer left
behind by a request that was answered (BentoML's left one per request for the whole timeout)."""

import asyncio

import bentoml

from serving.http import timeout


def _app(delay: float):
    async def app(scope, receive, send):
        await asyncio.sleep(delay)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
    return app


async def _call(middleware) -> list[dict]:
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    await middleware({"type": "http", "method": "POST", "path": "/x", "headers": []}, receive, send)
    return sent


def _pending_timers(loop) -> int:
    return sum(1 for handle in loop._scheduled if not handle.cancelled())


def test_answered_requests_leave_no_timer_behind():
    async def scenario():
        middleware = timeout.TimeoutMiddleware(_app(0), timeout=60)
        for _ in range(200):
            assert (await _call(middleware))[0]["status"] == 200
        ours = _pending_timers(asyncio.get_running_loop())
        theirs = timeout.TimeoutMiddleware.__bases__[0](_app(0), timeout=60)  # BentoML's original
        for _ in range(200):
            await _call(theirs)
        return ours, _pending_timers(asyncio.get_running_loop())

    ours, with_bentoml_original = asyncio.run(scenario())
    assert ours == 0 and with_bentoml_original >= 200


def test_a_slow_request_still_gets_a_504():
    sent = asyncio.run(_call(timeout.TimeoutMiddleware(_app(5), timeout=0.05)))
    assert sent[0]["status"] == 504 and b"0.05 seconds" in sent[1]["body"]


def test_bentoml_builds_its_app_with_the_replacement():
    timeout.install()

    @bentoml.service(traffic={"timeout": 30})
    class Probe:
        @bentoml.api
        def ping(self) -> str:
            return "pong"

    classes = [middleware.cls for middleware in Probe.to_asgi().user_middleware]
    assert timeout.TimeoutMiddleware in classes
