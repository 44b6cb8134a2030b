"""The single poller, the shared request budget and cancellation in both directions."""

from __future__ import annotations

import asyncio
import math
import time

import anyio
import pytest

from runcomfy_async import (
    AsyncClient,
    ClientClosedError,
    JobCancelledError,
    JobTimeoutError,
    PollSettings,
)
from runcomfy_async._emulator._jobs import TokenBucket
from runcomfy_async._estimate import DurationModel
from runcomfy_async._http import Reply
from runcomfy_async._queue import QueueTracker
from runcomfy_async.testing import FakeRunComfy

from .conftest import FAST_RETRY, TOKEN

pytestmark = pytest.mark.anyio

T2I = "google/nano-banana-2/text-to-image"
POLL = PollSettings(first_check=0.02)


def _client_tasks() -> list[str]:
    """Tasks in this loop that are not the in-process emulator's connection handlers."""
    return sorted(
        t.get_coro().__qualname__  # type: ignore[union-attr]
        for t in asyncio.all_tasks()
        if "aiohttp/web_" not in t.get_coro().cr_code.co_filename  # type: ignore[union-attr]
    )


@pytest.mark.slow
async def test_task_count_constant_with_thousands_in_flight() -> None:
    """Following 2,000 jobs costs no task per job: the client's task count does not grow."""
    async with FakeRunComfy(token=TOKEN, duration_mean=60.0) as fake:
        async with AsyncClient(TOKEN, fake.base_url, retry=FAST_RETRY) as client:
            before = _client_tasks()
            jobs = []
            for i in range(2000):
                jobs.append(await client.submit(T2I, {"prompt": f"p{i}"}))
            await asyncio.sleep(0.3)  # let the poller probe and schedule them all
            assert client.jobs_in_flight == 2000
            assert len(_client_tasks()) == len(before), (_client_tasks(), before)
        assert all(isinstance(j.future().exception(), ClientClosedError) for j in jobs)


async def test_as_completed_yields_in_finish_order(client: AsyncClient) -> None:
    """client.as_completed yields each job once, in the order their futures resolved."""
    jobs = [await client.submit(T2I, {"prompt": f"p{i}"}) for i in range(20)]
    resolved: list[str] = []
    for job in jobs:

        def note(_f: object, rid: str = job.request_id) -> None:
            resolved.append(rid)

        job.future().add_done_callback(note)
    seen = [job.request_id async for job in client.as_completed(jobs)]
    assert seen == resolved and sorted(seen) == sorted(j.request_id for j in jobs)


async def test_handles_work_in_anyio_task_groups(client: AsyncClient) -> None:
    """Awaiting handles from an anyio task group works like any awaitable."""
    jobs = [await client.submit(T2I, {"prompt": f"p{i}"}) for i in range(5)]
    out: list[str] = []

    async def wait(job: object) -> None:
        out.append((await job).request_id)  # type: ignore[misc]

    async with anyio.create_task_group() as tg:
        for job in jobs:
            tg.start_soon(wait, job)
    assert sorted(out) == sorted(j.request_id for j in jobs)


async def test_status_updates_queued_running_done() -> None:
    """A job's updates go queued (with position), running, succeeded, in that order."""
    async with FakeRunComfy(token=TOKEN, duration_mean=0.3, concurrency=1) as fake:
        async with AsyncClient(TOKEN, fake.base_url, retry=FAST_RETRY, poll=POLL) as client:
            first = await client.submit(T2I, {"prompt": "runs first"})
            second = await client.submit(T2I, {"prompt": "waits"})
            seen = [(u.phase, u.queue_position) async for u in second.updates()]
            await first
    phases = [p for p, _ in seen]
    assert phases[-1] == "succeeded"
    assert "queued" in phases and "running" in phases
    assert phases.index("queued") < phases.index("running") < len(phases) - 1
    assert any(pos == 0 for p, pos in seen if p == "queued")


