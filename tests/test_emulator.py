"""Tests of the RunComfy Model API emulator, over real HTTP on loopback."""

from __future__ import annotations

import asyncio
import importlib.util
import random
import re
import struct
import time
import zlib
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any

import aiohttp
import msgspec
import pytest
from yarl import URL

from runcomfy_async._emulator._jobs import FakeJob, JobScheduler
from runcomfy_async.testing import FakeRunComfy, draw_duration

MODEL = "google/nano-banana-2/text-to-image"
OTHER_MODEL = "acme/some-model/v1"
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00$")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
AUTH = {"Authorization": "Bearer any-token"}


def emulator(**knobs: Any) -> FakeRunComfy:
    """An emulator whose catalog also lists OTHER_MODEL, a schema-less model these tests use."""
    return FakeRunComfy(extra_models=[{"model_id": OTHER_MODEL}], **knobs)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """An aiohttp session with a bearer token (any token passes unless the test sets one)."""
    async with aiohttp.ClientSession(headers=AUTH) as session:
        yield session


async def call(
    http: aiohttp.ClientSession, method: str, url: str | URL, **kw: Any
) -> tuple[int, Any, aiohttp.ClientResponse]:
    """Send one request; return status, decoded JSON body (or raw bytes) and the response."""
    async with http.request(method, url, **kw) as resp:
        raw = await resp.read()
    try:
        body: Any = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        body = raw
    return resp.status, body, resp


async def submit(
    http: aiohttp.ClientSession, fake: FakeRunComfy, inputs: Any = None, model: str = OTHER_MODEL
) -> dict[str, Any]:
    """Submit a job and return the 200 body."""
    url = f"{fake.base_url}/v1/models/{model}"
    status, body, _ = await call(http, "POST", url, json={} if inputs is None else inputs)
    assert status == 200, body
    assert isinstance(body, dict)
    return body


async def get_status(http: aiohttp.ClientSession, fake: FakeRunComfy, rid: str) -> Any:
    """Fetch a job's status body."""
    status, body, _ = await call(http, "GET", f"{fake.base_url}/v1/requests/{rid}/status")
    assert status == 200, body
    return body


@pytest.mark.anyio
async def test_round_trip_submit_status_result_cancel(http: aiohttp.ClientSession) -> None:
    """A job goes submit -> in_progress -> completed -> succeeded, with absolute URLs."""
    # Half a second: long enough that the first looks find it running on a loaded machine.
    async with emulator(duration_mean=0.5) as fake:
        assert fake.base_url == f"http://127.0.0.1:{fake.port}"
        job = await submit(http, fake, {"prompt": "a fox"}, model=MODEL)
        rid = job["request_id"]
        base = f"{fake.base_url}/v1/requests/{rid}"
        assert job == {
            "request_id": rid,
            "status_url": f"{base}/status",
            "result_url": f"{base}/result",
            "cancel_url": f"{base}/cancel",
        }
        assert fake.jobs[rid].inputs == {"prompt": "a fox"}
        assert fake.jobs[rid].model_id == MODEL

        first = await get_status(http, fake, rid)
        assert first == {
            "request_id": rid,
            "status": "in_progress",
            "status_url": f"{base}/status",
            "result_url": f"{base}/result",
        }
        status, pending, _ = await call(http, "GET", job["result_url"])
        assert (status, pending) == (200, {"request_id": rid, "status": "in_progress"})

        await asyncio.sleep(0.55)
        assert (await get_status(http, fake, rid))["status"] == "completed"
        status, result, resp = await call(http, "GET", job["result_url"])
        assert status == 200
        assert resp.content_type == "application/json"
        assert result["status"] == "succeeded"
        assert result["output"] == {"image": f"{fake.output_base_url}/outputs/{rid}/0.png"}
        assert ISO.match(result["created_at"]) and ISO.match(result["finished_at"])
        assert result["finished_at"] > result["created_at"]
        assert "error" not in result and "error_code" not in result

        status, cancel, _ = await call(http, "POST", job["cancel_url"])
        assert status == 202
        assert cancel == {"request_id": rid, "status": "completed", "outcome": "not_cancellable"}
        assert fake.requests == {"submit": 1, "status": 2, "result": 2, "cancel": 1}
        assert fake.responses == {200: 5, 202: 1}
        assert fake.job_states() == {"succeeded": 1}
        assert fake.jobs_created == 1


