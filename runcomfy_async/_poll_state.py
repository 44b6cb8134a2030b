"""What the poller keeps per job and per model, and what it infers about our jobs in a queue.

An :class:`Entry` is one job being followed; its :class:`Stage` says where it sits in the
poller (waiting for its first check to be placed, in the schedule, in a worker's hands, in
line behind a server queue, or no longer followed). A :class:`ModelState` holds what is
known of one model: the jobs waiting, the line of jobs believed queued, and the estimators
(:class:`~runcomfy_async._estimate.DurationModel`, :class:`~runcomfy_async._queue.QueueTracker`
…) the schedule is computed from.
"""

from __future__ import annotations

import bisect
import collections
import enum
import math
import time
from collections.abc import Callable, Iterable

from ._estimate import DrainRate, DurationModel, ServerClock
from ._jobs import Job
from ._learned import PRIORS, ModelKnowledge
from ._queue import QueueTracker
from ._schedule import PRIOR_WEIGHT
from ._wire import Result

__all__ = ["Entry", "ModelState", "Stage", "by_seq", "take_newest"]

SEED_CAP = 32.0
"""Jobs' worth of weight knowledge from an earlier client counts for, at most (so what
this client sees soon outweighs it)."""


class Stage(enum.Enum):
    """Where one job sits in the poller."""

    WAITING = "waiting"
    """Never checked: its first check is placed when it comes due (the model's waiting list)."""
    SCHEDULED = "scheduled"
    """In the schedule (the heap), due at :attr:`Entry.due`."""
    CHECKING = "checking"
    """In a worker's hands: its check is on its way."""
    IN_LINE = "in line"
    """Believed queued on the server: waits for its turn in the model's line (any item it
    still has in the heap is stale)."""
    ENDED = "ended"
    """No longer followed (it ended, failed to be followed, or was cancelled)."""


class Entry:
    """The poller's private state for one job."""

    __slots__ = (
        "ask_status",
        "attached",
        "checks",
        "due",
        "elapsed",
        "errors",
        "job",
        "probing",
        "ref",
        "scout",
        "seq",
        "stage",
        "waited",
    )

    def __init__(self, job: Job, seq: int, *, attached: bool = False):
        self.job = job
        self.seq = seq  # submit order among this client's jobs of the same model
        self.stage = Stage.WAITING
        self.due = 0.0  # when it is due; meaningful while SCHEDULED
        self.ref = job.submitted_at  # when the job (is believed to have) started running
        self.elapsed = 0.0  # elapsed since ref at the last check that found it running
        self.waited = False  # seen (or predicted) in the server's queue: ref is a guess
        self.ask_status = False  # its next check is GET /status (where it stands in a queue)
        self.probing = False  # one of its model's probes, sent before anything is known
        self.scout = False  # in a scout wave whose first answer is not in yet
        self.attached = attached  # re-attached: submitted_at is when we attached, not submitted
        self.errors = 0  # consecutive failed checks
        self.checks = 0

    def gone(self) -> bool:
        """Whether there is nothing left to check: no longer followed, or already decided."""
        return self.stage is Stage.ENDED or self.job.done()


def by_seq(entry: Entry) -> int:
    """Sort key: submit order among the client's jobs of one model."""
    return entry.seq


