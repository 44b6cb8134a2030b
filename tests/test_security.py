"""Issue 6, security: the token stays on the API origin, answers and downloads are bounded.

The token is searched for everywhere it could leak: DEBUG logs (ours and aiohttp's), the CLI's
stderr at ``-vv``, reprs, ``str``/``repr``/tracebacks of every error a fault produces, the
journal, results.jsonl and the gallery. A second small aiohttp server on 127.0.0.1 records
every request it gets, to prove that redirects are never followed with the token.
"""

from __future__ import annotations

import asyncio
import collections
import gzip
import logging
import os
import signal
import sys
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from runcomfy_async import (
    APIError,
    APIStatusError,
    AsyncClient,
    BatchResult,
    ConfigError,
    JobFailedError,
    PollSettings,
    ResponseValidationError,
    RetryPolicy,
    SubmissionUncertainError,
)
from runcomfy_async._download import Downloader, DownloadError
from runcomfy_async._emulator._http import listen
from runcomfy_async.testing import FakeRunComfy

from .conftest import TOKEN, serving

pytestmark = [pytest.mark.anyio, pytest.mark.reliability]

T2I = "google/nano-banana-2/text-to-image"
QUICK = RetryPolicy(backoff_base=0.01, backoff_max=0.05)
ONCE = RetryPolicy(max_attempts=1, rate_limited_attempts=1, backoff_base=0.01, backoff_max=0.05)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNCOMFY_")}
    env["RUNCOMFY_API_TOKEN"] = TOKEN
    return env


def _error_texts(exc: BaseException) -> list[str]:
    """str, repr and the formatted traceback of an error and of every error chained to it."""
    texts = ["".join(traceback.format_exception(exc))]
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        texts += [str(current), repr(current)]
        for attr in ("body", "message", "url", "inputs", "error"):
            if hasattr(current, attr):
                texts.append(repr(getattr(current, attr)))
        current = current.__cause__ or current.__context__
    return texts


def _files_text(folder: Path) -> str:
    """Every file under ``folder`` as text (binary files decoded leniently)."""
    return "\n".join(
        p.read_bytes().decode("utf-8", "replace") for p in sorted(folder.rglob("*")) if p.is_file()
    )


class Recorder:
    """A second origin on 127.0.0.1 that records every request and its Authorization header."""

    def __init__(self) -> None:
        self.base = ""
        self.requests: list[tuple[str, str, str | None]] = []
        self.sent_bytes = 0
        self.stream_done = asyncio.Event()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v1/requests/{rid}/status", self.huge_json)
        app.router.add_route("*", "/{tail:.*}", self.record)
        return app

    async def record(self, request: web.Request) -> web.Response:
        self.requests.append((request.method, request.path, request.headers.get("Authorization")))
        return web.json_response({"request_id": "stolen", "status": "completed"})

    async def huge_json(self, request: web.Request) -> web.StreamResponse:
        """A 64 MiB JSON answer, chunked (no Content-Length to refuse it by)."""
        self.requests.append((request.method, request.path, request.headers.get("Authorization")))
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        try:
            await resp.write(b'{"status": "completed", "pad": "')
            chunk = b"x" * 65536
            for _ in range(1024):
                await resp.write(chunk)
                self.sent_bytes += len(chunk)
            await resp.write(b'"}')
            await resp.write_eof()
        except (ConnectionError, RuntimeError):
            pass  # the client hung up, as it should
        finally:
            self.stream_done.set()
        return resp


@pytest.fixture
async def recorder() -> AsyncIterator[Recorder]:
    """The recording origin, on a free loopback port."""
    async with serving(Recorder()) as server:
        yield server


# -- the token never leaks --------------------------------------------------------------------


