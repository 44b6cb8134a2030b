"""The batch runner: bounded, resumable, never pays twice, one result per input."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from runcomfy_async import AsyncClient, BatchResult, PollSettings, SyncClient
from runcomfy_async._batch_types import content_digest
from runcomfy_async._journal import FORMAT_VERSION, Done, Journal, Released, Run, Submitting
from runcomfy_async.models import NanoBanana2TextToImage
from runcomfy_async.testing import FakeRunComfy

from .conftest import FAST_RETRY, TOKEN

pytestmark = pytest.mark.anyio

T2I = "google/nano-banana-2/text-to-image"
POLL = PollSettings(first_check=0.02)


def _prompts(n: int) -> list[dict[str, str]]:
    return [{"prompt": f"prompt number {i}"} for i in range(n)]


async def _collect(client: AsyncClient, inputs: object, **kw: object) -> list[BatchResult]:
    out = []
    async with client.map(T2I, inputs, **kw) as batch:  # type: ignore[arg-type]
        async for res in batch:
            out.append(res)
    return out


async def test_every_input_one_result_with_downloads(tmp_path: Path) -> None:
    """Each input yields one result; outputs are downloaded with sha256; failures don't stop it."""
    async with FakeRunComfy(token=TOKEN, duration_mean=0.05, failure_rate=0.3, seed=3) as fake:
        async with AsyncClient(TOKEN, fake.base_url, retry=FAST_RETRY, poll=POLL) as client:
            results = await _collect(
                client, _prompts(30), max_in_flight=8, download_to=tmp_path, journal=tmp_path / "j"
            )
    assert sorted(r.index for r in results) == list(range(30))
    assert fake.jobs_created == 30
    ok = [r for r in results if r.ok]
    failed = [r for r in results if r.status == "failed"]
    assert ok and failed and len(ok) + len(failed) == 30
    for r in ok:
        assert r.request_id and r.urls and len(r.files) == len(r.urls)
        saved = tmp_path / r.files[0].path
        assert saved.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert r.files[0].path == f"{r.index:06d}-0.png"
    for r in failed:
        assert r.error and r.error_kind == "JobFailedError" and not r.files
    assert fake.output_auth_headers == 0


async def test_max_in_flight_is_respected(client: AsyncClient, fake: FakeRunComfy) -> None:
    """The emulator never sees more live jobs than max_in_flight."""
    peak = 0
    done = asyncio.Event()

    async def watch() -> None:
        nonlocal peak
        while not done.is_set():
            states = fake.job_states()
            peak = max(peak, states["in_queue"] + states["in_progress"])
            await asyncio.sleep(0.005)

    watcher = asyncio.create_task(watch())
    results = await _collect(client, _prompts(40), max_in_flight=5)
    done.set()
    await watcher
    assert len(results) == 40 and fake.jobs_created == 40
    assert 1 <= peak <= 5


async def test_ordered_results(client: AsyncClient) -> None:
    """ordered=True yields results in input order."""
    results = await _collect(client, _prompts(25), max_in_flight=10, ordered=True)
    assert [r.index for r in results] == list(range(25))


async def test_keyed_typed_and_async_inputs(client: AsyncClient, fake: FakeRunComfy) -> None:
    """Inputs may be keyed pairs, typed Structs, and come from an async iterable."""

    async def source() -> AsyncIterator[object]:
        yield ("cat", {"prompt": "a cat"})
        yield NanoBanana2TextToImage(prompt="a dog", aspect_ratio="1:1")

    results = await _collect(client, source())
    by_index = {r.index: r for r in results}
    assert by_index[0].key == "cat" and by_index[0].id == "k:cat"
    assert by_index[1].input == {"prompt": "a dog", "aspect_ratio": "1:1"}
    assert all(r.ok for r in results) and fake.jobs_created == 2