class ModelState:
    """What the poller knows of one model, and the jobs of it that wait for a check."""

    __slots__ = (
        "drain",
        "durations",
        "in_queue",
        "learned",
        "live",
        "model_id",
        "probing",
        "queue",
        "scouted",
        "scouts",
        "seq",
        "waiting",
    )

    def __init__(self, model_id: str | None) -> None:
        self.model_id = model_id
        self.live = 0  # jobs of it being followed
        self.seq = 0  # jobs of it ever followed (the last Entry.seq handed out)
        self.probing = 0  # probes out
        self.learned = False  # whether jobs other than probes get a schedule yet
        self.scouted = False  # whether a scout wave went out (see Planning._scout)
        self.scouts = 0  # scouts whose first answer is not in yet
        self.waiting: collections.deque[Entry] = collections.deque()
        """Never-checked jobs, in submit order, whose first check is not placed yet."""
        self.in_queue: collections.deque[Entry] = collections.deque()
        """Jobs believed queued on the server, in submit order: the line."""
        self.queue = QueueTracker()
        self.durations = DurationModel()
        self.drain = DrainRate()

    def start_from(self, known: ModelKnowledge | None, learn_after: int) -> None:
        """Seed the estimate from an earlier client's knowledge, else the model's prior.

        Knowledge of at least ``learn_after`` jobs lets every job get a schedule at once,
        without probing.
        """
        if known is not None:
            self.durations.seed(known.mu, known.sigma, min(known.count, SEED_CAP))
            self.learned = known.count >= learn_after
            self.queue.prior_speed = known.queue_speed
        elif self.model_id in PRIORS:
            median, sigma = PRIORS[self.model_id]
            self.durations.seed(math.log(median), sigma, PRIOR_WEIGHT, prior=True)

    def knowledge(self, now: float) -> ModelKnowledge | None:
        """What was learned of this model for the next client (``None``: nothing finished)."""
        durations = self.durations
        if durations.count == 0:
            return None
        return ModelKnowledge(
            mu=durations.mu(),
            sigma=durations.spread(),
            count=float(durations.count + durations.seeded),
            queue_speed=self.queue.speed() or self.queue.prior_speed,
            updated=now,
        )

    def line_up(self, entry: Entry) -> None:
        """Put ``entry`` in the line of jobs believed queued, in submit order."""
        if entry.stage is Stage.ENDED:
            return
        entry.stage = Stage.IN_LINE
        bisect.insort(self.in_queue, entry, key=by_seq)

    def maybe_learned(self, learn_after: int) -> bool:
        """Whether the other jobs get a schedule from now on (``True`` only the first time).

        Once ``learn_after`` probes finished, or every probe is done, maybe without a
        duration to learn from (all of them queued behind other users' jobs): the jobs
        waiting then go out on the prior rather than never.
        """
        if self.learned:
            return False
        if self.probing > 0 and self.durations.count < learn_after:
            return False
        if self.scouts:  # a scout wave's answers are on their way: wait for all of them
            return False
        if self.durations.count == 0 and not (self.waiting or self.in_queue):
            return False
        self.learned = True
        return True

    def scout_answered(self, entry: Entry) -> None:
        """A scout's first answer is in (or it is no longer followed)."""
        if entry.scout:
            entry.scout = False
            self.scouts -= 1

    def learn(self, entry: Entry, result: Result, clock: ServerClock) -> None:
        """Learn from a job of this model that finished: how long it ran, when its slot freed.

        A job that queued ran for less than ``created_at -> finished_at``: its duration is
        not learned. A re-attached job's submit time is not when it was created.
        """
        self.recheck_direct(entry, time.monotonic())
        rid = entry.job.request_id
        created, finished = result.created_at, result.finished_at
        if created is not None and finished is not None:
            if not entry.waited:
                self.durations.add((finished - created).total_seconds(), rid)
            if not entry.attached:
                clock.sample(created.timestamp(), entry.job.submitted_at)
            self.drain.add(finished.timestamp())
            self.queue.ended(clock.local(finished.timestamp()), time.monotonic())
        else:
            if not entry.waited:
                self.durations.add(time.monotonic() - entry.ref, rid)
            self.drain.add(time.time())
            self.queue.ended(time.monotonic())  # no later than this: never too early

    def release_waiting(
        self, now: float, first: float, tick: float, place: Callable[[Entry], None]
    ) -> float | None:
        """Place the first check of the waiting jobs that come due within ``tick``.

        Waiting jobs are in submit order, and every never-checked job's first check is the
        same elapsed time ``first``, so the due ones are a prefix of the list. ``place``
        schedules a job's check at ``entry.ref + first``. A job the queue tracker says is
        still queued, or queued at a turn not timed yet, joins the line instead. Returns when
        the next one comes due.
        """
        horizon = now + tick
        waiting = self.waiting
        rate = self.drain.rate() if self.queue.queueing(now) else None
        while waiting and waiting[0].ref + first <= horizon:
            entry = waiting.popleft()
            if entry.gone():
                continue
            predicted = self.queue.predict_start(entry.seq, rate, now)
            if predicted is None and self.queue.behind(entry.seq):
                # It queued (our first jobs filled the slots), its turn not timed yet (no
                # speed measured): not started at its submit; the line times it.
                entry.waited = True
                self.line_up(entry)
                continue
            if predicted is not None and predicted[0] > entry.ref:
                entry.waited = True  # it queued: its clock starts when its turn came
                if predicted[0] + first > horizon:
                    self.line_up(entry)  # still queued: it waits for its turn
                    continue
                entry.ref = predicted[0]
            place(entry)
        return waiting[0].ref + first - tick if waiting else None

    def release_line(
        self,
        now: float,
        first: float,
        tick: float,
        place: Callable[[Entry], None],
        ask: Callable[[Entry], None],
    ) -> float | None:
        """Place the checks of the jobs in line whose turn has come (within ``tick``).

        Each one's start is predicted afresh as it nears (latest queue_position, our
        finishes since, the queue's speed); ``place`` schedules a job's check at
        ``entry.ref + first``. When the last look at the queue is stale, ``ask`` sends the
        newest job in line a ``GET /status``: one answer re-times every job of ours in it.
        Returns when to look at the line again (``None``: when something changes).
        """
        horizon = now + tick
        in_queue = self.in_queue
        queue = self.queue
        while in_queue:
            entry = in_queue[0]
            if entry.gone():
                in_queue.popleft()
                continue
            predicted = queue.predict_start(entry.seq, self.drain.rate(), now)
            start, known = predicted if predicted is not None else (now, False)
            stale_at = queue.looked_at + max(1.0, first)
            stale = now > stale_at
            if predicted is None and not stale:
                # No position yet (a look may be on its way): its answer times the
                # line; if it never comes, look again once this one is stale.
                return stale_at
            if start + first > horizon:
                if not stale:
                    # Not its turn yet. Look again when this look goes stale: the
                    # queue's speed, and other users' jobs in it, show only that way.
                    return min(start + first - tick, stale_at)
            elif known or not stale:
                in_queue.popleft()
                entry.ref = max(entry.ref, start)
                place(entry)
                continue
            # The queue was last seen a while ago: ask where the last job in line
            # stands. (The head is followed, so there is one.)
            newest = take_newest(in_queue)
            if newest is not None:
                ask(newest)
        return None

    def known_start(self, seq: int, now: float) -> float | None:
        """When our finishes say job ``seq`` started (``-inf``: at its submit), else ``None``."""
        return self.queue.known_start(seq, self.drain.rate(), now)

    def recheck_direct(self, entry: Entry, now: float) -> None:
        """A job taken to have started at its submit may have queued after all.

        How many jobs started at their submit is known better as the finishes from before
        the first look at the queue come in; a job whose start our finishes now place after
        its submit waited, and its wait must not stretch the duration estimate.
        """
        if entry.waited or not self.queue.queueing(now):
            return
        known = self.known_start(entry.seq, now)
        if known is not None and known > entry.ref:
            entry.waited = True
            self.durations.forget(entry.job.request_id)

    def hold_behind(self, entries: Iterable[Entry], boundary: int, now: float) -> None:
        """A queue was just discovered: our jobs of the model after ``boundary`` queued (FIFO).

        Their first checks, already scheduled by the duration estimate alone, would each find
        them queued; they wait in line instead, to be timed by the coming queue_position.
        Those already found running started late, after their submit: they no longer count
        toward the duration estimate, which their queue wait would stretch.
        """
        behind = []
        for other in entries:
            if other.seq <= boundary or other.waited or other.probing:
                continue
            if other.job.model_id != self.model_id:
                continue
            if other.elapsed > 0:
                other.waited = True
                self.durations.forget(other.job.request_id)
                known = self.known_start(other.seq, now)
                if known is not None and known > other.ref:
                    other.ref = known  # its checks are timed from its real start
            elif other.stage is Stage.SCHEDULED:  # not in a worker's hands nor still waiting
                other.waited = True
                other.stage = Stage.IN_LINE  # its heap item is now stale
                behind.append(other)
        if behind:
            self.in_queue = collections.deque(sorted([*self.in_queue, *behind], key=by_seq))


def take_newest(line: collections.deque[Entry]) -> Entry | None:
    """Take the newest job still followed out of ``line`` (dropping those gone from its end)."""
    while line and line[-1].gone():
        line.pop()
    return line.pop() if line else None
