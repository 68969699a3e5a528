"""BentoML's request timeout, without a live timer left behind by every request.

BentoML 1.4 always wraps its app in `TimeoutMiddleware` (`traffic.timeout` must be a positive
number) and that middleware schedules `loop.call_later(timeout, ...)` per request without
ever cancelling it. Each request therefore leaves a timer, a future and their context alive
for the whole timeout: at 2,000 requests/s and the default 60 s, about 120,000 of each. They
cost memory, and every full garbage collection scans them: 50-65 ms pauses of the event loop
in the middle of requests (measured; benchmarks/README.md, "The tail").

`install()` swaps in this middleware, which behaves the same (a 504 after `timeout` seconds
without a response) and cancels its timer as soon as the response has started. It must run
before BentoML builds the app, so serving/service.py calls it at import.
"""

from __future__ import annotations

import asyncio

from bentoml._internal.server.http import traffic


class TimeoutMiddleware(traffic.TimeoutMiddleware):
    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        timer = loop.call_later(self.timeout, self._set_timer_out, waiter)

        async def _send(message) -> None:
            if not waiter.done():
                waiter.set_result(None)
                timer.cancel()  # answered in time: nothing left to time out
            await send(message)

        task = asyncio.ensure_future(self.app(scope, receive, _send))
        try:
            await waiter
        except TimeoutError:
            if task.cancel():
                await traffic.JSONResponse({"error": f"Not able to process the request in {self.timeout} seconds"},
                                           status_code=504)(scope, receive, send)
        else:
            await task
        finally:
            timer.cancel()


def install() -> None:
    """Make BentoML build its apps with this middleware (it looks the class up when it builds one)."""
    traffic.TimeoutMiddleware = TimeoutMiddleware
