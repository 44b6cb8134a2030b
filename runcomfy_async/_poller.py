"""The poller: one schedule for every job in flight, a fixed set of request workers.

There is no loop and no sleep per job. Jobs sit in a min-heap keyed by their next due
time; one scheduler task pops the due ones onto a queue; a fixed pool of worker tasks
(``workers``, default 16) sends the checks over the client's shared session. The number of
tasks is the same with one job in flight or a hundred thousand.

What to check and when:

* A job believed running is checked with ``GET /result``, which answers the current state
  while pending, so no separate ``/status`` call is spent. Checks are placed where the
  chance that the job is still running has fallen by ``ratio`` (50th, 75th, 87.5th ...
  percentile of the learned duration distribution for ``ratio=0.5``), capped and jittered.
* Until a model has a finished job to learn from, only a few of its jobs (the oldest)
  probe with a geometric backoff; the others wait for the first estimate instead of
  spending requests on guesses.
* Behind a server queue, one ``GET /status`` of a queued job gives its ``queue_position``,
  which says how many of our jobs started at their submit. Every later job starts, in
  order, when one of ours finishes, so its start is read off our own finishes as they come
  in and its checks are timed from there, like a job that never queued. While the probes
  learn, one ``/status`` of the newest job finds such a queue before any job is checked
  at the wrong time. Where our finishes cannot tell (other users' jobs free slots too),
  the queue's measured speed and a fresh look at it fill in.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import heapq
import itertools
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.abc

from ._estimate import DrainRate, DurationModel, QueueTracker, ServerClock
from ._exceptions import (
    APIError,
    APIStatusError,
    JobCancelledError,
    JobFailedError,
)
from ._jobs import Job
from ._retry import RetryPolicy, is_retryable_read
from ._wire import Result, StatusResponse

__all__ = ["PollSettings", "Poller"]

logger = logging.getLogger("runcomfy_async")

RELEASE_TICK = 0.02
"""Seconds ahead that waiting jobs are released into the schedule."""
QUEUE_FRESH = 0.5
"""Seconds a look at the server queue stays fresh enough to time jobs found still queued."""

MIN_ENDED = 32
"""Ended jobs needed before :attr:`Poller.requests_per_job` is measured."""

NOT_READY = 400005
"""The error code some deployments answer (HTTP 400) for a result that is not ready yet."""


@dataclass(frozen=True)
class PollSettings:
    """Knobs of the adaptive schedule (all times in seconds).

    Attributes:
        ratio: the one trade-off knob, in (0, 1). Each check is placed where the chance that
            the job is still running has fallen to ``ratio`` times its value at the previous
            check. Lower means fewer requests and slower answers (about ``1/(1-ratio)``
            checks per job); higher means faster answers for more requests.
        min_interval: the shortest gap between two checks of one job.
        max_interval: the longest gap between two checks of one job.
        first_check: the first probe of a model nothing is known about.
        probes: how many jobs per unknown model probe before the first estimate.
        learn_after: finished probes needed before the other jobs get a schedule.
        jitter: relative jitter of every gap (``0.1`` = +-10 %).
        workers: concurrent checks in flight (fixed pool of tasks).
        error_limit: consecutive failed checks of one job before it fails with the error.
    """

    ratio: float = 0.52
    min_interval: float = 0.05
    max_interval: float = 30.0
    first_check: float = 0.25
    probes: int = 24
    learn_after: int = 8
    jitter: float = 0.05
    workers: int = 16
    error_limit: int = 30

    def __post_init__(self) -> None:
        if not 0 < self.ratio < 1:
            raise ValueError("ratio must be in (0, 1)")
        if not 0 < self.min_interval <= self.max_interval:
            raise ValueError("need 0 < min_interval <= max_interval")
        if min(self.workers, self.probes, self.error_limit, self.learn_after) < 1:
            raise ValueError("workers, probes, learn_after and error_limit must be >= 1")


class _Entry:
    """The poller's private state for one job."""

    __slots__ = (
        "attached",
        "checks",
        "due",
        "elapsed",
        "errors",
        "job",
        "live",
        "probing",
        "queued",
        "ref",
        "seq",
        "waited",
    )

    def __init__(self, job: Job, seq: int):
        self.job = job
        self.seq = seq  # submit order among this client's jobs of the same model
        self.waited = False  # seen (or predicted) in the server's queue: ref is a guess
        self.live = True
        self.ref = job.submitted_at  # when the job (is believed to have) started running
        self.elapsed = 0.0  # elapsed since ref at the last check that found it running
        self.due = 0.0
        self.errors = 0
        self.queued = False
        self.probing = False
        self.attached = False  # re-attached: submitted_at is when we attached, not submitted
        self.checks = 0


