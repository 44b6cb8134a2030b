"""Submit pacing: the measured cost per request, the spacing it sets, and the client using it."""

from __future__ import annotations

import asyncio

import pytest

from runcomfy_async import AsyncClient, PollSettings
from runcomfy_async._pacer import BURST, MIN_RATE, MIN_WINDOW_S, WINDOW, SubmitPacer
from runcomfy_async.testing import FakeRunComfy

from .conftest import FAST_RETRY, TOKEN

T2I = "google/nano-banana-2/text-to-image"
POLL = PollSettings(first_check=0.02)


class Clocks:
    """A wall clock and a loop-thread CPU clock that the test moves by hand."""

    def __init__(self) -> None:
        self.wall = 1000.0
        self.cpu = 5.0

    def pacer(self, utilization: float = 1.0) -> SubmitPacer:
        """A pacer reading these clocks."""
        return SubmitPacer(utilization, clock=lambda: self.wall, cpu=lambda: self.cpu)

    def answer(self, pacer: SubmitPacer, n: int, *, cost: float, span: float) -> None:
        """``n`` requests answered over ``span`` seconds, each costing ``cost`` s of CPU."""
        for _ in range(n):
            self.wall += span / n
            self.cpu += cost
            pacer.observe()


def waits(clocks: Clocks, pacer: SubmitPacer, n: int, per_job: float) -> list[float]:
    """The waits of ``n`` submits asked for at the same instant."""
    return [pacer.delay(per_job) for _ in range(n)]


def test_no_pacing_before_the_first_measurement() -> None:
    """Until a window of answers has been timed, no submit waits."""
    clocks = Clocks()
    pacer = clocks.pacer()
    assert pacer.rate(3.0) is None
    assert waits(clocks, pacer, 500, 3.0) == [0.0] * 500
    assert pacer.paced == 0


def test_submits_are_spaced_at_the_measured_rate() -> None:
    """1 ms of CPU a request and 2.5 requests a job: 400 submits a second, after a burst."""
    clocks = Clocks()
    pacer = clocks.pacer()
    clocks.answer(pacer, WINDOW + 1, cost=0.001, span=0.2)
    assert pacer.cost == pytest.approx(0.001)
    assert pacer.rate(2.5) == pytest.approx(400.0)
    got = waits(clocks, pacer, BURST + 5, 2.5)
    assert got[:BURST] == [0.0] * BURST
    assert got[BURST:] == pytest.approx([0.0025 * k for k in range(1, 6)])
    assert pacer.paced == 5
    assert pacer.waited == pytest.approx(0.0025 * (1 + 2 + 3 + 4 + 5))


def test_utilization_scales_the_rate() -> None:
    """Half the capacity planned for: half the rate."""
    clocks = Clocks()
    pacer = clocks.pacer(utilization=0.5)
    clocks.answer(pacer, WINDOW + 1, cost=0.001, span=0.2)
    assert pacer.rate(2.5) == pytest.approx(200.0)


def test_a_window_shorter_than_the_minimum_is_not_a_sample() -> None:
    """A burst of answers inside a few milliseconds says nothing about the loop's capacity."""
    clocks = Clocks()
    pacer = clocks.pacer()
    clocks.answer(pacer, 10 * WINDOW, cost=0.001, span=MIN_WINDOW_S / 5)
    assert pacer.cost is None
    clocks.answer(pacer, WINDOW, cost=0.001, span=MIN_WINDOW_S)
    assert pacer.cost == pytest.approx(0.001)


def test_the_cost_is_smoothed_toward_new_measurements() -> None:
    """One window at twice the cost moves the estimate 30 % of the way."""
    clocks = Clocks()
    pacer = clocks.pacer()
    clocks.answer(pacer, WINDOW + 1, cost=0.001, span=0.2)
    clocks.answer(pacer, WINDOW, cost=0.002, span=0.2)
    assert pacer.cost == pytest.approx(0.0013)


def test_a_loop_busy_with_other_work_is_never_paced_below_the_floor() -> None:
    """A second of CPU per request (the caller's own work) still lets MIN_RATE through."""
    clocks = Clocks()
    pacer = clocks.pacer()
    clocks.answer(pacer, WINDOW + 1, cost=1.0, span=0.2)
    assert pacer.rate(3.0) == MIN_RATE


