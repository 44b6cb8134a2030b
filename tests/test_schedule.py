"""The schedule beside the bulk economy: scale-free probes, lone jobs, knowledge carried over."""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from pathlib import Path

import pytest

from runcomfy_async import AsyncClient
from runcomfy_async._estimate import MIN_STEP, DurationModel
from runcomfy_async._learned import LearnedCache, ModelKnowledge
from runcomfy_async._planning import SCOUT_MIN
from runcomfy_async._schedule import (
    LADDER,
    LONE_BOUND,
    MANY_WAITING,
    PROBE_RATIO,
    WINDOW_CLOSES,
    WINDOW_OPENS,
    ladder_next,
    lone_next,
    probe_ratio,
    probe_shift,
)
from runcomfy_async.testing import FakeRunComfy

from .conftest import FAST_RETRY, TOKEN

pytestmark = pytest.mark.anyio

T2I = "google/nano-banana-2/text-to-image"


def model(median: float, sigma: float) -> DurationModel:
    durations = DurationModel()
    durations.seed(math.log(median), sigma, 20)
    return durations


def lone_schedule(durations: DurationModel, until: float, in_flight: int = 1) -> list[float]:
    checks, elapsed = [], 0.0
    while elapsed < until:
        nxt = lone_next(durations, elapsed, in_flight=in_flight, ratio=0.52, cold=False)
        assert nxt is not None and nxt > elapsed
        checks.append(nxt)
        elapsed = nxt
    return checks


@pytest.mark.parametrize("median", [1.0, 15.0, 60.0, 600.0])
def test_lone_job_gaps_are_bounded_in_absolute_time(median: float) -> None:
    """Inside its likely window a lone job is checked at most LONE_BOUND seconds apart.

    Past the median the gaps never shrink (the fitted hazard is held there), and past the
    window's end (a job later than all but a few) they grow with the job's age.
    """
    durations = model(median, 0.3)
    closes = durations.quantile(WINDOW_CLOSES)
    checks = lone_schedule(durations, durations.quantile(0.001))
    inside = [c for c in checks if durations.quantile(WINDOW_OPENS) <= c <= closes]
    gaps = [b - a for a, b in itertools.pairwise(inside)]
    assert gaps and max(gaps) <= LONE_BOUND + 1e-9
    late = [c for c in checks if c >= durations.quantile(0.5)]
    late_gaps = [b - a for a, b in itertools.pairwise(late)]
    assert all(b >= a - 1e-9 for a, b in itertools.pairwise(late_gaps))
    for a, b in itertools.pairwise(checks):
        if a >= closes:
            assert b - a >= MIN_STEP * a - 1e-9


def test_lone_rule_gives_way_to_the_economy_as_jobs_grow() -> None:
    """With many jobs in flight the lone-job rule checks less often than the bulk one."""
    durations = model(15.0, 0.2)
    economy = durations.next_check(15.0, 0.52)
    lone_one = lone_next(durations, 15.0, in_flight=1, ratio=0.52, cold=False)
    lone_many = lone_next(durations, 15.0, in_flight=200, ratio=0.52, cold=False)
    assert lone_one is not None and lone_one < economy
    assert lone_many is not None and lone_many > economy
    assert lone_next(durations, 15.0, in_flight=100_000, ratio=0.52, cold=False) is None


def test_ratio_still_moves_the_lone_trade_off() -> None:
    """A higher ratio checks a lone job more often; a lower one less."""
    durations = model(15.0, 0.2)
    gaps = {}
    for ratio in (0.3, 0.52, 0.8):
        nxt = lone_next(durations, 14.0, in_flight=1, ratio=ratio, cold=False)
        assert nxt is not None
        gaps[ratio] = nxt - 14.0
    assert gaps[0.8] < gaps[0.52] < gaps[0.3]


@pytest.mark.parametrize("duration", [1.0, 60.0])
def test_probe_ladder_costs_about_the_same_at_any_scale(duration: float) -> None:
    """A probe reaches a 1 s or a 60 s job in a handful of checks (log of the ratio)."""
    for seq in range(1, 25):
        elapsed, checks = 0.0, 0
        while elapsed < duration:
            elapsed = ladder_next(0.25, probe_shift(seq), elapsed * 1.1)
            checks += 1
        assert checks <= math.log(duration / 0.25) / math.log(LADDER) + 2


def test_probe_shifts_spread_over_a_rung() -> None:
    """However many probes, their shifts cover a rung evenly (no two close together)."""
    shifts = sorted(probe_shift(k) for k in range(1, 9))
    gaps = [b - a for a, b in itertools.pairwise(shifts)]
    assert min(gaps) > 0.05


async def test_durations_are_read_by_the_next_client(tmp_path: Path) -> None:
    """A client saves what it learned of a model; the next one starts with it, no probing."""
    async with FakeRunComfy(token=TOKEN, duration_mean=0.3, duration_sigma=0.2, seed=2) as fake:
        async with AsyncClient(TOKEN, fake.base_url, retry=FAST_RETRY, cache=tmp_path) as first:
            jobs = [await first.submit(T2I, {"prompt": f"p{i}"}) for i in range(20)]
            await asyncio.gather(*jobs)
        known = LearnedCache(tmp_path).load(fake.base_url).models[T2I]
        assert math.exp(known.mu) == pytest.approx(0.3, rel=0.3)
        async with AsyncClient(TOKEN, fake.base_url, cache=tmp_path) as second:
            poller = second._poller
            assert poller is not None
            stats = poller._stats(T2I)
            assert stats.learned and stats.durations.seeded > 0


