"""The schedule outside the bulk regime: lone jobs, cold batches, an unknown limit, two models.

Run: ``python -m benchmarks.regimes [--only warm,cold,batch300,batch200,small,limit,mixed]``
(also part of a full ``python -m benchmarks`` run, and ``python -m benchmarks --regimes``).

Real time scales (jobs of 5 to 30 s), so the whole set takes about seven minutes. Each
workload starts one emulator process; every client runs in a process of its own (see
``benchmarks._regime_cells``); both sides of a ratio run against the same emulator in the
same run. The fixed 2 s loop is RunComfy's CLI interval, over aiohttp. Delays are
``time.time()`` when the result is in hand minus the server's ``finished_at``; requests
per job count the submit, every check and the result.

* ``warm``: one process learns 20 jobs of 15 s (sigma 0.2) at once; then ten fresh
  processes (:data:`WARM_PROCESSES`) each run 3 jobs one after another (their median
  delay is over all 30 jobs), beside thirty 2 s loops each running 3 jobs one after
  another (a 2 s loop's delay is uniform over 2 s: its median needs many jobs to settle).
* ``cold``: five fresh processes with empty caches each run one 15 s job, beside five 2 s
  loops with one job each.
* ``batch300`` / ``batch200``: 300 jobs of 10 s (sigma 0.3), 200 of 30 s (sigma 0.5), all
  submitted at once by a cold client; once per emulator seed of :data:`BATCH_SEEDS`, side
  by side, judged on the medians (each seed's figures are shown). ``python -m
  benchmarks.frontier`` gives the floor no client can beat at these spreads.
* ``small``: the 40-prompt demo of the README (``examples/prompts.txt``, the CLI sandbox's
  emulator settings: 1.5 s jobs, sigma 0.4, 16 server slots), through ``client.map()``,
  cold, once per seed of :data:`SMALL_SEEDS`, judged on the median (each seed's shown).
* ``limit``: an emulator limit of 20 requests a second (burst 20, Retry-After 1) the client
  is not told; 300 one-second jobs submitted in a loop, then (a fresh emulator) all
  gathered at once.
* ``mixed``: 100 jobs of a 5 s model and 100 of a 20 s model interleaved in one client,
  beside two clients with 100 jobs of one model each, all three at once; once per seed of
  :data:`BATCH_SEEDS` (side by side), the jobs of the three seeds pooled.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ._harness import emulator, write_json

T2I = "google/nano-banana-2/text-to-image"
FAST = "google/nano-banana-2-lite/text-to-image"
SLOW = "google/nano-banana/pro/text-to-image"
PROMPTS = Path(__file__).resolve().parent.parent / "examples" / "prompts.txt"
WARM_PROCESSES = 10
"""Fresh processes of 3 lone jobs each in ``warm`` (one long draw moves a handful of jobs'
requests by a tenth)."""
BATCH_SEEDS = (13, 21, 34)
"""The emulator seeds each cold batch runs with (one emulator and one client process each)."""
SMALL_SEEDS = (1, 2, 3, 4, 5, 6, 7, 8, 9)
"""The emulator seeds the 40-prompt demo runs with, one after another."""
KEYS = ("warm", "cold", "batch300", "batch200", "small", "limit", "mixed")
CELL_TIMEOUT = 900.0


def start_cell(spec: dict[str, Any]) -> subprocess.Popen[str]:
    """Start one client process (see ``benchmarks._regime_cells``)."""
    cmd = [sys.executable, "-m", "benchmarks._regime_cells", json.dumps(spec)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen[str]) -> dict[str, Any]:
    """Wait for a cell; its figures, or an ``error``."""
    try:
        out, err = proc.communicate(timeout=CELL_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        return {"error": "timed out"}
    if proc.returncode != 0 or not out.strip():
        return {"error": (err or out)[-1500:]}
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def run_cells(*specs: dict[str, Any]) -> list[dict[str, Any]]:
    """Run cells side by side; their figures in order."""
    procs = [start_cell(s) for s in specs]
    return [finish(p) for p in procs]


def api_requests(served: dict[str, int]) -> int:
    """Requests an emulator answered on the Model API's endpoints (its outputs not counted)."""
    return sum(n for endpoint, n in served.items() if endpoint != "other")


