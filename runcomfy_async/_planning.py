"""Where each job's next check goes: the planning half of the poller.

:class:`Planning` is mixed into :class:`~runcomfy_async._poller.Poller`: the poller owns
the heap, the workers and what each answer means; this half decides *when*:

* a job never checked waits for its first check to be placed with the estimate of that
  moment (:meth:`Planning._release`), unless nothing is known yet: then the oldest jobs
  probe, each on its own sparse ladder until the first one finishes, then on the estimate
  (:meth:`Planning._plan_probe`, see :mod:`runcomfy_async._schedule`); once one has
  ended, a scout wave of waiting jobs is checked early so that the others' first check is
  placed on an estimate resting on many jobs, not a few probes (:meth:`Planning._scout`);
* a job known running is checked where its chance of still running has fallen by
  ``ratio``, or earlier when few jobs are in flight and idle budget buys latency
  (:meth:`Planning._lone`);
* what a model's estimate starts from (an earlier client's knowledge, or a prior) and what
  is handed to the next client (:meth:`Planning.knowledge`).
"""

from __future__ import annotations

import asyncio
import time

from ._config import PollSettings
from ._estimate import DurationModel
from ._learned import ModelKnowledge
from ._poll_state import Entry, ModelState, Stage
from ._schedule import MANY_WAITING, ladder_next, probe_ratio, probe_shift, probe_start, sooner

__all__ = ["RELEASE_TICK", "Planning"]

RELEASE_TICK = 0.02
"""Seconds ahead that waiting jobs are released into the schedule."""
SCOUT_SURVIVAL = 0.75
"""A scout wave is checked where the estimate says a quarter of the jobs have ended."""
SCOUT_SHARE = 0.1
"""The share of the waiting jobs a scout wave takes (see :meth:`Planning._scout`)."""
SCOUT_MIN, SCOUT_MAX = MANY_WAITING, 64
"""No scout wave below this many waiting jobs; at most this many scouts."""


