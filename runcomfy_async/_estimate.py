"""What the poller learns about each model: how long its jobs run, how fast they finish.

Durations come from the server's own ``created_at``/``finished_at`` when it sends them, so how
often we happened to check does not blur what we learn. But finished jobs alone are a biased
sample while a batch runs: early on only the short jobs have finished. So the estimate also
counts every job still running as *censored*: "it has run at least ``e`` seconds". The fit
is a log-normal by maximum likelihood with censoring (a few EM steps over the log durations),
its spread shrunk toward a wide prior while few jobs have finished.

The poller asks one question: "this job was still running at elapsed time ``e``; when has
the chance that it is *still* running fallen to ``ratio`` of that?".
"""

from __future__ import annotations

import collections
import math
import random
import statistics
import time
from dataclasses import dataclass, field

__all__ = ["DrainRate", "DurationModel", "ServerClock"]

_STANDARD = statistics.NormalDist()
_SQRT2 = math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _sf(z: float) -> float:
    """Standard normal survival function, 1 - Phi(z)."""
    return 0.5 * math.erfc(z / _SQRT2)


def _inv_sf(p: float) -> float:
    """The z such that 1 - Phi(z) = p, for p kept inside (0, 1)."""
    return _STANDARD.inv_cdf(min(1.0 - 1e-15, max(1e-15, 1.0 - p)))


DRIFT_Z = 3.0
"""A finished job this many spreads from knowledge held from before drops that knowledge."""
PRIOR_UNTIL = 4
"""Finished jobs after which a prior (a guess for the seed models) is dropped."""
MIN_STEP = 0.1
"""A job's next check is at least this share of its elapsed time after the last one.

Far in the fitted tail, the survival ratio alone would check ever more often (a log-normal's
hazard keeps rising there), while real durations often have heavier tails than a log-normal
fit; a job that late is answered within this share of its duration anyway."""