async def test_polls_not_starved_by_a_submit_flood() -> None:
    """Under a tight budget, checks of jobs in flight interleave with a flood of submits."""
    async with FakeRunComfy(token=TOKEN, duration_mean=0.05, record_arrivals=True) as fake:
        async with AsyncClient(
            TOKEN, fake.base_url, retry=FAST_RETRY, poll=POLL, max_requests_per_second=40
        ) as client:
            early = await client.submit(T2I, {"prompt": "first"})
            flood = [
                asyncio.create_task(client.submit(T2I, {"prompt": f"p{i}"})) for i in range(60)
            ]
            await early
            assert sum(not t.done() for t in flood) > 0  # answered while submits still queue
            await asyncio.gather(*flood)
    endpoints = [e for _, e in fake.arrivals]
    last_submit = max(i for i, e in enumerate(endpoints) if e == "submit")
    assert "result" in endpoints[:last_submit]


def _stamp_sends(client: AsyncClient) -> list[float]:
    """Note when each request leaves the client, once the budget granted it.

    The client's own send times, not the emulator's arrival times: on a loaded machine the
    way between the two bunches arrivals by a varying amount, which is the machine's doing.
    """
    stamps: list[float] = []
    send = client._transport.send

    async def stamped(method: str, path: str, body: bytes | None = None) -> Reply:
        stamps.append(time.monotonic())
        return await send(method, path, body)

    client._transport.send = stamped  # type: ignore[method-assign]
    return stamps


async def test_budget_rate_holds_in_every_window() -> None:
    """The client-wide rate holds: no one-second window sends more than rate + burst."""
    async with FakeRunComfy(token=TOKEN, duration_mean=0.05) as fake:
        async with AsyncClient(
            TOKEN, fake.base_url, retry=FAST_RETRY, poll=POLL, max_requests_per_second=30
        ) as client:
            times = _stamp_sends(client)
            await asyncio.gather(*(client.run(T2I, {"prompt": f"p{i}"}) for i in range(40)))
    assert len(times) == sum(fake.requests.values()) >= 40 * 2  # every request was stamped
    worst = max(sum(1 for u in times if t <= u < t + 1.0) for t in times)
    assert worst <= 30 + 30 + 2  # one second of rate plus the initial burst


async def test_rate_bound_submits_go_first_within_the_server_limit() -> None:
    """Queuing for the rate, submits take 3 grants in 4; a bucket like the server's admits all.

    Every request costs the same token then: a submit starts the server at once, and a
    check that waits finds its job riper. The client's send times are replayed through a
    token bucket of the server's rate and size: not one would have been refused. (Whether
    the emulator answers a 429 also depends on how evenly a loaded machine delivers them.)
    """
    async with FakeRunComfy(
        token=TOKEN, duration_mean=0.05, rate_limit=40, record_arrivals=True
    ) as fake:
        async with AsyncClient(
            TOKEN, fake.base_url, retry=FAST_RETRY, poll=POLL, max_requests_per_second=40
        ) as client:
            times = _stamp_sends(client)
            await asyncio.gather(*(client.run(T2I, {"prompt": f"p{i}"}) for i in range(60)))
    assert fake.jobs_created == 60 and len(times) == sum(fake.requests.values())
    server = TokenBucket(40, 40, times[0])
    assert [t for t in times if server.take(t) > 0.0] == []
    endpoints = [e for _, e in fake.arrivals]
    last_submit = max(i for i, e in enumerate(endpoints) if e == "submit")
    reads_before = sum(e != "submit" for e in endpoints[:last_submit])
    assert reads_before <= last_submit // 3 + 2


async def test_429_pauses_every_request() -> None:
    """After a 429 with Retry-After: 1, no request reaches the server until the pause ends."""
    async with FakeRunComfy(token=TOKEN, duration_mean=0.3, record_arrivals=True) as fake:
        async with AsyncClient(TOKEN, fake.base_url, retry=FAST_RETRY, poll=POLL) as client:
            jobs = [await client.submit(T2I, {"prompt": f"p{i}"}) for i in range(10)]
            injected = asyncio.get_running_loop().time()
            fake.inject("result", status=429, headers={"Retry-After": "1"})
            more = [asyncio.create_task(client.submit(T2I, {"prompt": f"q{i}"})) for i in range(5)]
            await asyncio.gather(*jobs, *more)
            assert client.rate_limited == 1 and fake.rate_limited == 0  # scripted, not bucket
    # The first /result after the injection got the 429. Requests already on the wire until
    # the client read it may land a moment later (longer on a loaded machine); after that,
    # nothing until the second has passed.
    t429 = next(t for t, e in fake.arrivals if e == "result" and t > injected)
    during = [e for t, e in fake.arrivals if t429 + 0.2 < t < t429 + 0.95]
    assert during == []
    assert any(t >= t429 + 0.95 for t, _ in fake.arrivals)  # and traffic resumed after it


