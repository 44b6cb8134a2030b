"""Submit pacing: new jobs wait when this process, not the API, is what limits the rate.

Each job costs its submit plus the checks that follow it. Against a fast origin (the
sandbox emulator, or an account allowed thousands of requests a second), a loop of submits
can go faster than the process can afterwards check the jobs it created: the checks of the
first second's jobs then queue behind the next second's submits, and every result is
noticed late. The pacer keeps the submit rate at what the event loop can follow through::

    rate = utilization / (CPU seconds per request x requests per job)

* **CPU per request** is measured, not configured: the event loop thread's CPU time
  (:func:`time.thread_time`, so other threads of the process do not count) over windows of
  at least :data:`WINDOW` requests, smoothed. It includes whatever else the loop does
  between requests, which is the capacity the checks will actually get. A window slower
  than :data:`MAX_WINDOW_S` is dropped: at that request rate the loop is not the limit, and
  an idle spell would be charged to the requests around it.
* **Turns are taken late.** At most ``slots`` submits (the connection pool's size) are in
  progress at once, from their turn until their answer (retries included); the others
  queue for a slot and work out their wait when they get one, at the rate measured by then.
  A flood started all at once (``asyncio.gather`` of ten thousand submits) is paced like
  one from a few submitter tasks, and a submit cancelled while it waits for its turn gives
  the turn back (one cancelled later, in the request budget, does not). Waiting submits
  wake on a grid of :data:`TICK`, several on one wake-up of the loop: a timer each costs
  measurably more CPU per job.
* **Requests per job** comes from the poller (submit plus its checks, over the jobs that
  ended); :data:`PRIOR_REQUESTS_PER_JOB` until enough jobs have ended.
* **Utilization**, 1.0 by default: the cost is measured at the paced rate, where each
  request wakes the loop more nearly on its own and costs more than in a flood, and that
  difference is the room left for the checks' bunching (``benchmarks/`` compares values).
* **A floor**, :data:`MIN_RATE`: CPU spent on the caller's own work counts as cost per
  request too, so a loop kept busy by something else would otherwise pace itself to a
  crawl. Below a few hundred submits a second a loop's request handling is not what limits
  anything.

Until the first window is measured, submits are not paced (only the ``slots`` cap holds).
Against the real API an account's rate limit and the network's round trip usually bind
first (64 connections at a 100 ms round trip send at most 640 requests a second); the
pacer binds against a fast origin such as the emulator, and a loop busy with other work
can still be held to :data:`MIN_RATE`. It never holds a check, a cancel or a read's retry:
only a submit, before it is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Callable

__all__ = ["SubmitPacer"]

WINDOW = 64
"""Requests per CPU measurement (after the first, each also spans :data:`MIN_WINDOW_S`)."""
MIN_WINDOW_S = 0.05
"""Shortest wall time of a CPU measurement, so one burst of answers is not a sample."""
MAX_WINDOW_S = 1.0
"""Longest wall time of a CPU measurement; a slower window is dropped (see above)."""
SMOOTHING = 0.3
"""Weight of the newest measurement in the running CPU cost per request."""
UTILIZATION = 1.0
"""Share of the measured capacity that submits and their checks are planned to fill."""
PRIOR_REQUESTS_PER_JOB = 3.0
"""Requests per job (submit + checks) assumed until enough jobs have ended to measure it."""
MIN_RATE = 200.0
"""Submits per second the pacer never holds below (see the module docstring)."""
BURST = 8
"""Submits that may leave back to back after an idle spell, before pacing applies."""
EPSILON = 1e-9
"""Waits shorter than this (rounding of the turn arithmetic) are no wait."""
TICK = 0.02
"""Waiting submits wake on a grid of this many seconds, several on one wake-up (each still
leaves no earlier than its turn, so the average rate holds)."""


class SubmitPacer:
    """Spaces submits so the process can follow up every job it creates.

    Args:
        utilization: share of the measured capacity to plan for (see :data:`UTILIZATION`).
        slots: submits that may hold a turn at once (the client passes its pool size).
        clock: monotonic wall clock (tests may pass their own).
        cpu: CPU clock of the event loop thread.
    """

    def __init__(
        self,
        utilization: float = UTILIZATION,
        *,
        slots: int = 64,
        clock: Callable[[], float] = time.monotonic,
        cpu: Callable[[], float] = time.thread_time,
    ) -> None:
        if not 0 < utilization <= 1:
            raise ValueError("utilization must be in (0, 1]")
        if slots < 1:
            raise ValueError("slots must be >= 1")
        self.utilization = utilization
        """Share of the measured capacity planned for."""
        self._slots = asyncio.Semaphore(slots)
        self._clock = clock
        self._cpu = cpu
        self.cost: float | None = None
        """Smoothed CPU seconds the loop spends per request (``None``: not measured yet)."""
        self.paced = 0
        """How many submits waited for their turn (not counting a wait for a slot)."""
        self.waited = 0.0
        """Seconds those submits spent waiting for their turns, in all."""
        self._count = 0
        self._since: tuple[float, float] | None = None  # (wall, cpu) at the window's start
        self._next = 0.0

    def __repr__(self) -> str:
        cost = "not measured yet" if self.cost is None else f"{self.cost * 1e6:.1f}us/request"
        rate = self.rate(PRIOR_REQUESTS_PER_JOB)
        at = (
            "unpaced"
            if rate is None
            else f"{rate:,.0f}/s at {PRIOR_REQUESTS_PER_JOB:g} requests/job"
        )
        return (
            f"<SubmitPacer cost={cost} rate={at} paced={self.paced} "
            f"waited={self.waited:.3f}s utilization={self.utilization:g}>"
        )

    def observe(self) -> None:
        """One request ended (answered or not); call it from the event loop thread."""
        if self._since is None:
            self._since = (self._clock(), self._cpu())
            return
        self._count += 1
        if self._count < WINDOW:
            return
        now = self._clock()
        span = now - self._since[0]
        if self.cost is not None and span < MIN_WINDOW_S:
            return
        cpu = self._cpu()
        if span <= MAX_WINDOW_S:
            sample = (cpu - self._since[1]) / self._count
            self.cost = (
                sample if self.cost is None else self.cost + SMOOTHING * (sample - self.cost)
            )
        self._count = 0
        self._since = (now, cpu)

    def rate(self, requests_per_job: float) -> float | None:
        """Submits per second the process can follow through; ``None`` before a measurement."""
        if self.cost is None or self.cost <= 0 or requests_per_job <= 0:
            return None
        return max(MIN_RATE, self.utilization / (self.cost * requests_per_job))

    def delay(self, requests_per_job: float) -> float:
        """Book the next submit turn; return the seconds to wait for it (often 0).

        The wait ends on the next :data:`TICK` grid point at or after the turn.
        """
        return self._book(requests_per_job)[0]

    def _book(self, requests_per_job: float) -> tuple[float, float]:
        rate = self.rate(requests_per_job)
        if rate is None:
            return 0.0, 0.0
        now = self._clock()
        gap = 1.0 / rate
        turn = max(self._next, now - (BURST - 1) * gap)  # unused turns are not saved up
        self._next = turn + gap
        if turn - now <= EPSILON:
            return 0.0, gap
        # Wake on a shared grid: the submits whose turns fall in one tick leave together, on
        # one wake-up of the loop, instead of one timer each (the average rate holds).
        return math.ceil(turn / TICK) * TICK - now, gap

    @contextlib.asynccontextmanager
    async def turn(self, requests_per_job: Callable[[], float | None]) -> AsyncIterator[None]:
        """Hold a submit until its turn; the block is the submit (one slot while it runs).

        ``requests_per_job`` reads the measured figure when the turn is taken (``None``:
        not measured yet, :data:`PRIOR_REQUESTS_PER_JOB`). A submit cancelled while it
        waits for its turn gives the turn back.
        """
        async with self._slots:
            wait, gap = self._book(requests_per_job() or PRIOR_REQUESTS_PER_JOB)
            if wait > 0:
                try:
                    await asyncio.sleep(wait)
                except BaseException:
                    self._next -= gap
                    raise
                self.paced += 1
                self.waited += wait
            yield
