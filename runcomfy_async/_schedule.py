"""Where the next check of a job goes, besides the bulk economy: probes and lone jobs.

The bulk schedule (:meth:`~runcomfy_async._estimate.DurationModel.next_check`) spends about
``1/(1 - ratio)`` checks a job whatever the jobs' length, and answers a share of the
duration late. Two regimes need more than that:

* **Probes, before anything is known.** A few jobs check on a sparse geometric ladder
  (each rung :data:`LADDER` times the last), every probe on a ladder shifted by a share of
  a rung, so that together the probes sweep the time axis finely while each one spends
  about ``log(duration / first_check) / log(LADDER)`` checks: about the same number of
  requests whether jobs take one second or a minute (:func:`ladder_next`). Once one has
  finished, the others are checked on the estimate; denser than the bulk's while many jobs
  wait for the estimate (they all wait on the probes), at the bulk's own ratio when few do
  and the extra checks would cost more than the wait (:func:`probe_ratio`).
* **Few jobs in flight: idle budget spent on latency.** A lone job's checks gather where it
  is likely to end, spaced by the classic optimal-inspection rule: with a hazard rate
  ``h(t)`` (the chance a second that a running job ends) and a check worth ``c`` seconds
  of delay, the gap is ``sqrt(2 c / h(t))``; inside the likely window it never exceeds a
  fixed :data:`LONE_BOUND`, so a lone job is answered within about that bound, not a
  share of its duration (past the window, where only a few jobs still run, checks spread
  out with the job's age instead). A check is worth ``c`` times the jobs in flight (each check
  takes budget from all of them), so gaps grow with the square root of that number, as
  does the bound, and the requests this spends grow only as that root while the bulk
  schedule's grow with the jobs: from a handful to a few dozen jobs on (the wider the
  spread, the later), the bulk schedule is the earlier one and the schedule is the
  economy (:func:`lone_next`). The ``ratio`` knob scales ``c`` and the bound, so it still
  moves along the whole trade-off.
"""

from __future__ import annotations

import math

from ._estimate import MIN_STEP, DurationModel

__all__ = [
    "GENERIC_PRIOR",
    "PRIOR_WEIGHT",
    "knob",
    "ladder_next",
    "lone_next",
    "probe_ratio",
    "probe_shift",
    "probe_start",
    "sooner",
]

LADDER = 2.0
"""Growth of a probe's ladder from one rung to the next."""
PROBE_RATIO = 0.75
"""The ratio probes are checked at once a job finished, while many jobs wait on them."""
MANY_WAITING = 48
"""Jobs waiting for a first estimate worth denser probes (and a scout wave) to learn sooner."""
LONE_COST = 0.05
"""Seconds of delay a check is worth for a lone job, at the default ratio."""
COLD_COST = 2.0
"""A check is worth this many times more while only a prior is known (it is a guess)."""
LONE_BOUND = 1.5
"""The longest gap between two checks of a lone job inside its likely window (seconds)."""
LONE_MAX = 256
"""Above this many jobs in flight the lone-job rule is not even computed (it never wins)."""
WINDOW_OPENS = 0.9
"""The likely window opens where this share of jobs is still running (the few that end
sooner are answered at its opening: a check for each of them would cost every job one)."""
WINDOW_CLOSES = 0.03
"""The likely window closes where this share of jobs is still running."""
DEFAULT_RATIO = 0.52
"""The ratio :data:`LONE_COST` and :data:`LONE_BOUND` are stated for."""

GENERIC_PRIOR = (math.log(10.0), 1.0)
"""Log median and spread assumed for a model nothing is known about (a lone job's guess)."""
PRIOR_WEIGHT = 1.0
"""Jobs' worth of weight a prior counts for (see :data:`~runcomfy_async._learned.PRIORS`)."""
GOLDEN = (5**0.5 - 1) / 2
STAGGER = 0.25
"""Rungs between the starts of two successive probes' ladders (see :func:`probe_start`)."""