async def test_cancelling_run_sends_one_remote_cancel() -> None:
    """Cancelling the task awaiting client.run cancels its queued job on the server, once."""
    async with FakeRunComfy(token=TOKEN, duration_mean=5.0, concurrency=1) as fake:
        async with AsyncClient(TOKEN, fake.base_url, retry=FAST_RETRY, poll=POLL) as client:
            blocker = await client.submit(T2I, {"prompt": "occupies the only slot"})
            task = asyncio.create_task(client.run(T2I, {"prompt": "queued"}))
            while fake.jobs_created < 2:
                await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert fake.requests["cancel"] == 1
            states = fake.job_states()
            assert states["cancelled"] == 1 and not blocker.done()
            client.cancel_on_error = False


async def test_leaving_on_error_cancels_queued_jobs() -> None:
    """An exception leaving 'async with' cancels the jobs still queued on the server."""
    async with FakeRunComfy(token=TOKEN, duration_mean=5.0, concurrency=1) as fake:
        with pytest.raises(RuntimeError, match="boom"):
            async with AsyncClient(TOKEN, fake.base_url, retry=FAST_RETRY, poll=POLL) as client:
                for i in range(3):
                    await client.submit(T2I, {"prompt": f"p{i}"})
                raise RuntimeError("boom")
        states = fake.job_states()
        assert states["cancelled"] == 2 and states["in_progress"] == 1


async def test_wait_timeout_raises_and_can_cancel() -> None:
    """A wait deadline raises JobTimeoutError (a TimeoutError) and may cancel remotely."""
    async with FakeRunComfy(token=TOKEN, duration_mean=5.0, concurrency=1) as fake:
        async with AsyncClient(TOKEN, fake.base_url, retry=FAST_RETRY, poll=POLL) as client:
            await client.submit(T2I, {"prompt": "occupies the only slot"})
            queued = await client.submit(T2I, {"prompt": "queued"})
            with pytest.raises(TimeoutError):
                await queued.wait(0.1)
            with pytest.raises(JobTimeoutError) as info:
                await queued.wait(0.1, cancel_on_timeout=True)
            assert info.value.cancelled_remotely
            with pytest.raises(JobCancelledError):
                await queued
            client.cancel_on_error = False
        assert fake.job_states()["cancelled"] == 1


async def test_server_queue_is_followed_cheaply() -> None:
    """Behind a server queue, queue positions time the checks: few requests per job."""
    async with FakeRunComfy(token=TOKEN, duration_mean=0.1, concurrency=4, seed=9) as fake:
        async with AsyncClient(
            TOKEN, fake.base_url, retry=FAST_RETRY, poll=PollSettings(first_check=0.05)
        ) as client:
            jobs = [await client.submit(T2I, {"prompt": f"p{i}"}) for i in range(80)]
            await asyncio.gather(*jobs)
            per_job = sum(client.requests.values()) / len(jobs)
    assert fake.requests["status"] > 0  # queue positions were asked for
    assert per_job < 6  # a fixed loop at this scale makes dozens


async def test_queued_jobs_are_checked_after_they_start() -> None:
    """Our own finishes time the queue: hardly any /result finds a job still queued."""
    async with FakeRunComfy(
        token=TOKEN, duration_mean=0.3, duration_sigma=0.3, concurrency=40, seed=3
    ) as fake:
        async with AsyncClient(TOKEN, fake.base_url, retry=FAST_RETRY) as client:
            jobs = [await client.submit(T2I, {"prompt": f"p{i}"}) for i in range(200)]
            await asyncio.gather(*jobs)
    assert fake.jobs_created == 200
    assert fake.early_results["in_queue"] <= 10  # of 160 jobs that queued
    assert fake.requests["status"] <= 10  # a few looks at the queue, not one per job
    assert sum(fake.requests.values()) <= 200 * 3.6