async def test_invalid_input_is_a_result_not_a_submit(
    client: AsyncClient, fake: FakeRunComfy
) -> None:
    """A bad input becomes an 'invalid' result naming the field; nothing is sent for it."""
    results = await _collect(client, [{"prompt": "ok"}, {"prompt": "x", "aspect_ratio": "7:7"}])
    bad = next(r for r in results if r.index == 1)
    assert bad.status == "invalid" and "aspect_ratio" in (bad.error or "")
    assert bad.request_id is None
    assert fake.jobs_created == 1


async def test_resume_skips_done_and_reattaches(tmp_path: Path) -> None:
    """After a stop, a resume skips finished inputs and polls submitted ones: no duplicates."""
    journal = tmp_path / "journal.jsonl"
    inputs = _prompts(30)
    async with FakeRunComfy(token=TOKEN, duration_mean=0.3, seed=4) as fake:
        async with AsyncClient(TOKEN, fake.base_url, retry=FAST_RETRY, poll=POLL) as client:
            first: list[BatchResult] = []
            async with client.map(T2I, inputs, max_in_flight=10, journal=journal) as batch:
                async for res in batch:
                    first.append(res)
                    if len(first) == 5:
                        break  # abandon the batch with jobs in flight
        async with AsyncClient(TOKEN, fake.base_url, retry=FAST_RETRY, poll=POLL) as client:
            second = await _collect(client, inputs, max_in_flight=10, journal=journal)
    assert fake.jobs_created == 30  # nothing submitted twice
    indexes = [r.index for r in first] + [r.index for r in second]
    assert sorted(indexes) == list(range(30))
    done = [r for r in Journal.records(journal) if isinstance(r, Done)]
    assert len(done) == 30 and len({r.id for r in done}) == 30


async def test_uncertain_submit_not_resubmitted_unless_asked(tmp_path: Path) -> None:
    """A journaled submit with no answer is 'uncertain' on resume; resubmitted only on request."""
    journal = tmp_path / "journal.jsonl"
    inputs = _prompts(3)
    ident = "c:" + content_digest(T2I, inputs[1])
    submitting = Submitting(id=ident, index=1, model=T2I, input=inputs[1])
    with Journal(journal) as j:
        j.write(Run(version=FORMAT_VERSION, model=T2I))
        j.write(submitting)
    with open(journal, "ab") as fh:
        fh.write(b'{"e":"submitted","id":"h:torn')  # a torn last line from a killed run
    async with FakeRunComfy(token=TOKEN, duration_mean=0.02) as fake:
        async with AsyncClient(TOKEN, fake.base_url, retry=FAST_RETRY, poll=POLL) as client:
            results = await _collect(client, inputs, journal=journal)
            statuses = {r.index: r.status for r in results}
            assert statuses == {0: "succeeded", 1: "uncertain", 2: "succeeded"}
            assert fake.jobs_created == 2
    journal.unlink()
    with Journal(journal) as j:
        j.write(Run(version=FORMAT_VERSION, model=T2I))
        j.write(submitting)
    async with FakeRunComfy(token=TOKEN, duration_mean=0.02) as fake:
        async with AsyncClient(TOKEN, fake.base_url, retry=FAST_RETRY, poll=POLL) as client:
            results = await _collect(client, inputs, journal=journal, resubmit_uncertain=True)
            assert all(r.ok for r in results) and fake.jobs_created == 3


async def test_journal_written_before_acting(client: AsyncClient, tmp_path: Path) -> None:
    """Every input's journal reads submitting, submitted, done, in that order."""
    journal = tmp_path / "j.jsonl"
    await _collect(client, _prompts(5), journal=journal)
    events: dict[str, list[str]] = {}
    for record in Journal.records(journal):
        if not isinstance(record, Run):
            events.setdefault(record.id, []).append(type(record).__name__)
    assert len(events) == 5
    assert all(e == ["Submitting", "Submitted", "Done"] for e in events.values())
    line = (tmp_path / "j.jsonl").read_text().splitlines()[-1]
    assert TOKEN not in line and json.loads(line)["e"] == "done"


