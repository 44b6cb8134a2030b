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
  probe, each on its own sparse geometric ladder (see :mod:`runcomfy_async._schedule`):
  about the same few requests whether jobs take a second or a minute. Once one has
  finished the probes follow the estimate; the others wait for enough probes to finish
  instead of spending requests on guesses. What an earlier client learned (the cache of
  :mod:`runcomfy_async._learned`) starts the estimate, and a model known well enough skips
  the probing.
* With few jobs in flight the idle request budget is spent on latency: a lone job is
  checked, inside the window where it is likely to end, at most a fixed bound apart (see
  :func:`runcomfy_async._schedule.lone_next`); as the jobs in flight grow, the schedule
  converges to the economy above.
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
import collections
import heapq
import itertools
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio
import anyio.abc

from ._config import PollSettings, RetryPolicy
from ._estimate import DurationModel, ServerClock
from ._exceptions import (
    APIError,
    APIStatusError,
    JobCancelledError,
    JobFailedError,
)
from ._jobs import Job
from ._learned import ModelKnowledge
from ._planning import Planning
from ._poll_state import Entry, ModelState, Stage, take_newest
from ._retry import is_retryable_read
from ._schedule import GENERIC_PRIOR, PRIOR_WEIGHT
from ._states import FINAL_PHASES, Phase
from ._wire import Result, StatusResponse

__all__ = ["NOT_READY", "Poller"]

logger = logging.getLogger("runcomfy_async")

QUEUE_FRESH = 0.5
"""Seconds a look at the server queue stays fresh enough to time jobs found still queued."""

MIN_ENDED = 32
"""Ended jobs needed before :attr:`Poller.requests_per_job` is measured."""

NOT_READY = 400005
"""The error code some deployments answer (HTTP 400) for a result that is not ready yet."""