class Planning:
    """The scheduling decisions of the poller (a mixin: the poller supplies the rest)."""

    settings: PollSettings
    _models: dict[str | None, ModelState]
    _entries: dict[str, Entry]
    _wake: asyncio.Event
    _generic: DurationModel

    def _stats(self, model_id: str | None) -> ModelState:
        raise NotImplementedError

    def _schedule(self, entry: Entry, due: float) -> None:
        raise NotImplementedError

    def _jittered(self, gap: float) -> float:
        raise NotImplementedError

    def _ask_position(self, stats: ModelState, entry: Entry, now: float) -> None:
        raise NotImplementedError

    def _look_behind(self, stats: ModelState, now: float) -> None:
        raise NotImplementedError

    def knowledge(self) -> dict[str, ModelKnowledge]:
        """What this client learned, per model, for the next one (see the cache)."""
        now = time.time()
        out = {}
        for model_id, stats in self._models.items():
            known = stats.knowledge(now)
            if model_id is not None and known is not None:
                out[model_id] = known
        return out

    def _lone(self, stats: ModelState, entry: Entry, target: float) -> float:
        """``target`` (an elapsed time), or earlier if idle budget buys latency."""
        durations = stats.durations
        return sooner(
            target,
            durations if durations.known else self._generic,
            entry.elapsed,
            in_flight=len(self._entries),
            ratio=self.settings.ratio,
            cold=not stats.learned or durations.count + durations.seeded < 1,
        )

    def _plan(self, entry: Entry, stats: ModelState) -> None:
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
                if not probe.gone():
                    probe.probing = True
                    stats.probing += 1
                    self._plan_probe(probe, stats, now)
            return
        if not stats.learned:
            self._plan_probe(entry, stats, now)
            return
        target = self._lone(stats, entry, stats.durations.next_check(entry.elapsed, s.ratio))
        self._schedule(entry, now + self._jittered(entry.ref + target - now))

    def _plan_probe(self, entry: Entry, stats: ModelState, now: float) -> None:
        """A probe's next check: on its sparse ladder, or the estimate once a job finished."""
        s = self.settings
        if stats.durations.count > 0:
            ratio = probe_ratio(s.ratio, len(stats.waiting))
            target = stats.durations.next_check(entry.elapsed, ratio)
        else:  # past a rung by less than the jitter is still that rung: skip to the next
            elapsed = max(
                entry.elapsed * (1.0 + 2.0 * s.jitter), probe_start(s.first_check, entry.seq)
            )
            target = ladder_next(s.first_check, probe_shift(entry.seq), elapsed)
        target = self._lone(stats, entry, target)
        self._schedule(entry, now + self._jittered(entry.ref + target - now))

    def _maybe_learned(self, stats: ModelState) -> None:
        """Once enough probes finished, the waiting jobs can be released (see _release)."""
        if stats.maybe_learned(self.settings.learn_after):
            self._wake.set()

    def _release(self, now: float) -> float | None:
        """Schedule the jobs whose first check comes due; return when the next one does.

        Per model, once something is known of it: the never-checked jobs, then the line of
        those believed queued on the server (see :class:`ModelState`).
        """
        upcoming: float | None = None
        for stats in self._models.values():
            scout = self._scout(stats, now)
            if scout is not None:
                upcoming = scout if upcoming is None else min(upcoming, scout)
            if not stats.learned or not (stats.waiting or stats.in_queue):
                continue
            if stats.waiting:  # jobs submitted since the last look may have queued
                self._look_behind(stats, now)
            first = sooner(
                stats.durations.next_check(0.0, self.settings.ratio),
                stats.durations,
                0.0,
                in_flight=len(self._entries),
                ratio=self.settings.ratio,
                cold=False,
            )

            def place(entry: Entry, first: float = first) -> None:
                self._schedule(entry, now + self._jittered(entry.ref + first - now))

            def ask(entry: Entry, stats: ModelState = stats) -> None:
                self._ask_position(stats, entry, now)

            for when in (
                stats.release_waiting(now, first, RELEASE_TICK, place),
                stats.release_line(now, first, RELEASE_TICK, place, ask),
            ):
                if when is not None:
                    upcoming = when if upcoming is None else min(upcoming, when)
        return upcoming

    def _scout(self, stats: ModelState, now: float) -> float | None:
        """Send a scout wave once; return when it comes due, if later.

        When many jobs were submitted at once, they all get the same first check, so an
        error in the estimate at that moment moves the whole batch's delay (or its cost).
        A few probes alone know little by then. So once a first job has ended, a tenth of
        the waiting jobs (at least 8, at most :data:`SCOUT_MAX`) is checked early, where a
        quarter of jobs should have ended: those that ended give exact durations, the
        others are censored there, and the estimate the main wave goes out on rests on
        many more jobs. A wave worth less than it costs (few jobs waiting) is not sent.
        """
        waiting = stats.waiting
        if stats.scouted or len(waiting) < SCOUT_MIN or stats.durations.count == 0:
            return None
        at = stats.durations.quantile(SCOUT_SURVIVAL)
        due = waiting[0].ref + at - RELEASE_TICK
        if due > now:
            return due
        stats.scouted = True
        if stats.queue.queueing(now):
            return None  # jobs queue on the server: their starts, not durations, are unknown
        for _ in range(min(SCOUT_MAX, max(8, int(len(waiting) * SCOUT_SHARE)))):
            entry = waiting.popleft()
            if not entry.gone():
                entry.scout = True
                stats.scouts += 1
                self._schedule(entry, now + self._jittered(entry.ref + at - now))
            if not waiting:
                break
        return None

    def _replan_probes(self, stats: ModelState) -> None:
        """The first duration: the probes leave their ladders for the estimate, now.

        Not at their next rung, which may be a rung's factor late.
        """
        now = time.monotonic()
        for other in self._entries.values():
            same = other.job.model_id == stats.model_id
            if same and other.probing and other.stage is Stage.SCHEDULED:
                self._plan_probe(other, stats, now)