async def test_queue_shared_with_another_users_jobs() -> None:
    """Another client's jobs in the same queue: our finishes no longer time our starts.

    The queue's measured speed and fresh looks at it take over; nothing stalls waiting for
    finishes of ours that will never free those slots.
    """
    async with FakeRunComfy(
        token=TOKEN, duration_mean=0.2, duration_sigma=0.3, concurrency=20, seed=5
    ) as fake:
        async with (
            AsyncClient(TOKEN, fake.base_url, retry=FAST_RETRY) as ours,
            AsyncClient(TOKEN, fake.base_url, retry=FAST_RETRY) as theirs,
        ):
            jobs = []
            for i in range(120):  # interleaved, as two users submitting at once
                jobs.append(await ours.submit(T2I, {"prompt": f"ours {i}"}))
                jobs.append(await theirs.submit(T2I, {"prompt": f"theirs {i}"}))
            with anyio.fail_after(60):  # a stall, not a timing: the server needs ~2.4 s
                results = await asyncio.gather(*jobs)
    assert len(results) == 240 and fake.job_states()["succeeded"] == 240
    for client in (ours, theirs):
        assert sum(client.requests.values()) / 120 < 4  # usually ~2.1


def test_duration_model_handles_censoring() -> None:
    """Half the jobs still running at the median: the fit still finds the median."""
    import math
    import random

    rng = random.Random(3)
    model = DurationModel(refit_every=0)
    mu, sigma = math.log(10.0), 0.3
    for i in range(2000):
        d = rng.lognormvariate(mu, sigma)
        if d <= 10.0:
            model.add(d)
        else:
            model.still_running(str(i), 10.0)
    median = model.median()
    assert median is not None and 9.3 < median < 10.7


def test_queue_tracker_times_starts_from_our_finishes() -> None:
    """One queue_position says how many started at submit; each later one starts at a finish."""
    tracker = QueueTracker()
    assert tracker.predict_start(5, 1.0) is None
    # Four slots: jobs 1-4 started at their submit; job 14 is at position 9 at t=100.
    tracker.observe(100.0, position=9, seq=14)
    assert tracker.direct() == 4
    assert tracker.predict_start(3, 2.0) == (-math.inf, True)  # never queued
    assert tracker.predict_start(6, 2.0) == (101.0, False)  # two frees away at 2/s: a guess
    tracker.ended(100.5)  # the first of ours to finish frees job 5's slot
    assert tracker.predict_start(5, 2.0) == (100.5, True)
    assert tracker.predict_start(6, 2.0) == (101.0, False)
    tracker.ended(99.0)  # a finish from before the look, seen late: job 4 had queued too
    assert tracker.direct() == 3
    assert tracker.predict_start(4, 2.0) == (99.0, True)
    assert tracker.predict_start(5, 2.0) == (100.5, True)
    tracker.observe(105.0, position=0, seq=14)  # nine places in five seconds
    assert tracker.speed() == pytest.approx(1.8)
    assert tracker.guess_start(15, None) == pytest.approx(105.0 + 2 / 1.8)


def test_queue_tracker_counts_finishes_not_seen_yet() -> None:
    """A busy client sees finishes late: the ones still unseen are counted in, not ignored."""
    tracker = QueueTracker()
    tracker.observe(0.0, position=99, seq=100)  # nothing started at submit: all queued
    for i in range(10):
        tracker.ended(1.0 + i / 10, seen=1.5 + i / 10)  # each seen 0.5 s after it ended
    assert tracker.unseen(before=1.5, now=2.4, rate=10.0) == 0  # older than any lag
    # At 2.0, finishes from 1.7 on are not seen yet: about 10/s x (0.5 - 0.3) = 2 of them.
    assert tracker.unseen(before=1.7, now=2.0, rate=10.0) == 2
    assert tracker.predict_start(8, 10.0) == (1.7, True)  # the 8th finish seen
    assert tracker.predict_start(8, 10.0, now=2.0) == (1.5, True)  # 2 more surely came