def probe_ratio(ratio: float, waiting: int) -> float:
    """The ratio a probe is checked at once a job finished, with ``waiting`` jobs waiting.

    Every waiting job's first check waits for the probes, so while many wait a probe is
    worth checking more often (:data:`PROBE_RATIO`); with few (a small batch) the extra
    checks, spread over few jobs, would cost more requests a job than they save in delay.
    """
    return max(ratio, PROBE_RATIO) if waiting >= MANY_WAITING else ratio


def probe_start(first_check: float, seq: int) -> float:
    """Probe number ``seq`` starts its ladder :data:`STAGGER` rungs after the one before.

    The first probes look early, the later ones join as time goes by: until a first job
    ends, about the same few probes are checked per rung whatever the jobs' length, and
    after that the probes follow the estimate anyway.
    """
    return first_check * math.pow(LADDER, STAGGER * max(0, seq - 1))


def probe_shift(seq: int) -> float:
    """Probe number ``seq``'s ladder shift: ``seq * GOLDEN`` mod 1.

    Any number of probes, taken in order, spread evenly over one rung.
    """
    return (seq * GOLDEN) % 1.0


def knob(ratio: float) -> float:
    """How much the lone-job cost and bound scale with ``ratio`` (1 at the default)."""
    odds = (1.0 - ratio) / ratio
    return odds / ((1.0 - DEFAULT_RATIO) / DEFAULT_RATIO)


def ladder_next(first_check: float, shift: float, elapsed: float) -> float:
    """The elapsed time of a probe's next check on its sparse ladder.

    A probe checks at ``first_check * LADDER ** (j + shift)`` for ``j = 0, 1, 2 ...``;
    probes with shifts spread over ``[0, 1)`` together sweep every rung finely.
    """
    first = first_check * math.pow(LADDER, shift)
    if elapsed < first:
        return first
    rung = math.floor(math.log(elapsed / first_check) / math.log(LADDER) - shift) + 1
    return first_check * math.pow(LADDER, rung + shift)


def lone_next(
    model: DurationModel, elapsed: float, *, in_flight: int, ratio: float, cold: bool
) -> float | None:
    """The elapsed time of the next check that spends idle budget on latency.

    ``None`` when too many jobs are in flight for it to matter (the bulk schedule then is
    always earlier). ``cold``: the model is only a prior, so a check is worth more.
    """
    if in_flight > LONE_MAX:
        return None
    jobs = max(1, in_flight)
    cost = LONE_COST * knob(ratio) * jobs * (COLD_COST if cold else 1.0)
    bound = LONE_BOUND * knob(ratio) * math.sqrt(jobs)
    opens = model.quantile(WINDOW_OPENS)
    # Past the median the hazard is held at its value there: a log-normal's keeps rising
    # into the tail, which would check a late job ever more often for little gain.
    hazard = min(model.hazard(max(elapsed, opens)), model.hazard(model.quantile(0.5)))
    gap = math.sqrt(2.0 * cost / hazard) if hazard > 0 else math.inf
    if elapsed >= opens:
        step = min(bound, gap)
        if elapsed >= model.quantile(WINDOW_CLOSES):
            # Past the likely window (a job later than all but a few): the bound no longer
            # holds, checks spread out with the job's age as the bulk schedule's do.
            step = max(step, MIN_STEP * elapsed)
        return elapsed + step
    # Before the window: its opening, unless checks are worth too little even there (many
    # jobs in flight), in which case later than the bulk schedule would anyway.
    return max(opens, elapsed + gap)


def sooner(
    target: float,
    model: DurationModel,
    elapsed: float,
    *,
    in_flight: int,
    ratio: float,
    cold: bool,
) -> float:
    """``target`` (an elapsed time), or the lone-job check if that is earlier."""
    lone = lone_next(model, elapsed, in_flight=in_flight, ratio=ratio, cold=cold)
    return target if lone is None else min(target, lone)