def test_an_idle_spell_grants_a_burst_not_a_backlog() -> None:
    """Turns not taken while idle are not saved up: after 10 idle seconds, one burst."""
    clocks = Clocks()
    pacer = clocks.pacer()
    clocks.answer(pacer, WINDOW + 1, cost=0.001, span=0.2)
    waits(clocks, pacer, 50, 2.5)
    clocks.wall += 10.0
    got = waits(clocks, pacer, BURST + 3, 2.5)
    assert got.count(0.0) == BURST


@pytest.mark.parametrize("utilization", [0.0, -1.0, 1.5])
def test_utilization_out_of_range_is_refused(utilization: float) -> None:
    """Utilization is a share of the capacity: in (0, 1]."""
    with pytest.raises(ValueError, match="utilization"):
        SubmitPacer(utilization)


@pytest.mark.anyio
async def test_paced_submits_leave_room_for_checks_and_lose_nothing() -> None:
    """At the floor rate, checks of the first jobs reach the server between the submits.

    The pacer is told the loop is slow (one second of CPU a request), so it holds the
    submits to MIN_RATE: the emulator sees result checks before the last submit, every
    job is created exactly once and every result comes back.
    """
    jobs = 100
    async with FakeRunComfy(token=TOKEN, duration_mean=0.05, record_arrivals=True) as fake:
        async with AsyncClient(TOKEN, fake.base_url, retry=FAST_RETRY, poll=POLL) as client:
            assert client.pacer is not None
            client.pacer.cost = 1.0
            handles = await asyncio.gather(
                *(client.submit(T2I, {"prompt": f"p{i}"}) for i in range(jobs))
            )
            results = await asyncio.gather(*handles)
            assert client.pacer.paced >= jobs - BURST
    assert fake.jobs_created == jobs
    assert len({r.request_id for r in results}) == jobs
    endpoints = [e for _, e in fake.arrivals]
    last_submit = max(i for i, e in enumerate(endpoints) if e == "submit")
    assert "result" in endpoints[:last_submit]


@pytest.mark.anyio
async def test_a_submit_cancelled_while_paced_sends_nothing() -> None:
    """A submit that waits for its turn and is cancelled never reaches the server."""
    async with FakeRunComfy(token=TOKEN, duration_mean=0.05) as fake:
        async with AsyncClient(TOKEN, fake.base_url, retry=FAST_RETRY, poll=POLL) as client:
            pacer = client.pacer
            assert pacer is not None
            pacer.cost = 1.0
            for _ in range(int(MIN_RATE)):  # book a second's worth of turns
                pacer.delay(3.0)
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(client.submit(T2I, {"prompt": "late"}), 0.05)
    assert fake.jobs_created == 0
    assert fake.requests["submit"] == 0


@pytest.mark.anyio
async def test_pacing_can_be_turned_off() -> None:
    """``pace_submits=False``: no pacer, and submits go as fast as the budget allows."""
    async with FakeRunComfy(token=TOKEN, duration_mean=0.05) as fake:
        async with AsyncClient(
            TOKEN, fake.base_url, retry=FAST_RETRY, poll=POLL, pace_submits=False
        ) as client:
            assert client.pacer is None
            job = await client.submit(T2I, {"prompt": "one"})
            await job
    assert fake.jobs_created == 1


@pytest.mark.anyio
async def test_the_poller_measures_requests_per_ended_job() -> None:
    """Submit plus checks over the jobs that ended: what the pacer divides by."""
    async with FakeRunComfy(token=TOKEN, duration_mean=0.05) as fake:
        async with AsyncClient(TOKEN, fake.base_url, retry=FAST_RETRY, poll=POLL) as client:
            poller = client._require_open()
            assert poller.requests_per_job is None
            await asyncio.gather(*(client.run(T2I, {"prompt": f"p{i}"}) for i in range(40)))
            assert poller.ended == 40
            assert poller.requests_per_job == pytest.approx(sum(client.requests.values()) / 40)
    assert sum(fake.requests.values()) == sum(client.requests.values())
