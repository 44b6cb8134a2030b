"""The aiohttp seam: send one API request, read a bounded body, map every failure to our errors.

This module and the downloader are the only places that touch aiohttp's client. The API
session carries the token in its default headers, talks to the API origin only, and never
follows redirects (a redirect to another origin must not receive the token).

:class:`AiohttpErrors` is the one place where aiohttp's exceptions become ours, for the API
and for downloads alike. It keeps a summary in words and drops aiohttp's exception: that
one can hold the request, headers and token included, so it is never chained or kept.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, TypeVar

import aiohttp
import msgspec

from ._exceptions import (
    APIStatusError,
    AuthenticationError,
    NotFoundError,
    RateLimitError,
    RequestTimeoutError,
    ResponseValidationError,
    RunComfyError,
    ServerError,
    TransportError,
)
from ._netopts import proxy_for
from ._retry import parse_retry_after
from ._version import __version__
from ._wire import ERROR_DECODER, ErrorBody, error_envelope

__all__ = ["AiohttpErrors", "ApiTransport", "NetFailure", "Reply"]

T = TypeVar("T")

_TITLE = re.compile(rb"<title>(.*?)</title>", re.IGNORECASE | re.DOTALL)


FailureKind = Literal["invalid_url", "connect_timeout", "read_timeout", "connect", "broken"]
"""What kind of failure below HTTP: the URL could not be used, opening a connection timed out
or failed (then nothing was sent), the answer did not come in time, or the connection broke."""


@dataclass(frozen=True)
class NetFailure:
    """A failure below HTTP, in words safe to keep (no request, no headers, token redacted)."""

    kind: FailureKind
    message: str

    @property
    def connected(self) -> bool:
        """Whether a connection was open: ``False`` proves the request was never sent."""
        return self.kind not in ("invalid_url", "connect_timeout", "connect")

    @property
    def timeout(self) -> bool:
        """Whether it was a timeout."""
        return self.kind in ("connect_timeout", "read_timeout")


def summarize(exc: BaseException, redact: Callable[[str], str]) -> NetFailure | None:
    """What an aiohttp (or socket) exception says, or ``None`` for anything else."""
    if isinstance(exc, RunComfyError):
        return None  # already ours (some are TimeoutErrors, hence OSErrors)
    if isinstance(exc, aiohttp.InvalidURL):
        return NetFailure("invalid_url", f"invalid URL: {redact(str(exc))}")
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return NetFailure("connect_timeout", "timed out opening a connection")
    if isinstance(exc, (aiohttp.ServerTimeoutError, asyncio.TimeoutError)):
        return NetFailure("read_timeout", "timed out waiting for the answer")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return NetFailure("connect", f"could not connect: {redact(str(exc.os_error or exc))}")
    if isinstance(exc, (aiohttp.ClientError, OSError)):
        reason = redact(str(exc)) or type(exc).__name__
        return NetFailure("broken", f"connection broken: {type(exc).__name__}: {reason}")
    return None


class AiohttpErrors:
    """Context manager: aiohttp's exceptions inside it leave as ``build(summary)``.

    The exception raised has neither ``__cause__`` nor ``__context__``: aiohttp's own can
    hold the request it was sending, and with it the ``Authorization`` header (a server
    that answers malformed HTTP is enough). Our own errors and anything that is not
    aiohttp's or the socket's pass through unchanged.

    Args:
        build: makes the library's error from the summary.
        redact: removes the token from text taken from the exception.
    """

    def __init__(
        self, build: Callable[[NetFailure], Exception], redact: Callable[[str], str] = str
    ) -> None:
        self._build = build
        self._redact = redact

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        failure = None if exc is None else summarize(exc, self._redact)
        if failure is None:
            return
        error = self._build(failure)
        del exc, tb  # nor kept by this frame, which the new traceback holds
        try:
            raise error
        finally:
            # Python sets __context__ to the exception being handled as it raises: undo it.
            error.__cause__ = error.__context__ = None
            error.__suppress_context__ = True


def _transport_error(failure: NetFailure, method: str, url: str) -> TransportError:
    cls = RequestTimeoutError if failure.timeout else TransportError
    return cls(failure.message, method=method, url=url, connected=failure.connected)


@dataclass(frozen=True)
class Reply:
    """One HTTP answer: status, the one header we use, and the raw body."""

    status: int
    body: bytes
    retry_after: float | None
    content_type: str


class ApiTransport:
    """Owns the API's aiohttp session: one keep-alive pool, the token, bounded reads.

    Args:
        base_url: origin of the API, e.g. ``https://model-api.runcomfy.net`` (no path).
        token: the API token; only ever sent to ``base_url``.
        connect_timeout: seconds to open a connection.
        read_timeout: seconds to wait for each read from the socket.
        max_connections: size of the keep-alive pool.
        max_body_bytes: larger answers are refused without reading them whole.
        proxy: the proxy for every request; ``None`` follows ``HTTPS_PROXY``/``NO_PROXY``.
        headers: extra headers for every request (checked: never ``Authorization``).
    """

    def __init__(
        self,
        *,
        base_url: str,
        token: str,
        connect_timeout: float,
        read_timeout: float,
        max_connections: int,
        max_body_bytes: int,
        proxy: str | None = None,
        headers: Mapping[str, str] | None = None,
    ):
        self.base_url = base_url
        self._proxy = proxy_for(base_url, proxy)
        self._headers = dict(headers or {})
        self._token = token
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout, sock_read=read_timeout
        )
        self._max_connections = max_connections
        self._max_body = max_body_bytes
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"ApiTransport(base_url={self.base_url!r}, token=<redacted>)"

    async def open(self) -> None:
        """Create the session; must run inside the event loop that will use it."""
        if self._session is not None:
            return
        connector = aiohttp.TCPConnector(
            limit=self._max_connections, limit_per_host=self._max_connections, ttl_dns_cache=300
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._timeout,
            headers={
                "Accept": "application/json",
                "User-Agent": f"runcomfy-async/{__version__}",
                **self._headers,
                "Authorization": f"Bearer {self._token}",  # last: nothing overrides it
            },
            raise_for_status=False,
            auto_decompress=True,
            trust_env=False,
        )

    async def close(self) -> None:
        """Close the session and its pool (idempotent)."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def redact(self, text: str) -> str:
        """Remove the token from ``text`` should a server ever echo it back."""
        return text.replace(self._token, "<redacted>") if self._token else text

    def redact_value(self, value: Any) -> Any:
        """A decoded JSON value with the token removed from every string in it."""
        return _redact_any(value, self.redact)

    def _snippet(self, body: bytes, limit: int) -> str:
        """The first ``limit`` characters of a body, redacted before it is cut.

        Cutting first could leave a prefix of a token that straddles the cut.
        """
        window = body[: limit + 4 * len(self._token) + 64].decode("utf-8", "replace")
        return self.redact(window)[:limit]

    async def send(self, method: str, path: str, body: bytes | None = None) -> Reply:
        """Send one request to ``base_url + path``; raise :class:`TransportError` on no answer.

        ``TransportError.connected`` is ``False`` only when the connection could not be opened,
        which proves the request never reached the server.
        """
        session = self._session
        url = self.base_url + path
        if session is None:
            raise RuntimeError("the client is not open; use 'async with AsyncClient()'")
        headers = {"Content-Type": "application/json"} if body is not None else None
        with AiohttpErrors(lambda failure: _transport_error(failure, method, url), self.redact):
            async with session.request(
                method, url, data=body, headers=headers, allow_redirects=False, proxy=self._proxy
            ) as resp:
                data = await self._read_capped(resp, method, url)
                return Reply(
                    status=resp.status,
                    body=data,
                    retry_after=parse_retry_after(resp.headers.get("Retry-After")),
                    content_type=resp.headers.get("Content-Type", ""),
                )

    async def _read_capped(self, resp: aiohttp.ClientResponse, method: str, url: str) -> bytes:
        length = resp.content_length
        if length is not None and length > self._max_body:
            raise ResponseValidationError(
                f"answer of {length} bytes exceeds the {self._max_body}-byte cap",
                method=method,
                url=url,
            )
        if length is not None and "Content-Encoding" not in resp.headers:
            # Not compressed: the length is the body's, already checked against the cap, and
            # one read is cheaper than the chunk loop (about 10 us a request here).
            return await resp.read()
        # Compressed, or no length: count what we decode, since a gzip answer could inflate
        # far past the cap and a chunked one may never say how long it is.
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_chunked(65536):
            size += len(chunk)
            if size > self._max_body:
                raise ResponseValidationError(
                    f"answer exceeds the {self._max_body}-byte cap", method=method, url=url
                )
            chunks.append(chunk)
        return b"".join(chunks)

    def decode(self, reply: Reply, decoder: Callable[[bytes], T], method: str, path: str) -> T:
        """Decode a 2xx body with ``decoder``; raise the matching error for anything else.

        HTTP 200 with a non-null ``error_code`` is an error, never a success, except in a
        status or result body whose own ``status`` says the job failed: that is the job's
        failure, decoded as such.
        """
        url = self.base_url + path
        if not 200 <= reply.status < 300:
            raise self.status_error(reply, method, url)
        # A job's own body saying it failed is the job's failure, not the call's.
        envelope = error_envelope(reply.body, job_read=_is_job_read(path))
        if envelope is not None:
            raise self.status_error(reply, method, url, envelope)
        try:
            return decoder(reply.body)
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
            snippet = self._snippet(reply.body, 120)
            raise ResponseValidationError(
                f"undecodable answer (HTTP {reply.status}): {exc}; body starts {snippet!r}",
                method=method,
                url=url,
            ) from exc

    def status_error(
        self, reply: Reply, method: str, url: str, envelope: ErrorBody | None = None
    ) -> APIStatusError:
        """Build the :class:`APIStatusError` subclass that fits an error answer."""
        envelope = envelope or _decode_error(reply.body)
        code = envelope.numeric_code if envelope else None
        status = reply.status
        if 200 <= status < 300 and code is not None:
            status = code // 1000 if 100 <= code // 1000 <= 599 else 500
        message = (
            envelope.text
            if envelope is not None and envelope.text
            else _describe_body(reply, self._snippet)
        )
        if reply.status != status:
            message = f"{message} (sent as HTTP {reply.status})"
        kw: dict[str, Any] = {
            "method": method,
            "url": url,
            "status_code": status,
            "error_code": code,
            "detail": envelope.detail if envelope else None,
            "body": self._snippet(reply.body, 1024),
        }
        message = self.redact(message)
        if envelope is not None and envelope.detail is not None:
            kw["detail"] = self.redact_value(envelope.detail)
        cls = _status_class(status, code)
        if cls is RateLimitError:
            return RateLimitError(message, retry_after=reply.retry_after, **kw)
        return cls(message, **kw)