class Poller(Planning):
    """Follows every job in flight and resolves its future. Run it with :meth:`run`."""

    def __init__(
        self,
        *,
        fetch_result: Callable[[str], Awaitable[Result]],
        fetch_status: Callable[[str], Awaitable[StatusResponse]],
        settings: PollSettings,
        retry: RetryPolicy,
        redact: Callable[[Any], Any] = lambda value: value,
        known: Mapping[str, ModelKnowledge] | None = None,
    ):
        self._known = dict(known or {})
        self._generic = DurationModel()
        self._generic.seed(*GENERIC_PRIOR, PRIOR_WEIGHT, prior=True)
        self._fetch_result = fetch_result
        self._fetch_status = fetch_status
        self.settings = settings
        self._retry = retry
        self._redact = redact
        self._heap: list[tuple[float, int, Entry]] = []
        self._seq = itertools.count()
        self._ready: asyncio.Queue[Entry] = asyncio.Queue()
        self._wake = asyncio.Event()
        self._models: dict[str | None, ModelState] = {}
        self._entries: dict[str, Entry] = {}
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
        entry = Entry(job, stats.seq, attached=check_now)
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
            entry.job._fail(JobCancelledError(request_id=request_id))

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

    def _stats(self, model_id: str | None) -> ModelState:
        stats = self._models.get(model_id)
        if stats is None:
            stats = self._models[model_id] = ModelState(model_id)
            known = self._known.get(model_id) if model_id is not None else None
            stats.start_from(known, self.settings.learn_after)
        return stats

    def _schedule(self, entry: Entry, due: float) -> None:
        if entry.stage is Stage.ENDED:
            return
        entry.stage = Stage.SCHEDULED
        entry.due = due
        heapq.heappush(self._heap, (due, next(self._seq), entry))
        if self._heap[0][2] is entry:
            self._wake.set()

    def _jittered(self, gap: float) -> float:
        s = self.settings
        gap = min(s.max_interval, max(s.min_interval, gap))
        return gap * (1.0 + self._rng.uniform(-s.jitter, s.jitter))

    async def _scheduler(self) -> None:
        heap = self._heap
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            now = time.monotonic()
            release = self._release(now)
            while heap and heap[0][0] <= now:
                due, _, entry = heapq.heappop(heap)
                if entry.stage is not Stage.SCHEDULED or due != entry.due:
                    continue  # ended, in line, or rescheduled since this item was pushed
                if entry.job.done():
                    self._forget(entry)
                    continue
                entry.stage = Stage.CHECKING
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
            if entry.stage is Stage.ENDED:
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

    async def _check(self, entry: Entry) -> None:
        job = entry.job
        self.checks += 1
        entry.checks += 1
        try:
            if entry.ask_status:
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

    def _on_error(self, entry: Entry, exc: APIError) -> None:
        # A 429 has already paused the whole budget; the job simply waits its turn again.
        entry.errors += 1
        if not is_retryable_read(exc) or entry.errors >= self.settings.error_limit:
            self._fail(entry, exc)
            return
        logger.debug("check of %s failed (%s); retrying", entry.job.request_id, exc)
        self._schedule(entry, time.monotonic() + self._retry.delay_for(exc, entry.errors - 1))

    def _on_result(self, entry: Entry, result: Result) -> None:
        entry.errors = 0
        phase = result.phase
        job = entry.job
        if phase == "succeeded":
            self._finish(entry, result)
            job._notify("succeeded", None)
            job._set_result(result)
        elif phase == "failed":
            self._finish(entry, result)
            job._notify("failed", None)
            job._fail(
                JobFailedError(
                    request_id=job.request_id, error=self._redact(result.error), result=result
                )
            )
        elif phase == "cancelled":
            self._forget(entry)
            job._notify("cancelled", None)
            job._fail(JobCancelledError(request_id=job.request_id))
        else:
            self._on_pending(entry, phase or "running")

    def _on_status(self, entry: Entry, status: StatusResponse) -> None:
        entry.errors = 0
        phase = status.phase
        now = time.monotonic()
        if phase == "queued":
            entry.job._notify("queued", status.queue_position)
            self._plan_queued(entry, status.queue_position, now)
        elif phase in FINAL_PHASES:
            entry.ask_status = False  # the outcome is read from /result, at once
            self._schedule(entry, now)
        else:
            # It started since we last saw it queued: at the start our finishes say, if
            # they tell, else no earlier than now (a late guess costs delay, an early one
            # a run of checks that find it still running).
            stats = self._stats(entry.job.model_id)
            start = min(entry.ref, now)
            if entry.waited:
                known = stats.known_start(entry.seq, now)
                start = known if known is not None and entry.ref <= known <= now else now
                stats.queue.observe(now, -1, entry.seq)
            entry.ask_status = False
            entry.job._notify("running", None)
            entry.ref, entry.elapsed = start, 0.0
            self._plan(entry, stats)

    def _on_pending(self, entry: Entry, phase: Phase) -> None:
        now = time.monotonic()
        if phase == "queued":
            entry.job._notify("queued", None)
            entry.waited = True
            stats = self._stats(entry.job.model_id)
            if entry.scout:  # queued: it tells nothing of durations, but it has answered
                stats.scout_answered(entry)
                self._maybe_learned(stats)
            if stats.learned and not entry.probing and now - stats.queue.looked_at < QUEUE_FRESH:
                # The queue was just looked at, or a look is on its way (often for a whole
                # wave of jobs found queued at once): wait in line for the answer's
                # prediction, no /status of its own. (Only once learned: before that
                # nothing releases the line.)
                stats.line_up(entry)
                self._wake.set()
                return
            # Ask /status where it stands, at once: that one answer places the whole queue.
            self._ask_position(stats, entry, now)
            if not stats.queue.queueing(now):
                stats.hold_behind(self._entries.values(), entry.seq, now)
            return
        entry.job._notify("running", None)
        stats = self._stats(entry.job.model_id)
        stats.recheck_direct(entry, now)
        if entry.waited:
            # It queued: its start may be known better by now (our finishes since).
            known = stats.known_start(entry.seq, now)
            if known is not None and entry.ref < known < now:
                entry.ref, entry.elapsed = known, 0.0
        entry.elapsed = max(entry.elapsed, now - entry.ref)
        if not entry.waited:
            stats.durations.still_running(entry.job.request_id, entry.elapsed)
        if entry.scout:
            stats.scout_answered(entry)
            self._maybe_learned(stats)
        if entry.probing and stats.waiting:
            self._look_behind(stats, now)
        self._plan(entry, stats)

    def _look_behind(self, stats: ModelState, now: float) -> None:
        """Ask where our newest job stands, /status, one request, until a queue is seen.

        If the server queues our jobs, the newest is queued, and its position says how many
        of ours started at their submit, before any of them is checked at the wrong time.
        Asked while probes learn and as waiting jobs are released; again only once the jobs
        followed have doubled since the last ask (submits spread out may queue later).
        """
        queue = stats.queue
        if queue.queueing(now):
            return
        if now - queue.asked_at < queue.memory and stats.seq < 2 * queue.asked_seq:
            # Asked lately, and few jobs came since. (Submits that go on after a look found
            # the newest job running may fill the slots later: a look each time the jobs
            # double, a handful of requests for any batch, finds that queue.)
            return
        self._ask_newest(stats, stats.waiting, now)

    def _ask_newest(self, stats: ModelState, line: collections.deque[Entry], now: float) -> None:
        """Take the newest job still followed out of ``line`` to ask its position."""
        entry = take_newest(line)
        if entry is not None:
            self._ask_position(stats, entry, now)

    def _ask_position(self, stats: ModelState, entry: Entry, now: float) -> None:
        """Check ``entry`` with ``GET /status`` at once: a look at the queue, on its way."""
        stats.queue.asked_at = now
        stats.queue.asked_seq = max(stats.queue.asked_seq, entry.seq)
        entry.ask_status = True
        self._schedule(entry, now)

    def _plan_queued(self, entry: Entry, position: int | None, now: float) -> None:
        """A job is queued: predict its start, and look for its result after that."""
        stats = self._stats(entry.job.model_id)
        entry.waited = True
        if position is not None:
            first_look = not stats.queue.queueing(now)
            stats.queue.observe(now, position, entry.seq)
            direct = stats.queue.direct()
            if first_look and direct is not None:
                # Every job of ours after those that started at their submit has queued.
                stats.hold_behind(self._entries.values(), direct, now)
            self._wake.set()  # the jobs waiting their turn get new predictions
        predicted = stats.queue.predict_start(entry.seq, stats.drain.rate())
        if position is None or predicted is None:
            median = stats.durations.median()
            gap = median if median is not None else self.settings.first_check * 4
            self._schedule(entry, now + self._jittered(gap))  # ask /status again then
            return
        entry.ask_status = False
        entry.elapsed = 0.0
        if not stats.learned:
            # A probe (or the newest job) queued: nothing releases the line before the
            # first estimate, so it is checked from the predicted start alone, once.
            entry.ref = max(predicted[0], now)
            self._schedule(entry, entry.ref + self._jittered(self.settings.first_check))
            return
        # Next: /result, once its turn is known to have come (or should have): it waits in
        # line with the others, timed by our finishes as they come in (see _release).
        stats.line_up(entry)

    # ----- outcomes -----------------------------------------------------------------------

    def _finish(self, entry: Entry, result: Result) -> None:
        stats = self._stats(entry.job.model_id)
        first = stats.durations.count == 0
        stats.learn(entry, result, self._clock)
        stats.scout_answered(entry)
        if stats.in_queue:
            self._wake.set()  # a slot freed: the next in line has started
        self._forget(entry)
        self._maybe_learned(stats)
        if first and stats.durations.count > 0 and not stats.learned:
            self._replan_probes(stats)

    def _forget(self, entry: Entry) -> None:
        if entry.stage is Stage.ENDED:
            return
        entry.stage = Stage.ENDED
        if not entry.attached:  # a re-attached job was not submitted by this client
            self.ended += 1
            self._ended_checks += entry.checks
        stats = self._stats(entry.job.model_id)
        stats.live -= 1
        stats.durations.forget(entry.job.request_id)
        stats.scout_answered(entry)
        if entry.probing:
            entry.probing = False
            stats.probing -= 1
            self._maybe_learned(stats)
        if self._entries.get(entry.job.request_id) is entry:
            del self._entries[entry.job.request_id]

    def _fail(self, entry: Entry, exc: BaseException) -> None:
        self._forget(entry)
        entry.job._fail(exc)