def summary(
    runs: list[dict[str, Any]], mean: float | None = None, model: str | None = None
) -> dict[str, Any]:
    """Median delay (s, and in % of ``mean``), requests per job, over the jobs of ``runs``."""
    jobs = [j for r in runs if "error" not in r for j in r["jobs"]]
    if model is not None:
        jobs = [j for j in jobs if j["model"] == model]
    delays = sorted(j["delay"] for j in jobs if j.get("delay") is not None)
    out: dict[str, Any] = {
        "jobs": len(jobs),
        "requests_per_job": statistics.fmean(j["requests"] for j in jobs) if jobs else None,
        "delay_p50_s": statistics.median(delays) if delays else None,
        "errors": [r["error"] for r in runs if "error" in r],
    }
    if mean and delays:
        out["delay_p50"] = out["delay_p50_s"] / mean
    return out


def warm(tmp: Path) -> dict[str, Any]:
    cache = str(tmp / "warm-cache")
    with emulator("--duration-mean", "15", "--duration-sigma", "0.2", "--seed", "11") as emu:
        base = {"base_url": emu.base_url, "cache_dir": cache}
        learn = run_cells({**base, "kind": "batch", "jobs": 20, "models": [T2I]})
        ours = {**base, "kind": "sequential", "jobs": 3, "model": T2I}
        streams = 3 * WARM_PROCESSES  # the loop is cheap: more of its jobs steady its median
        loop = {**base, "kind": "loop2s", "jobs": 3, "streams": streams, "model": T2I}
        *mine, theirs = run_cells(*[ours] * WARM_PROCESSES, loop)
    return {"learn": summary(learn), "ours": summary(mine), "loop": summary([theirs])}


def cold(tmp: Path) -> dict[str, Any]:
    with emulator("--duration-mean", "15", "--duration-sigma", "0.2", "--seed", "12") as emu:
        specs = [
            {"kind": "sequential", "jobs": 1, "model": T2I, "base_url": emu.base_url,
             "cache_dir": str(tmp / f"cold-{i}")}
            for i in range(5)
        ]  # fmt: skip
        loop = {"kind": "loop2s", "jobs": 1, "streams": 5, "model": T2I, "base_url": emu.base_url}
        *mine, theirs = run_cells(*specs, loop)
    return {"ours": summary(mine), "loop": summary([theirs])}


def batch(tmp: Path, key: str, jobs: int, mean: float, sigma: float) -> dict[str, Any]:
    """One cold batch per seed of :data:`BATCH_SEEDS`, side by side: each seed's figures, medians.

    A single draw of a few hundred durations moves these figures a lot.
    """
    args = ("--duration-mean", str(mean), "--duration-sigma", str(sigma))
    with contextlib.ExitStack() as stack:
        emus = [stack.enter_context(emulator(*args, "--seed", str(s))) for s in BATCH_SEEDS]
        base = {"kind": "batch", "jobs": jobs, "models": [T2I]}
        specs = [
            {**base, "base_url": emu.base_url, "cache_dir": str(tmp / f"{key}-{seed}")}
            for emu, seed in zip(emus, BATCH_SEEDS, strict=True)
        ]
        runs = run_cells(*specs)
        served = [emu.stats()["requests"] for emu in emus]
    seeds: dict[str, Any] = {}
    for seed, run, counts in zip(BATCH_SEEDS, runs, served, strict=True):
        out = summary([run], mean)
        out["server_requests_per_job"] = api_requests(counts) / jobs
        seeds[str(seed)] = out
    done = [o for o in seeds.values() if o.get("delay_p50") is not None]
    return {
        "seeds": seeds,
        "delay_p50": statistics.median(o["delay_p50"] for o in done) if done else None,
        "server_requests_per_job": (
            statistics.median(o["server_requests_per_job"] for o in done) if done else None
        ),
    }


def small(tmp: Path) -> dict[str, Any]:
    """The demo once per seed of :data:`SMALL_SEEDS`, one after another: each seed's figure, median.

    Forty jobs are few: one draw with a long last wave moves requests a job by half a request.
    """
    args = ("--duration-mean", "1.5", "--duration-sigma", "0.4", "--concurrency", "16")
    prompts = [line.strip() for line in PROMPTS.read_text().splitlines() if line.strip()]
    seeds: dict[str, Any] = {}
    for seed in SMALL_SEEDS:
        with emulator(*args, "--seed", str(seed)) as emu:
            spec = {"kind": "map", "model": T2I, "prompts": prompts, "base_url": emu.base_url,
                    "cache_dir": str(tmp / f"small-{seed}")}  # fmt: skip
            (run,) = run_cells(spec)
            served = emu.stats()["requests"]
        jobs = len(run.get("jobs", [])) or 1
        seeds[str(seed)] = {
            "jobs": jobs,
            "requests_per_job": run.get("requests_per_job"),
            "server_requests_per_job": api_requests(served) / jobs,
            "errors": [run["error"]] if "error" in run else [],
        }
    done = [o["server_requests_per_job"] for o in seeds.values() if not o["errors"]]
    return {
        "seeds": seeds,
        "server_requests_per_job": statistics.median(done) if done else None,
    }


