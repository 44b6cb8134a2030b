"""The least any client can pay for a median delay: a floor for the regime targets.

Run: ``python -m benchmarks.frontier [--sigma 0.3 0.5] [--target 0.15]``

A client that knows a model's duration distribution exactly (log-normal, ``sigma``, mean
1: delays scale with the mean) and follows each of many jobs on its own fixed schedule
of checks ``t1 < t2 < ...`` pays ``1 + sum_k S(t_{k-1})`` requests a job (the submit, then
check ``k`` happens if the job still ran at ``t_{k-1}``; the check that finds it done
fetches the result) and answers a job that ends in ``(t_{k-1}, t_k]`` at ``t_k``. Its
median delay is at most ``x`` (a share of the mean) when jobs ending in the windows
``[t_k - x, t_k]`` make up half of all jobs. This computes, by dynamic programming over
a fine grid of check times with a Lagrange weight on that share (bisected), the fewest
requests a job with which any fixed schedule reaches it (``--relative``: each job's delay
measured against its own duration instead). Jobs submitted at once get
nothing from one another's answers beyond the distribution, which this client already
knows, so no schedule a real (learning) client runs can beat it. A target below this
floor cannot be met; one just above it leaves nothing for learning the distribution.
"""

from __future__ import annotations

import argparse
import math
from statistics import NormalDist

_STD = NormalDist()


def floor(
    sigma: float, target: float, points: int = 500, *, relative: bool = False
) -> tuple[float, float, list[float]]:
    """(requests a job, share answered within ``target``, the denser schedule's check times).

    The floor may mix two schedules (see below); the times shown are the denser one's.
    ``relative``: a job's delay is measured against its own duration, not the mean (a
    check at ``t`` answers within ``target`` the jobs that ended after ``t / (1 + target)``).
    """
    mu = -sigma * sigma / 2.0  # mean 1
    lo, hi = math.exp(mu - 4.0 * sigma), math.exp(mu + 5.0 * sigma)
    grid = [lo * (hi / lo) ** (i / (points - 1)) for i in range(points)]

    def cdf(t: float) -> float:
        return 0.0 if t <= 0 else _STD.cdf((math.log(t) - mu) / sigma)

    fs = [cdf(t) for t in grid]
    window = [cdf(t / (1.0 + target) if relative else t - target) for t in grid]

    def solve(lam: float) -> tuple[float, float, list[float]]:
        # best[i]: least (checks - lam * covered) from a check at grid[i] on, to the end.
        best = [0.0] * points
        nxt = [-1] * points
        for i in range(points - 1, -1, -1):
            run = 1.0 - fs[i]  # the chance that a next check happens at all
            value, arg = run, -1  # no further check on the grid: one more, far later
            for j in range(i + 1, points):
                covered = fs[j] - max(fs[i], window[j])
                v = run - lam * covered + best[j]
                if v < value:
                    value, arg = v, j
            best[i], nxt[i] = value, arg
        value, first = math.inf, -1
        for j in range(points):  # the first check always happens
            v = 1.0 - lam * (fs[j] - window[j]) + best[j]
            if v < value:
                value, first = v, j
        times, checks, covered, prev = [], 0.0, 0.0, 0.0
        j = first
        while j >= 0:
            checks += 1.0 - cdf(prev)
            covered += fs[j] - max(cdf(prev), window[j])
            times.append(grid[j])
            prev, j = grid[j], nxt[j]
        checks += 1.0 - cdf(prev)  # a job past the last check: one more, far later
        return 1.0 + checks, covered, times

    # The weight's solutions jump over the 50 % share: mixing the two schedules on either
    # side of it (a share of the jobs on each) reaches it at a cost between theirs.
    low, high = 0.0, 200.0
    for _ in range(40):
        lam = (low + high) / 2.0
        if solve(lam)[1] >= 0.5:
            high = lam
        else:
            low = lam
    r_lo, c_lo, _ = solve(low)
    r_hi, c_hi, times = solve(high)
    if c_hi - c_lo < 1e-9:
        return r_hi, c_hi, times
    share = (0.5 - c_lo) / (c_hi - c_lo)
    return r_lo + share * (r_hi - r_lo), 0.5, times


def main(argv: list[str] | None = None) -> int:
    """Print the floor for each spread asked for."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sigma", type=float, nargs="+", default=[0.2, 0.3, 0.5])
    parser.add_argument("--target", type=float, default=0.15, help="median delay / mean")
    parser.add_argument("--points", type=int, default=500, help="grid points (finer: slower)")
    parser.add_argument(
        "--relative", action="store_true", help="each job's delay / its own duration, not the mean"
    )
    args = parser.parse_args(argv)
    of = "of each job's own duration" if args.relative else "of the mean"
    print(f"| sigma | median delay ({of}) | fewest requests a job | checks at (x mean) |")
    print("|---|---|---|---|")
    for sigma in args.sigma:
        requests, _, times = floor(sigma, args.target, args.points, relative=args.relative)
        shown = ", ".join(f"{t:.2f}" for t in times[:6]) + (" ..." if len(times) > 6 else "")
        print(f"| {sigma} | <= {args.target:.0%} | {requests:.2f} | {shown} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
