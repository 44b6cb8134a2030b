"""Job model of the emulator: lazily computed states, a virtual-time queue, a token bucket.

Nothing here owns a task or a timer. A job's state is a pure function of the clock and of the
times fixed when it was admitted; the only mutable bookkeeping is the server-side queue when a
concurrency limit is set, and :meth:`JobScheduler.advance` replays it exactly, in virtual time,
whenever a request arrives. That keeps the emulator cheap at 100,000 jobs.
"""

from __future__ import annotations

import heapq
import math
import random
import time
from bisect import bisect_left, insort
from collections import deque
from datetime import datetime, timedelta
from typing import Any

__all__ = ["FakeJob", "JobScheduler", "TokenBucket", "draw_duration"]

IN_QUEUE = "in_queue"
IN_PROGRESS = "in_progress"
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"


def draw_duration(rng: random.Random, mean: float, sigma: float) -> float:
    """Draw how long one job runs once started.

    The distribution is lognormal with the given *mean* (not median):
    ``mu = ln(mean) - sigma**2 / 2``, so the average over many jobs is ``mean``.

    Args:
        rng: the random source.
        mean: the mean duration in seconds (``>= 0``).
        sigma: the lognormal shape; ``0`` makes every job take exactly ``mean`` seconds.

    Returns:
        The duration in seconds.
    """
    if sigma <= 0.0 or mean <= 0.0:
        return mean
    return rng.lognormvariate(math.log(mean) - sigma * sigma / 2.0, sigma)


class FakeJob:
    """One job held by the emulator.

    Attributes:
        request_id: the id handed to the client.
        model_id: the model the job was submitted to.
        inputs: the decoded submit body, as received.
        created_at: wall-clock creation time (UTC, timezone-aware).
        created: ``time.monotonic()`` at creation.
        duration: seconds the job runs once started (drawn at creation).
        will_fail: whether the job ends failed (drawn at creation).
        num_images: how many outputs a successful job produces.
        started: monotonic start time, or ``None`` while queued (or if cancelled in the queue).
        ends: monotonic end time (``started + duration``), or ``None`` while queued.
        cancelled_at: monotonic time of a successful cancel, else ``None``.
    """

    __slots__ = (
        "_qseq",
        "_sched",
        "cancelled_at",
        "created",
        "created_at",
        "duration",
        "ends",
        "inputs",
        "model_id",
        "num_images",
        "request_id",
        "started",
        "will_fail",
    )

    def __init__(
        self,
        sched: JobScheduler,
        *,
        request_id: str,
        model_id: str,
        inputs: dict[str, Any],
        created_at: datetime,
        created: float,
        duration: float,
        will_fail: bool,
        num_images: int,
    ):
        self._sched = sched
        self._qseq = -1
        self.request_id = request_id
        self.model_id = model_id
        self.inputs = inputs
        self.created_at = created_at
        self.created = created
        self.duration = duration
        self.will_fail = will_fail
        self.num_images = num_images
        self.started: float | None = None
        self.ends: float | None = None
        self.cancelled_at: float | None = None

    @property
    def status(self) -> str:
        """What the status endpoint would answer now.

        One of ``in_queue``, ``in_progress``, ``completed``, ``cancelled`` (a failed job shows
        the emulator's ``failed_status``).
        """
        return self._sched.public_status(self, time.monotonic())

    @property
    def state(self) -> str:
        """The detailed state now.

        One of ``in_queue``, ``in_progress``, ``succeeded``, ``failed``, ``cancelled``.
        """
        return self._sched.state(self, time.monotonic())

    def finished_monotonic(self, now: float) -> float | None:
        """The monotonic time the job ended (success, failure or cancel), or ``None`` if it has not.

        Args:
            now: the current ``time.monotonic()``.

        Returns:
            The end time, or ``None``.
        """
        self._sched.advance(now)
        if self.cancelled_at is not None:
            return self.cancelled_at
        if self.ends is not None and self.ends <= now:
            return self.ends
        return None

    def wall_time(self, monotonic: float) -> datetime:
        """Convert a monotonic instant of this job's life to wall-clock time.

        Args:
            monotonic: a ``time.monotonic()`` value.

        Returns:
            The matching UTC datetime.
        """
        return self.created_at + timedelta(seconds=monotonic - self.created)

    def __repr__(self) -> str:
        return f"<FakeJob {self.request_id} {self.model_id} {self.state}>"


