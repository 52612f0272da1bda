"""The request timeout that replaces BentoML 1.4.40's: the same answers, without keeping every request's
context alive until its timer fires."""

from __future__ import annotations

import asyncio

from bentoml._internal.server.http import traffic

from serving import timeouts
from serving.timeouts import RequestTimeout


def bentoml_timeout() -> type:
    """BentoML's own timeout middleware, whether or not serving.service has replaced it yet."""
    return timeouts.replaced or traffic.TimeoutMiddleware


async def respond(scope, receive, send, delay: float = 0.0, pieces: int = 1, pause: float = 0.0) -> None:
    await asyncio.sleep(delay)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    for _ in range(pieces):
        await asyncio.sleep(pause)
        await send({"type": "http.response.body", "body": b"x", "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def call(middleware) -> tuple[int, bytes]:
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    await middleware({"type": "http", "method": "GET", "path": "/", "headers": []}, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


def test_a_response_not_started_in_time_is_a_504():
    slow = RequestTimeout(lambda s, r, w: respond(s, r, w, delay=5), timeout=0.05)
    status, body = asyncio.run(call(slow))
    assert status == 504 and b"Not able to process the request in 0.05 seconds" in body


def test_a_started_response_may_outlast_the_timeout():
    stream = RequestTimeout(lambda s, r, w: respond(s, r, w, pieces=5, pause=0.03), timeout=0.05)
    assert asyncio.run(call(stream)) == (200, b"xxxxx")


def live_timers_after(middleware_class, requests: int = 300) -> int:
    async def main() -> int:
        middleware = middleware_class(respond, timeout=600)
        for _ in range(requests):
            assert (await call(middleware))[0] == 200
        return sum(not handle.cancelled() for handle in asyncio.get_running_loop()._scheduled)

    return asyncio.run(main())


def test_finished_requests_leave_no_timer_behind_unlike_bentoml_own():
    assert live_timers_after(RequestTimeout) == 0
    # BentoML 1.4.40 keeps one live timer, holding the request's context, per request for 600 s; when this
    # fails, BentoML fixed it and serving/timeouts.py can go.
    assert bentoml_timeout() is not RequestTimeout
    assert live_timers_after(bentoml_timeout()) == 300


def test_the_service_installs_it(service_module):
    assert traffic.TimeoutMiddleware is RequestTimeout
