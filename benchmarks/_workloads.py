"""The workloads of ``python -m benchmarks`` and the ideal wall time of each.

Time scale: a job lasts 1 s on average (lognormal, sigma 0.3): a 10 s generation scaled
down 10x. RunComfy's own CLI polls every 2 s; scaled the same way, the baseline polls every
0.2 s (``BASELINE_INTERVAL_RATIO`` of the mean duration, in every workload).

The emulator draws each job's duration from ``random.Random(f"jobs-{seed}")`` in creation
order, so with a fixed seed every client of a workload gets the same durations, and the
parent can replay them to compute the ideal bound without asking the server.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass
from typing import Any

from runcomfy_async.testing import draw_duration

SEED = 1
BASELINE_INTERVAL_RATIO = 0.2
"""The baseline's polling interval over the mean job duration (RunComfy CLI: 2 s for ~10 s)."""
SCALING_ARRIVALS = 2000.0
"""Jobs submitted per second in the scaling series, the same at every size."""
BASELINE_CAP = 64
"""Jobs in flight at once in the baseline (its ``Semaphore``), as many as the client's pool."""
RA = "runcomfy-async"
RA_UVLOOP = "runcomfy-async (uvloop)"
RA_MAP = "runcomfy-async, map() (64 in flight)"
HTTPX = "httpx baseline"
HTTPX_ALL = "httpx, every job at once"
AIOHTTP = "aiohttp baseline loop (control)"
CLIENTS = (RA, RA_UVLOOP, RA_MAP, HTTPX, HTTPX_ALL, AIOHTTP)
"""Every client, in the order of the tables and the chart."""