def _is_job_read(path: str) -> bool:
    """Whether ``path`` reads a job's status or result (the query string aside)."""
    return path.partition("?")[0].endswith(("/status", "/result"))


def _decode_error(body: bytes) -> ErrorBody | None:
    try:
        return ERROR_DECODER.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return None


def _redact_any(value: Any, redact: Callable[[str], str]) -> Any:
    """Redact every string inside a decoded JSON value.

    A loop, not recursion: a decoder may accept nesting deeper than Python's recursion
    limit (msgspec's limit follows the interpreter's C stack budget, which grew in 3.12).
    """

    def copy(item: Any) -> Any:
        if isinstance(item, str):
            return redact(item)
        if isinstance(item, list):
            out: list[Any] = []
            todo.append((item, out))
            return out
        if isinstance(item, dict):
            mapping: dict[Any, Any] = {}
            todo.append((item, mapping))
            return mapping
        return item

    todo: list[tuple[Any, Any]] = []
    root = copy(value)
    while todo:  # containers are filled after they are placed, so order is kept
        source, target = todo.pop()
        if isinstance(source, list):
            target.extend(copy(v) for v in source)
        else:
            target.update((k, copy(v)) for k, v in source.items())
    return root


def _describe_body(reply: Reply, snippet: Callable[[bytes, int], str]) -> str:
    if not reply.body:
        return "empty body"
    title = _TITLE.search(reply.body[:4096])
    if title:
        text = title.group(1).decode("utf-8", "replace").strip()
        return f"non-JSON answer ({reply.content_type or 'no content type'}): {text}"
    return f"non-JSON answer ({reply.content_type or 'no content type'}): {snippet(reply.body, 80)}"


def _status_class(status: int, code: int | None) -> type[APIStatusError]:
    if (
        status in (401, 403)
        or code in (401001, 400004)
        or (code is not None and code // 1000 == 403)
    ):
        return AuthenticationError
    if status == 404 or (code is not None and code // 1000 == 404):
        return NotFoundError
    if status == 429:
        return RateLimitError
    if status >= 500:
        return ServerError
    return APIStatusError