@pytest.mark.anyio
async def test_urls_follow_the_request_host(http: aiohttp.ClientSession) -> None:
    """The *_url fields use the Host the client connected with."""
    async with emulator() as fake:
        url = f"http://localhost:{fake.port}/v1/models/{OTHER_MODEL}"
        _, body, _ = await call(http, "POST", url, json={})
        assert body["status_url"].startswith(f"http://localhost:{fake.port}/v1/requests/")


def test_lognormal_durations_have_the_requested_mean() -> None:
    """Lognormal draws average to duration_mean; sigma 0 gives exactly the mean."""
    rng = random.Random(7)
    draws = [draw_duration(rng, 2.0, 0.6) for _ in range(2000)]
    assert abs(sum(draws) / len(draws) - 2.0) < 0.15
    assert len(set(draws)) > 1900
    assert {draw_duration(rng, 0.3, 0.0) for _ in range(10)} == {0.3}


@pytest.mark.anyio
async def test_concurrency_queue_positions_and_fifo_start(http: aiohttp.ClientSession) -> None:
    """With one slot, jobs queue FIFO and each starts exactly when the previous one ended."""
    # 0.3 s a job: long enough that the first looks find them as submitted on a loaded machine.
    async with emulator(concurrency=1, duration_mean=0.3) as fake:
        rids = [(await submit(http, fake))["request_id"] for _ in range(3)]
        bodies = [await get_status(http, fake, rid) for rid in rids]
        assert [b["status"] for b in bodies] == ["in_progress", "in_queue", "in_queue"]
        assert "queue_position" not in bodies[0]
        assert [b.get("queue_position") for b in bodies[1:]] == [0, 1]
        assert fake.job_states() == {"in_progress": 1, "in_queue": 2}

        await asyncio.sleep(0.95)
        assert [(await get_status(http, fake, r))["status"] for r in rids] == ["completed"] * 3
        jobs = [fake.jobs[r] for r in rids]
        assert jobs[1].started == jobs[0].ends
        assert jobs[2].started == jobs[1].ends
        finishes = [fake.finished_at_monotonic(r) for r in rids]
        assert finishes == [job.ends for job in jobs]
        assert fake.finish_times == dict(zip(rids, finishes, strict=True))


def test_virtual_time_queue_with_cancels() -> None:
    """Queued jobs start when a slot frees, in FIFO order, skipping cancelled ones."""
    sched = JobScheduler(2, "completed")
    jobs = []
    for i, duration in enumerate([1.0, 2.0, 1.0, 1.0, 1.0]):
        job = FakeJob(
            sched,
            request_id=str(i),
            model_id="m",
            inputs={},
            created_at=datetime.now(timezone.utc),
            created=0.0,
            duration=duration,
            will_fail=False,
            num_images=1,
        )
        sched.admit(job, 0.0)
        jobs.append(job)
    assert [sched.state(j, 0.5) for j in jobs] == ["in_progress"] * 2 + ["in_queue"] * 3
    assert [sched.queue_position(j) for j in jobs[2:]] == [0, 1, 2]
    assert sched.cancel(jobs[3], 0.5) and not sched.cancel(jobs[0], 0.5)
    assert sched.queue_position(jobs[4]) == 1
    # t=1: job 0 ends, job 2 starts at 1.0; t=2: jobs 1 and 2 end, job 4 starts at 2.0.
    assert [sched.state(j, 2.5) for j in jobs] == [
        "succeeded",
        "succeeded",
        "succeeded",
        "cancelled",
        "in_progress",
    ]
    assert (jobs[2].started, jobs[4].started, jobs[3].started) == (1.0, 2.0, None)
    assert sched.public_status(jobs[4], 3.0) == "completed"


