"""The output downloader against the emulator (and a tiny hostile server) on loopback."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from aiohttp import web

from runcomfy_async import AsyncClient, ConfigError, RetryPolicy
from runcomfy_async._download import (
    DownloadedFile,
    Downloader,
    DownloadError,
    DownloadTimeoutError,
    safe_stem,
)
from runcomfy_async._emulator._png import PNG_SIGNATURE, output_png
from runcomfy_async.testing import FakeRunComfy

from .conftest import FAST_RETRY, TOKEN, serving

pytestmark = pytest.mark.anyio

T2I = "google/nano-banana-2/text-to-image"
PNG = output_png("req-1", 0)
NO_RETRY = RetryPolicy(max_attempts=1)


def listing(folder: Path) -> list[str]:
    """Every entry of ``folder``, hidden ones included, sorted."""
    return sorted(p.name for p in folder.iterdir())


def contents(folder: Path) -> list[bytes]:
    """The bytes of every file in ``folder``."""
    return [p.read_bytes() for p in folder.iterdir()]


class Origin:
    """A small hostile file server on 127.0.0.1, for what the emulator cannot script."""

    def __init__(self) -> None:
        self.base = ""
        self.hits: dict[str, int] = {}
        self.streaming = asyncio.Event()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/slow.png", self.slow)
        app.router.add_get("/chunked.bin", self.chunked)
        app.router.add_get("/cut.png", self.cut)
        app.router.add_get("/page.php", self.typed)
        app.router.add_get("/tool.exe", self.typed)
        return app

    def count(self, request: web.Request) -> int:
        self.hits[request.path] = self.hits.get(request.path, 0) + 1
        return self.hits[request.path]

    async def slow(self, request: web.Request) -> web.StreamResponse:
        """Send a little of a large PNG, then stall."""
        self.count(request)
        resp = web.StreamResponse(headers={"Content-Type": "image/png"})
        resp.content_length = 1_000_000
        await resp.prepare(request)
        await resp.write(PNG_SIGNATURE + b"\0" * 70_000)
        self.streaming.set()
        await asyncio.sleep(30)
        return resp

    async def chunked(self, request: web.Request) -> web.StreamResponse:
        """Stream 1 MiB with chunked encoding: no Content-Length to refuse early."""
        self.count(request)
        resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for _ in range(16):
            await resp.write(b"x" * 65536)
        await resp.write_eof()
        return resp

    async def cut(self, request: web.Request) -> web.StreamResponse:
        """First request: half the body, then a reset. Later ones: the whole PNG."""
        if self.count(request) > 1:
            return web.Response(body=PNG, content_type="image/png")
        resp = web.StreamResponse(headers={"Content-Type": "image/png"})
        resp.content_length = 200_000
        await resp.prepare(request)
        await resp.write(b"\0" * 100_000)
        await asyncio.sleep(0.05)
        assert request.transport is not None
        request.transport.abort()
        return resp

    async def typed(self, request: web.Request) -> web.Response:
        """A PNG at a .php path; octet-stream at a .exe path."""
        self.count(request)
        if request.path.endswith(".php"):
            return web.Response(body=PNG, content_type="image/png")
        return web.Response(body=b"MZ", content_type="application/octet-stream")


@pytest.fixture
async def origin() -> AsyncIterator[Origin]:
    """The hostile server, listening on a free loopback port."""
    async with serving(Origin()) as server:
        yield server


async def test_png_saved_under_stem_with_matching_sha256(
    client: AsyncClient, fake: FakeRunComfy, tmp_path: Path
) -> None:
    """A real output is saved as {stem}-{i}.png, a PNG whose sha256 and size are reported."""
    res = await client.run(T2I, {"prompt": "a fox", "num_images": 2})
    assert res.output is not None
    async with Downloader(tmp_path / "out", retry=FAST_RETRY) as dl:
        files = await dl.fetch_all(res.output.urls, stem="00042")
        one = await dl.fetch(res.output.urls[0], stem="solo", single=True)
    assert [f.path for f in files] == ["00042-0.png", "00042-1.png"]
    assert one.path == "solo.png"
    for saved in [*files, one]:
        data = (tmp_path / "out" / saved.path).read_bytes()
        assert data.startswith(PNG_SIGNATURE)
        assert saved.sha256 == hashlib.sha256(data).hexdigest()
        assert saved.bytes == len(data) and saved.content_type == "image/png"
    assert files[0].url == res.output.urls[0]
    assert listing(tmp_path / "out") == ["00042-0.png", "00042-1.png", "solo.png"]
    assert (dl.files, dl.bytes_downloaded, dl.retries) == (
        3,
        sum(f.bytes for f in files) + one.bytes,
        0,
    )


async def test_no_authorization_sent_to_output_host(
    client: AsyncClient, fake: FakeRunComfy, tmp_path: Path
) -> None:
    """Next to a client holding a token, output requests carry no Authorization header."""
    res = await client.run(T2I, {"prompt": "a fox", "num_images": 3})
    assert res.output is not None
    async with Downloader(tmp_path) as dl:
        await dl.fetch_all(res.output.urls, stem="k")
    assert fake.output_requests == 3
    assert fake.output_auth_headers == 0
    assert not any(TOKEN.encode() in data for data in contents(tmp_path))


async def test_concurrency_never_exceeds_bound(fake: FakeRunComfy, tmp_path: Path) -> None:
    """With max_concurrent=2, the emulator never has more than 2 output requests open."""
    fake.inject("output", body=PNG, content_type="image/png", delay=0.1, times=6)
    urls = [f"{fake.output_base_url}/outputs/r{i}/0.png" for i in range(6)]
    peak = 0
    done = False

    async def watch() -> None:
        nonlocal peak
        while not done:
            open_now = fake.output_requests - sum(fake.output_responses.values())
            peak = max(peak, open_now)
            await anyio.sleep(0.002)

    async with Downloader(tmp_path, max_concurrent=2) as dl, anyio.create_task_group() as tg:
        tg.start_soon(watch)
        files = await dl.fetch_all(urls, stem="c")
        done = True
    assert len(files) == 6 and fake.output_requests == 6
    assert peak == 2


async def test_retry_on_503_then_success(
    client: AsyncClient, fake: FakeRunComfy, tmp_path: Path
) -> None:
    """A 503 is retried with backoff; the second answer is saved."""
    res = await client.run(T2I, {"prompt": "a fox"})
    assert res.output is not None
    fake.inject("output", status=503, times=2)
    async with Downloader(tmp_path, retry=FAST_RETRY) as dl:
        saved = await dl.fetch(res.output.urls[0], stem="r")
    assert fake.output_requests == 3 and dl.retries == 2
    assert (tmp_path / saved.path).read_bytes().startswith(PNG_SIGNATURE)


async def test_404_not_retried(fake: FakeRunComfy, tmp_path: Path) -> None:
    """A 404 fails at once, with its status, and leaves nothing behind."""
    url = f"{fake.output_base_url}/outputs/nope/0.png"
    async with Downloader(tmp_path, retry=FAST_RETRY) as dl:
        with pytest.raises(DownloadError) as info:
            await dl.fetch(url, stem="x")
    assert info.value.status_code == 404 and not info.value.retryable
    assert fake.output_requests == 1 and dl.failures == 1
    assert listing(tmp_path) == []


async def test_retries_exhausted_reports_attempts(fake: FakeRunComfy, tmp_path: Path) -> None:
    """When every attempt gets a 5xx, the error is retryable and names the attempts."""
    fake.inject("output", status=502, times=3)
    async with Downloader(tmp_path, retry=RetryPolicy(max_attempts=3, backoff_base=0.001)) as dl:
        with pytest.raises(DownloadError, match="after 3 attempts") as info:
            await dl.fetch(f"{fake.output_base_url}/outputs/r/0.png", stem="x")
    assert info.value.retryable and info.value.status_code == 502
    assert fake.output_requests == 3 and listing(tmp_path) == []


async def test_content_length_over_cap_refused(fake: FakeRunComfy, tmp_path: Path) -> None:
    """A Content-Length above max_bytes is refused without writing or retrying."""
    fake.inject("output", body=b"x" * 2000, content_type="application/octet-stream")
    async with Downloader(tmp_path, max_bytes=1000, retry=FAST_RETRY) as dl:
        with pytest.raises(DownloadError, match="Content-Length 2000 exceeds"):
            await dl.fetch(f"{fake.output_base_url}/outputs/r/0.png", stem="big")
    assert fake.output_requests == 1 and listing(tmp_path) == []


async def test_streamed_body_over_cap_aborted(origin: Origin, tmp_path: Path) -> None:
    """A chunked body that passes max_bytes is cut off and its partial file removed."""
    async with Downloader(tmp_path, max_bytes=100_000, retry=FAST_RETRY) as dl:
        with pytest.raises(DownloadError, match="body exceeds the 100000-byte cap"):
            await dl.fetch(f"{origin.base}/chunked.bin", stem="big")
    assert origin.hits["/chunked.bin"] == 1 and listing(tmp_path) == []


async def test_reset_before_answer_is_retried(
    client: AsyncClient, fake: FakeRunComfy, tmp_path: Path
) -> None:
    """A connection reset is a transport error: retried, and only the final file remains."""
    res = await client.run(T2I, {"prompt": "a fox"})
    assert res.output is not None
    fake.inject("output", reset=True)
    async with Downloader(tmp_path, retry=FAST_RETRY) as dl:
        saved = await dl.fetch(res.output.urls[0], stem="r")
    assert fake.output_requests == 2 and listing(tmp_path) == [saved.path]


async def test_reset_mid_body_leaves_no_partial(origin: Origin, tmp_path: Path) -> None:
    """A reset halfway through the body removes the partial file; a retry saves it whole."""
    url = f"{origin.base}/cut.png"
    async with Downloader(tmp_path, retry=NO_RETRY) as dl:
        with pytest.raises(DownloadError) as info:
            await dl.fetch(url, stem="cut")
    assert info.value.retryable and listing(tmp_path) == []
    origin.hits.clear()
    async with Downloader(tmp_path, retry=FAST_RETRY) as dl:
        saved = await dl.fetch(url, stem="cut")
    assert origin.hits["/cut.png"] == 2
    assert listing(tmp_path) == ["cut-0.png"] and saved.bytes == len(PNG)


async def test_read_timeout_is_a_timeout_error(origin: Origin, tmp_path: Path) -> None:
    """A stalled body hits read_timeout: DownloadTimeoutError, also a TimeoutError, no file."""
    async with Downloader(tmp_path, read_timeout=0.2, retry=NO_RETRY) as dl:
        with pytest.raises(DownloadTimeoutError) as info:
            await dl.fetch(f"{origin.base}/slow.png", stem="s")
    assert isinstance(info.value, TimeoutError) and listing(tmp_path) == []


async def test_cancellation_mid_download_removes_temp_file(origin: Origin, tmp_path: Path) -> None:
    """Cancelling a download while the body streams removes its .part file."""
    async with Downloader(tmp_path) as dl:

        async def download() -> None:
            await dl.fetch(f"{origin.base}/slow.png", stem="s")

        with anyio.move_on_after(5) as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(download)
                await origin.streaming.wait()
                for _ in range(500):  # until the body has started to reach the disk
                    if listing(tmp_path):
                        break
                    await anyio.sleep(0.005)
                assert listing(tmp_path)[0].startswith(".s-0.png.part-")
                tg.cancel_scope.cancel()
        assert not scope.cancelled_caught
    assert listing(tmp_path) == []


@pytest.mark.parametrize(
    ("stem", "expected"),
    [
        ("../../etc/passwd", "__.._etc_passwd"),
        ("/abs", "_abs"),
        ("..", "_"),
        (".", "_"),
        ("", "_"),
        ("a/b\\c", "a_b_c"),
        (".hidden", "_hidden"),
        ("chat 🐱 ü", "chat____"),
        ("CON", "_CON"),
        ("x" * 300, "x" * 100),
        ("00042", "00042"),
    ],
)
def test_safe_stem(stem: str, expected: str) -> None:
    """safe_stem keeps [A-Za-z0-9._-], never leads with a dot, is never empty, caps at 100."""
    assert safe_stem(stem) == expected


async def test_hostile_stems_stay_inside_folder(fake: FakeRunComfy, tmp_path: Path) -> None:
    """Stems with separators, dots, absolute paths or unicode still land in the folder."""
    stems = ["../../etc/passwd", "/abs", "..", "", "a/b\\c", "日本語🙂", "\x00nul", "C:\\x"]
    out = tmp_path / "out"
    fake.inject("output", body=PNG, content_type="image/png", times=2 * len(stems))
    url = f"{fake.output_base_url}/outputs/r/0.png"
    async with Downloader(out) as dl:
        for stem in stems:
            for single in (False, True):
                saved = await dl.fetch(url, stem=stem, single=single)
                path = (out / saved.path).resolve()
                assert path.parent == out.resolve() and path.is_file()
                assert "/" not in saved.path and not saved.path.startswith(".")
    assert listing(tmp_path) == ["out"]


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "data:image/png;base64,iVBORw0KGgo=",
        "http://10.0.0.1/x.png",
        "http://example.com/x.png",
        "javascript:alert(1)",
        "ftp://example.com/x.png",
        "https://user:pw@example.com/x.png",
        "https:///x.png",
        "https://exa mple.com/x.png",
        "//example.com/x.png",
    ],
)
async def test_hostile_urls_refused_without_request(url: str, tmp_path: Path) -> None:
    """URLs outside https / loopback http are refused before any request is sent."""
    async with Downloader(tmp_path) as dl:
        with pytest.raises(DownloadError, match="refused") as info:
            await dl.fetch(url, stem="x")
        with pytest.raises(DownloadError):
            await dl.fetch_all([url], stem="x")
    assert dl.requests_sent == 0 and listing(tmp_path) == []
    assert "\n" not in str(info.value) and "pw" not in str(info.value)


async def test_fetch_all_checks_every_url_first(fake: FakeRunComfy, tmp_path: Path) -> None:
    """One bad URL in a list stops the whole list before any request."""
    good = f"{fake.output_base_url}/outputs/r/0.png"
    async with Downloader(tmp_path) as dl:
        with pytest.raises(DownloadError, match="file"):
            await dl.fetch_all([good, "file:///etc/passwd"], stem="x")
    assert fake.output_requests == 0 and dl.requests_sent == 0


async def test_insecure_http_allowed_only_when_asked(tmp_path: Path) -> None:
    """allow_insecure=True lets http to a non-loopback host pass the URL check."""
    async with Downloader(tmp_path, allow_insecure=True) as dl:
        dl.check_url("http://10.0.0.1/x.png")
        with pytest.raises(DownloadError):
            dl.check_url("file:///etc/passwd")


async def test_url_extension_outside_allowlist_ignored(origin: Origin, tmp_path: Path) -> None:
    """.php and .exe from the URL are never used; the Content-Type (or .bin) decides."""
    async with Downloader(tmp_path) as dl:
        php = await dl.fetch(f"{origin.base}/page.php", stem="a")
        exe = await dl.fetch(f"{origin.base}/tool.exe", stem="b")
    assert (php.path, exe.path) == ("a-0.png", "b-0.bin")
    assert exe.content_type == "application/octet-stream"
    assert listing(tmp_path) == ["a-0.png", "b-0.bin"]


async def test_redirect_to_loopback_followed(
    client: AsyncClient, fake: FakeRunComfy, tmp_path: Path
) -> None:
    """A redirect to another loopback URL is followed without credentials."""
    res = await client.run(T2I, {"prompt": "a fox"})
    assert res.output is not None
    fake.inject("output", status=302, body=b"", headers={"Location": res.output.urls[0]})
    async with Downloader(tmp_path) as dl:
        saved = await dl.fetch(f"{fake.output_base_url}/outputs/elsewhere/0.png", stem="r")
    assert fake.output_requests == 2 and fake.output_auth_headers == 0
    assert (tmp_path / saved.path).read_bytes().startswith(PNG_SIGNATURE)


async def test_redirect_to_insecure_host_refused(fake: FakeRunComfy, tmp_path: Path) -> None:
    """A redirect to http on a non-loopback host (or to file:) is refused, not retried."""
    url = f"{fake.output_base_url}/outputs/r/0.png"
    for target in ("http://example.com/x.png", "file:///etc/passwd"):
        fake.inject("output", status=302, body=b"", headers={"Location": target})
        async with Downloader(tmp_path, retry=FAST_RETRY) as dl:
            with pytest.raises(DownloadError, match="redirect refused"):
                await dl.fetch(url, stem="x")
        assert dl.requests_sent == 1
    assert fake.output_requests == 2 and listing(tmp_path) == []


async def test_too_many_redirects_refused(fake: FakeRunComfy, tmp_path: Path) -> None:
    """A redirect loop stops after 3 hops."""
    url = f"{fake.output_base_url}/outputs/r/0.png"
    fake.inject("output", status=307, body=b"", headers={"Location": url}, times=10)
    async with Downloader(tmp_path, retry=FAST_RETRY) as dl:
        with pytest.raises(DownloadError, match="more than 3 redirects"):
            await dl.fetch(url, stem="x")
    assert fake.output_requests == 4


async def test_error_message_hides_query_string(fake: FakeRunComfy, tmp_path: Path) -> None:
    """str(error) is one line without the URL's signed query string."""
    url = f"{fake.output_base_url}/outputs/nope/0.png?X-Signature=s3cr3t"
    async with Downloader(tmp_path) as dl:
        with pytest.raises(DownloadError) as info:
            await dl.fetch(url, stem="x")
    text = str(info.value)
    assert "s3cr3t" not in text and "\n" not in text and "/outputs/nope/0.png?..." in text
    assert info.value.url == url


