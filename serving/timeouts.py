"""A request timeout that lets go of finished requests (works around BentoML 1.4.40's TimeoutMiddleware).

BentoML's ``TimeoutMiddleware`` arms ``loop.call_later(timeout, ...)`` for every request and never cancels
it. The timer holds the request's context (its OpenTelemetry span, request id, ...; about 5 KB) until it
fires, so a server keeps every request of the last ``timeout`` seconds in memory: measured, the worker's
RSS grew by 5 KB per request for as long as requests came (a plain BentoML service with one endpoint
too), which at 600 s and a few hundred cheap requests per second is gigabytes. :class:`RequestTimeout`
behaves the same (504 when no response has started within ``timeout`` seconds; a started response, such
as a long stream, runs on) and cancels its timer when the response starts or the request ends.
:func:`install` puts it in BentoML's place before the service's app is built.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from starlette.responses import JSONResponse

logger = logging.getLogger(__name__)
replaced: type | None = None
"""BentoML's own middleware, once :func:`install` has replaced it."""


class RequestTimeout:
    """ASGI middleware: 504 if the app has not started its response within ``timeout`` seconds."""

    def __init__(self, app: Any, timeout: float):
        self.app, self.timeout = app, timeout

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        loop = asyncio.get_running_loop()
        started = loop.create_future()

        def settle(error: BaseException | None = None) -> None:
            if started.done():
                return
            if error is None:
                started.set_result(None)
            else:
                started.set_exception(error)

        async def send_started(message: dict) -> None:
            settle()
            await send(message)

        timer = loop.call_later(self.timeout, settle, TimeoutError())
        task = asyncio.ensure_future(self.app(scope, receive, send_started))
        task.add_done_callback(lambda _: settle())
        try:
            await started
        except TimeoutError:
            if task.cancel():
                message = f"Not able to process the request in {self.timeout} seconds"
                await JSONResponse({"error": message}, status_code=504)(scope, receive, send)
                return
        except asyncio.CancelledError:
            task.cancel()
            raise
        finally:
            timer.cancel()  # the loop drops cancelled timers, and with them the request's context
        await task


def install() -> bool:
    """Use :class:`RequestTimeout` wherever BentoML builds its timeout middleware; False where that
    middleware is not where 1.4.40 has it (then nothing is changed)."""
    try:
        from bentoml._internal.server.http import traffic
    except ImportError:
        logger.warning("bentoml._internal.server.http.traffic not found; BentoML's timeout middleware is kept")
        return False
    global replaced
    if not hasattr(traffic, "TimeoutMiddleware"):
        return False
    if traffic.TimeoutMiddleware is not RequestTimeout:
        replaced = traffic.TimeoutMiddleware
        traffic.TimeoutMiddleware = RequestTimeout
    return True
