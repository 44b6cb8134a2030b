"""The rate learned from 429s: finds an unknown limit, stays under it, follows it up."""

from __future__ import annotations

import asyncio

import pytest

from runcomfy_async import AsyncClient, PollSettings
from runcomfy_async._adaptive import FREE_RATE, HOLD, AdaptiveRate
from runcomfy_async.testing import FakeRunComfy

from .conftest import FAST_RETRY, TOKEN

pytestmark = pytest.mark.anyio

T2I = "google/nano-banana-2/text-to-image"


class Bucket:
    """A server's token bucket on a simulated clock."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst, self.level, self.at = rate, burst, burst, 0.0

    def take(self, now: float) -> bool:
        self.level = min(self.burst, self.level + (now - self.at) * self.rate)
        self.at = now
        if self.level >= 1:
            self.level -= 1
            return True
        return False


def drive(
    limiter: AdaptiveRate, server: Bucket, start: float, until: float, rtt: float = 0.002
) -> tuple[int, int]:
    """A client with always more to send, on a simulated clock; (answered, 429s)."""
    now, ok, refused = start, 0, 0
    while now < until:
        wait = limiter.wait(now)
        if wait > 0:
            now += wait
            continue
        limiter.sent(now)
        if server.take(now + rtt / 2):
            ok += 1
            now += 1e-4
        else:
            refused += 1
            limiter.limited(now + rtt, now, 1.0)
            now += rtt + 1.0  # the Retry-After pause
    return ok, refused


def test_finds_an_unknown_limit_and_keeps_under_it() -> None:
    """Against 20 req/s (burst 20): one 429 finds it; later probes draw one now and then."""
    limiter = AdaptiveRate(0.0)
    server = Bucket(20.0, 20.0)
    ok, refused = drive(limiter, server, 0.0, 10.0)
    assert limiter.phase == "learned" and limiter.limit is not None
    assert 0.85 * 20 <= limiter.limit <= 1.1 * 20
    assert refused <= 2
    ok, refused = drive(limiter, server, 10.0, 130.0)
    assert refused <= 4  # probing upward, ever more rarely
    assert ok >= 0.88 * 20 * 120


def test_recovers_when_the_limit_rises() -> None:
    """After the limit doubles, the rate climbs past the old limit within a minute or so."""
    limiter = AdaptiveRate(0.0)
    server = Bucket(20.0, 20.0)
    drive(limiter, server, 0.0, 30.0)
    server.rate = server.burst = 40.0
    drive(limiter, server, 30.0, 30.0 + HOLD + 60.0)
    assert limiter.rate is not None and limiter.rate > 1.3 * 20
    ok, refused = drive(limiter, server, 120.0, 140.0)
    assert ok >= 0.75 * 40 * 20 and refused <= 2


def test_cuts_once_per_overshoot() -> None:
    """429s of requests sent before the last cut do not cut again."""
    limiter = AdaptiveRate(0.0, learned=100.0)
    rate = limiter.rate
    limiter.limited(1.0, 0.9, 1.0)
    assert limiter.cuts == 1 and limiter.rate is not None and rate is not None
    assert limiter.rate < rate
    after = limiter.rate
    for _ in range(10):
        limiter.limited(1.01, 0.95, 1.0)  # on the wire before the cut
    assert limiter.cuts == 1 and limiter.rate == after


def test_ramps_to_free_when_nothing_limits() -> None:
    """With no limit in sight the ramp ends in no limit, within about a second."""
    limiter = AdaptiveRate(0.0)
    server = Bucket(1e9, 1e9)
    drive(limiter, server, 0.0, 1.0)
    assert limiter.phase == "free" and limiter.rate is None and FREE_RATE > 1000


def test_learned_limit_is_the_starting_point() -> None:
    """A limit learned earlier starts the rate just under it, with no ramp."""
    limiter = AdaptiveRate(0.0, learned=20.0)
    assert limiter.phase == "learned" and limiter.rate is not None
    assert 0.9 * 20 <= limiter.rate < 20


async def test_429s_fall_to_near_zero_against_the_emulator() -> None:
    """A client at defaults against an unannounced limit draws only a handful of 429s."""
    n = 120
    async with (
        FakeRunComfy(token=TOKEN, duration_mean=0.3, rate_limit=40, rate_burst=40, seed=3) as fake,
        AsyncClient(TOKEN, fake.base_url, retry=FAST_RETRY, cache=False) as client,
    ):
        jobs = [await client.submit(T2I, {"prompt": f"p{i}"}) for i in range(n)]
        results = await asyncio.gather(*jobs)
        assert client.budget.adaptive is not None and client.budget.adaptive.limit is not None
    assert all(r.status == "succeeded" for r in results)
    total = sum(fake.requests.values())
    # Without learning every burst meets the limit again; learned, a few at the start only.
    assert fake.rate_limited <= max(8, 0.05 * total)


async def test_a_set_rate_is_not_adapted() -> None:
    """With max_requests_per_second set, no learned rate is used."""
    async with (
        FakeRunComfy(token=TOKEN, duration_mean=0.01) as fake,
        AsyncClient(
            TOKEN,
            fake.base_url,
            max_requests_per_second=50,
            poll=PollSettings(first_check=0.02),
            cache=False,
        ) as client,
    ):
        assert client.budget.adaptive is None
        await client.run(T2I, {"prompt": "x"})
