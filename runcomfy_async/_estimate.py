"""What the poller learns about each model: how long its jobs run and how fast its queue drains.

Durations are taken from the server's own ``created_at``/``finished_at`` when it sends them,
so how often we happened to check does not bias what we learn. The fit is a log-normal with
a robust centre and spread (median and MAD of the log durations), shrunk toward a wide prior
while few jobs have finished. The poller asks it one question: "this job was still running at
elapsed time ``e``; when has the chance that it is *still* running fallen by ``ratio``?".
"""

from __future__ import annotations

import collections
import math
import statistics
from dataclasses import dataclass, field

__all__ = ["DurationModel", "DrainRate"]

_NORMAL = statistics.NormalDist()
_MAD_TO_SIGMA = 1.4826


@dataclass
class DurationModel:
    """A running, robust log-normal estimate of one model's job durations (seconds).

    Attributes:
        prior_sigma: spread (in log space) assumed before enough jobs have finished.
        prior_weight: how many samples the prior spread counts for.
        window: how many recent samples are kept (the estimate follows drift).
    """

    prior_sigma: float = 0.6
    prior_weight: float = 4.0
    window: int = 512
    samples: collections.deque[float] = field(default_factory=collections.deque)
    _mu: float = 0.0
    _sigma: float = 1.0
    _fitted_at: int = -1
    _added: int = 0

    @property
    def count(self) -> int:
        """How many samples the estimate rests on."""
        return len(self.samples)

    def add(self, seconds: float) -> None:
        """Record one finished job's duration."""
        if not seconds > 0 or math.isinf(seconds):
            return
        self.samples.append(math.log(seconds))
        if len(self.samples) > self.window:
            self.samples.popleft()
        self._added += 1

    def _fit(self) -> None:
        # Refit when the sample grew by ~10 % (cheap: a sort of <= window floats).
        if self._fitted_at >= 0 and self._added - self._fitted_at < max(1, self._fitted_at // 10):
            return
        logs = sorted(self.samples)
        mu = _median_sorted(logs)
        mad = _median_sorted(sorted(abs(x - mu) for x in logs))
        n = len(logs)
        sigma_hat = _MAD_TO_SIGMA * mad
        w = self.prior_weight
        sigma = math.sqrt((n * sigma_hat**2 + w * self.prior_sigma**2) / (n + w))
        self._mu, self._sigma = mu, max(sigma, 0.03)
        self._fitted_at = self._added

    def median(self) -> float | None:
        """The estimated median duration, or ``None`` before any sample."""
        if not self.samples:
            return None
        self._fit()
        return math.exp(self._mu)

    def survival(self, elapsed: float) -> float:
        """Estimated chance that a job is still running after ``elapsed`` seconds."""
        self._fit()
        if elapsed <= 0:
            return 1.0
        return 1.0 - _NORMAL.cdf((math.log(elapsed) - self._mu) / self._sigma)

    def next_check(self, elapsed: float, ratio: float) -> float:
        """The elapsed time at which the survival chance has fallen to ``ratio`` of its value now.

        Checking at those times (the 50th, 75th, 87.5th ... percentiles for ``ratio=0.5``)
        costs about ``1/(1-ratio)`` checks per job whatever the distribution's spread.
        """
        target = ratio * self.survival(elapsed)
        if target <= 1e-9:
            return elapsed * 1.5
        z = _NORMAL.inv_cdf(min(1.0 - 1e-12, max(1e-12, 1.0 - target)))
        return max(elapsed, math.exp(self._mu + self._sigma * z))


@dataclass
class DrainRate:
    """How fast one model's jobs finish, from the server's finish times (jobs per second)."""

    window: int = 256
    times: collections.deque[float] = field(default_factory=collections.deque)

    def add(self, finished: float) -> None:
        """Record a finish time (seconds on any monotone clock, e.g. a server timestamp)."""
        self.times.append(finished)
        if len(self.times) > self.window:
            self.times.popleft()

    def rate(self) -> float | None:
        """Finishes per second over the window, or ``None`` with too little data."""
        if len(self.times) < 4:
            return None
        span = max(self.times) - min(self.times)
        return (len(self.times) - 1) / span if span > 0 else None


def _median_sorted(values: list[float]) -> float:
    n = len(values)
    mid = n // 2
    return values[mid] if n % 2 else (values[mid - 1] + values[mid]) / 2
