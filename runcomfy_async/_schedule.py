"""Where the next check of a job goes, besides the bulk economy: probes and lone jobs.

The bulk schedule (:meth:`~runcomfy_async._estimate.DurationModel.next_check`) spends about
``1/(1 - ratio)`` checks a job whatever the jobs' length, and answers a share of the
duration late. Two regimes need more than that:

* **Probes, before anything is known.** A few jobs check on a sparse geometric ladder
  (each rung :data:`LADDER` times the last), every probe on a ladder shifted by a share of
  a rung, so that together the probes sweep the time axis finely while each one spends
  about ``log(duration / first_check) / log(LADDER)`` checks: about the same number of
  requests whether jobs take one second or a minute (:func:`ladder_next`).
* **Few jobs in flight: idle budget spent on latency.** A lone job's checks gather where it
  is likely to end, spaced by the classic optimal-inspection rule: with a hazard rate
  ``h(t)`` (the chance a second that a running job ends) and a check worth ``c`` seconds
  of delay, the gap is ``sqrt(2 c / h(t))``; inside the likely window it never exceeds a
  fixed :data:`LONE_BOUND`, so a lone job is answered within about that bound, not a
  share of its duration. Both ``c`` and the bound grow with the square root of the jobs
  in flight, so the requests this spends grow only as that root while the bulk schedule's
  grow with the jobs, and from a few dozen jobs on the bulk schedule is the earlier one:
  the schedule converges to the economy (:func:`lone_next`). The ``ratio`` knob scales
  both, so it still moves along the whole trade-off.
"""

from __future__ import annotations

import math

from ._estimate import DurationModel

__all__ = ["GENERIC_PRIOR", "knob", "ladder_next", "lone_next"]

LADDER = 4.0
"""Growth of a probe's ladder from one rung to the next."""
LONE_COST = 0.06
"""Seconds of delay a check is worth for a lone job, at the default ratio."""
COLD_COST = 2.0
"""A check is worth this many times more while only a prior is known (it is a guess)."""
LONE_BOUND = 1.5
"""The longest gap between two checks of a lone job inside its likely window (seconds)."""
LONE_MAX = 256
"""Above this many jobs in flight the lone-job rule is not even computed (it never wins)."""
WINDOW_OPENS = 0.99
"""The likely window opens where this share of jobs is still running."""
DEFAULT_RATIO = 0.52
"""The ratio :data:`LONE_COST` and :data:`LONE_BOUND` are stated for."""

GENERIC_PRIOR = (math.log(10.0), 1.0)
"""Log median and spread assumed for a model nothing is known about (a lone job's guess)."""


def knob(ratio: float) -> float:
    """How much the lone-job cost and bound scale with ``ratio`` (1 at the default)."""
    odds = (1.0 - ratio) / ratio
    return odds / ((1.0 - DEFAULT_RATIO) / DEFAULT_RATIO)


def ladder_next(first_check: float, probe: int, probes: int, elapsed: float) -> float:
    """The elapsed time of probe number ``probe``'s next check on its sparse ladder.

    Probe ``k`` of ``probes`` checks at ``first_check * LADDER ** (j + k / probes)`` for
    ``j = 0, 1, 2 ...``: each ladder is shifted by a share of a rung.
    """
    shift = (probe % max(1, probes)) / max(1, probes)
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
    scale = knob(ratio) * math.sqrt(max(1, in_flight))
    cost = LONE_COST * scale * (COLD_COST if cold else 1.0)
    bound = LONE_BOUND * scale
    opens = model.quantile(WINDOW_OPENS)
    if elapsed < opens:
        return opens
    hazard = model.hazard(elapsed)
    gap = bound if hazard <= 0 else min(bound, math.sqrt(2.0 * cost / hazard))
    return elapsed + gap