@pytest.mark.anyio
async def test_cancel_queued_job_but_not_running_one(http: aiohttp.ClientSession) -> None:
    """Cancel answers 202: a queued job is cancelled once; a repeat or a running one is not."""
    async with emulator(concurrency=1, duration_mean=5.0) as fake:
        running, queued, later = [(await submit(http, fake))["request_id"] for _ in range(3)]
        cancel = f"{fake.base_url}/v1/requests/{{}}/cancel"

        status, body, _ = await call(http, "POST", cancel.format(queued))
        assert (status, body) == (
            202,
            {"request_id": queued, "status": "cancelled", "outcome": "cancelled"},
        )
        status, body, _ = await call(http, "POST", cancel.format(queued))
        assert (status, body) == (
            202,
            {"request_id": queued, "status": "cancelled", "outcome": "not_cancellable"},
        )
        status, body, _ = await call(http, "POST", cancel.format(running))
        assert (status, body) == (
            202,
            {"request_id": running, "status": "in_progress", "outcome": "not_cancellable"},
        )
        assert (await get_status(http, fake, queued))["status"] == "cancelled"
        assert (await get_status(http, fake, later))["queue_position"] == 0
        _, result, _ = await call(http, "GET", f"{fake.base_url}/v1/requests/{queued}/result")
        assert result["status"] == "cancelled" and "output" not in result
        assert fake.job_states() == {"in_progress": 1, "cancelled": 1, "in_queue": 1}
        assert fake.finished_at_monotonic(running) is None
        assert fake.finished_at_monotonic(queued) == fake.jobs[queued].cancelled_at


@pytest.mark.anyio
async def test_unknown_ids_and_routes_are_404(http: aiohttp.ClientSession) -> None:
    """Unknown request ids and routes get 404 with error code 404001."""
    async with emulator() as fake:
        for method, tail in (("GET", "status"), ("GET", "result"), ("POST", "cancel")):
            url = f"{fake.base_url}/v1/requests/nope/{tail}"
            status, body, _ = await call(http, method, url)
            assert (status, body["error_code"]) == (404, 404001)
        for method, path in (("GET", "/v1/requests/x"), ("GET", "/v2/x"), ("DELETE", "/")):
            status, body, _ = await call(http, method, f"{fake.base_url}{path}")
            assert (status, body["error_code"]) == (404, 404001)


@pytest.mark.anyio
async def test_pending_result_modes(http: aiohttp.ClientSession) -> None:
    """pending_result='400005' answers 400/400005 before the job ends."""
    async with emulator(duration_mean=5.0, pending_result="400005") as fake:
        rid = (await submit(http, fake))["request_id"]
        status, body, _ = await call(http, "GET", f"{fake.base_url}/v1/requests/{rid}/result")
        assert status == 400
        assert body == {"error_code": 400005, "error_message": "result not ready"}


@pytest.mark.anyio
async def test_failed_jobs_and_failed_status_variant(http: aiohttp.ClientSession) -> None:
    """A failed job shows failed_status on /status and an error object on /result."""
    for failed_status in ("completed", "failed"):
        async with emulator(
            duration_mean=0.0, failure_rate=1.0, failed_status=failed_status
        ) as fake:
            rid = (await submit(http, fake))["request_id"]
            assert (await get_status(http, fake, rid))["status"] == failed_status
            url = f"{fake.base_url}/v1/requests/{rid}/result"
            _, body, _ = await call(http, "GET", url)
            assert body["status"] == "failed"
            assert body["error"]["type"] == "generation_error"
            assert "output" not in body
            assert fake.job_states() == {"failed": 1}


@pytest.mark.anyio
async def test_seed_model_validation_answers_422(http: aiohttp.ClientSession) -> None:
    """Bad inputs for a seed model get 422 with a FastAPI-style detail."""
    if importlib.util.find_spec("runcomfy_async.models") is None:
        pytest.skip("runcomfy_async.models is not written yet")
    async with emulator() as fake:
        url = f"{fake.base_url}/v1/models/{MODEL}"
        bad = {"prompt": "x", "aspect_ratio": "7:7"}
        status, body, _ = await call(http, "POST", url, json=bad)
        assert status == 422
        assert body["error_code"] == 422001
        assert body["error_message"] == "Validation Error"
        [problem] = body["detail"]
        assert problem["loc"] == ["body", "aspect_ratio"]
        assert problem["type"] == "value_error"
        assert "16:9" in problem["msg"]
        assert fake.jobs_created == 0
    async with emulator(validate=False) as fake:
        status, _, _ = await call(http, "POST", f"{fake.base_url}/v1/models/{MODEL}", json=bad)
        assert status == 200


