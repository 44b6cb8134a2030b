"""A request rate learned from 429s, for a client that was not told its limit.

Without ``max_requests_per_second`` the client does not know the account's rate limit, and
the Model API documents none. Sending freely and pausing on each 429 is what clients
usually do; against a limit it makes every burst collide with it again, and each 429 costs
a whole ``Retry-After`` pause of the client. :class:`AdaptiveRate` learns the limit instead:

* **Ramp.** A new client starts at :data:`START_RATE` requests a second and doubles the rate
  every :data:`RAMP_EVERY` seconds in which it had more to send than the rate allowed. Past
  :data:`FREE_RATE` it stops limiting at all: no origin that fast is limited by this rule,
  and a client of a fast origin loses well under a second to the ramp.
* **Estimate on a 429.** A server's token bucket lets through ``burst + limit x T`` requests
  in ``T`` seconds from a full bucket. Counting the requests answered (not 429) since the
  bucket was last full (the start, or the end of the last pause) and taking a burst of about
  one second's worth, the limit is about ``answered / (T + 1)``. The rate is then set to
  :data:`HEADROOM` of that: one 429 usually suffices to find the limit.
* **One cut per overshoot.** The requests already on their way when the first 429 came back
  are answered 429 too; only a 429 of a request sent after the last cut cuts again, and no
  cut ever goes below half the rate it replaces (multiplicative decrease).
* **Probe upward.** After :data:`HOLD` seconds without a 429 while the rate binds, the rate
  grows by :data:`GROWTH` every :data:`PROBE_EVERY` seconds (additive-increase in spirit,
  geometric so it is scale-free); once it passes the learned limit by a third without a
  429, the limit has risen and the ramp resumes from there.

A learned limit can be handed to the next client (see :mod:`runcomfy_async._learned`): it
then starts at :data:`HEADROOM` of it instead of ramping.
"""

from __future__ import annotations

import math
from typing import Literal

__all__ = ["AdaptiveRate"]

START_RATE = 100.0
"""Requests a second a new client starts at."""
START_BURST = 10.0
"""Requests that may leave at once while ramping (after that, :data:`BURST_SHARE`)."""
RAMP_EVERY = 0.1
"""Seconds between two doublings of the rate while ramping."""
FREE_RATE = 6400.0
"""A ramp that reaches this rate stops limiting."""
HEADROOM = 0.95
"""Share of the learned limit sent at."""
BURST_SHARE = 0.9
"""Bucket size as a share of one second's worth of the rate, once a limit is learned."""
ASSUMED_BURST_S = 1.0
"""Seconds' worth of the limit a server's bucket is taken to hold (see the docstring)."""
MIN_RATE = 1.0
"""The rate is never cut below this many requests a second."""
MAX_CUT = 0.5
"""A cut keeps at least this share of the rate it replaces."""
HOLD = 15.0
"""Seconds without a 429, while the rate binds, before probing upward (at first)."""
MAX_HOLD = 240.0
"""The longest hold: each probe that finds the same limit again doubles the hold."""
PROBE_EVERY = 5.0
"""Seconds between two steps up while probing."""
GROWTH = 1.05
"""One step up while probing."""
RISEN = 4.0 / 3.0
"""Past this multiple of the learned limit without a 429, the limit has risen: ramp again."""
BUSY_WINDOW = 1.0
"""The rate binds if a request waited for it within this many seconds."""

Phase = Literal["ramp", "free", "learned"]