async def test_rerun_overwrites_same_name(fake: FakeRunComfy, tmp_path: Path) -> None:
    """A second download to the same name replaces the file (re-runs are idempotent)."""
    (tmp_path / "k-0.png").write_bytes(b"stale")
    fake.inject("output", body=PNG, content_type="image/png", times=2)
    url = f"{fake.output_base_url}/outputs/r/0.png"
    async with Downloader(tmp_path) as dl:
        first = await dl.fetch(url, stem="k")
        second = await dl.fetch(url, stem="k")
    assert first == second and isinstance(first, DownloadedFile)
    assert listing(tmp_path) == ["k-0.png"] and (tmp_path / "k-0.png").read_bytes() == PNG


async def test_bad_options_and_closed_use(tmp_path: Path) -> None:
    """Bad options raise ConfigError; fetching outside 'async with' raises RuntimeError."""
    with pytest.raises(ConfigError):
        Downloader(tmp_path, max_concurrent=0)
    with pytest.raises(ConfigError):
        Downloader(tmp_path, read_timeout=0)
    dl = Downloader(tmp_path)
    with pytest.raises(RuntimeError, match="async with"):
        await dl.fetch("https://example.com/x.png", stem="x")
    async with dl:
        with pytest.raises(ConfigError):
            await dl.fetch("https://example.com/x.png", stem="x", position=-1)