class _ModelStats:
    __slots__ = (
        "drain",
        "durations",
        "in_queue",
        "learned",
        "live",
        "model_id",
        "probing",
        "queue",
        "seq",
        "waiting",
    )

    def __init__(self, model_id: str | None) -> None:
        self.model_id = model_id
        self.in_queue: collections.deque[_Entry] = collections.deque()
        self.live = 0
        self.seq = 0
        self.queue = QueueTracker()
        self.durations = DurationModel()
        self.drain = DrainRate()
        self.learned = False
        self.probing = 0
        self.waiting: collections.deque[_Entry] = collections.deque()


class Poller:
    """Follows every job in flight and resolves its future. Run it with :meth:`run`."""

    def __init__(
        self,
        *,
        fetch_result: Callable[[str], Awaitable[Result]],
        fetch_status: Callable[[str], Awaitable[StatusResponse]],
        settings: PollSettings,
        retry: RetryPolicy,
        redact: Callable[[Any], Any] = lambda value: value,
    ):
        self._fetch_result = fetch_result
        self._fetch_status = fetch_status
        self.settings = settings
        self._retry = retry
        self._redact = redact
        self._heap: list[tuple[float, int, _Entry]] = []
        self._seq = itertools.count()
        self._ready: asyncio.Queue[_Entry] = asyncio.Queue()
        self._wake = asyncio.Event()
        self._models: dict[str | None, _ModelStats] = {}
        self._entries: dict[str, _Entry] = {}
        self._rng = random.Random()
        self._clock = ServerClock()
        self.checks = 0
        """Checks sent, in all."""
        self.ended = 0
        """Jobs this client submitted and followed to their end, whatever the end."""
        self._ended_checks = 0

    @property
    def in_flight(self) -> int:
        """How many jobs the poller is following."""
        return len(self._entries)

    @property
    def requests_per_job(self) -> float | None:
        """Requests per ended job (its submit and its checks); ``None`` until enough ended.

        Measured once :data:`MIN_ENDED` jobs have ended.
        """
        if self.ended < MIN_ENDED:
            return None
        return 1.0 + self._ended_checks / self.ended

    # ----- public, called by the client ---------------------------------------------------

    def get(self, request_id: str) -> Job | None:
        """The handle of a job being followed, if any."""
        entry = self._entries.get(request_id)
        return entry.job if entry is not None else None

    def jobs(self) -> list[Job]:
        """Every job being followed."""
        return [entry.job for entry in self._entries.values()]

    def track(self, job: Job, *, check_now: bool = False) -> None:
        """Start following ``job``; ``check_now`` for re-attached jobs of unknown age."""
        stats = self._stats(job.model_id)
        stats.seq += 1
        stats.live += 1
        entry = _Entry(job, stats.seq)
        entry.attached = check_now
        self._entries[job.request_id] = entry
        if check_now:
            self._schedule(entry, time.monotonic())
        else:
            self._plan(entry, stats)

    def resolve_cancelled(self, request_id: str) -> None:
        """The server accepted a cancel: end the job with :class:`JobCancelledError`."""
        entry = self._entries.get(request_id)
        if entry is not None:
            self._forget(entry)
            entry.job._notify("cancelled", None)
            self._resolve_error(entry.job, JobCancelledError(request_id=request_id))

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Run the scheduler and the worker pool until cancelled."""
        async with anyio.create_task_group() as tg:
            for _ in range(self.settings.workers):
                tg.start_soon(self._worker)
            task_status.started()
            await self._scheduler()

    # ----- scheduling ---------------------------------------------------------------------

    def _stats(self, model_id: str | None) -> _ModelStats:
        stats = self._models.get(model_id)
        if stats is None:
            stats = self._models[model_id] = _ModelStats(model_id)
        return stats

    def _schedule(self, entry: _Entry, due: float) -> None:
        entry.due = due
        heapq.heappush(self._heap, (due, next(self._seq), entry))
        if self._heap[0][2] is entry:
            self._wake.set()

    def _jittered(self, gap: float) -> float:
        s = self.settings
        gap = min(s.max_interval, max(s.min_interval, gap))
        return gap * (1.0 + self._rng.uniform(-s.jitter, s.jitter))

    def _plan(self, entry: _Entry, stats: _ModelStats) -> None:
        """Schedule the next check of a job believed running (or not yet seen)."""
        s = self.settings
        now = time.monotonic()
        if entry.elapsed == 0 and not entry.probing and not entry.waited:
            # Never checked: its first check is placed when it comes due, with the estimate
            # of that moment (see _release), not with today's guess...
            stats.waiting.append(entry)
            self._wake.set()
            if stats.learned:
                return
            # ... unless nothing is known yet: then the oldest jobs become probes, one per
            # eight jobs in flight (at least two, at most `probes`).
            allowed = min(s.probes, max(2, stats.live // 8))
            while stats.probing < allowed and stats.waiting:
                probe = stats.waiting.popleft()
                if probe.live and not probe.job.done():
                    probe.probing = True
                    stats.probing += 1
                    self._schedule(probe, now + self._jittered(s.first_check))
            return
        if not stats.learned:
            # Probes look often when many jobs will wait for what they learn.
            growth = 0.25 if stats.probing >= s.probes or stats.waiting else 0.5
            gap = s.first_check if entry.elapsed == 0 else entry.elapsed * growth
            self._schedule(entry, now + self._jittered(gap))
            return
        target = stats.durations.next_check(entry.elapsed, s.ratio)
        self._schedule(entry, now + self._jittered(entry.ref + target - now))

    def _maybe_learned(self, stats: _ModelStats) -> None:
        """Once enough probes finished, the waiting jobs can be released (see _release)."""
        if stats.learned:
            return
        if stats.probing > 0 and stats.durations.count < self.settings.learn_after:
            return
        if stats.durations.count == 0 and not (stats.waiting or stats.in_queue):
            return
        # Every probe is done, maybe without a duration to learn from (all of them queued
        # behind other users' jobs): the jobs waiting go out on the prior rather than never.
        stats.learned = True
        self._wake.set()

    def _release(self, now: float) -> float | None:
        """Schedule the waiting jobs whose first check comes due; return the next such time.

        Waiting jobs are in submit order, and every never-checked job's first check is the
        same elapsed time, so the due ones are a prefix of the queue.
        """
        horizon = now + RELEASE_TICK
        upcoming: float | None = None
        for stats in self._models.values():
            waiting = stats.waiting
            if not stats.learned or not (waiting or stats.in_queue):
                continue
            first = stats.durations.next_check(0.0, self.settings.ratio)
            rate = stats.drain.rate() if stats.queue.queueing(now) else None
            while waiting and waiting[0].ref + first <= horizon:
                entry = waiting.popleft()
                if not entry.live or entry.job.done():
                    continue
                predicted = stats.queue.predict_start(entry.seq, rate, now)
                if predicted is not None and predicted[0] > entry.ref:
                    entry.waited = True  # it queued: its clock starts when its turn came
                    if predicted[0] + first > horizon:
                        # Still queued: wait for its turn, in submit order.
                        bisect.insort(stats.in_queue, entry, key=_by_seq)
                        continue
                    entry.ref = predicted[0]
                self._schedule(entry, now + self._jittered(entry.ref + first - now))
            if waiting:
                upcoming = _earliest(upcoming, waiting[0].ref + first - RELEASE_TICK)
            # Jobs believed queued, in submit order: each one's start is predicted afresh
            # (latest queue_position, our finishes since, the queue's speed) as it nears.
            in_queue = stats.in_queue
            queue = stats.queue
            while in_queue:
                entry = in_queue[0]
                if not entry.live or entry.job.done():
                    in_queue.popleft()
                    continue
                rate = stats.drain.rate()
                predicted = queue.predict_start(entry.seq, rate, now)
                start, known = predicted if predicted is not None else (now, False)
                stale_at = max(queue.seen_at, queue.asked_at) + max(1.0, first)
                stale = now > stale_at
                if predicted is None and not stale:
                    # No position yet (a look may be on its way): its answer times the
                    # line; if it never comes, look again once this one is stale.
                    upcoming = _earliest(upcoming, stale_at)
                    break
                if start + first > horizon:
                    if not stale:
                        # Not its turn yet. Look again when this look goes stale: the
                        # queue's speed, and other users' jobs in it, show only that way.
                        upcoming = _earliest(upcoming, min(start + first - RELEASE_TICK, stale_at))
                        break
                elif known or not stale:
                    in_queue.popleft()
                    entry.ref = max(entry.ref, start)
                    self._schedule(entry, now + self._jittered(entry.ref + first - now))
                    continue
                # The queue was last seen a while ago: ask where the last job in line
                # stands; one answer re-times every job of ours in the queue. (The head
                # is live, so there is one.)
                self._ask_newest(stats, in_queue, now)
        return upcoming

    async def _scheduler(self) -> None:
        heap = self._heap
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            now = time.monotonic()
            release = self._release(now)
            while heap and heap[0][0] <= now:
                due, _, entry = heapq.heappop(heap)
                if not entry.live or due != entry.due:
                    continue  # finished, or rescheduled since this item was pushed
                if entry.job.done():
                    self._forget(entry)
                    continue
                entry.due = -1.0  # in the hands of a worker
                self._ready.put_nowait(entry)
            wake_at = heap[0][0] if heap else None
            if release is not None:
                wake_at = release if wake_at is None else min(wake_at, release)
            # One timer per sleep (not asyncio.wait_for, which costs a task per iteration).
            timer = loop.call_at(wake_at, self._wake.set) if wake_at is not None else None
            try:
                await self._wake.wait()
            finally:
                if timer is not None:
                    timer.cancel()

    # ----- checking -----------------------------------------------------------------------

    async def _worker(self) -> None:
        while True:
            entry = await self._ready.get()
            if not entry.live:
                continue
            if entry.job.done():
                self._forget(entry)
                continue
            try:
                await self._check(entry)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # never let one job's surprise kill the poller
                logger.exception("poller: unexpected error checking %s", entry.job.request_id)
                self._fail(entry, exc)

    async def _check(self, entry: _Entry) -> None:
        job = entry.job
        self.checks += 1
        entry.checks += 1
        try:
            if entry.queued:
                status = await self._fetch_status(job.request_id)
                self._on_status(entry, status)
            else:
                result = await self._fetch_result(job.request_id)
                self._on_result(entry, result)
        except APIStatusError as exc:
            if exc.error_code == NOT_READY:
                entry.errors = 0
                self._on_pending(entry, "running")
            else:
                self._on_error(entry, exc)
        except APIError as exc:
            self._on_error(entry, exc)

    def _on_error(self, entry: _Entry, exc: APIError) -> None:
        # A 429 has already paused the whole budget; the job simply waits its turn again.
        entry.errors += 1
        if not is_retryable_read(exc) or entry.errors >= self.settings.error_limit:
            self._fail(entry, exc)
            return
        logger.debug("check of %s failed (%s); retrying", entry.job.request_id, exc)
        self._schedule(entry, time.monotonic() + self._retry.delay_for(exc, entry.errors - 1))

    def _on_result(self, entry: _Entry, result: Result) -> None:
        entry.errors = 0
        phase = result.phase
        job = entry.job
        if phase == "succeeded":
            self._finish(entry, result)
            job._notify("succeeded", None)
            if not job._future.done():
                job._future.set_result(result)
        elif phase == "failed":
            self._finish(entry, result)
            job._notify("failed", None)
            self._resolve_error(
                job,
                JobFailedError(
                    request_id=job.request_id, error=self._redact(result.error), result=result
                ),
            )
        elif phase == "cancelled":
            self._forget(entry)
            job._notify("cancelled", None)
            self._resolve_error(job, JobCancelledError(request_id=job.request_id))
        else:
            self._on_pending(entry, phase or "running")

    def _on_status(self, entry: _Entry, status: StatusResponse) -> None:
        entry.errors = 0
        phase = status.phase
        now = time.monotonic()
        if phase == "queued":
            entry.job._notify("queued", status.queue_position)
            self._plan_queued(entry, status.queue_position, now)
        elif phase in ("succeeded", "failed", "cancelled"):
            entry.queued = False  # the outcome is read from /result, at once
            self._schedule(entry, now)
        else:
            # It started since we last saw it queued: at the start our finishes say, if
            # they tell, else no earlier than now (a late guess costs delay, an early one
            # a run of checks that find it still running).
            stats = self._stats(entry.job.model_id)
            start = min(entry.ref, now)
            if entry.waited:
                known = self._known_start(stats, entry.seq, now)
                start = known if known is not None and entry.ref <= known <= now else now
                stats.queue.observe(now, -1, entry.seq)
            entry.queued = False
            entry.job._notify("running", None)
            entry.ref, entry.elapsed = start, 0.0
            self._plan(entry, stats)

    def _on_pending(self, entry: _Entry, phase: str) -> None:
        now = time.monotonic()
        if phase == "queued":
            entry.job._notify("queued", None)
            entry.waited = True
            stats = self._stats(entry.job.model_id)
            if (
                stats.learned
                and not entry.probing
                and now - max(stats.queue.seen_at, stats.queue.asked_at) < QUEUE_FRESH
            ):
                # The queue was just looked at, or a look is on its way (often for a whole
                # wave of jobs found queued at once): wait in line for the answer's
                # prediction, no /status of its own. (Only once learned: before that
                # nothing releases the line.)
                bisect.insort(stats.in_queue, entry, key=_by_seq)
                self._wake.set()
                return
            # Ask /status where it stands, at once: that one answer places the whole queue.
            self._ask_position(stats, entry, now)
            if not stats.queue.queueing(now):
                self._hold_behind(stats, entry.seq)
            return
        entry.job._notify("running", None)
        stats = self._stats(entry.job.model_id)
        self._recheck_direct(entry, stats)
        if entry.waited:
            # It queued: its start may be known better by now (our finishes since).
            known = self._known_start(stats, entry.seq, now)
            if known is not None and entry.ref < known < now:
                entry.ref, entry.elapsed = known, 0.0
        entry.elapsed = max(entry.elapsed, now - entry.ref)
        if not entry.waited:
            stats.durations.still_running(entry.job.request_id, entry.elapsed)
        if entry.probing and stats.waiting:
            self._look_behind(stats, now)
        self._plan(entry, stats)

    def _look_behind(self, stats: _ModelStats, now: float) -> None:
        """While probes learn, ask once where our newest job stands: /status, one request.

        If the server queues our jobs, the newest is queued, and its position says how many
        of ours started at their submit, before any of them is checked at the wrong time.
        """
        queue = stats.queue
        if queue.queueing(now) or now - queue.asked_at < queue.memory:
            return
        self._ask_newest(stats, stats.waiting, now)

    def _ask_newest(self, stats: _ModelStats, line: collections.deque[_Entry], now: float) -> None:
        """Take the newest live job out of ``line`` (dropping dead ones) to ask its position."""
        while line and (not line[-1].live or line[-1].job.done()):
            line.pop()
        if line:
            self._ask_position(stats, line.pop(), now)

    def _ask_position(self, stats: _ModelStats, entry: _Entry, now: float) -> None:
        """Check ``entry`` with ``GET /status`` at once: a look at the queue, on its way."""
        stats.queue.asked_at = now
        entry.queued = True
        self._schedule(entry, now)

    def _hold_behind(self, stats: _ModelStats, boundary: int) -> None:
        """A queue was just discovered: our jobs of the model after ``boundary`` queued (FIFO).

        Their first checks, already scheduled by the duration estimate alone, would each find
        them queued; they wait in line instead, to be timed by the coming queue_position.
        Those already found running started late, after their submit: they no longer count
        toward the duration estimate, which their queue wait would stretch.
        """
        behind = []
        now = time.monotonic()
        for other in self._entries.values():
            if other.seq <= boundary or other.waited or other.probing:
                continue
            if other.job.model_id != stats.model_id:
                continue
            if other.elapsed > 0:
                other.waited = True
                stats.durations.forget(other.job.request_id)
                known = self._known_start(stats, other.seq, now)
                if known is not None and known > other.ref:
                    other.ref = known  # its checks are timed from its real start
            elif other.due > 0:  # scheduled, not in a worker's hands nor still waiting
                other.waited = True
                other.due = -2.0  # its heap item is now stale
                behind.append(other)
        if behind:
            merged = sorted([*stats.in_queue, *behind], key=_by_seq)
            stats.in_queue = collections.deque(merged)

    def _recheck_direct(self, entry: _Entry, stats: _ModelStats) -> None:
        """A job taken to have started at its submit may have queued after all.

        How many jobs started at their submit is known better as the finishes from before
        the first look at the queue come in; a job whose start our finishes now place after
        its submit waited, and its wait must not stretch the duration estimate.
        """
        now = time.monotonic()
        if entry.waited or not stats.queue.queueing(now):
            return
        known = self._known_start(stats, entry.seq, now)
        if known is not None and known > entry.ref:
            entry.waited = True
            stats.durations.forget(entry.job.request_id)

    @staticmethod
    def _known_start(stats: _ModelStats, seq: int, now: float) -> float | None:
        """When our finishes say job ``seq`` started (``-inf``: at its submit), else ``None``.

        ``None`` when only a guess from the queue's speed is to be had.
        """
        predicted = stats.queue.predict_start(seq, stats.drain.rate(), now)
        return predicted[0] if predicted is not None and predicted[1] else None

    def _plan_queued(self, entry: _Entry, position: int | None, now: float) -> None:
        """A job is queued: predict its start, and look for its result after that."""
        stats = self._stats(entry.job.model_id)
        entry.waited = True
        if position is not None:
            first_look = not stats.queue.queueing(now)
            stats.queue.observe(now, position, entry.seq)
            direct = stats.queue.direct()
            if first_look and direct is not None:
                # Every job of ours after those that started at their submit has queued.
                self._hold_behind(stats, direct)
            self._wake.set()  # the jobs waiting their turn get new predictions
        predicted = stats.queue.predict_start(entry.seq, stats.drain.rate())
        if position is None or predicted is None:
            median = stats.durations.median()
            gap = median if median is not None else self.settings.first_check * 4
            self._schedule(entry, now + self._jittered(gap))  # ask /status again then
            return
        entry.queued = False
        entry.elapsed = 0.0
        if not stats.learned:
            # A probe (or the newest job) queued: nothing releases the line before the
            # first estimate, so it is checked from the predicted start alone, once.
            entry.ref = max(predicted[0], now)
            self._schedule(entry, entry.ref + self._jittered(self.settings.first_check))
            return
        # Next: /result, once its turn is known to have come (or should have): it waits in
        # line with the others, timed by our finishes as they come in (see _release).
        bisect.insort(stats.in_queue, entry, key=_by_seq)

    # ----- outcomes -----------------------------------------------------------------------

    def _finish(self, entry: _Entry, result: Result) -> None:
        stats = self._stats(entry.job.model_id)
        self._recheck_direct(entry, stats)
        rid = entry.job.request_id
        created, finished = result.created_at, result.finished_at
        if created is not None and finished is not None:
            if not entry.waited:  # a job that queued ran for less than created -> finished
                stats.durations.add((finished - created).total_seconds(), rid)
            if not entry.attached:
                self._clock.sample(created.timestamp(), entry.job.submitted_at)
            stats.drain.add(finished.timestamp())
            stats.queue.ended(self._clock.local(finished.timestamp()), time.monotonic())
        else:
            if not entry.waited:
                stats.durations.add(time.monotonic() - entry.ref, rid)
            stats.drain.add(time.time())
            stats.queue.ended(time.monotonic())  # no later than this: never too early
        if stats.in_queue:
            self._wake.set()  # a slot freed: the next in line has started
        self._forget(entry)
        self._maybe_learned(stats)

    def _forget(self, entry: _Entry) -> None:
        if not entry.live:
            return
        entry.live = False
        if not entry.attached:  # a re-attached job was not submitted by this client
            self.ended += 1
            self._ended_checks += entry.checks
        stats = self._stats(entry.job.model_id)
        stats.live -= 1
        stats.durations.forget(entry.job.request_id)
        if entry.probing:
            entry.probing = False
            stats.probing -= 1
            self._maybe_learned(stats)
        if self._entries.get(entry.job.request_id) is entry:
            del self._entries[entry.job.request_id]

    def _fail(self, entry: _Entry, exc: BaseException) -> None:
        self._forget(entry)
        self._resolve_error(entry.job, exc)

    @staticmethod
    def _resolve_error(job: Job, exc: BaseException) -> None:
        fut = job._future
        if not fut.done():
            fut.set_exception(exc)
            fut.exception()  # mark retrieved: an unawaited failed job must not log noise


def _by_seq(entry: _Entry) -> int:
    return entry.seq


def _earliest(a: float | None, b: float) -> float:
    return b if a is None else min(a, b)
