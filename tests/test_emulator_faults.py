"""Tests of the emulator's rate limit, scripted answers, random faults and token check."""

from __future__ import annotations

import time

import aiohttp
import pytest

from tests.test_emulator import OTHER_MODEL, call, emulator, http, submit

__all__ = ["http"]  # the fixture, re-exported so pytest finds it here


@pytest.mark.anyio
async def test_rate_limit_answers_429_with_retry_after(http: aiohttp.ClientSession) -> None:
    """Beyond the bucket the API answers 429 with an integer Retry-After of at least 1."""
    async with emulator(rate_limit=2.0, record_arrivals=True) as fake:
        url = f"{fake.base_url}/v1/requests/x/status"
        statuses = [(await call(http, "GET", url))[0] for _ in range(3)]
        assert statuses == [404, 404, 429]
        _, body, resp = await call(http, "GET", url)
        assert resp.status == 429 and body["error_code"] == 429001
        assert resp.headers["Retry-After"] == "1"
        assert fake.rate_limited == 2
        assert fake.requests["status"] == 4
        assert [endpoint for _, endpoint in fake.arrivals] == ["status"] * 4
    async with emulator(rate_limit=1.0, rate_burst=1, retry_after=False) as fake:
        url = f"{fake.base_url}/v1/requests/x/status"
        await call(http, "GET", url)
        status, _, resp = await call(http, "GET", url)
        assert status == 429 and "Retry-After" not in resp.headers


@pytest.mark.anyio
async def test_inject_reset_after_submit_still_creates_the_job(
    http: aiohttp.ClientSession,
) -> None:
    """inject(after=True, reset=True): the client sees a reset but the job exists."""
    async with emulator() as fake:
        fake.inject("submit", reset=True, after=True)
        with pytest.raises(aiohttp.ClientError):
            await call(http, "POST", f"{fake.base_url}/v1/models/{OTHER_MODEL}", json={"a": 1})
        assert fake.jobs_created == 1
        [job] = fake.jobs.values()
        assert job.inputs == {"a": 1}
        assert fake.responses == {0: 1}

        fake.inject("submit", reset=True)
        with pytest.raises(aiohttp.ClientError):
            await call(http, "POST", f"{fake.base_url}/v1/models/{OTHER_MODEL}", json={})
        assert fake.jobs_created == 1
        assert fake.requests["submit"] == 2
        await submit(http, fake)  # scripts used up: back to normal
        assert fake.jobs_created == 2


@pytest.mark.anyio
async def test_inject_html_503_then_normal(http: aiohttp.ClientSession) -> None:
    """An injected HTML 503 is served `times` times, with its headers, then normal answers."""
    async with emulator(duration_mean=0.0) as fake:
        rid = (await submit(http, fake))["request_id"]
        page = "<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>"
        fake.inject(
            "status", status=503, body=page, content_type="text/html", headers={"X-A": "1"}, times=2
        )
        fake.inject("status", status=200, body={"request_id": rid, "status": "weird"})
        assert fake.pending_injections("status") == 3
        url = f"{fake.base_url}/v1/requests/{rid}/status"
        for _ in range(2):
            status, body, resp = await call(http, "GET", url)
            assert (status, resp.content_type, resp.headers["X-A"]) == (503, "text/html", "1")
            assert body == page.encode()
        assert (await call(http, "GET", url))[1]["status"] == "weird"
        assert (await call(http, "GET", url))[1]["status"] == "completed"
        fake.inject("result", status=500)
        status, body, _ = await call(http, "GET", f"{fake.base_url}/v1/requests/{rid}/result")
        assert (status, body["error_code"]) == (500, 500001)


@pytest.mark.anyio
async def test_inject_delay(http: aiohttp.ClientSession) -> None:
    """A scripted delay holds the answer back."""
    async with emulator() as fake:
        fake.inject("status", status=404, delay=0.2)
        start = time.monotonic()
        status, _, _ = await call(http, "GET", f"{fake.base_url}/v1/requests/x/status")
        assert status == 404 and time.monotonic() - start >= 0.2


@pytest.mark.anyio
async def test_random_faults_hit_only_fault_endpoints(http: aiohttp.ClientSession) -> None:
    """error/reset/malformed rates of 1 fault every status call but leave submit alone."""
    async with emulator(error_rate=1.0, seed=3) as fake:
        rid = (await submit(http, fake))["request_id"]
        seen = set()
        for _ in range(12):
            status, body, resp = await call(
                http, "GET", f"{fake.base_url}/v1/requests/{rid}/status"
            )
            assert status in (502, 503)
            seen.add(resp.content_type)
            if resp.content_type == "application/json":
                assert body["error_code"] == 500001
        assert seen == {"application/json", "text/html"}
    async with emulator(reset_rate=1.0) as fake:
        rid = (await submit(http, fake))["request_id"]
        with pytest.raises(aiohttp.ClientError):
            await call(http, "GET", f"{fake.base_url}/v1/requests/{rid}/status")
        # aiohttp resends an idempotent request once when a reused connection drops.
        assert fake.responses[0] == fake.requests["status"] in (1, 2)
    async with emulator(malformed_rate=1.0) as fake:
        rid = (await submit(http, fake))["request_id"]
        status, body, _ = await call(http, "GET", f"{fake.base_url}/v1/requests/{rid}/status")
        assert status == 200 and isinstance(body, bytes)
    async with emulator(slow_rate=1.0, slow_seconds=0.2, fault_endpoints=["cancel"]) as fake:
        rid = (await submit(http, fake))["request_id"]
        start = time.monotonic()
        status, _, _ = await call(http, "POST", f"{fake.base_url}/v1/requests/{rid}/cancel")
        assert status == 202 and time.monotonic() - start >= 0.2


@pytest.mark.anyio
async def test_token_is_enforced(http: aiohttp.ClientSession) -> None:
    """With a token set, missing or wrong bearer tokens get 401 with code 401001."""
    async with emulator(token="s3cret") as fake:
        url = f"{fake.base_url}/v1/models/{OTHER_MODEL}"
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            status, body, _ = await call(http, "POST", url, json={}, headers=headers)
            assert (status, body["error_code"]) == (401, 401001)
            assert "s3cret" not in str(body)
        good = {"Authorization": "Bearer s3cret"}
        status, _, _ = await call(http, "POST", url, json={}, headers=good)
        assert status == 200
        assert fake.jobs_created == 1 and fake.responses == {401: 3, 200: 1}