@pytest.mark.slow
async def test_token_absent_from_debug_logs_errors_reprs_and_files(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A faulty batch with downloads, logged at DEBUG: the token shows up nowhere."""
    caplog.set_level(logging.DEBUG)  # the root: ours and aiohttp's loggers alike
    for name in ("runcomfy_async", "aiohttp", "aiohttp.client", "aiohttp.server"):
        caplog.set_level(logging.DEBUG, logger=name)  # restored after the test
    out = tmp_path / "out"
    errors: list[BaseException] = []
    async with FakeRunComfy(
        token=TOKEN,
        duration_mean=0.1,
        error_rate=0.15,
        reset_rate=0.05,
        malformed_rate=0.05,
        slow_rate=0.02,
        slow_seconds=0.6,
        fault_endpoints=("submit", "status", "result", "cancel", "output"),
        seed=71,
    ) as fake:
        async with AsyncClient(
            TOKEN,
            fake.base_url,
            read_timeout=0.3,
            retry=QUICK,
            poll=PollSettings(first_check=0.05),
        ) as client:
            results: list[BatchResult] = []
            batch = client.map(
                T2I,
                [(f"key-{i}", {"prompt": f"p {i}", "num_images": 2}) for i in range(60)],
                max_in_flight=20,
                journal=out / "journal.jsonl",
                download_to=out,
            )
            async with batch:
                async for res in batch:
                    results.append(res)
            # Every verb once more without retries, against the same faults: collect errors.
            rid = next(r.request_id for r in results if r.request_id)
            assert rid is not None
            client.retry = ONCE
            for _ in range(40):
                for call in (
                    lambda: client.submit(T2I, {"prompt": "again"}),
                    lambda: client.status(rid),
                    lambda: client.result(rid),
                    lambda: client.cancel(rid),
                ):
                    try:
                        await call()
                    except Exception as exc:
                        errors.append(exc)
            texts = [repr(client), repr(client._transport), repr(batch)]
            texts += [repr(job) for job in client._require_open().jobs()]
        assert fake.output_requests > 0 and fake.output_auth_headers == 0
    statuses = collections.Counter(r.status for r in results)
    assert statuses["succeeded"] > 0 and len(results) == 60
    assert len(errors) > 20 and {type(e).__name__ for e in errors} >= {
        "ServerError",
        "ResponseValidationError",
        "SubmissionUncertainError",
    }
    for err in errors:
        texts += _error_texts(err)
    texts += [repr(r) for r in results] + [str(r.error) for r in results]
    texts.append(caplog.text)
    texts.append(_files_text(out))  # journal, downloads
    leaks = [t[:200] for t in texts if TOKEN in t]
    assert leaks == []
    assert any(r.levelname == "DEBUG" for r in caplog.records)


async def test_cli_vv_stderr_and_out_folder_never_show_token(tmp_path: Path) -> None:
    """The CLI at -vv with faults: stderr, stdout, journal, results and gallery hold no token."""
    inp = tmp_path / "prompts.txt"
    inp.write_text("".join(f"prompt {i}\n" for i in range(20)))
    out = tmp_path / "out"
    async with FakeRunComfy(
        token=TOKEN,
        duration_mean=0.1,
        error_rate=0.2,
        reset_rate=0.05,
        malformed_rate=0.05,
        fault_endpoints=("status", "result", "output"),
        seed=72,
    ) as fake:
        fake.inject("submit", status=401, body={"error_code": 401001, "error_message": "no"})
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "runcomfy_async", "batch", str(inp), "--model", T2I,
            "--out", str(out), "--base-url", fake.base_url, "-vv", "--progress", "plain",
            env=_env(), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        stdout, stderr = await asyncio.wait_for(proc.communicate(), 90)
        assert proc.returncode == 3, stderr.decode()[-2000:]  # the 401 stops the batch
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "runcomfy_async", "batch", str(inp), "--model", T2I,
            "--out", str(out), "--base-url", fake.base_url, "-vv", "--progress", "plain",
            "--resume", env=_env(), stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        stdout2, stderr2 = await asyncio.wait_for(proc.communicate(), 90)
        assert proc.returncode in (0, 1), stderr2.decode()[-2000:]
        assert fake.output_auth_headers == 0
    logs = stderr.decode() + stderr2.decode()
    assert "DEBUG" in logs and "HTTP 401" in logs
    assert TOKEN not in logs + stdout.decode() + stdout2.decode()
    assert {p.name for p in out.iterdir()} >= {"journal.jsonl", "results.jsonl", "index.html"}
    assert TOKEN not in _files_text(out)


async def test_resume_hint_never_prints_a_token_given_on_the_command_line(
    tmp_path: Path,
) -> None:
    """After Ctrl-C the printed resume command does not echo --token's value."""
    inp = tmp_path / "prompts.txt"
    inp.write_text("".join(f"prompt {i}\n" for i in range(6)))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNCOMFY_")}
    async with FakeRunComfy(token=TOKEN, duration_mean=30.0, concurrency=1) as fake:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "runcomfy_async", "batch", str(inp), "--model", T2I,
            "--out", str(tmp_path / "out"), "--base-url", fake.base_url, "--token", TOKEN,
            "--progress", "none", env=env, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        for _ in range(3000):
            if fake.jobs_created >= 6:
                break
            await asyncio.sleep(0.01)
        proc.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(proc.communicate(), 60)
    text = err.decode()
    assert proc.returncode == 130 and "--resume" in text, text
    assert TOKEN not in text


@pytest.mark.parametrize(
    ("endpoint", "status", "body", "content_type"),
    [
        ("status", 401, {"error_code": 401001, "error_message": f"bad token Bearer {TOKEN}"}, None),
        ("status", 200, {"error_code": 403001, "error_message": f"token {TOKEN} not yours"}, None),
        ("status", 422, {"detail": [{"loc": ["body", "x"], "msg": f"saw {TOKEN}"}]}, None),
        ("status", 502, f"<html><title>502 {TOKEN}</title></html>", "text/html"),
        ("status", 500, f"upstream said {TOKEN}", "text/plain"),
        ("status", 200, f'{{"request_id": "{TOKEN}", "sta', None),
        ("result", 400, {"code": 400004, "error": f"account of {TOKEN}"}, None),
        ("submit", 503, {"message": f"Bearer {TOKEN}"}, None),
        ("cancel", 429, {"error_message": f"slow down {TOKEN}"}, None),
    ],
)
async def test_token_echoed_by_the_server_is_redacted(
    endpoint: str, status: int, body: Any, content_type: str | None
) -> None:
    """Whatever error answer echoes the token, the raised error never shows it."""
    async with FakeRunComfy(token=TOKEN, duration_mean=0.02) as fake:
        async with AsyncClient(TOKEN, fake.base_url, retry=ONCE) as client:
            headers = {"Retry-After": "0"} if status == 429 else None
            fake.inject(
                endpoint, status=status, body=body, content_type=content_type, headers=headers
            )
            call: Callable[[], Awaitable[object]] = {
                "status": lambda: client.status("req-1"),
                "result": lambda: client.result("req-1"),
                "submit": lambda: client.submit(T2I, {"prompt": "x"}),
                "cancel": lambda: client.cancel("req-1"),
            }[endpoint]
            with pytest.raises(APIError) as info:
                await call()
    texts = _error_texts(info.value)
    assert [t for t in texts if TOKEN in t] == []
    assert "<redacted>" in str(info.value) or isinstance(info.value, ResponseValidationError)


async def test_failed_job_error_echoing_the_token_is_redacted(tmp_path: Path) -> None:
    """A failed job whose error echoes the token: neither the error nor the journal shows it."""
    journal = tmp_path / "journal.jsonl"
    async with FakeRunComfy(token=TOKEN, duration_mean=0.02) as fake:
        async with AsyncClient(
            TOKEN, fake.base_url, retry=QUICK, poll=PollSettings(first_check=0.02)
        ) as client:
            job = await client.submit(T2I, {"prompt": "x"})
            echo = {"status": "failed", "error": {"message": f"header was 'Bearer {TOKEN}'"}}
            fake.inject("result", body={"request_id": job.request_id, **echo}, times=50)
            with pytest.raises(JobFailedError) as info:
                await job
            batch = client.map(T2I, [{"prompt": "y"}], journal=journal)
            async with batch:
                results = [res async for res in batch]
    assert results[0].status == "failed"
    assert TOKEN not in str(info.value) and TOKEN not in repr(info.value)
    assert TOKEN not in (results[0].error or "")
    assert TOKEN not in journal.read_text()


@pytest.mark.parametrize(
    ("status", "offset", "content_type"),
    [(500, 70, "text/plain"), (200, 110, "application/json"), (503, 1015, "text/plain")],
)
async def test_echoed_token_never_leaks_even_in_part(
    status: int, offset: int, content_type: str
) -> None:
    """A token echoed across a snippet's cut-off: no 8-character piece of it is shown."""
    body = "x" * offset + TOKEN + "y" * 2000
    async with FakeRunComfy(token=TOKEN, duration_mean=0.02) as fake:
        async with AsyncClient(TOKEN, fake.base_url, retry=ONCE) as client:
            fake.inject("status", status=status, body=body, content_type=content_type)
            with pytest.raises(APIError) as info:
                await client.status("req-1")
    shown = " ".join(_error_texts(info.value))
    pieces = {TOKEN[i : i + 8] for i in range(len(TOKEN) - 7)}
    assert [p for p in pieces if p in shown] == []


async def test_output_host_never_gets_authorization(tmp_path: Path) -> None:
    """Downloads after client.run and through client.map carry no Authorization header."""
    async with FakeRunComfy(token=TOKEN, duration_mean=0.02) as fake:
        async with AsyncClient(
            TOKEN, fake.base_url, retry=QUICK, poll=PollSettings(first_check=0.02)
        ) as client:
            res = await client.run(T2I, {"prompt": "a fox", "num_images": 3})
            async with Downloader(tmp_path / "one") as dl:
                await dl.fetch_all(list(res.urls), stem="fox")
            batch = client.map(T2I, _numbered(5), download_to=tmp_path / "many")
            async with batch:
                results = [r async for r in batch]
    assert all(r.ok and r.files for r in results)
    assert fake.output_requests == 3 + 5 and fake.output_auth_headers == 0


def _numbered(n: int) -> list[dict[str, str]]:
    return [{"prompt": f"p {i}"} for i in range(n)]


# -- redirects --------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
async def test_api_redirect_to_another_origin_never_followed(recorder: Recorder, code: int) -> None:
    """A 30x from the API to another origin is an error; that origin never sees a request."""
    async with FakeRunComfy(token=TOKEN, duration_mean=0.05) as fake:
        async with AsyncClient(
            TOKEN, fake.base_url, retry=QUICK, poll=PollSettings(first_check=0.02)
        ) as client:
            where = {"Location": f"{recorder.base}/v1/requests/x/status"}
            fake.inject("submit", status=code, headers=where, body=b"")
            with pytest.raises(SubmissionUncertainError):  # maybe created: never resent
                await client.submit(T2I, {"prompt": "x"})
            job = await client.submit(T2I, {"prompt": "y"})
            fake.inject("result", status=code, headers=where, body=b"", times=1)
            fake.inject("status", status=code, headers=where, body=b"")
            fake.inject("cancel", status=code, headers=where, body=b"")
            for call in (lambda: client.status(job.request_id), lambda: client.cancel("r-1")):
                with pytest.raises(APIStatusError) as info:
                    await call()
                assert info.value.status_code == code
            with pytest.raises(APIStatusError):  # the poller met the redirect: not followed
                await job
        assert fake.output_requests == 0 and fake.requests["submit"] == 2
    assert recorder.requests == []


# -- insecure base URLs -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://model-api.runcomfy.net",
        "http://10.0.0.5:8787",
        "http://169.254.169.254",
        "http://localhost.example.com",
        "http://127.0.0.1.nip.io",
        "HTTP://EXAMPLE.COM/v1",
        "http://[2001:db8::1]:80",
    ],
)
async def test_http_base_url_to_remote_host_refused_before_any_connection(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """http:// to a host that is not loopback: ConfigError from the constructor, no session."""
    with pytest.raises(ConfigError, match="clear text") as info:
        AsyncClient(TOKEN, url)  # raised before a session (and so a connection) can exist
    assert TOKEN not in str(info.value)
    monkeypatch.setenv("RUNCOMFY_BASE_URL", url)
    with pytest.raises(ConfigError, match="clear text"):
        AsyncClient(TOKEN)
    assert AsyncClient(TOKEN, url, allow_insecure=True).base_url.lower().startswith("http://")


async def test_cli_refuses_http_to_a_remote_host(tmp_path: Path) -> None:
    """The CLI exits 3 with the reason for an http:// base URL to a remote host."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "runcomfy_async", "status", "req-1", "--base-url",
        "http://10.255.255.1:8787", env=_env(), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 3 and "clear text" in err.decode()
    assert TOKEN not in err.decode()


# -- bounded answers --------------------------------------------------------------------------


async def test_oversized_json_answer_refused_by_content_length() -> None:
    """An answer whose Content-Length passes max_response_bytes is refused, naming the cap."""
    async with FakeRunComfy(token=TOKEN) as fake:
        async with AsyncClient(TOKEN, fake.base_url, retry=ONCE, max_response_bytes=4096) as c:
            fake.inject("status", body={"status": "completed", "pad": "x" * 100_000})
            with pytest.raises(ResponseValidationError) as info:
                await c.status("req-1")
    assert "4096-byte cap" in str(info.value) and "100" in str(info.value)
    assert fake.requests["status"] == 1


async def test_oversized_chunked_json_answer_not_read_whole(recorder: Recorder) -> None:
    """A 64 MiB chunked answer is cut off at the cap: the client stops reading long before."""
    cap = 256 * 1024
    async with AsyncClient(TOKEN, recorder.base, retry=ONCE, max_response_bytes=cap) as c:
        with pytest.raises(ResponseValidationError) as info:
            await c.status("req-1")
    assert f"{cap}-byte cap" in str(info.value)
    await asyncio.wait_for(recorder.stream_done.wait(), 30)
    assert len(recorder.requests) == 1
    assert recorder.sent_bytes < 32 * 2**20  # the server could not push the rest


async def test_compressed_answer_is_capped_after_decompression() -> None:
    """A 32 KB gzip answer that inflates to 16 MiB is refused at max_response_bytes."""
    inflated = b'{"status": "completed", "pad": "' + b"x" * (16 * 2**20) + b'"}'
    bomb = gzip.compress(inflated, 9)
    seen: list[str | None] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Accept-Encoding"))
        headers = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
        return web.Response(body=bomb, headers=headers)

    app = web.Application()
    app.router.add_get("/v1/requests/{rid}/status", handler)
    runner, port = await listen(app, "127.0.0.1", 0)
    cap = 2**20
    try:
        async with AsyncClient(
            TOKEN, f"http://127.0.0.1:{port}", retry=ONCE, max_response_bytes=cap
        ) as c:
            assert len(bomb) < cap
            with pytest.raises(ResponseValidationError, match=f"{cap}-byte cap"):
                await c.status("req-1")
    finally:
        await runner.cleanup()
    assert len(seen) == 1 and "gzip" in (seen[0] or "")  # the client asked for gzip itself


# -- downloads --------------------------------------------------------------------------------


async def test_hostile_keys_keep_downloads_inside_the_output_folder(tmp_path: Path) -> None:
    """Keys like ../../x or /etc/passwd name files inside the output folder only."""
    keys = [
        "../../x",
        "/etc/passwd",
        "..",
        "a/../../b",
        "C:\\Windows\\evil",
        ".hidden",
        "../" * 30 + "tmp/escape",
        "nul\x00byte",
        "~/.ssh/id_rsa",
    ]
    out = tmp_path / "deep" / "out"
    async with FakeRunComfy(token=TOKEN, duration_mean=0.02) as fake:
        async with AsyncClient(
            TOKEN, fake.base_url, retry=QUICK, poll=PollSettings(first_check=0.02)
        ) as client:
            inputs = [(k, {"prompt": f"p {i}"}) for i, k in enumerate(keys)]
            batch = client.map(T2I, inputs, download_to=out, journal=out / "journal.jsonl")
            async with batch:
                results = [r async for r in batch]
    assert sorted(r.key for r in results if r.key) == sorted(keys)
    assert all(r.ok and len(r.files) == 1 for r in results)
    root = out.resolve()
    for r in results:
        path = (out / r.files[0].path).resolve()
        assert path.parent == root and path.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deep"]
    assert sorted(p.name for p in (tmp_path / "deep").iterdir()) == ["out"]
    assert not [p for p in out.iterdir() if p.is_dir() or p.name.startswith(".")]


async def test_distinct_keys_never_share_an_output_file(tmp_path: Path) -> None:
    """Two inputs whose keys differ only in unsafe characters keep both outputs."""
    async with FakeRunComfy(token=TOKEN, duration_mean=0.02) as fake:
        async with AsyncClient(
            TOKEN, fake.base_url, retry=QUICK, poll=PollSettings(first_check=0.02)
        ) as client:
            inputs = [
                ("cat/1", {"prompt": "a"}),
                ("cat_1", {"prompt": "b"}),
                ("cat 1", {"prompt": "c"}),
            ]
            batch = client.map(T2I, inputs, download_to=tmp_path, max_in_flight=1)
            async with batch:
                results = [r async for r in batch]
    assert all(r.ok for r in results)
    paths = [r.files[0].path for r in results]
    assert len(set(paths)) == 3, paths
    for r in results:
        assert (tmp_path / r.files[0].path).stat().st_size == r.files[0].bytes


class _Chunked:
    """An origin streaming 64 MiB without Content-Length, for the download cap."""

    def __init__(self) -> None:
        self.sent = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "image/png"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        try:
            for _ in range(1024):
                await resp.write(b"\x89" * 65536)
                self.sent += 65536
            await resp.write_eof()
        except (ConnectionError, RuntimeError):
            pass
        return resp


async def test_download_over_cap_aborted_after_partial_write_and_removed(tmp_path: Path) -> None:
    """A stream passing max_bytes after MiBs reached the disk is aborted; no partial file stays."""
    origin = _Chunked()
    app = web.Application()
    app.router.add_get("/big.png", origin.handle)
    runner, port = await listen(app, "127.0.0.1", 0)
    cap = 3 * 2**20  # past the downloader's 1 MiB write batches: part of it is on disk
    try:
        async with Downloader(tmp_path, max_bytes=cap, retry=QUICK) as dl:
            with pytest.raises(DownloadError, match=f"exceeds the {cap}-byte cap") as info:
                await dl.fetch(f"http://127.0.0.1:{port}/big.png", stem="big")
    finally:
        await runner.cleanup()
    assert not info.value.retryable and dl.files == 0
    assert list(tmp_path.iterdir()) == []  # neither big-0.png nor a .part file
    # The abort stops the stream: what the server got rid of is the cap plus what loopback
    # socket buffers absorbed, far below the 64 MiB it had to send.
    assert cap <= origin.sent < 32 * 2**20