@pytest.mark.anyio
async def test_bad_model_ids_and_bodies(http: aiohttp.ClientSession) -> None:
    """Malformed model ids get 400001, non-object bodies 422, oversize bodies 413."""
    async with emulator(max_body_bytes=100) as fake:
        for raw_path in ("/v1/models/a/../b", "/v1/models/bad%20id", "/v1/models/a//b"):
            raw_url = URL(fake.base_url + raw_path, encoded=True)
            status, body, _ = await call(http, "POST", raw_url, json={})
            assert (status, body["error_code"]) == (400, 400001), raw_path
        url = f"{fake.base_url}/v1/models/{OTHER_MODEL}"
        for data in (b"[1, 2]", b"{not json"):
            status, body, _ = await call(http, "POST", url, data=data)
            assert (status, body["error_code"]) == (422, 422001)
        status, _, _ = await call(http, "POST", url, data=b"")
        assert status == 200
        status, body, _ = await call(http, "POST", url, json={"prompt": "x" * 200})
        assert (status, body["error_code"]) == (413, 413001)
        assert fake.jobs_created == 1


@pytest.mark.anyio
async def test_num_images_gives_an_images_list(http: aiohttp.ClientSession) -> None:
    """num_images > 1 yields output.images; num_outputs_key='images' always yields a list."""
    async with emulator(duration_mean=0.0) as fake:
        rid = (await submit(http, fake, {"prompt": "x", "num_images": 3}))["request_id"]
        _, body, _ = await call(http, "GET", f"{fake.base_url}/v1/requests/{rid}/result")
        assert body["output"] == {
            "images": [f"{fake.output_base_url}/outputs/{rid}/{i}.png" for i in range(3)]
        }
    async with emulator(duration_mean=0.0, num_outputs_key="images") as fake:
        rid = (await submit(http, fake))["request_id"]
        _, body, _ = await call(http, "GET", f"{fake.base_url}/v1/requests/{rid}/result")
        assert body["output"] == {"images": [f"{fake.output_base_url}/outputs/{rid}/0.png"]}


@pytest.mark.anyio
async def test_outputs_are_real_pngs_and_auth_headers_are_counted(
    http: aiohttp.ClientSession,
) -> None:
    """The output origin serves PNGs and counts requests carrying Authorization."""
    async with emulator(duration_mean=0.0) as fake:
        assert fake.output_port != fake.port
        rid = (await submit(http, fake, {"num_images": 2}))["request_id"]
        _, result, _ = await call(http, "GET", f"{fake.base_url}/v1/requests/{rid}/result")
        first, second = result["output"]["images"]
        async with aiohttp.ClientSession() as bare, bare.get(first) as resp:
            assert resp.status == 200 and resp.content_type == "image/png"
            png = await resp.read()
        assert png.startswith(PNG_SIGNATURE)
        assert struct.unpack(">II", png[16:24]) == (64, 64)
        idat_len = struct.unpack(">I", png[33:37])[0]
        assert len(zlib.decompress(png[41 : 41 + idat_len])) == 64 * (1 + 64 * 3)
        async with http.get(second, headers={"Authorization": "Bearer leaked"}) as resp:
            other = await resp.read()
        assert other.startswith(PNG_SIGNATURE) and other != png
        assert (fake.output_requests, fake.output_auth_headers) == (2, 1)
        missing = f"{fake.output_base_url}/outputs/{rid}/2.png"
        assert (await call(http, "GET", missing))[0] == 404
        assert (await call(http, "GET", f"{fake.output_base_url}/outputs/nope/0.png"))[0] == 404
        fake.inject("output", status=403, body=b"denied", content_type="text/plain")
        assert (await call(http, "GET", first))[0] == 403
        assert fake.output_responses == {200: 2, 404: 2, 403: 1}
        assert fake.requests["status"] == 0 and fake.responses == {200: 2}


