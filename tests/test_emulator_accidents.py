"""Tests of the emulator's accident knobs: balance, credentials, outage, slow drip, state file."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import aiohttp
import pytest

from runcomfy_async._emulator._png import output_png
from runcomfy_async.testing import FakeRunComfy
from tests.test_emulator import MODEL, OTHER_MODEL, call, emulator, get_status, http, submit

__all__ = ["http"]  # the fixture, re-exported so pytest finds it here


async def wait_state(fake: FakeRunComfy, rid: str, state: str, limit: float = 30.0) -> None:
    """Wait (in-process, no HTTP) until the job reaches ``state``; a generous deadline."""
    deadline = time.monotonic() + limit
    while fake.jobs[rid].state != state:
        assert time.monotonic() < deadline, f"{rid} stuck in {fake.jobs[rid].state}"
        await asyncio.sleep(0.02)


# ------------------------------------------------------------------------------------ balance


@pytest.mark.anyio
async def test_an_empty_balance_refuses_submits_until_topped_up(
    http: aiohttp.ClientSession,
) -> None:
    """Beyond the balance a submit gets 400/400002 and creates no job; top_up makes room."""
    async with emulator(balance=2) as fake:
        for _ in range(2):
            await submit(http, fake)
        url = f"{fake.base_url}/v1/models/{MODEL}"
        status, body, _ = await call(http, "POST", url, json={"prompt": "x"})
        assert (status, body["error_code"]) == (400, 400002)
        # An invalid submit is refused for its inputs first, and never touches the balance.
        status, body, _ = await call(http, "POST", url, json={"prompt": "x", "num_images": 9})
        assert status == 422
        assert (fake.jobs_created, fake.balance, fake.balance_refusals) == (2, 0, 1)
        assert repr(fake) == f"<FakeRunComfy {fake.base_url} jobs=2 balance=0>"
        fake.top_up(1)
        assert fake.balance == 1
        await submit(http, fake)
        assert (fake.jobs_created, fake.balance) == (3, 0)
        assert fake.stats()["balance_refusals"] == 1


@pytest.mark.anyio
async def test_balance_error_402_and_top_up_checks(http: aiohttp.ClientSession) -> None:
    """balance_error='402' answers HTTP 402; top_up refuses nonsense and unlimited balances."""
    async with emulator(balance=0, balance_error="402") as fake:
        status, body, _ = await call(
            http, "POST", f"{fake.base_url}/v1/models/{OTHER_MODEL}", json={}
        )
        assert (status, body["error_code"]) == (402, 402001)
        assert fake.jobs_created == 0
        with pytest.raises(ValueError):
            fake.top_up(0)
    with pytest.raises(ValueError):
        emulator().top_up(5)


# -------------------------------------------------------------------------------- credentials


@pytest.mark.anyio
async def test_revoke_after_refuses_every_endpoint_while_jobs_run(
    http: aiohttp.ClientSession,
) -> None:
    """After revoke_after requests every endpoint answers 401; jobs run on; restore heals."""
    good = {"Authorization": "Bearer s3cret"}
    async with emulator(token="s3cret", revoke_after=2, duration_mean=0.3) as fake:
        status, body, _ = await call(
            http, "POST", f"{fake.base_url}/v1/models/{OTHER_MODEL}", json={}, headers=good
        )
        assert status == 200
        rid = body["request_id"]
        status, _, _ = await call(
            http, "GET", f"{fake.base_url}/v1/requests/{rid}/status", headers=good
        )
        assert status == 200 and fake.token_revoked  # revoked once 2 were served
        base = f"{fake.base_url}/v1/requests/{rid}"
        for method, url in (
            ("GET", f"{base}/status"),
            ("GET", f"{base}/result"),
            ("POST", f"{base}/cancel"),
            ("POST", f"{fake.base_url}/v1/models/{OTHER_MODEL}"),
        ):
            status, body, _ = await call(http, method, url, headers=good)
            assert (status, body["error_code"]) == (401, 401001), url
            assert "s3cret" not in str(body)
        assert fake.token_revoked and fake.auth_refusals == 4 and fake.jobs_created == 1
        await wait_state(fake, rid, "succeeded")  # the server finished it meanwhile
        fake.restore_token()
        status, body, _ = await call(http, "GET", f"{base}/result", headers=good)
        assert status == 200 and body["status"] == "succeeded"


@pytest.mark.anyio
async def test_auth_error_400004_missing_header_and_revoke_token(
    http: aiohttp.ClientSession,
) -> None:
    """auth_error='400004' answers HTTP 400/400004; a missing header is refused; revoke later."""
    async with emulator(auth_error="400004") as fake:
        url = f"{fake.base_url}/v1/models/{OTHER_MODEL}"
        async with aiohttp.ClientSession() as bare:
            for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "Basic abc"}):
                status, body, _ = await call(bare, "POST", url, json={}, headers=headers)
                assert (status, body["error_code"]) == (400, 400004), headers
        fake.revoke_token(after=1)
        await submit(http, fake)
        status, body, _ = await call(http, "POST", url, json={})
        assert (status, body["error_code"]) == (400, 400004)
        fake.restore_token()
        await submit(http, fake)
        fake.revoke_token()
        status, _, _ = await call(http, "POST", url, json={})
        assert status == 400 and fake.jobs_created == 2
        with pytest.raises(ValueError):
            fake.revoke_token(after=-1)
    async with emulator() as fake, aiohttp.ClientSession() as bare:
        status, body, _ = await call(
            bare, "POST", f"{fake.base_url}/v1/models/{OTHER_MODEL}", json={}
        )
        assert (status, body["error_code"]) == (401, 401001)


# ------------------------------------------------------------------------------------ outage


@pytest.mark.anyio
async def test_outage_refuses_connections_and_keeps_every_job(
    http: aiohttp.ClientSession,
) -> None:
    """During outage() connections are refused; after it, same ports, jobs finished meanwhile."""
    async with emulator(duration_mean=0.3, concurrency=1) as fake:
        first = (await submit(http, fake))["request_id"]
        second = (await submit(http, fake))["request_id"]
        ports = (fake.port, fake.output_port)
        async with fake.outage():
            assert not fake.running
            with pytest.raises(aiohttp.ClientConnectionError):
                await call(http, "GET", f"{fake.base_url}/v1/requests/{first}/status")
            await wait_state(fake, second, "succeeded")
        assert fake.running and (fake.port, fake.output_port) == ports
        for rid in (first, second):
            assert (await get_status(http, fake, rid))["status"] == "completed"
        assert fake.jobs[second].started == fake.jobs[first].ends  # the queue ran on
        _, result, _ = await call(http, "GET", f"{fake.base_url}/v1/requests/{second}/result")
        async with aiohttp.ClientSession() as bare, bare.get(result["output"]["image"]) as resp:
            assert await resp.read() == output_png(second, 0)
        await fake.go_down()
        await fake.come_back()
        assert fake.jobs_created == 2 and fake.port == ports[0]


# ---------------------------------------------------------------------------------- slow drip


@pytest.mark.anyio
async def test_output_drip_sends_headers_then_a_byte_at_a_time(
    http: aiohttp.ClientSession,
) -> None:
    """output_drip stalls the first output_drip_count downloads; later ones arrive at once."""
    async with emulator(duration_mean=0.0, output_drip=60.0, output_drip_count=1) as fake:
        rid = (await submit(http, fake))["request_id"]
        _, result, _ = await call(http, "GET", f"{fake.base_url}/v1/requests/{rid}/result")
        url = result["output"]["image"]
        png = output_png(rid, 0)
        async with aiohttp.ClientSession() as bare:
            async with bare.get(url) as resp:
                assert resp.status == 200 and resp.content_length == len(png)
                assert await resp.content.readexactly(1) == png[:1]
                with pytest.raises(asyncio.TimeoutError):
                    await asyncio.wait_for(resp.read(), 0.3)  # the next byte is a minute away
            async with bare.get(url) as resp:
                assert await resp.read() == png
        assert fake.output_drips == 1 and fake.output_responses[200] == 2
    async with emulator(duration_mean=0.0, output_drip=0.0005) as fake:
        rid = (await submit(http, fake))["request_id"]
        _, result, _ = await call(http, "GET", f"{fake.base_url}/v1/requests/{rid}/result")
        async with aiohttp.ClientSession() as bare, bare.get(result["output"]["image"]) as resp:
            assert await resp.read() == output_png(rid, 0)
        assert fake.output_drips == 1


# --------------------------------------------------------------------------------- state file


@pytest.mark.anyio
async def test_state_file_carries_jobs_to_a_new_emulator(
    http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """A new emulator on the same state_path answers the old jobs: finished, queued, cancelled."""
    path = tmp_path / "sandbox" / "emulator-state.jsonl"
    old = emulator(state_path=path, concurrency=1, duration_mean=0.3)
    await old.start()
    done = (await submit(http, old, {"num_images": 2}))["request_id"]
    queued = (await submit(http, old))["request_id"]
    dropped = (await submit(http, old))["request_id"]
    big = (await submit(http, old, {"image": "x" * 70_000}))["request_id"]
    status, body, _ = await call(http, "POST", f"{old.base_url}/v1/requests/{dropped}/cancel")
    assert (status, body["outcome"]) == (202, "cancelled")
    await wait_state(old, done, "succeeded")
    ports, timeline = (old.port, old.output_port), old.jobs[queued].ends
    await old.stop()

    async with emulator(state_path=path, concurrency=1, duration_mean=0.3) as new:
        assert new.jobs_created == 4
        assert new.jobs[big].inputs == {}  # inputs over 64 KiB are not stored
        assert (new.port, new.output_port) == ports  # the recorded ports were free again
        assert (await get_status(http, new, dropped))["status"] == "cancelled"
        assert new.jobs[queued].ends == pytest.approx(timeline, abs=0.25)
        _, result, _ = await call(http, "GET", f"{new.base_url}/v1/requests/{done}/result")
        assert result["status"] == "succeeded"
        async with aiohttp.ClientSession() as bare:
            for i, url in enumerate(result["output"]["images"]):
                async with bare.get(url) as resp:
                    assert await resp.read() == output_png(done, i)
        await wait_state(new, queued, "succeeded")
        assert new.jobs[done].inputs == {"num_images": 2}
        extra = (await submit(http, new))["request_id"]
        # Killed without stop(): the appended lines alone carry the new job.
        async with emulator(state_path=path) as third:
            assert third.jobs_created == 5 and extra in third.jobs


def test_state_file_replays_the_queue_in_wall_clock_time(tmp_path: Path) -> None:
    """Loaded jobs sit where their wall-clock timeline and the server queue put them now."""
    now = time.time()

    def job(name: str, ago: float, duration: float) -> str:
        line = {"type": "job", "id": name, "model": MODEL, "created_at": now - ago}
        line |= {"duration": duration, "fail": False, "n": 1, "inputs": {"prompt": name}}
        return json.dumps(line)

    path = tmp_path / "state.jsonl"
    lines = [
        '{"type": "header", "version": 1}',
        job("a", 100, 60),  # ran from -100 to -40
        job("b", 99, 60),  # queued behind a: runs from -40 to +20
        job("c", 98, 60),  # cancelled while queued, at -97
        job("d", 97, 60),  # queued behind b: starts at +20
        '{"type": "cancel", "id": "c", "at": %r}' % (now - 97),
    ]
    path.write_text("\n".join(lines) + "\n")

    async def scenario() -> None:
        async with FakeRunComfy(state_path=path, concurrency=1) as fake:
            states = {rid: job.state for rid, job in fake.jobs.items()}
            assert states == {
                "a": "succeeded",
                "b": "in_progress",
                "c": "cancelled",
                "d": "in_queue",
            }
            left = fake.jobs["b"].ends - time.monotonic()  # type: ignore[operator]
            assert 10 < left < 21  # +20 s from the file's "now", give or take the load
            assert fake.jobs["a"].inputs == {"prompt": "a"}
            assert fake._sched.queue_position(fake.jobs["d"]) == 0

    asyncio.run(scenario())


def test_state_file_skips_a_torn_line_and_refuses_a_foreign_file(tmp_path: Path) -> None:
    """A torn last line is skipped on load; a file that is not a state file is refused."""

    async def scenario() -> None:
        path = tmp_path / "state.jsonl"
        async with emulator(state_path=path, duration_mean=0.0) as fake:
            async with aiohttp.ClientSession(headers={"Authorization": "Bearer t"}) as http:
                await submit(http, fake)
        with open(path, "ab") as out:
            out.write(b'{"type":"job","id":"torn')
        again = emulator(state_path=path)
        async with again:
            assert again.jobs_created == 1
        foreign = tmp_path / "notes.txt"
        foreign.write_text("my notes\n")
        with pytest.raises(ValueError, match="not an emulator state file"):
            await emulator(state_path=foreign).start()
        assert foreign.read_text() == "my notes\n"

    asyncio.run(scenario())


def test_accident_knobs_are_validated() -> None:
    """Out-of-range accident knobs raise ValueError naming the knob."""
    bad: list[dict[str, object]] = [
        {"balance": -1},
        {"balance_error": "403"},
        {"auth_error": "403"},
        {"revoke_after": -1},
        {"output_drip": -1.0},
        {"output_drip": float("inf")},
        {"output_drip_count": -1},
    ]
    for knobs in bad:
        name = next(iter(knobs))
        with pytest.raises(ValueError, match=name):
            emulator(**knobs)


def test_cli_emulator_options_reach_the_knobs(tmp_path: Path) -> None:
    """`runcomfy-async emulator` options map one to one onto the accident knobs."""
    import argparse

    from runcomfy_async._cli._emulator import add_emulator_parser, emulator_kwargs

    parser = argparse.ArgumentParser()
    add_emulator_parser(parser.add_subparsers())
    argv = ["emulator", "--balance", "3", "--balance-error", "402", "--auth-error", "400004"]
    argv += ["--revoke-after", "7", "--output-drip", "5", "--output-drip-count", "2"]
    extra = tmp_path / "extra.json"
    extra.write_text('[{"model_id": "acme/x"}]')
    argv += [
        "--state",
        str(tmp_path / "s.jsonl"),
        "--accept-any-model",
        "--extra-models",
        str(extra),
    ]
    kwargs = emulator_kwargs(parser.parse_args(argv))
    assert {k: kwargs[k] for k in ("balance", "balance_error", "auth_error")} == {
        "balance": 3,
        "balance_error": "402",
        "auth_error": "400004",
    }
    assert (kwargs["revoke_after"], kwargs["output_drip"], kwargs["output_drip_count"]) == (
        7,
        5.0,
        2,
    )
    assert kwargs["state_path"] == str(tmp_path / "s.jsonl")
    assert kwargs["accept_any_model"] is True
    assert kwargs["extra_models"] == [{"model_id": "acme/x"}]
    fake = FakeRunComfy(**kwargs)
    assert fake.balance == 3
    extra.write_text('{"model_id": "acme/x"}')
    with pytest.raises(ValueError, match="extra-models"):
        emulator_kwargs(parser.parse_args(["emulator", "--extra-models", str(extra)]))