async def test_corrupt_cache_does_not_stop_a_client(tmp_path: Path) -> None:
    """A garbage cache file is ignored: the client runs cold and rewrites the file."""
    (tmp_path / "learned.json").write_bytes(b"\x00garbage{")
    async with (
        FakeRunComfy(token=TOKEN, duration_mean=0.05) as fake,
        AsyncClient(TOKEN, fake.base_url, retry=FAST_RETRY, cache=tmp_path) as client,
    ):
        await client.run(T2I, {"prompt": "x"})
    assert T2I in LearnedCache(tmp_path).load(fake.base_url).models


async def test_lone_job_answered_within_the_bound(tmp_path: Path) -> None:
    """A lone job of a known model is answered within the fixed bound of its end."""
    base = None
    async with FakeRunComfy(token=TOKEN, duration_mean=3.0, duration_sigma=0.0, seed=4) as fake:
        base = fake.base_url
        known = ModelKnowledge(mu=math.log(3.0), sigma=0.2, count=20, updated=time.time())
        LearnedCache(tmp_path).save(base, {T2I: known})
        async with AsyncClient(TOKEN, base, retry=FAST_RETRY, cache=tmp_path) as client:
            job = await client.submit(T2I, {"prompt": "lone"})
            result = await job
            delay = time.time() - result.finished_at.timestamp() if result.finished_at else 99.0
            checks = client.requests["result"] + client.requests["status"]
    # The bound plus generous room for a loaded machine; the bulk schedule alone would
    # check a lone job far less often, but this is about the bound holding end to end.
    assert delay <= LONE_BOUND + 1.0
    assert checks <= 15


@pytest.mark.parametrize("ratio", [0.3, 0.52, 0.9])
def test_probes_check_densely_only_while_many_jobs_wait_on_them(ratio: float) -> None:
    """A small batch's probes follow the bulk ratio; a big one's learn sooner (never sparser)."""
    for waiting in (0, 1, MANY_WAITING - 1):
        assert probe_ratio(ratio, waiting) == ratio
    for waiting in (MANY_WAITING, 10 * MANY_WAITING):
        assert probe_ratio(ratio, waiting) == max(ratio, PROBE_RATIO)
    durations = model(1.0, 0.3)
    few, many = (durations.next_check(0.8, probe_ratio(0.52, n)) for n in (0, MANY_WAITING))
    assert 0.8 < many < few  # denser: the next check sooner


def test_a_late_job_is_not_checked_ever_more_often() -> None:
    """Far in the fitted tail a check still waits a share of the elapsed time (MIN_STEP)."""
    durations = model(10.0, 0.3)
    for elapsed in (15.0, 25.0, 40.0, 100.0):
        assert durations.next_check(elapsed, 0.52) >= elapsed * (1.0 + MIN_STEP) - 1e-9


async def test_a_cold_batch_sends_one_scout_wave_and_hears_all_of_it() -> None:
    """Many jobs submitted at once, nothing known: a scout wave goes out once, every answer in.

    The scouts are what the main wave's first check is placed with; a scout whose answer was
    lost would hold that wave back for good (and the batch would not finish).
    """
    jobs = SCOUT_MIN + 32
    async with (
        FakeRunComfy(token=TOKEN, duration_mean=0.8, duration_sigma=0.3, seed=5) as fake,
        AsyncClient(TOKEN, fake.base_url, retry=FAST_RETRY, cache=False) as client,
    ):
        handles = await asyncio.gather(
            *(client.submit(T2I, {"prompt": f"s{i}"}) for i in range(jobs))
        )
        results = await asyncio.gather(*handles)
        poller = client._poller
        assert poller is not None
        stats = poller._stats(T2I)
    assert all(r.phase == "succeeded" for r in results)
    assert stats.scouted and stats.scouts == 0 and stats.learned
    assert fake.jobs_created == jobs


async def test_queue_speed_is_read_back_as_a_last_resort(tmp_path: Path) -> None:
    """An earlier client's queue speed times a start when nothing of ours measures one."""
    async with FakeRunComfy(token=TOKEN, duration_mean=0.05) as fake:
        known = ModelKnowledge(mu=0.0, sigma=0.3, count=20, queue_speed=2.0, updated=time.time())
        LearnedCache(tmp_path).save(fake.base_url, {T2I: known})
        async with AsyncClient(TOKEN, fake.base_url, cache=tmp_path) as client:
            poller = client._poller
            assert poller is not None
            tracker = poller._stats(T2I).queue
            assert tracker.prior_speed == 2.0
            tracker.observe(100.0, 4, 0)  # our job 0 is fifth in line at t=100
            assert tracker.guess_start(0, None) == pytest.approx(100.0 + 5 / 2.0)
            assert tracker.guess_start(0, 5.0) == pytest.approx(100.0 + 5 / 5.0)
        saved = LearnedCache(tmp_path).load(fake.base_url).models[T2I]
        assert saved.queue_speed == 2.0