def limit(tmp: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for mode in ("loop", "gather"):
        args = ("--duration-mean", "1", "--duration-sigma", "0.3", "--seed", "14",
                "--rate-limit", "20", "--rate-burst", "20")  # fmt: skip
        with emulator(*args) as emu:
            spec = {"kind": "batch", "jobs": 300, "models": [T2I], "submit_mode": mode,
                    "base_url": emu.base_url, "cache_dir": str(tmp / f"limit-{mode}")}  # fmt: skip
            (run,) = run_cells(spec)
            stats = emu.stats()
        sent = api_requests(stats["requests"])
        answered = sent - stats["rate_limited"]
        out[mode] = {
            "requests": sent,
            "rate_limited": stats["rate_limited"],
            "share_429": stats["rate_limited"] / max(1, sent),
            "wall_s": run.get("wall_s"),
            "wall_over_answered": (run["wall_s"] / (answered / 20)) if "wall_s" in run else None,
            "learned_limit": run.get("learned_limit"),
            "errors": [run["error"]] if "error" in run else [],
        }
    return out


def mixed(tmp: Path) -> dict[str, Any]:
    """Per seed of :data:`BATCH_SEEDS`, one emulator running the three clients at once.

    The figures pool the seeds' jobs: a single cold start of 100 jobs moves by a few tenths.
    """
    args = ("--model-duration", f"{FAST}=5,0.3", "--model-duration", f"{SLOW}=20,0.3")
    with contextlib.ExitStack() as stack:
        emus = [stack.enter_context(emulator(*args, "--seed", str(s))) for s in BATCH_SEEDS]
        specs = []
        for emu, seed in zip(emus, BATCH_SEEDS, strict=True):
            base = {"kind": "batch", "base_url": emu.base_url}
            specs += [
                {**base, "jobs": 200, "models": [FAST, SLOW], "cache_dir": str(tmp / f"m{seed}")},
                {**base, "jobs": 100, "models": [FAST], "cache_dir": str(tmp / f"f{seed}")},
                {**base, "jobs": 100, "models": [SLOW], "cache_dir": str(tmp / f"s{seed}")},
            ]
        runs = run_cells(*specs)
    both, fast, slow = runs[0::3], runs[1::3], runs[2::3]
    return {
        "mixed_fast": summary(both, 5.0, FAST),
        "mixed_slow": summary(both, 20.0, SLOW),
        "alone_fast": summary(fast, 5.0),
        "alone_slow": summary(slow, 20.0),
    }


def targets(r: dict[str, Any]) -> list[tuple[str, str, str, bool | None]]:
    """(target, measured, limit, met) for every figure of the issue that was run."""
    rows: list[tuple[str, str, str, bool | None]] = []

    def ratio(name: str, a: float | None, b: float | None, lim: float, fmt: str) -> None:
        if a is None or b is None or b <= 0:
            rows.append((name, "n/a", f"<= {lim:g}x", None))
            return
        x = a / b
        rows.append((name, f"{a:{fmt}} / {b:{fmt}} = {x:.2f}x", f"<= {lim:g}x", x <= lim))

    for key, delay_limit, request_limit in (("warm", 0.5, 1.0), ("cold", 1.0, 1.5)):
        if key in r:
            o, lp = r[key]["ours"], r[key]["loop"]
            title = f"{key} single"
            ratio(f"{title}: median delay / 2 s loop's", o["delay_p50_s"], lp["delay_p50_s"],
                  delay_limit, ".2f")  # fmt: skip
            ratio(f"{title}: requests/job / 2 s loop's", o["requests_per_job"],
                  lp["requests_per_job"], request_limit, ".2f")  # fmt: skip
    for key, req in (("batch300", 3.3), ("batch200", 3.5)):
        if key in r and r[key]["delay_p50"] is not None:
            b = r[key]
            per = list(b["seeds"].values())
            reqs = ", ".join(f"{o['server_requests_per_job']:.2f}" for o in per)
            delays = ", ".join(f"{100 * o['delay_p50']:.1f}" for o in per)
            rows.append((f"{key}: requests/job (server), median of seeds",
                         f"{b['server_requests_per_job']:.2f} ({reqs})", f"<= {req:g}",
                         b["server_requests_per_job"] <= req))  # fmt: skip
            rows.append((f"{key}: delay p50, median of seeds",
                         f"{100 * b['delay_p50']:.1f} % ({delays})", "<= 15 %",
                         b["delay_p50"] <= 0.15))  # fmt: skip
    if "small" in r and r["small"]["server_requests_per_job"] is not None:
        s = r["small"]["server_requests_per_job"]
        each = [o["server_requests_per_job"] for o in r["small"]["seeds"].values()]
        name = "small batch (40-prompt demo): requests/job (server), median of seeds"
        shown = f"{s:.2f} ({', '.join(f'{x:.2f}' for x in each)})"
        rows.append((name, shown, "<= 3.3", s <= 3.3))
    if "limit" in r:
        for mode, lim in r["limit"].items():
            share = lim["share_429"]
            rows.append((f"unknown limit ({mode}): share of 429s", f"{100 * share:.2f} %",
                         "<= 2 %", share <= 0.02))  # fmt: skip
            w = lim["wall_over_answered"]
            shown = "n/a" if w is None else f"{w:.3f}"
            rows.append((f"unknown limit ({mode}): wall / (answered / 20)", shown, "<= 1.15",
                         None if w is None else w <= 1.15))  # fmt: skip
    if "mixed" in r:
        m = r["mixed"]
        for name in ("fast", "slow"):
            a, b = m[f"mixed_{name}"]["requests_per_job"], m[f"alone_{name}"]["requests_per_job"]
            rows.append((f"mixed models: {name} model requests/job, mixed vs alone",
                         f"{a:.2f} vs {b:.2f}", "within 0.3", abs(a - b) <= 0.3))  # fmt: skip
    return rows


def render(report: dict[str, Any]) -> str:
    """The markdown of a run."""
    lines = [
        "# The schedule across regimes",
        "",
        f"Made by `{report['command']}` on {report['date']}, in {report['run_s']:.0f} s. "
        "See the docstring of `benchmarks/regimes.py` for each workload.",
        "",
        "| target | measured | limit | result |",
        "|---|---|---|---|",
    ]
    for name, measured, lim, ok in report["targets"]:
        verdict = "info" if ok is None else ("PASS" if ok else "FAIL")
        lines.append(f"| {name} | {measured} | {lim} | {verdict} |")
    lines += ["", "```json", json.dumps(report["results"], indent=1, sort_keys=True), "```", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the regimes; write regimes.json and regimes.md to the output folder."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.regimes")
    ap.add_argument("--only", help="comma-separated: " + ",".join(KEYS))
    ap.add_argument("--out-dir", default="benchmarks/results")
    args = ap.parse_args(argv)
    keys = [k for k in KEYS if not args.only or k in args.only.split(",")]
    start = time.monotonic()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        for key in keys:
            t0 = time.monotonic()
            print(f"{key} ...", file=sys.stderr, flush=True)
            if key == "warm":
                results[key] = warm(tmp)
            elif key == "cold":
                results[key] = cold(tmp)
            elif key == "batch300":
                results[key] = batch(tmp, key, 300, 10.0, 0.3)
            elif key == "batch200":
                results[key] = batch(tmp, key, 200, 30.0, 0.5)
            elif key == "small":
                results[key] = small(tmp)
            elif key == "limit":
                results[key] = limit(tmp)
            elif key == "mixed":
                results[key] = mixed(tmp)
            print(f"{key}: {json.dumps(results[key])} ({time.monotonic() - t0:.0f} s)",
                  file=sys.stderr, flush=True)  # fmt: skip
    command = "python -m benchmarks.regimes" + (f" --only {args.only}" if args.only else "")
    report = {
        "command": command,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "run_s": time.monotonic() - start,
        "results": results,
        "targets": targets(results),
    }
    name = "regimes" if not args.only else "regimes-" + "-".join(keys)
    write_json(f"{args.out_dir}/{name}.json", report)
    text = render(report)
    with open(f"{args.out_dir}/{name}.md", "w") as fh:
        fh.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
