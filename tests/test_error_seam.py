"""The one seam where aiohttp's exceptions become ours: nothing of the request survives it."""

from __future__ import annotations

import asyncio
import pickle
import traceback
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from runcomfy_async import (
    AsyncClient,
    DownloadError,
    RetryPolicy,
    RunComfyError,
    SubmissionUncertainError,
    TransportError,
)
from runcomfy_async._download import Downloader

from .conftest import TOKEN

pytestmark = pytest.mark.anyio

MALFORMED = {
    "bad header byte": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nBad\x01Header: x\r\n\r\n{}",
    "bad status line": b"HTTP/1.1 abc nonsense\r\n\r\n",
    "not http": b"\x00\x01\x02 hello\r\n\r\n",
    "short body": b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{}",
    "bad chunking": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n",
}


@pytest.fixture(params=sorted(MALFORMED))
async def hostile(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """A loopback server that answers every request with one kind of malformed HTTP."""
    answer = MALFORMED[request.param]

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(answer)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and every exception reachable through ``__cause__`` and ``__context__``."""
    seen: list[BaseException] = []
    todo = [exc]
    while todo:
        current = todo.pop()
        if any(current is s for s in seen):
            continue
        seen.append(current)
        todo += [e for e in (current.__cause__, current.__context__) if e is not None]
    return seen


def _assert_no_token(exc: BaseException) -> None:
    """The token is nowhere in the error, its chain, its attributes or its traceback text."""
    for link in _chain(exc):
        assert isinstance(link, RunComfyError), f"a foreign exception is kept: {link!r}"
        for text in (repr(link), str(link), repr(link.args), repr(vars(link))):
            assert TOKEN not in text
    assert TOKEN not in "".join(traceback.format_exception(exc))
    assert TOKEN not in repr(pickle.loads(pickle.dumps(exc)).__dict__)


async def test_malformed_http_on_a_read_keeps_no_trace_of_the_request(hostile: str) -> None:
    """A read answered with malformed HTTP raises our TransportError alone, token-free."""
    async with AsyncClient(TOKEN, hostile, retry=RetryPolicy(max_attempts=1)) as client:
        with pytest.raises(TransportError) as caught:
            await client.status("some-request")
    assert caught.value.__cause__ is None and caught.value.__context__ is None
    _assert_no_token(caught.value)


async def test_malformed_http_on_a_submit_keeps_no_trace_of_the_request(hostile: str) -> None:
    """A submit answered with malformed HTTP is uncertain, and nothing in it holds the token."""
    async with AsyncClient(TOKEN, hostile, retry=RetryPolicy(max_attempts=1)) as client:
        with pytest.raises((SubmissionUncertainError, TransportError)) as caught:
            await client.submit("some/model", {"prompt": "x"})
    _assert_no_token(caught.value)


async def test_malformed_http_on_a_download_is_our_error_alone(
    hostile: str, tmp_path: Path
) -> None:
    """A download answered with malformed HTTP raises DownloadError with nothing chained."""
    retry = RetryPolicy(max_attempts=1)
    async with Downloader(tmp_path, retry=retry) as downloader:
        with pytest.raises(DownloadError) as caught:
            await downloader.fetch(f"{hostile}/out.png", stem="x", single=True)
    assert caught.value.__cause__ is None and caught.value.__context__ is None
    assert list(tmp_path.iterdir()) == []


async def test_refused_connection_is_mapped_without_chaining() -> None:
    """A connection refused on loopback says so, proves nothing was sent, and chains nothing."""
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    retry = RetryPolicy(max_attempts=1)
    async with AsyncClient(TOKEN, f"http://127.0.0.1:{port}", retry=retry) as client:
        with pytest.raises(TransportError) as caught:
            await client.status("some-request")
    assert not caught.value.connected
    assert "could not connect" in str(caught.value)
    _assert_no_token(caught.value)