def ordered_rows(rows: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """A workload's ``rows`` in :data:`CLIENTS` order (JSON files sort their keys)."""
    rank = {c: i for i, c in enumerate(CLIENTS)}
    return sorted(rows.items(), key=lambda cr: rank.get(cr[0], len(rank)))


@dataclass(frozen=True)
class Workload:
    """One server setting and job count, run through several clients."""

    key: str
    title: str
    jobs: int
    mean: float = 1.0
    sigma: float = 0.3
    concurrency: int | None = None
    rate: float | None = None
    clients: tuple[str, ...] = (RA, HTTPX, AIOHTTP)
    scaling: bool = False
    arrivals: float | None = None
    """Jobs submitted per second (paced), or ``None`` for as fast as the client goes."""
    repeats: int = 1
    """Runs of each client; the tables show the median (the scaling series, where noise
    between runs on a small machine would otherwise decide a 20 % flatness target)."""

    @property
    def interval(self) -> float:
        """The baseline's fixed polling interval for this workload's time scale."""
        return BASELINE_INTERVAL_RATIO * self.mean

    def emulator_args(self, *, uvloop: bool) -> list[str]:
        """Command-line knobs of the emulator for this workload."""
        args = ["--duration-mean", str(self.mean), "--duration-sigma", str(self.sigma)]
        args += ["--seed", str(SEED)]
        if self.concurrency is not None:
            args += ["--concurrency", str(self.concurrency)]
        if self.rate is not None:
            args += ["--rate-limit", f"{self.rate:g}", "--rate-burst", str(int(self.rate))]
        if uvloop:
            args += ["--loop", "uvloop"]
        return args

    def ideal(self) -> dict[str, Any]:
        """The wall time no client can beat, from the replayed job durations.

        No queue: the slowest job (every job starts when submitted); paced arrivals: the
        latest of each job's submit slot plus its duration. A queue of C slots:
        the server's FIFO makespan with all jobs submitted at once (at least total work / C).
        A rate limit of R/s (burst R): also at least 2 requests a job (submit, one read) at
        R/s after the first burst of R.
        """
        rng = random.Random(f"jobs-{SEED}")
        durations = [draw_duration(rng, self.mean, self.sigma) for _ in range(self.jobs)]
        slowest, total = max(durations), sum(durations)
        bound = slowest
        how = "slowest job"
        if self.arrivals is not None:  # job i cannot start before i / arrivals
            bound = max(i / self.arrivals + d for i, d in enumerate(durations))
            how = f"last to finish when submitted at {self.arrivals:g}/s"
        if self.concurrency is not None:
            slots = [0.0] * min(self.concurrency, self.jobs)
            for d in durations:  # FIFO: each job takes the first slot that frees up
                heapq.heapreplace(slots, slots[0] + d)
            bound, how = max(slots), f"FIFO makespan on {self.concurrency} slots"
        if self.rate is not None and (2 * self.jobs - self.rate) / self.rate > bound:
            bound = (2 * self.jobs - self.rate) / self.rate
            how = f"2 requests/job at {self.rate:g}/s after a burst of {self.rate:g}"
        return {"ideal_s": bound, "ideal_how": how, "slowest_s": slowest, "work_s": total}


def workloads(*, quick: bool, rate: float = 200.0, jobs: int | None = None) -> list[Workload]:
    """The workloads of a full run, or of ``--quick``.

    Full: 1k and 10k jobs without and with a server queue (a quarter as many slots as
    jobs), 1k jobs under the rate limit, scaling 1k/10k/100k (median of 3 runs each). The
    baseline caps jobs in flight at :data:`BASELINE_CAP`, so at 10k jobs it takes minutes:
    the aiohttp control runs only at 1k, and "every job at once" only without a queue. At 10k
    jobs without a queue ``client.map()`` at its default 64 jobs in flight runs too: the
    baseline's concurrency, for a like-for-like comparison of the polling.

    Quick (under two minutes): 1k jobs without a queue, 500 with a queue and 500 under the
    rate limit, scaling 1k/5k once; neither the control nor "every job at once". ``jobs``
    replaces every size (scaling: ``jobs`` and ``5 * jobs``), for smoke tests.

    Under the rate limit 1k jobs need at least 2,000 requests, 10 s at 200/s against jobs
    of 1-2 s: the client has more to send than the limit allows for most of the run.
    """
    big = 10_000
    plain: tuple[int, ...] = (1000,) if quick else (1000, big)
    queued: tuple[int, ...] = (500,) if quick else (1000, big)
    limited = 500 if quick else 1000
    scale: tuple[int, ...] = (1000, 5000) if quick else (1000, big, 100_000)
    repeats = 1 if quick else 3
    if jobs is not None:
        plain, queued, limited, scale = (jobs,), (jobs,), jobs, (jobs, 5 * jobs)

    def clients(n: int, *extra: str) -> tuple[str, ...]:
        control = () if quick or n >= big else (AIOHTTP,)
        return (RA, HTTPX, *extra, *control)

    out = [
        Workload(
            f"lognormal-{_k(n)}",
            f"{n:,} jobs, no server queue",
            n,
            clients=clients(n, *(() if quick else (RA_MAP,) if n >= big else (HTTPX_ALL,))),
        )
        for n in plain
    ]
    for n in queued:
        slots = max(1, n // 4)
        title = f"{n:,} jobs, server queue of {slots:,} slots"
        out.append(Workload(f"queue-{_k(n)}", title, n, concurrency=slots, clients=clients(n)))
    title = f"{limited:,} jobs, server rate limit {rate:g} requests/s (burst {rate:g})"
    out.append(
        Workload(f"rate-limit-{_k(limited)}", title, limited, rate=rate, clients=clients(limited))
    )
    # Scaling: jobs are submitted at SCALING_ARRIVALS a second and last N/1000 s on average,
    # so requests arrive at the same rate at every size and only the number in flight grows;
    # the submits end before the first job does (sigma 0.1), so all N are in flight at once.
    # Unpaced, 1k jobs went out in 0.1 s (9k/s) and 10k in 2 s (5k/s): the rate, not the
    # number in flight, then set the CPU per request.
    for n in scale:
        title = f"{n:,} jobs in flight (mean {n / 1000:g} s, sigma 0.1)"
        out.append(
            Workload(
                f"scaling-{_k(n)}",
                title,
                n,
                mean=n / 1000,
                sigma=0.1,
                clients=(RA,),
                scaling=True,
                arrivals=SCALING_ARRIVALS,
                repeats=repeats,
            )
        )
    return out


def size_label(n: int) -> str:
    """``1000`` -> ``1k``; ``500`` -> ``500``."""
    return _k(n)


def _k(n: int) -> str:
    return f"{n // 1000}k" if n % 1000 == 0 else str(n)
