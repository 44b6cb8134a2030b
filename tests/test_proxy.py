"""Networks: HTTP(S)_PROXY/NO_PROXY and proxy= are honoured, downloads too, without the token."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from runcomfy_async import AsyncClient, ConfigError
from runcomfy_async._download import Downloader
from runcomfy_async._netopts import proxy_for
from runcomfy_async.testing import FakeRunComfy

from .conftest import FAST_RETRY, TOKEN

pytestmark = pytest.mark.anyio

T2I = "google/nano-banana-2/text-to-image"


class ForwardingProxy:
    """A tiny HTTP forward proxy on loopback: absolute-form requests and CONNECT tunnels.

    It records the first request head of each connection, then pipes bytes both ways.
    """

    def __init__(self) -> None:
        self.heads: list[tuple[str, dict[str, str]]] = []
        self.url = ""
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> ForwardingProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            writer.close()
            return
        lines = head.decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        self.heads.append((f"{method} {target}", headers))
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:
            rest = target.split("://", 1)[1]
            hostport, _, path = rest.partition("/")
            host, _, port = hostport.partition(":")
            up_reader, up_writer = await asyncio.open_connection(host, int(port or 80))
            first = f"{method} /{path} {version}\r\n".encode("latin-1")
            up_writer.write(first + head.split(b"\r\n", 1)[1])
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(OSError, ConnectionError):
        writer.close()


@pytest.fixture
async def proxy() -> AsyncIterator[ForwardingProxy]:
    """A forwarding proxy on a free loopback port."""
    async with ForwardingProxy() as server:
        yield server


@pytest.fixture(autouse=True)
def _no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start every test of this file without proxy variables."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def test_proxy_for_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """HTTPS_PROXY for https, HTTP_PROXY for http, NO_PROXY bypasses, an explicit one wins."""
    monkeypatch.setenv("HTTPS_PROXY", "http://p.example:3128")
    monkeypatch.setenv("HTTP_PROXY", "p2.example:8080")
    monkeypatch.setenv("NO_PROXY", "internal.example,.corp.example")
    assert proxy_for("https://model-api.runcomfy.net/v1/x") == "http://p.example:3128"
    assert proxy_for("http://a.example/x") == "http://p2.example:8080"
    assert proxy_for("https://internal.example/x") is None
    assert proxy_for("https://files.corp.example/a.png") is None
    assert proxy_for("https://internal.example/x", "http://mine:1") == "http://mine:1"


async def test_api_requests_go_through_the_environment_proxy(
    fake: FakeRunComfy, proxy: ForwardingProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With HTTP_PROXY set, API calls reach the emulator through the proxy."""
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    async with AsyncClient(TOKEN, fake.base_url, retry=FAST_RETRY, check_catalog=False) as c:
        result = await c.run(T2I, {"prompt": "a fox"}, timeout=30)
    assert result.urls
    assert proxy.heads and all(
        h.startswith(("GET http://", "POST http://")) for h, _ in proxy.heads
    )
    assert any(head.startswith(f"POST {fake.base_url}/v1/models/") for head, _ in proxy.heads)


async def test_no_proxy_and_explicit_proxy(
    fake: FakeRunComfy, proxy: ForwardingProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NO_PROXY sends a host directly; proxy= routes through the proxy without any variable."""
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    async with AsyncClient(TOKEN, fake.base_url, retry=FAST_RETRY, check_catalog=False) as c:
        await c.submit(T2I, {"prompt": "direct"})
    assert proxy.heads == []
    monkeypatch.delenv("HTTP_PROXY")
    monkeypatch.delenv("NO_PROXY")
    async with AsyncClient(
        TOKEN, fake.base_url, retry=FAST_RETRY, check_catalog=False, proxy=proxy.url
    ) as c:
        await c.submit(T2I, {"prompt": "proxied"})
    assert len(proxy.heads) >= 1


async def test_downloads_use_the_proxy_without_the_token(
    fake: FakeRunComfy, proxy: ForwardingProxy, tmp_path: Path
) -> None:
    """Outputs are fetched through the same proxy, and no request to them carries the token."""
    async with AsyncClient(
        TOKEN, fake.base_url, retry=FAST_RETRY, check_catalog=False, proxy=proxy.url
    ) as c:
        result = await c.run(T2I, {"prompt": "a fox"}, timeout=30)
        async with Downloader(tmp_path, proxy=c.proxy, allow_insecure=True) as dl:
            saved = await dl.fetch(result.urls[0], stem="fox", single=True)
    assert saved.bytes > 0
    output = [(h, hd) for h, hd in proxy.heads if h.startswith(f"GET {fake.output_base_url}")]
    assert output, proxy.heads
    assert all("authorization" not in hd for _, hd in output)
    assert all(TOKEN not in str(hd) for _, hd in output)


async def test_default_headers_are_sent_but_never_replace_the_token(
    fake: FakeRunComfy, proxy: ForwardingProxy
) -> None:
    """default_headers reach the API beside the token; one naming Authorization is refused."""
    with pytest.raises(ConfigError, match="cannot set 'authorization'"):
        AsyncClient(TOKEN, fake.base_url, default_headers={"authorization": "Bearer other"})
    with pytest.raises(ConfigError, match="line break"):
        AsyncClient(TOKEN, fake.base_url, default_headers={"X-Trace": "a\r\nb"})
    async with AsyncClient(
        TOKEN,
        fake.base_url,
        check_catalog=False,
        proxy=proxy.url,
        default_headers={"X-Team": "vision", "User-Agent": "my-app/1.0"},
    ) as c:
        job = await c.submit(T2I, {"prompt": "a fox"})
    assert job.request_id in fake.jobs  # the emulator checked the token as usual
    (_, headers), *_ = proxy.heads
    assert headers["x-team"] == "vision" and headers["user-agent"] == "my-app/1.0"
    assert headers["authorization"] == f"Bearer {TOKEN}"