class JobScheduler:
    """Server-side slots and FIFO queue, replayed exactly in virtual time.

    With ``concurrency=None`` every job starts the moment it is created. With a number, at most
    that many jobs run at once; the others wait in a FIFO queue and each starts at the instant a
    slot frees (the end time of the job before it), not when the next request happens to arrive.

    Args:
        concurrency: server-side slots, or ``None`` for no limit.
        failed_status: what :meth:`public_status` says for a failed job.
    """

    def __init__(self, concurrency: int | None, failed_status: str):
        self.concurrency = concurrency
        self.failed_status = failed_status
        self._running: list[tuple[float, int, FakeJob]] = []  # min-heap on end time
        self._queue: deque[FakeJob] = deque()
        self._enqueued = 0  # queue sequence numbers handed out
        self._dequeued = 0  # queue entries removed (started or skipped), always in order
        self._cancelled_seqs: list[int] = []  # sorted queue numbers of jobs cancelled while queued
        self._tiebreak = 0

    def admit(self, job: FakeJob, now: float) -> None:
        """Start ``job`` at ``now`` if a slot is free, else append it to the queue.

        Args:
            job: a freshly created job.
            now: its creation time.
        """
        if self.concurrency is None:
            self._start(job, now)
            return
        self.advance(now)
        # Invariant kept by advance(): a free slot means no live job waits in the queue.
        if len(self._running) < self.concurrency:
            self._start(job, now)
        else:
            job._qseq = self._enqueued
            self._enqueued += 1
            self._queue.append(job)

    def _start(self, job: FakeJob, at: float) -> None:
        job.started = at
        job.ends = at + job.duration
        if self.concurrency is not None:
            self._tiebreak += 1
            heapq.heappush(self._running, (job.ends, self._tiebreak, job))

    def advance(self, now: float) -> None:
        """Finish every job that ended by ``now`` and start queued jobs when their slot freed.

        Args:
            now: the current ``time.monotonic()``.
        """
        running, queue = self._running, self._queue
        while running and running[0][0] <= now:
            freed_at = heapq.heappop(running)[0]
            while queue:
                job = queue.popleft()
                self._dequeued += 1
                if job.cancelled_at is None:
                    self._start(job, freed_at)
                    break

    def state(self, job: FakeJob, now: float) -> str:
        """The detailed state of ``job`` at ``now`` (advances the queue first).

        Args:
            job: the job.
            now: the current ``time.monotonic()``.

        Returns:
            ``in_queue``, ``in_progress``, ``succeeded``, ``failed`` or ``cancelled``.
        """
        self.advance(now)
        return self.state_unadvanced(job, now)

    @staticmethod
    def state_unadvanced(job: FakeJob, now: float) -> str:
        """Like :meth:`state` but trusts that :meth:`advance` already ran for ``now``.

        Args:
            job: the job.
            now: the current ``time.monotonic()``.

        Returns:
            The detailed state.
        """
        if job.cancelled_at is not None:
            return CANCELLED
        ends = job.ends
        if ends is None:
            return IN_QUEUE
        if now < ends:
            return IN_PROGRESS
        return FAILED if job.will_fail else SUCCEEDED

    def public_status(self, job: FakeJob, now: float) -> str:
        """The status-endpoint word for ``job`` at ``now``.

        Args:
            job: the job.
            now: the current ``time.monotonic()``.

        Returns:
            ``in_queue``, ``in_progress``, ``completed``, ``cancelled`` or ``failed_status``.
        """
        return self.to_public(self.state(job, now))

    def to_public(self, state: str) -> str:
        """Map a detailed state to the status endpoint's vocabulary.

        Args:
            state: a detailed state.

        Returns:
            The status-endpoint word.
        """
        if state == SUCCEEDED:
            return "completed"
        if state == FAILED:
            return self.failed_status
        return state

    def queue_position(self, job: FakeJob) -> int:
        """How many still-queued jobs are ahead of a queued ``job`` (0 = next to start).

        Args:
            job: a job in state ``in_queue``.

        Returns:
            The 0-based position.
        """
        seq, low = job._qseq, self._dequeued
        cancelled = self._cancelled_seqs
        return seq - low - (bisect_left(cancelled, seq) - bisect_left(cancelled, low))

    def cancel(self, job: FakeJob, now: float) -> bool:
        """Cancel ``job`` if it is still queued.

        Args:
            job: the job.
            now: the current ``time.monotonic()``.

        Returns:
            ``True`` if the job was queued and is now cancelled, else ``False``.
        """
        if self.state(job, now) != IN_QUEUE:
            return False
        job.cancelled_at = now
        insort(self._cancelled_seqs, job._qseq)  # it stays in the deque and is skipped later
        return True


class TokenBucket:
    """A token bucket: ``rate`` tokens a second, holding at most ``burst``.

    Args:
        rate: tokens added per second.
        burst: bucket size (also the initial fill).
        now: the current ``time.monotonic()``.
    """

    def __init__(self, rate: float, burst: int, now: float):
        self.rate = rate
        self.burst = float(burst)
        self._tokens = float(burst)
        self._stamp = now

    def take(self, now: float) -> float:
        """Take one token if there is one.

        Args:
            now: the current ``time.monotonic()``.

        Returns:
            ``0.0`` when a token was taken, else the seconds until one frees.
        """
        tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if tokens >= 1.0:
            self._tokens = tokens - 1.0
            return 0.0
        self._tokens = tokens
        return (1.0 - tokens) / self.rate
