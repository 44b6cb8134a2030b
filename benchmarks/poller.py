"""Issue 3's numbers: requests per job and detection delay of the single adaptive poller.

Run: ``python -m benchmarks.poller [--jobs 2000] [--quick]``

Every figure is measured in one run against one emulator process on loopback:

* ``adaptive``: runcomfy-async at default settings, plus two other points of the one
  trade-off knob (``PollSettings.ratio``);
* ``fixed-0.2s``: one polling loop per job, status then result every 0.2 s: RunComfy's CLI
  polls every 2 s for jobs of about 10 s; the workload here is scaled down 10x;
* ``queue``: the same with a server queue (emulator concurrency 50);
* ``rate-limit``: the emulator answers 429 above R requests/s, the client is set to R;
* ``scale``: 10,000 jobs in flight in one process: RSS growth, loop lag, CPU per job against
  one bare aiohttp request.

Delay is how long after the server finished a job (its own ``finished_at``) the client's
future resolved, divided by the mean job duration (1 s).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from typing import Any

import aiohttp

from runcomfy_async import AsyncClient, PollSettings, Result

from ._harness import (
    TOKEN,
    Probe,
    bare_request_cpu,
    cpu_seconds,
    emulator,
    quantile,
    rss_mb,
    write_json,
)

MODEL = "google/nano-banana-2/text-to-image"
MEAN = 1.0


async def adaptive(
    base_url: str, n: int, *, ratio: float | None = None, rate: float | None = None
) -> dict[str, Any]:
    """Submit ``n`` jobs at once through one AsyncClient; measure requests and delays."""
    poll = PollSettings() if ratio is None else PollSettings(ratio=ratio)
    delays: list[float] = []
    probe = Probe()
    async with AsyncClient(TOKEN, base_url, poll=poll, max_requests_per_second=rate) as client:
        idle_rss = rss_mb()
        cpu0, t0 = cpu_seconds(), time.monotonic()
        async with probe.running():

            async def one(i: int) -> None:
                job = await client.submit(MODEL, {"prompt": f"prompt {i}"})
                res: Result = await job
                assert res.finished_at is not None
                delays.append(time.time() - res.finished_at.timestamp())

            await asyncio.gather(*(one(i) for i in range(n)))
        wall = time.monotonic() - t0
        cpu = cpu_seconds() - cpu0
        requests = sum(client.requests.values())
        return {
            "jobs": n,
            "ratio": poll.ratio,
            "requests": requests,
            "requests_per_job": requests / n,
            "by_endpoint": dict(client.requests),
            "rate_limited": client.rate_limited,
            "delay_p50": quantile(delays, 0.5) / MEAN,
            "delay_p95": quantile(delays, 0.95) / MEAN,
            "wall_s": wall,
            "cpu_per_job_s": cpu / n,
            "rss_growth_mb": probe.peak_rss - idle_rss,
            "loop_lag_p99_ms": probe.lag_p99_ms(),
        }


async def fixed_loop(base_url: str, n: int, interval: float = 0.2) -> dict[str, Any]:
    """The naive client: a loop per job, status then result, every ``interval`` seconds."""
    delays: list[float] = []
    count = 0
    headers = {"Authorization": f"Bearer {TOKEN}"}
    conn = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(headers=headers, connector=conn) as session:
        t0 = time.monotonic()

        async def one(i: int) -> None:
            nonlocal count
            async with session.post(f"{base_url}/v1/models/{MODEL}", json={"prompt": f"p{i}"}) as r:
                rid = (await r.json())["request_id"]
            count += 1
            while True:
                await asyncio.sleep(interval)
                async with session.get(f"{base_url}/v1/requests/{rid}/status") as r:
                    st = (await r.json())["status"]
                count += 1
                if st in ("completed", "failed", "cancelled"):
                    break
            async with session.get(f"{base_url}/v1/requests/{rid}/result") as r:
                body = await r.json()
            count += 1
            from datetime import datetime

            finished = datetime.fromisoformat(body["finished_at"]).timestamp()
            delays.append(time.time() - finished)

        await asyncio.gather(*(one(i) for i in range(n)))
        wall = time.monotonic() - t0
    return {
        "jobs": n,
        "interval": interval,
        "requests": count,
        "requests_per_job": count / n,
        "delay_p50": quantile(delays, 0.5) / MEAN,
        "delay_p95": quantile(delays, 0.95) / MEAN,
        "wall_s": wall,
    }


def _row(name: str, r: dict[str, Any]) -> str:
    return (
        f"| {name} | {r['jobs']} | {r['requests_per_job']:.2f} | {100 * r['delay_p50']:.1f} % "
        f"| {100 * r['delay_p95']:.1f} % |"
    )


async def main(argv: list[str] | None = None) -> int:
    """Run every workload of issue 3 and print a table; write JSON to benchmarks/results/."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.poller")
    ap.add_argument("--jobs", type=int, default=2000)
    ap.add_argument("--scale-jobs", type=int, default=10000)
    ap.add_argument("--rate", type=float, default=200.0)
    ap.add_argument("--out", default="benchmarks/results/poller.json")
    ap.add_argument("--only", help="comma-separated: delay,queue,rate,scale")
    ap.add_argument("--repeat", type=int, default=3, help="runs of the default point")
    args = ap.parse_args(argv)
    only = set(args.only.split(",")) if args.only else {"delay", "queue", "rate", "scale"}
    n = args.jobs
    report: dict[str, Any] = {"jobs": n, "mean_duration_s": MEAN}
    lines = ["| client | jobs | requests/job | delay p50 | delay p95 |", "|---|---|---|---|---|"]
    dur = ["--duration-mean", str(MEAN), "--duration-sigma", "0.3", "--seed", "1"]
    if "delay" in only:
        default = PollSettings().ratio
        with emulator(*dur) as emu:
            runs = [await adaptive(emu.base_url, n) for _ in range(max(1, args.repeat))]
            for i, r in enumerate(runs):
                lines.append(_row(f"runcomfy-async (default), run {i + 1}", r))
            med = {
                k: statistics.median(r[k] for r in runs)
                for k in ("requests_per_job", "delay_p50", "delay_p95")
            }
            report["adaptive_default_runs"] = runs
            report["adaptive_default_median"] = med
            lines.append(_row("**runcomfy-async (default), median**", {"jobs": n, **med}))
            print("\n".join(lines), file=sys.stderr)
            for ratio in (0.4, 0.7):
                r = await adaptive(emu.base_url, n, ratio=ratio)
                report[f"adaptive_ratio_{ratio}"] = r
                lines.append(_row(f"runcomfy-async ratio={ratio} (default {default})", r))
                print(lines[-1], file=sys.stderr)
            r = await fixed_loop(emu.base_url, n)
            report["fixed_0.2s"] = r
            lines.append(_row("fixed 0.2 s loop per job", r))
    if "queue" in only:
        with emulator(*dur, "--concurrency", "50") as emu:
            r = await adaptive(emu.base_url, n)
            report["queue_50"] = r
            lines.append(_row("runcomfy-async, server queue of 50 slots", r))
    if "rate" in only:
        rate = args.rate
        with emulator(*dur, "--rate-limit", str(rate), "--rate-burst", str(int(rate))) as emu:
            t0 = time.monotonic()
            r = await adaptive(emu.base_url, n, rate=rate)
            stats = emu.stats()
            served = sum(stats["requests"].values())
            r["server_429"] = stats["rate_limited"]
            r["share_429"] = stats["rate_limited"] / max(1, served)
            r["rate_used"] = served / (rate * (time.monotonic() - t0))
            report["rate_limited"] = r
            lines.append(_row(f"runcomfy-async, server limit {rate:g}/s", r))
            lines.append(
                f"\n429 share {100 * r['share_429']:.2f} %, rate used "
                f"{100 * r['rate_used']:.1f} % of {rate:g}/s\n"
            )
    if "scale" in only:
        with emulator("--duration-mean", "20", "--duration-sigma", "0.3", "--seed", "2") as emu:
            bare = await bare_request_cpu(emu.base_url)
            r = await adaptive(emu.base_url, args.scale_jobs)
            r["bare_request_cpu_s"] = bare
            r["cpu_per_job_vs_bare"] = r["cpu_per_job_s"] / bare
            report["scale"] = r
            lines.append(
                f"\n{args.scale_jobs} jobs in flight: RSS growth {r['rss_growth_mb']:.1f} MB, "
                f"loop lag p99 {r['loop_lag_p99_ms']:.1f} ms, CPU/job "
                f"{1e6 * r['cpu_per_job_s']:.0f} us = {r['cpu_per_job_vs_bare']:.2f}x one bare "
                f"aiohttp request ({1e6 * bare:.0f} us)"
            )
    print("\n".join(lines))
    write_json(args.out, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