@pytest.mark.anyio
async def test_restart_keeps_ports_and_jobs(http: aiohttp.ClientSession) -> None:
    """stop() then start() serves again on the same ports with the same jobs."""
    fake = emulator(duration_mean=0.0)
    await fake.start()
    try:
        port, output_port = fake.port, fake.output_port
        rid = (await submit(http, fake))["request_id"]
        await fake.stop()
        assert not fake.running
        with pytest.raises(aiohttp.ClientConnectionError):
            await call(http, "GET", f"{fake.base_url}/v1/requests/{rid}/status")
        await fake.start()
        assert (fake.port, fake.output_port) == (port, output_port)
        assert (await get_status(http, fake, rid))["status"] == "completed"
        assert fake.requests["submit"] == 1 and fake.jobs_created == 1
        with pytest.raises(RuntimeError):
            await fake.start()
    finally:
        await fake.stop()
        await fake.stop()


@pytest.mark.anyio
async def test_stop_is_quick_and_clean_with_a_request_in_flight(
    http: aiohttp.ClientSession,
) -> None:
    """Stopping cancels a long in-flight handler promptly and leaves no task behind."""
    before = asyncio.all_tasks()
    fake = emulator()
    await fake.start()
    fake.inject("status", delay=30.0)
    pending = asyncio.ensure_future(call(http, "GET", f"{fake.base_url}/v1/requests/x/status"))
    await asyncio.sleep(0.1)
    start = time.monotonic()
    await fake.stop()
    assert time.monotonic() - start < 2.0
    with pytest.raises(aiohttp.ClientError):
        await pending
    await asyncio.sleep(0)
    assert asyncio.all_tasks() <= before


@pytest.mark.anyio
async def test_serve_forever_serves_until_cancelled(http: aiohttp.ClientSession) -> None:
    """serve_forever() runs the listeners until its task is cancelled, then stops them."""
    fake = emulator()
    task = asyncio.ensure_future(fake.serve_forever())
    for _ in range(200):
        if fake.running:
            break
        await asyncio.sleep(0.01)
    await submit(http, fake)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not fake.running
    await fake.start()  # the CLI starts first (to print the URLs), then serves
    task = asyncio.ensure_future(fake.serve_forever())
    await submit(http, fake)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not fake.running and fake.jobs_created == 2


def test_knobs_are_validated() -> None:
    """Out-of-range knobs raise ValueError."""
    bad: list[dict[str, Any]] = [
        {"failure_rate": 1.5},
        {"error_rate": -0.1},
        {"duration_mean": -1.0},
        {"duration_sigma": float("nan")},
        {"concurrency": 0},
        {"failed_status": "succeeded"},
        {"pending_result": "404"},
        {"rate_limit": 0.0},
        {"rate_burst": 0},
        {"fault_endpoints": ["status", "download"]},
        {"fault_endpoints": "status"},
        {"num_outputs_key": "videos"},
        {"max_body_bytes": 0},
        {"port": 70000},
    ]
    for knobs in bad:
        with pytest.raises(ValueError):
            emulator(**knobs)
    fake = emulator()
    with pytest.raises(ValueError):
        fake.inject("download")
    with pytest.raises(ValueError):
        fake.inject("status", times=0)


@pytest.mark.anyio
async def test_model_durations_per_model() -> None:
    """model_durations gives each listed model its own job length; others keep the default."""
    fast, slow = "google/nano-banana-2-lite/text-to-image", "google/nano-banana/pro/text-to-image"
    async with (
        FakeRunComfy(
            duration_mean=1.0, model_durations={fast: (0.1, 0.0), slow: (5.0, 0.0)}
        ) as fake,
        aiohttp.ClientSession(headers=AUTH) as http,
    ):
        for model in (fast, slow, "google/nano-banana-2/text-to-image"):
            async with http.post(f"{fake.base_url}/v1/models/{model}", json={"prompt": "x"}) as r:
                assert r.status == 200
    durations = {job.model_id: job.duration for job in fake.jobs.values()}
    assert durations == {fast: 0.1, slow: 5.0, "google/nano-banana-2/text-to-image": 1.0}