async def test_cancel_queued_releases_for_resume(tmp_path: Path) -> None:
    """Stopping cancels queued jobs on the server and journals them so a resume resubmits."""
    journal = tmp_path / "j.jsonl"
    async with FakeRunComfy(token=TOKEN, duration_mean=5.0, concurrency=1) as fake:
        async with AsyncClient(TOKEN, fake.base_url, retry=FAST_RETRY, poll=POLL) as client:
            batch = client.map(T2I, _prompts(4), max_in_flight=4, journal=journal)
            results = batch.__aiter__()
            waiter = asyncio.ensure_future(results.__anext__())
            while fake.jobs_created < 4:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)
            cancelled = await batch.cancel_queued()
            waiter.cancel()
            await batch.aclose()
        assert cancelled == 3
        assert fake.job_states()["cancelled"] == 3
    released = [r for r in Journal.records(journal) if isinstance(r, Released)]
    assert len(released) == 3


def test_sync_client_verbs_and_map() -> None:
    """SyncClient runs, submits, polls and maps from plain synchronous code."""

    async def serve(started: asyncio.Event, stop: asyncio.Event, box: list[str]) -> None:
        async with FakeRunComfy(token=TOKEN, duration_mean=0.02) as fake:
            box.append(fake.base_url)
            started.set()
            await stop.wait()

    import threading

    box: list[str] = []
    loop = asyncio.new_event_loop()
    started, stop = asyncio.Event(), asyncio.Event()
    thread = threading.Thread(target=loop.run_until_complete, args=(serve(started, stop, box),))
    thread.start()
    try:
        while not box:
            threading.Event().wait(0.01)
        with SyncClient(TOKEN, box[0], retry=FAST_RETRY, poll=POLL) as client:
            res = client.run(T2I, {"prompt": "a fox"})
            assert res.status == "succeeded" and res.urls
            job = client.submit(T2I, {"prompt": "a cat"})
            assert job.result().request_id == job.request_id
            assert client.status(job.request_id).status == "completed"
            results = list(client.map(T2I, _prompts(6), max_in_flight=3))
            assert sorted(r.index for r in results) == list(range(6))
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()


async def test_ordered_resume_does_not_stall_on_skipped(
    client: AsyncClient, tmp_path: Path
) -> None:
    """Resuming an ordered batch yields the remaining inputs in order past the skipped ones."""
    journal = tmp_path / "j.jsonl"
    inputs = _prompts(12)
    first = await _collect(client, inputs[:6], journal=journal)  # inputs 0-5 done
    assert len(first) == 6
    seen: list[int] = []
    async with client.map(T2I, inputs, ordered=True, journal=journal) as batch:
        async for res in batch:
            seen.append(res.index)
    assert seen == list(range(6, 12))


async def test_one_runner_per_journal_even_in_one_process(
    client: AsyncClient, tmp_path: Path
) -> None:
    """A second runner on a journal in use is refused at once; after the first, it may run."""
    from runcomfy_async._journal_lock import JournalLockedError

    journal = tmp_path / "j.jsonl"
    first = client.map(T2I, _prompts(2), journal=journal)
    with pytest.raises(JournalLockedError, match="one run per journal"):
        client.map(T2I, _prompts(2), journal=journal)
    await first.aclose()
    assert len(await _collect(client, _prompts(2), journal=journal)) == 2


def test_journal_of_the_first_format_is_refused_with_a_message(tmp_path: Path) -> None:
    """A journal whose inputs were identified by line number is refused, never misread."""
    from runcomfy_async._journal import JournalError

    journal = tmp_path / "journal.jsonl"
    journal.write_text(
        '{"e":"submitting","id":"h:0123","index":0,"key":null,"model":"m","input":{}}\n'
        '{"e":"submitted","id":"h:0123","request_id":"r1"}\n'
    )
    with pytest.raises(JournalError, match="earlier runcomfy-async"):
        Journal.replay(journal)
