"""HTTP building blocks of the emulator: JSON replies, canned answers, faults, listeners."""

from __future__ import annotations

import contextlib
import inspect
import math
import random
import socket
import struct
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from http import HTTPStatus
from typing import Any

import msgspec
from aiohttp import web
from multidict import CIMultiDict

__all__ = [
    "ALL_ENDPOINTS",
    "API_ENDPOINTS",
    "Script",
    "error_response",
    "iso_time",
    "json_response",
    "listen",
    "reset_connection",
    "server_error",
    "truncated",
]

API_ENDPOINTS = frozenset({"submit", "status", "result", "cancel", "models"})
"""The endpoint names of the API listener (``models``: the catalog's three GET routes)."""

ALL_ENDPOINTS = API_ENDPOINTS | {"output"}
"""Endpoint names that faults and canned answers may target."""

JSON_TYPE = "application/json"
SHUTDOWN_TIMEOUT = 0.25
"""Seconds an in-flight handler may still finish in when a listener stops; then it is cancelled."""

_HTML_PAGE = (
    "<html>\r\n<head><title>{code} {reason}</title></head>\r\n<body>\r\n"
    "<center><h1>{code} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)
_encode = msgspec.json.encode


def json_response(status: int, body: object) -> web.Response:
    """Build a JSON response.

    Args:
        status: the HTTP status.
        body: a msgspec-encodable value.

    Returns:
        The response.
    """
    return web.Response(status=status, body=_encode(body), content_type=JSON_TYPE)


def error_response(status: int, code: int, message: str, **extra: Any) -> web.Response:
    """Build a RunComfy error answer ``{"error_code", "error_message", **extra}``.

    Args:
        status: the HTTP status.
        code: the API's numeric error code, e.g. 404001.
        message: the human-readable ``error_message``.
        **extra: more top-level fields, e.g. ``detail``.

    Returns:
        The response.
    """
    return json_response(status, {"error_code": code, "error_message": message, **extra})


def iso_time(moment: datetime) -> str:
    """Format a timestamp like ``2025-09-01T12:00:00.123456+00:00``.

    Args:
        moment: a timezone-aware datetime.

    Returns:
        ISO-8601 with microseconds and a numeric offset.
    """
    return moment.isoformat(timespec="microseconds")


@dataclass
class Script:
    """One canned answer, served to the next ``remaining`` requests of an endpoint.

    Attributes:
        status: HTTP status to answer.
        body: the raw body.
        headers: response headers, Content-Type included.
        remaining: how many more requests get this answer.
        reset: abort the connection instead of answering.
        delay: seconds to wait before answering.
        after: run the real handler first and discard its answer.
    """

    status: int
    body: bytes
    headers: CIMultiDict[str]
    remaining: int
    reset: bool
    delay: float
    after: bool

    @classmethod
    def build(
        cls,
        *,
        status: int,
        body: bytes | str | dict[str, Any] | list[Any] | None,
        headers: Mapping[str, str] | None,
        content_type: str | None,
        times: int,
        reset: bool,
        delay: float,
        after: bool,
    ) -> Script:
        """Check and encode the arguments of :meth:`FakeRunComfy.inject`.

        Args:
            status: HTTP status, 100..599.
            body: dicts and lists become JSON, ``str`` UTF-8; ``None`` becomes an error
                envelope for statuses >= 400 and an empty body otherwise.
            headers: extra headers.
            content_type: the Content-Type; ``application/json`` by default.
            times: how many requests to serve, >= 1.
            reset: abort the connection instead of answering.
            delay: seconds to wait first, >= 0.
            after: run the real handler first.

        Returns:
            The script.

        Raises:
            ValueError: for an out-of-range argument.
        """
        if times < 1:
            raise ValueError(f"times must be >= 1, got {times}")
        if not (math.isfinite(delay) and delay >= 0.0):
            raise ValueError(f"delay must be a finite number >= 0, got {delay}")
        if not 100 <= status <= 599:
            raise ValueError(f"status must be in 100..599, got {status}")
        if body is None:
            raw = b""
            if status >= 400:
                raw = _encode({"error_code": status * 1000 + 1, "error_message": _reason(status)})
        elif isinstance(body, bytes):
            raw = body
        elif isinstance(body, str):
            raw = body.encode()
        else:
            raw = _encode(body)
        merged: CIMultiDict[str] = CIMultiDict(headers or {})
        if content_type is not None or "Content-Type" not in merged:
            merged["Content-Type"] = content_type or JSON_TYPE
        return cls(status, raw, merged, times, reset, delay, after)

    def response(self) -> web.Response:
        """Build the canned response (a fresh object each time, as aiohttp requires).

        Returns:
            The response.
        """
        return web.Response(status=self.status, body=self.body, headers=self.headers)


def _reason(status: int) -> str:
    """The standard reason phrase of an HTTP status, or ``"Error"``."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def server_error(rng: random.Random) -> web.Response:
    """An injected 5xx: half JSON 503/500001, half an nginx-style HTML 502 or 503 page.

    Args:
        rng: the fault random source.

    Returns:
        The response.
    """
    if rng.random() < 0.5:
        return error_response(503, 500001, "Internal Error")
    code = 502 if rng.random() < 0.5 else 503
    page = _HTML_PAGE.format(code=code, reason=_reason(code))
    return web.Response(status=code, text=page, content_type="text/html")


def truncated(response: web.Response) -> web.Response:
    """Cut a 2xx answer's body in half (invalid JSON); other answers pass unchanged.

    Args:
        response: the real answer.

    Returns:
        The damaged (or the same) response.
    """
    body = response.body
    if not (200 <= response.status < 300 and isinstance(body, bytes) and body):
        return response
    return web.Response(
        status=response.status, body=body[: len(body) // 2], content_type=response.content_type
    )


def reset_connection(request: web.Request, counter: Counter[int]) -> web.Response:
    """Abort the request's connection with a TCP RST and count it as status 0.

    Args:
        request: the request being answered.
        counter: responses by status.

    Returns:
        A placeholder response; aiohttp fails to write it and drops it silently.
    """
    counter[0] += 1
    transport = request.transport
    if transport is not None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # Linger 0: closing sends an RST, so the client sees a reset, not a clean EOF.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    return web.Response(status=204)


async def listen(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Serve ``app`` on ``host:port`` with quick, clean shutdown and no access log.

    Args:
        app: the application.
        host: interface to bind.
        port: port to bind; 0 picks a free one.

    Returns:
        The started runner (call ``cleanup()`` to stop) and the bound port.
    """
    # aiohttp >= 3.10 takes shutdown_timeout on the runner, older ones on the site.
    on_runner = "shutdown_timeout" in inspect.signature(web.BaseRunner.__init__).parameters
    timeout: dict[str, Any] = {"shutdown_timeout": SHUTDOWN_TIMEOUT}
    runner = web.AppRunner(
        app, access_log=None, handler_cancellation=True, **(timeout if on_runner else {})
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, **({} if on_runner else timeout))
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, int(runner.addresses[0][1])