def test_queue_tracker_folds_old_finishes_into_a_count() -> None:
    """A long-lived client keeps a bounded finish history and the same answers for live jobs."""
    bounded, full = QueueTracker(retain=10.0), QueueTracker(retain=math.inf)
    for tracker in (bounded, full):
        for i in range(1, 20_001):  # 100 finishes a second for 200 s
            t = i / 100
            tracker.ended(t, seen=t + 0.05)
            if i % 500 == 0:
                tracker.observe(t, position=50, seq=i + 55)  # four slots, fifty waiting
    assert bounded.finished == full.finished == 20_000
    assert len(bounded.ends) < 2 * 4096 < len(full.ends)  # bounded, not one per job run
    assert bounded.dropped > 10_000 and bounded.last_dropped < 200.0 - 10.0
    assert bounded.direct() == full.direct() == 4  # the count behind the latest look is exact
    for seq in (19_990, 20_010, 20_055, 20_100):  # started lately, or still queued
        assert bounded.predict_start(seq, 100.0, now=200.1) == full.predict_start(
            seq, 100.0, now=200.1
        )
    # A job whose turn came at a folded finish started long ago: the latest folded finish.
    assert bounded.predict_start(10, 100.0) == (bounded.last_dropped, True)


def test_queue_tracker_forgets_a_look_older_than_its_history() -> None:
    """Finishes after a queue look that is never renewed are folded too, with the old look."""
    tracker = QueueTracker(retain=10.0)
    tracker.observe(0.0, position=3, seq=8)
    for i in range(1, 10_001):
        tracker.ended(i / 100)
    assert tracker.direct() is None  # the look at t=0 was forgotten, not kept forever
    assert len(tracker.ends) < 2 * 4096 and tracker.finished == 10_000
    tracker.observe(100.5, position=0, seq=10_010)  # a fresh look counts every finish
    assert tracker.direct() == 10_010 - 0 - 1 - 10_000


async def test_durations_still_learned_after_a_queue_drains() -> None:
    """Once a queue is gone, jobs that start at their submit teach durations again."""
    async with FakeRunComfy(
        token=TOKEN, duration_mean=0.2, duration_sigma=0.2, concurrency=4, seed=1
    ) as fake:
        async with AsyncClient(
            TOKEN, fake.base_url, retry=FAST_RETRY, poll=PollSettings(first_check=0.05)
        ) as client:
            await asyncio.gather(
                *[await client.submit(T2I, {"prompt": f"p{i}"}) for i in range(40)]
            )
            model = client._require_open()._stats(T2I).durations  # white box: what was learned
            after_queue = model.count
            for k in range(10):  # two at a time, under the 4 slots: none of them queues
                pair = [await client.submit(T2I, {"prompt": f"q{k}{i}"}) for i in range(2)]
                await asyncio.gather(*pair)
    assert model.count >= after_queue + 15


async def test_queued_probes_are_not_checked_in_a_loop() -> None:
    """Probes stuck deep in a queue before anything is learned wait for their turn."""
    async with FakeRunComfy(token=TOKEN, duration_mean=0.5, concurrency=2, seed=1) as fake:
        async with AsyncClient(TOKEN, fake.base_url, retry=FAST_RETRY) as client:
            for i in range(200):
                await client.submit(T2I, {"prompt": f"p{i}"})
            await asyncio.sleep(3.0)  # a window to count requests in, not a timing
            checks = fake.requests["result"] + fake.requests["status"]
    assert checks < 150  # it was over 600 when each queued probe looked every 0.25 s


async def test_a_queue_that_forms_after_the_first_look_is_found() -> None:
    """Submits that go on after a look found our newest job running may queue later.

    Once the client's jobs have doubled since that look it looks again (not only after
    the look's 30 s memory): the jobs that queued are timed by the queue, not taken to
    have started at their submit.
    """
    async with FakeRunComfy(
        token=TOKEN, duration_mean=20.0, duration_sigma=0.0, concurrency=8, seed=2
    ) as fake:
        async with AsyncClient(TOKEN, fake.base_url, retry=FAST_RETRY, cache=False) as client:
            for i in range(8):
                await client.submit(T2I, {"prompt": f"a{i}"})
            with anyio.fail_after(20):  # events, not timings: each look is answered
                while fake.requests["status"] < 1:
                    await asyncio.sleep(0.01)
                assert fake.job_states().get("queued", 0) == 0  # it found the newest running
                for i in range(8):
                    await client.submit(T2I, {"prompt": f"b{i}"})  # these queue
                while fake.requests["status"] < 2:
                    await asyncio.sleep(0.01)
                stats = client._require_open()._stats(T2I)
                while not stats.queue.observations:
                    await asyncio.sleep(0.01)
    assert stats.queue.direct() == 8  # the first eight started at their submit, no more