@dataclass
class DurationModel:
    """A running log-normal estimate of one model's job durations (seconds), censoring-aware.

    Attributes:
        prior_sigma: spread (in log space) assumed while few jobs have finished.
        prior_weight: how many finished jobs the prior spread counts for.
        window: how many finished durations are kept: a uniform sample of all of them
            (reservoir sampling). Not the most recent ones: in a batch submitted at once the
            latest to finish are the longest, and a recency window would drift long.
        max_censored: how many running jobs the fit looks at (an even sample of them).
        refit_every: seconds between two refits at most (refits are cheap but not free).
    """

    prior_sigma: float = 0.6
    prior_weight: float = 3.0
    window: int = 1024
    max_censored: int = 256
    refit_every: float = 0.05
    events: list[float] = field(default_factory=list)
    running: dict[str, float] = field(default_factory=dict)
    _seen: int = 0
    _seed: tuple[float, float, float] | None = None  # (mu, sigma, weight) known beforehand
    _raw_sigma: float = 0.0
    _prior: bool = False
    _rng: random.Random = field(default_factory=lambda: random.Random(0x5EED))
    _mu: float = 0.0
    _sigma: float = 1.0
    _fitted: float = -1.0
    _dirty: bool = True

    @property
    def count(self) -> int:
        """How many finished jobs the estimate rests on."""
        return len(self.events)

    @property
    def known(self) -> bool:
        """Whether there is an estimate: a finished job, or knowledge from before."""
        return bool(self.events) or self._seed is not None

    @property
    def seeded(self) -> float:
        """How many jobs' worth of knowledge from before the estimate holds (0: none)."""
        return self._seed[2] if self._seed is not None else 0.0

    def seed(self, mu: float, sigma: float, weight: float, *, prior: bool = False) -> None:
        """Start from knowledge from before: a log-normal (``mu``, ``sigma``) worth ``weight`` jobs.

        It counts as ``weight`` finished jobs with that spread, and its spread replaces the
        wide prior. A finished job far outside it (beyond :data:`DRIFT_Z` spreads) drops it:
        the model's jobs no longer take what they took. A ``prior`` (a guess, not
        knowledge) is also dropped once :data:`PRIOR_UNTIL` jobs have finished.
        """
        self._seed = (mu, max(sigma, 0.03), max(weight, 0.0))
        self._prior = prior
        self._dirty = True
        self._fitted = -1.0

    def spread(self) -> float:
        """The fitted log spread before the prior widens it (what a cache keeps)."""
        self._fit()
        return self._raw_sigma or self._sigma

    def mu(self) -> float:
        """The fitted mean log duration."""
        self._fit()
        return self._mu

    def add(self, seconds: float, key: str | None = None) -> None:
        """Record one finished job's duration (and forget it as running)."""
        if key is not None:
            self.running.pop(key, None)
        if not seconds > 0 or math.isinf(seconds):
            return
        if self._seed is not None and (
            abs(math.log(seconds) - self._seed[0]) > DRIFT_Z * self._seed[1]
            or (self._prior and len(self.events) + 1 >= PRIOR_UNTIL)
        ):
            self._seed = None  # what was known (or guessed) before no longer holds
            self._fitted = -1.0  # refit at once: the last fit rests on it
        self._seen += 1
        if not self.events:
            self._fitted = -1.0  # the first duration replaces a prior: refit at once
        if len(self.events) < self.window:
            self.events.append(math.log(seconds))
        else:
            slot = self._rng.randrange(self._seen)
            if slot < self.window:
                self.events[slot] = math.log(seconds)
        self._dirty = True

    def still_running(self, key: str, elapsed: float) -> None:
        """Record that job ``key`` was still running after ``elapsed`` seconds."""
        if elapsed > 0:
            self.running[key] = math.log(elapsed)
            self._dirty = True

    def forget(self, key: str) -> None:
        """Drop a running job that will not finish normally (cancelled, failed to follow)."""
        if self.running.pop(key, None) is not None:
            self._dirty = True

    def _fit(self) -> None:
        if not self._dirty or not self.known:
            return
        now = time.monotonic()
        if self._fitted >= 0 and now - self._fitted < self.refit_every:
            return
        self._fitted, self._dirty = now, False
        ys = self.events
        cs = list(self.running.values())
        if len(cs) > self.max_censored:
            cs = cs[:: len(cs) // self.max_censored + 1]  # a thinned but even sample
        # Both are samples: weigh them back to the counts they stand for, or the fit
        # would lean toward whichever was thinned less.
        n_ev, n_cs = float(max(self._seen, len(ys))), float(len(self.running))
        w_ev = n_ev / len(ys) if ys else 0.0
        w_cs = n_cs / len(cs) if cs else 0.0
        sum_y = w_ev * sum(ys)
        sum_yy = w_ev * sum(y * y for y in ys)
        prior_sigma = self.prior_sigma
        if self._seed is not None:  # knowledge from before: pseudo-jobs, and the prior
            s_mu, s_sigma, s_weight = self._seed
            sum_y += s_weight * s_mu
            sum_yy += s_weight * (s_sigma**2 + s_mu**2)
            n_ev += s_weight
            prior_sigma = s_sigma
        if n_ev <= 0:
            return
        mu = sum_y / n_ev
        var = max(sum_yy / n_ev - mu * mu, 1e-4)
        w = self.prior_weight
        sigma = math.sqrt((n_ev * var + w * prior_sigma**2) / (n_ev + w))
        n = n_ev + n_cs
        for _ in range(6 if cs else 0):  # EM: impute the censored log durations' moments
            c1 = c2 = 0.0
            for c in cs:
                z = (c - mu) / sigma
                tail = _sf(z)
                if tail < 1e-12:  # far in the tail: the inverse Mills ratio ~ z + 1/z
                    lam = z + 1.0 / max(z, 1e-9)
                else:
                    lam = _INV_SQRT_2PI * math.exp(-0.5 * z * z) / tail
                m1 = mu + sigma * lam
                c1 += m1
                c2 += sigma * sigma * max(1e-6, 1.0 + z * lam - lam * lam) + m1 * m1
            mu = (sum_y + w_cs * c1) / n
            var = max((sum_yy + w_cs * c2) / n - mu * mu, 1e-4)
            sigma = math.sqrt((n * var + w * prior_sigma**2) / (n + w))
        self._mu, self._sigma = mu, max(sigma, 0.03)
        self._raw_sigma = max(math.sqrt(var), 0.03)

    def median(self) -> float | None:
        """The estimated median duration, or ``None`` before any job finished."""
        if not self.events:
            return None
        self._fit()
        return math.exp(self._mu)

    def hazard(self, elapsed: float) -> float:
        """Estimated rate (per second) at which a job still running at ``elapsed`` ends."""
        self._fit()
        if elapsed <= 0:
            return 0.0
        z = (math.log(elapsed) - self._mu) / self._sigma
        tail = _sf(z)
        if tail < 1e-12:  # far in the tail: the inverse Mills ratio ~ z + 1/z
            return (z + 1.0 / max(z, 1e-9)) / (elapsed * self._sigma)
        return _INV_SQRT_2PI * math.exp(-0.5 * z * z) / (tail * elapsed * self._sigma)

    def quantile(self, p: float) -> float:
        """The duration that a share ``p`` of jobs outlast (``p`` in (0, 1))."""
        self._fit()
        return math.exp(self._mu + self._sigma * _inv_sf(p))

    def survival(self, elapsed: float) -> float:
        """Estimated chance that a job is still running after ``elapsed`` seconds."""
        self._fit()
        if elapsed <= 0:
            return 1.0
        return _sf((math.log(elapsed) - self._mu) / self._sigma)

    def next_check(self, elapsed: float, ratio: float) -> float:
        """The elapsed time at which the survival chance has fallen to ``ratio`` of its value now.

        Checking at those times (the 50th, 75th, 87.5th ... percentiles for ``ratio=0.5``)
        costs about ``1/(1-ratio)`` checks per job whatever the distribution's spread.
        While few jobs have finished the centre is uncertain, so a first check (``elapsed``
        0) leans early by one standard error: an early check costs a request, a late first
        check costs every job released with it its waiting time.
        """
        target = ratio * self.survival(elapsed)
        if target <= 1e-12:
            return elapsed * 1.5
        known = max(1.0, self._seen + self.seeded)
        lean = self._sigma / math.sqrt(known) if elapsed <= 0 else 0.0
        at = math.exp(self._mu - lean + self._sigma * _inv_sf(target))
        return max(elapsed * (1.0 + MIN_STEP), at)


@dataclass
class DrainRate:
    """How fast one model's jobs finish, from the server's finish times (jobs per second)."""

    window: int = 256
    times: collections.deque[float] = field(default_factory=collections.deque)
    _rate: float | None = None
    _stale: bool = False

    def add(self, finished: float) -> None:
        """Record a finish time (seconds on any monotone clock, e.g. a server timestamp)."""
        self.times.append(finished)
        if len(self.times) > self.window:
            self.times.popleft()
        self._stale = True

    def rate(self) -> float | None:
        """Finishes per second over the window, or ``None`` with too little data."""
        if self._stale:
            self._stale = False
            span = max(self.times) - min(self.times) if len(self.times) >= 4 else 0.0
            self._rate = (len(self.times) - 1) / span if span > 0 else None
        return self._rate


@dataclass
class ServerClock:
    """The server's wall clock on our monotonic clock, from when jobs were created.

    A job's ``created_at`` (server) was stamped while its submit was in flight, about the
    midpoint of sending and the answer on our clock; the median of recent differences is the
    offset. Before any sample, the local wall clock stands in.
    """

    samples: collections.deque[float] = field(default_factory=lambda: collections.deque(maxlen=33))
    offset: float = field(default_factory=lambda: time.time() - time.monotonic())
    _fresh: int = 0

    def sample(self, server_time: float, local: float) -> None:
        """Record that the server stamped ``server_time`` (epoch) at ``local`` (monotonic)."""
        self.samples.append(server_time - local)
        self._fresh += 1
        if self._fresh >= 8 or len(self.samples) < 8:
            self._fresh = 0
            self.offset = statistics.median(self.samples)

    def local(self, server_time: float) -> float:
        """A server timestamp (epoch seconds) on our monotonic clock."""
        return server_time - self.offset
