"""Submit pacing: the measured cost per request, the spacing it sets, and the client using it."""

from __future__ import annotations

import asyncio

import pytest

from runcomfy_async import AsyncClient, PollSettings
from runcomfy_async._pacer import (
    BURST,
    MAX_WINDOW_S,
    MIN_RATE,
    MIN_WINDOW_S,
    TICK,
    WINDOW,
    SubmitPacer,
)
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


def waits(pacer: SubmitPacer, n: int, per_job: float) -> list[float]:
    """The waits of ``n`` submits asked for at the same instant."""
    return [pacer.delay(per_job) for _ in range(n)]


def test_no_pacing_before_the_first_measurement() -> None:
    """Until a window of answers has been timed, no submit waits."""
    clocks = Clocks()
    pacer = clocks.pacer()
    assert pacer.rate(3.0) is None
    assert waits(pacer, 500, 3.0) == [0.0] * 500
    assert pacer.paced == 0


def test_submits_are_spaced_at_the_measured_rate() -> None:
    """1 ms of CPU a request and 2.5 requests a job: 400 submits a second, after a burst."""
    clocks = Clocks()
    pacer = clocks.pacer()
    clocks.answer(pacer, WINDOW + 1, cost=0.001, span=0.2)
    assert pacer.cost == pytest.approx(0.001)
    assert pacer.rate(2.5) == pytest.approx(400.0)
    got = waits(pacer, BURST + 5, 2.5)
    assert got[:BURST] == [0.0] * BURST
    for k, wait in enumerate(got[BURST:], 1):  # never before its turn, at most a tick after
        assert 0.0025 * k - 1e-9 <= wait < 0.0025 * k + TICK


def test_waiting_submits_share_wake_ups_and_keep_the_average_rate() -> None:
    """Turns within one tick wake together; a thousand turns still take 1000 / rate."""
    clocks = Clocks()
    pacer = clocks.pacer()
    clocks.answer(pacer, WINDOW + 1, cost=0.001, span=0.2)
    got = waits(pacer, 1000, 2.5)
    wake_ups = {round(clocks.wall + w, 9) for w in got if w > 0}
    assert len(wake_ups) <= 1000 * 0.0025 / TICK + 1
    assert (1000 - BURST) / 400 - 1e-9 <= got[-1] < (1000 - BURST) / 400 + TICK


def test_utilization_scales_the_rate() -> None:
    """Half the capacity planned for: half the rate."""
    clocks = Clocks()
    pacer = clocks.pacer(utilization=0.5)
    clocks.answer(pacer, WINDOW + 1, cost=0.001, span=0.2)
    assert pacer.rate(2.5) == pytest.approx(200.0)


def test_a_window_shorter_than_the_minimum_is_not_a_sample() -> None:
    """After the first, a burst of answers inside a few milliseconds is not a sample."""
    clocks = Clocks()
    pacer = clocks.pacer()
    clocks.answer(pacer, WINDOW + 1, cost=0.001, span=MIN_WINDOW_S / 5)  # the first: counted
    assert pacer.cost == pytest.approx(0.001)
    clocks.answer(pacer, 10 * WINDOW, cost=0.003, span=MIN_WINDOW_S / 5)
    assert pacer.cost == pytest.approx(0.001)
    clocks.answer(pacer, WINDOW, cost=0.003, span=MIN_WINDOW_S)
    assert pacer.cost == pytest.approx(0.0016)  # the short answers joined the next window


def test_a_window_longer_than_the_maximum_is_dropped() -> None:
    """An idle spell with the loop busy elsewhere is not charged to the requests around it."""
    clocks = Clocks()
    pacer = clocks.pacer()
    clocks.answer(pacer, WINDOW + 1, cost=0.001, span=0.2)
    clocks.wall += 10 * MAX_WINDOW_S
    clocks.cpu += 5.0
    clocks.answer(pacer, WINDOW, cost=0.001, span=0.2)
    assert pacer.cost == pytest.approx(0.001)
    clocks.answer(pacer, WINDOW, cost=0.002, span=0.2)  # the next window counts again
    assert pacer.cost == pytest.approx(0.0013)


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
    waits(pacer, 50, 2.5)
    clocks.wall += 10.0
    got = waits(pacer, BURST + 3, 2.5)
    assert got.count(0.0) == BURST