async def test_429_waits_for_retry_after(fake: FakeRunComfy, tmp_path: Path) -> None:
    """A 429 is retried after the server's Retry-After, not the (here huge) backoff."""
    fake.inject("output", status=429, headers={"Retry-After": "0"})
    fake.inject("output", body=PNG, content_type="image/png")
    slow_backoff = RetryPolicy(backoff_base=60.0, backoff_max=60.0)
    async with Downloader(tmp_path, retry=slow_backoff, fsync=True) as dl:
        with anyio.fail_after(2):
            saved = await dl.fetch(f"{fake.output_base_url}/outputs/r/0.png", stem="r")
    assert fake.output_requests == 2 and dl.retries == 1 and saved.bytes == len(PNG)


async def test_native_task_cancel_removes_temp_file(origin: Origin, tmp_path: Path) -> None:
    """A plain asyncio task.cancel() mid-body also removes the .part file."""
    async with Downloader(tmp_path) as dl:
        task = asyncio.create_task(dl.fetch(f"{origin.base}/slow.png", stem="n"))
        await origin.streaming.wait()
        for _ in range(500):
            if listing(tmp_path):
                break
            await anyio.sleep(0.005)
        assert listing(tmp_path)[0].startswith(".n-0.png.part-")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert listing(tmp_path) == []