class AdaptiveRate:
    """A token bucket whose rate is learned from the 429s it causes.

    All times are seconds on the caller's monotonic clock, passed in (so tests can drive
    it). The caller asks :meth:`wait` before each request, calls :meth:`sent` when it
    leaves and :meth:`limited` for each 429.

    Args:
        now: the current time.
        learned: a limit learned earlier (requests a second), to start from; ``None``
            ramps from :data:`START_RATE`.
    """

    def __init__(self, now: float, learned: float | None = None) -> None:
        self.phase: Phase = "ramp"
        """``ramp`` (doubling), ``free`` (no limit) or ``learned``."""
        self.rate: float | None = START_RATE
        """Requests a second allowed now; ``None`` once free."""
        self.limit: float | None = None
        """The learned limit (requests a second), if any."""
        self.confident = False
        """Whether :attr:`limit` rests on enough answers to be handed to the next client."""
        self.cuts = 0
        """How many times a 429 cut the rate."""
        self._burst = START_BURST
        self._level = START_BURST
        self._at = now
        self._epoch = now  # start of the current ramp or probe step
        self._mark = math.inf  # the server's bucket was (taken to be) full here: see sent()
        self._answered = 0  # requests sent after _mark and not answered 429
        self._cut_at = -math.inf
        self._last_wait = -math.inf
        self._calm_since = now  # no 429 since
        self._hold = HOLD
        if learned is not None and learned > 0:
            self._learn(max(MIN_RATE, learned), now, confident=True)

    def __repr__(self) -> str:
        rate = "free" if self.rate is None else f"{self.rate:.1f}/s"
        return f"<AdaptiveRate {self.phase} {rate} limit={self.limit} cuts={self.cuts}>"

    def wait(self, now: float) -> float:
        """Seconds until a request may leave (0: now). Does not take the turn."""
        self._advance(now)
        if self.rate is None:
            return 0.0
        self._refill(now)
        if self._level >= 1.0 - 1e-9:  # rounding must not make a wait of nothing
            return 0.0
        self._last_wait = now
        return (1.0 - self._level) / self.rate

    def sent(self, now: float) -> None:
        """A request leaves now (after :meth:`wait` said 0)."""
        if self.rate is not None:
            self._refill(now)
            self._level -= 1.0
        if self._mark == math.inf:
            self._mark = now  # the first request: count from here, not from construction
        if now >= self._mark:
            self._answered += 1

    def limited(self, now: float, sent_at: float, pause: float) -> None:
        """A request sent at ``sent_at`` was answered 429; the client pauses ``pause`` s."""
        if sent_at >= self._mark:
            self._answered -= 1
        self._calm_since = now
        if sent_at < self._cut_at:
            return  # on its way before the last cut: that overshoot is already answered
        window = max(0.0, sent_at - self._mark)
        estimate = max(0, self._answered) / (window + ASSUMED_BURST_S)
        if self.rate is not None:
            # Sending at `rate` drew a 429: the limit is below it, but (learned) not far.
            low = MAX_CUT * self.rate if self.phase == "learned" else 0.0
            estimate = min(max(estimate, low), self.rate)
        confident = self._answered >= 20
        if self.phase == "learned" and self.limit is not None and estimate >= 0.9 * self.limit:
            self._hold = min(MAX_HOLD, 2 * self._hold)  # probed, found the same limit
        self.cuts += 1
        self._cut_at = now
        # The pause lets the server's bucket fill again: count from its end.
        self._mark = now + max(0.0, pause)
        self._answered = 0
        self._learn(max(MIN_RATE, estimate), now, confident=confident)

    def _learn(self, limit: float, now: float, *, confident: bool) -> None:
        self.phase = "learned"
        self.limit = limit
        self.confident = confident or self.confident
        self.rate = HEADROOM * limit
        self._burst = max(1.0, BURST_SHARE * self.rate)
        self._level = min(self._level, self._burst)
        self._epoch = now
        self._calm_since = now

    def _refill(self, now: float) -> None:
        if self.rate is not None and now > self._at:
            self._level = min(self._burst, self._level + (now - self._at) * self.rate)
        self._at = max(self._at, now)

    def _busy(self, now: float) -> bool:
        return now - self._last_wait < BUSY_WINDOW

    def _advance(self, now: float) -> None:
        """Ramp up or probe upward, lazily, as time passes."""
        if self.rate is None:
            return
        if self.phase == "ramp":
            while now - self._epoch >= RAMP_EVERY and self.rate is not None:
                busy = self._last_wait >= self._epoch  # the rate held a request back
                self._epoch += RAMP_EVERY
                if not busy:
                    self._epoch = max(self._epoch, now - RAMP_EVERY)
                    break
                self._refill(self._epoch)
                self.rate *= 2.0
                self._burst = max(self._burst, BURST_SHARE * self.rate * RAMP_EVERY)
                if self.rate >= FREE_RATE:
                    self.phase, self.rate = "free", None
            return
        # learned: probe upward after a calm, busy spell
        if now - self._calm_since < self._hold or now - self._epoch < PROBE_EVERY:
            return
        self._epoch = now
        if not self._busy(now):
            return
        self._refill(now)
        self.rate *= GROWTH
        self._burst = max(1.0, BURST_SHARE * self.rate)
        if self.limit is not None and self.rate > RISEN * self.limit:
            # No 429 well past the old limit: it has risen. Ramp, and estimate the new one
            # from what the ramp gets answered (the server's bucket is full: we sent below).
            self.phase = "ramp"
            self._hold = HOLD
            self._mark, self._answered = now, 0
