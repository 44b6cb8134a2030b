"""Where one model's server queue stands, inferred from ``queue_position`` answers and finishes.

The poller's estimators of how long jobs run live in :mod:`runcomfy_async._estimate`; this one
says when a job of ours that queued on the server started (or will start), so its checks can
be timed from its real start, like a job that never queued.
"""

from __future__ import annotations

import array
import bisect
import collections
import math
from dataclasses import dataclass, field

__all__ = ["COMPACT_MIN", "QueueTracker"]

COMPACT_MIN = 4096
"""Finish times a tracker keeps before it first folds the old ones (see QueueTracker.ended)."""


@dataclass
class QueueTracker:
    """Where one model's server queue stands, from ``queue_position`` answers and finishes.

    The server serves its queue in order, and a client's jobs of one model queue in the order
    they were submitted. One observation, "job number ``seq`` was at position ``p`` at time
    ``t``", says that ``seq - p - 1`` of our jobs had started by ``t``; less the slots our
    finishes had freed by then, that leaves how many started at their submit. Every later
    job started at one of our finishes, in order: the job ``k`` places after those starts
    when the ``k``-th of our jobs finishes. So once that many have finished the start is
    known, not guessed. Until then (or when other users' jobs free slots we never see) it is
    extrapolated from how fast the queue moved between two observations.
    """

    memory: float = 30.0
    retain: float = 300.0
    """Seconds of finish times kept; older ones are folded into a count (see :meth:`ended`)."""
    asked_at: float = -1.0
    asked_seq: int = 0
    """The newest of our jobs whose place was asked (the looks behind double it, see the poller)."""
    observations: collections.deque[tuple[float, int, int]] = field(
        default_factory=lambda: collections.deque(maxlen=64)
    )
    ends: array.array[float] = field(default_factory=lambda: array.array("d"))
    """Finish times of our jobs of this model (monotonic), sorted; the oldest are dropped."""
    dropped: int = 0
    """How many of our finishes were folded out of ``ends`` (all before any later look)."""
    last_dropped: float = -math.inf
    """The latest finish time folded out of ``ends``."""
    lags: collections.deque[float] = field(default_factory=lambda: collections.deque(maxlen=64))
    """How long after they ended our latest finishes were seen (seconds)."""
    prior_speed: float | None = None
    """Queue places a second an earlier client measured (see the cache): the last resort of
    a guess, when neither the queue's speed nor our finishes' rate is measured yet."""
    _compact_at: int = field(default=COMPACT_MIN, init=False, repr=False)

    @property
    def seen_at(self) -> float:
        """When the last observation was made (-1 if never)."""
        return self.observations[-1][0] if self.observations else -1.0

    @property
    def looked_at(self) -> float:
        """When the queue was last looked at: an answer came, or a question left (-1 if never)."""
        return max(self.seen_at, self.asked_at)

    def observe(self, now: float, position: int, seq: int) -> None:
        """Record that our job number ``seq`` was at ``position`` at ``now``."""
        self.observations.append((now, position, seq))

    def ended(self, at: float, seen: float | None = None) -> None:
        """One of our jobs finished at ``at`` (monotonic), a slot freed; we saw it at ``seen``."""
        bisect.insort(self.ends, at)
        if seen is not None:
            self.lags.append(max(0.0, seen - at))
        if len(self.ends) >= self._compact_at:
            self._compact(at - self.retain)

    @property
    def finished(self) -> int:
        """How many of our jobs of this model have finished (kept or folded)."""
        return self.dropped + len(self.ends)

    def _compact(self, before: float) -> None:
        """Fold the finishes before ``before`` into :attr:`dropped`.

        A client that runs for days must not keep 8 bytes per job it ever ran. What a fold
        keeps exact: :meth:`direct` counts the finishes before the latest look, so only
        finishes before that look are folded, and a look older than ``retain`` is forgotten
        first (the queue it saw has long been re-looked at or gone). What it rounds: a job
        whose turn came at a folded finish started over ``retain`` seconds ago; its start
        is then given as the latest folded finish.
        """
        if self.observations and self.observations[-1][0] < before:
            self.observations.clear()
        limit = min(before, self.observations[-1][0]) if self.observations else before
        k = bisect.bisect_right(self.ends, limit)
        if k:
            self.last_dropped = self.ends[k - 1]
            del self.ends[:k]
            self.dropped += k
        # Doubling keeps the cost of folding O(1) a finish when little can be folded.
        self._compact_at = max(COMPACT_MIN, 2 * len(self.ends))

    def _end(self, index: int) -> float:
        """The finish time of our ``index``-th finish (0-based, in time order)."""
        i = index - self.dropped
        return self.ends[i] if i >= 0 else self.last_dropped

    def unseen(self, before: float, now: float, rate: float) -> int:
        """About how many of our jobs ended before ``before`` but are not seen yet at ``now``.

        A finish is seen some lag after it happens (when its check comes round); with
        finishes at ``rate`` a second, those before ``before`` still unseen number
        ``rate * E[max(0, lag - (now - before))]``, over the recent lags.
        """
        lags = self.lags
        if not lags:
            return 0
        age = now - before
        late = sum(lag - age for lag in lags if lag > age) / len(lags)
        return int(rate * late + 0.5)

    def direct(self) -> int | None:
        """How many of our first jobs started at their submit; ``None`` if that is unknown.

        Too high while some finishes before the last look are not seen yet; it settles as
        they come in. Unknown before a look, and when the count comes out negative: other
        users' jobs share the queue (ahead of ours, or freeing its slots), so our finishes
        alone do not time our starts.
        """
        if not self.observations:
            return None
        t, position, seq = self.observations[-1]
        direct = seq - position - 1 - self.dropped - bisect.bisect_right(self.ends, t)
        return direct if direct >= 0 else None

    def behind(self, seq: int) -> bool:
        """Whether our job number ``seq`` queued: it came after those that started at submit."""
        direct = self.direct()
        return direct is not None and seq > direct

    def queueing(self, now: float) -> bool:
        """Whether jobs of this model were seen queued recently."""
        return bool(self.observations) and now - self.seen_at < self.memory

    def speed(self, min_span: float = 1.0) -> float | None:
        """Queue places served per second, from the newest observation and an older one."""
        if len(self.observations) < 2:
            return None
        t1, p1, s1 = self.observations[-1]
        for t0, p0, s0 in self.observations:
            if t1 - t0 < min_span:
                break
            if t1 - t0 > self.memory:
                continue
            served = p0 + (s1 - s0) - p1
            return served / (t1 - t0) if served > 0 else None
        return None

    def predict_start(
        self, seq: int, rate: float | None, now: float | None = None
    ) -> tuple[float, bool] | None:
        """When job number ``seq`` starts, and whether that is known rather than guessed.

        ``-inf`` (known) for a job that started at its submit. Known: enough of our jobs
        finished to free its turn; with ``now``, the finishes not seen yet (see
        :meth:`unseen`) are counted in, or a busy client that sees finishes late would time
        every start late. Guessed: the frees still missing, at the measured queue speed
        (``rate``, how fast our jobs finish, is the fallback, then :attr:`prior_speed`), after
        the last one seen.
        ``None`` without an observation or, for a guess, a speed.
        """
        direct = self.direct()
        if direct is None:
            guess = self.guess_start(seq, rate)
            return None if guess is None else (guess, False)
        turn = seq - direct  # it starts when the turn-th of our jobs finishes
        finished = self.finished
        if turn <= 0:
            return -math.inf, True
        speed = self.speed() or rate or self.prior_speed
        if turn <= finished:
            drain = rate or speed
            if now is not None and drain:
                turn = max(1, turn - self.unseen(self._end(turn - 1), now, drain))
            return self._end(turn - 1), True
        if not speed:
            return None
        last = max(self._end(finished - 1), self.seen_at) if finished else self.seen_at
        return last + (turn - finished) / speed, False

    def guess_start(self, seq: int, rate: float | None) -> float | None:
        """When job number ``seq`` starts at the queue's measured speed alone.

        The fallback of :meth:`predict_start` when our finishes cannot time our starts
        (other users' jobs in the queue): the speed counts the slots their jobs free too.
        """
        if not self.observations:
            return None
        speed = self.speed() or rate or self.prior_speed
        if not speed:
            return None
        t, position, seen_seq = self.observations[-1]
        return t + (position + 1 + seq - seen_seq) / speed

    def known_start(self, seq: int, rate: float | None, now: float) -> float | None:
        """When our finishes say job ``seq`` started (``-inf``: at its submit), else ``None``.

        ``None`` when only a guess from the queue's speed is to be had (see
        :meth:`predict_start`; ``rate`` is how fast our jobs finish).
        """
        predicted = self.predict_start(seq, rate, now)
        return predicted[0] if predicted is not None and predicted[1] else None