@pytest.mark.parametrize("utilization", [0.0, -1.0, 1.5])
def test_utilization_out_of_range_is_refused(utilization: float) -> None:
    """Utilization is a share of the capacity: in (0, 1]."""
    with pytest.raises(ValueError, match="utilization"):
        SubmitPacer(utilization)


class SlowLoop:
    """A loop-thread CPU clock that says every measured window cost a whole second."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        self.t += 1.0
        return self.t


@pytest.mark.anyio
async def test_a_flood_started_at_once_is_paced_once_measured() -> None:
    """``gather`` of every submit at once: turns are taken late, at the measured rate.

    The CPU clock says the loop spends 1/64 s a request, which holds submits to MIN_RATE once
    the first window is measured. The pacer's wall clock stands still, so however fast or
    loaded this machine is, no submit's turn has come by itself: only the submits booked
    before that measurement and the burst go unpaced, and the paced ones wait one more gap
    each. The emulator sees result checks before the last submit; every job is created
    exactly once and every result comes back.
    """
    jobs, slots = 120, 8
    async with FakeRunComfy(token=TOKEN, duration_mean=0.05, record_arrivals=True) as fake:
        async with AsyncClient(TOKEN, fake.base_url, retry=FAST_RETRY, poll=POLL) as client:
            pacer = client._pacer = SubmitPacer(slots=slots, clock=lambda: 1000.0, cpu=SlowLoop())
            handles = await asyncio.gather(
                *(client.submit(T2I, {"prompt": f"p{i}"}) for i in range(jobs))
            )
            results = await asyncio.gather(*handles)
            assert client.pacer is pacer
            assert pacer.rate(3.0) == MIN_RATE
            assert pacer.paced >= jobs - (WINDOW + 1) - slots - BURST
            gap = 1 / MIN_RATE  # the k-th paced submit waited k gaps, rounded up to a tick
            assert pacer.waited >= gap * pacer.paced * (pacer.paced + 1) / 2 - 1e-6
    assert fake.jobs_created == jobs
    assert len({r.request_id for r in results}) == jobs
    endpoints = [e for _, e in fake.arrivals]
    last_submit = max(i for i, e in enumerate(endpoints) if e == "submit")
    assert "result" in endpoints[:last_submit]


@pytest.mark.anyio
async def test_a_submit_cancelled_while_paced_sends_nothing_and_gives_its_turn_back() -> None:
    """Cancelled in the pacer: nothing reaches the server, and the next submit gets its turn."""
    clocks = Clocks()
    async with FakeRunComfy(token=TOKEN, duration_mean=0.05) as fake:
        async with AsyncClient(TOKEN, fake.base_url, retry=FAST_RETRY, poll=POLL) as client:
            pacer = client._pacer = clocks.pacer()
            clocks.answer(pacer, WINDOW + 1, cost=1.0, span=0.2)  # MIN_RATE: 5 ms a turn
            waits(pacer, int(MIN_RATE), 3.0)  # book a second's worth of turns
            next_turn = pacer._next
            task = asyncio.create_task(client.submit(T2I, {"prompt": "late"}))
            for _ in range(5):
                await asyncio.sleep(0)  # let it take its turn and start waiting
            assert pacer._next > next_turn  # it booked the next turn
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert pacer._next == pytest.approx(next_turn)  # its turn is the next one again
            assert pacer.paced == 0
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
            async with AsyncClient(TOKEN, fake.base_url, poll=POLL) as first:
                rid = (await first.submit(T2I, {"prompt": "elsewhere"})).request_id
            await client.job(rid, T2I)  # re-attached: no submit of ours, not counted
            assert poller.ended == 40


def test_repr_shows_the_measured_cost() -> None:
    """print(pacer) shows the cost per request once measured, and how many submits waited."""
    wall = [0.0]
    cpu = [0.0]
    pacer = SubmitPacer(clock=lambda: wall[0], cpu=lambda: cpu[0])
    assert "cost=not measured yet" in repr(pacer) and "paced=0" in repr(pacer)
    for _ in range(WINDOW + 1):
        wall[0] += 0.001
        cpu[0] += 0.0005
        pacer.observe()
    assert pacer.cost is not None
    assert f"cost={pacer.cost * 1e6:.1f}us/request" in repr(pacer)
    assert repr(pacer).startswith("<SubmitPacer ") and "rate=" in repr(pacer)
