"""``python -m benchmarks``: runcomfy-async against the obvious alternatives, in one run.

Run: ``python -m benchmarks [--quick] [--loop uvloop] [--only KEY,...] [--regimes]``

A full run (no ``--quick``, ``--only`` or ``--jobs``) ends with the schedule's regimes of
``benchmarks.regimes`` (lone jobs, cold batches, an unknown rate limit, two models; about
seven minutes), written to ``regimes.json`` and ``regimes.md``; ``--regimes`` runs only those.

Every (client, workload) cell runs in a process of its own (``benchmarks._cell``), against
a fresh emulator in another process started with the workload's seed, so that each client
sees the same job durations and each cell's CPU and peak RSS are that client's alone. The
parent writes ``latest.json``, ``latest.md`` and ``latest.png`` to ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from importlib import metadata
from typing import Any

from ._harness import emulator, write_json
from ._workloads import (
    AIOHTTP,
    BASELINE_CAP,
    HTTPX,
    HTTPX_ALL,
    RA,
    RA_MAP,
    RA_UVLOOP,
    Workload,
    workloads,
)

CELL_TIMEOUT = 1800.0


def has_uvloop() -> bool:
    """Whether uvloop can be imported here."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def _spec(w: Workload, client: str) -> dict[str, Any]:
    base = {"jobs": w.jobs, "mean": w.mean, "loop": "asyncio"}
    if client in (RA, RA_UVLOOP):
        return {
            **base,
            "client": "runcomfy-async",
            "rate": w.rate,
            "arrivals": w.arrivals,
            "loop": "uvloop" if client == RA_UVLOOP else "asyncio",
        }
    if client == RA_MAP:
        return {**base, "client": "runcomfy-async-map", "cap": BASELINE_CAP}
    if client in (HTTPX, HTTPX_ALL, AIOHTTP):
        return {
            **base,
            "client": "aiohttp" if client == AIOHTTP else "httpx",
            "interval": w.interval,
            "cap": None if client == HTTPX_ALL else BASELINE_CAP,
        }
    raise ValueError(client)


def run_cell(emu_args: list[str], spec: dict[str, Any]) -> dict[str, Any]:
    """Start an emulator, run one cell process against it, return its figures + the server's."""
    with emulator(*emu_args) as emu:
        arg = json.dumps({**spec, "base_url": emu.base_url})
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "benchmarks._cell", arg],
                capture_output=True,
                text=True,
                timeout=CELL_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return {"error": f"cell did not finish in {CELL_TIMEOUT:g} s"}
        if proc.returncode != 0 or not proc.stdout.strip():
            return {"error": (proc.stderr or proc.stdout)[-1500:].strip()}
        out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
        stats = emu.stats()
    # "other": paths outside the Model API, the cell's same-rate floor among them.
    sent = sum(n for endpoint, n in stats["requests"].items() if endpoint != "other")
    out["server_requests"] = sent
    out["server_by_endpoint"] = stats["requests"]
    out["server_429"] = stats["rate_limited"]
    out["server_served"] = sent - stats["rate_limited"]
    out["jobs_created"] = stats["jobs_created"]
    return out


def run_workload(w: Workload, *, uvloop_row: bool, uvloop_server: bool) -> dict[str, Any]:
    """Every client of ``w``, one cell each; ratios to the ideal and per-job figures added."""
    ideal = w.ideal()
    clients = list(w.clients)
    # Not under the rate limit, where the server's rate sets the pace, nor in the scaling
    # series: the row would cost a quick run its time budget and show nothing new.
    if uvloop_row and not w.scaling and w.rate is None:
        clients.insert(1, RA_UVLOOP)
    rows: dict[str, Any] = {}
    for client in clients:
        t0 = time.monotonic()
        runs = [
            run_cell(w.emulator_args(uvloop=uvloop_server), _spec(w, client))
            for _ in range(w.repeats)
        ]
        r = _median_run(runs)
        if "error" not in r:
            r["requests_per_job"] = r["server_requests"] / w.jobs
            r["wall_over_ideal"] = r["wall_s"] / ideal["ideal_s"]
            r["share_429"] = r["server_429"] / max(1, r["server_requests"])
            if w.rate is not None:
                # While work remained for the client: from its first submit to its last result
                # in hand. The token bucket allows R per second plus one burst of R.
                r["rate_used"] = r["server_served"] / (w.rate * (r["wall_s"] + 1))
        rows[client] = r
        _progress(w, client, r, time.monotonic() - t0)
    return {
        "key": w.key,
        "title": w.title,
        "jobs": w.jobs,
        "mean_s": w.mean,
        "sigma": w.sigma,
        "concurrency": w.concurrency,
        "rate": w.rate,
        "baseline_interval_s": w.interval,
        "scaling": w.scaling,
        "arrivals": w.arrivals,
        **ideal,
        "rows": rows,
    }


MEDIAN_KEYS = ("cpu_per_job_s", "kb_per_job", "floor_s")


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One run, or of several the median-CPU run with the median of each noisy figure.

    Every run's figures stay in ``runs`` so the spread is on record.
    """
    ok = [r for r in runs if "error" not in r]
    if len(runs) == 1 or not ok:
        return runs[0]
    ok.sort(key=lambda r: r["cpu_per_job_s"])
    out = dict(ok[len(ok) // 2])
    for key in MEDIAN_KEYS:
        vals = sorted(r[key] for r in ok)
        out[key] = vals[len(vals) // 2]
    out["runs"] = [{k: r.get(k) for k in (*MEDIAN_KEYS, "wall_s")} for r in runs]
    return out


def _progress(w: Workload, client: str, r: dict[str, Any], took: float) -> None:
    if "error" in r:
        print(f"  {w.key:16} {client:30} ERROR: {r['error'][-300:]}", file=sys.stderr)
        return
    print(
        f"  {w.key:16} {client:30} {r['requests_per_job']:5.2f} req/job, delay p50 "
        f"{100 * r['delay_p50']:6.1f} %, CPU/job {1e6 * r['cpu_per_job_s']:7.0f} us, "
        f"{r['kb_per_job']:6.2f} KB/job ({took:.1f} s)",
        file=sys.stderr,
        flush=True,
    )


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("runcomfy-async", "aiohttp", "httpx", "httpcore", "uvloop", "msgspec"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the comparison; write JSON, markdown and PNG to the output folder."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="1k/500 jobs, scaling 1k/5k (< 2 min)")
    ap.add_argument(
        "--loop",
        choices=("asyncio", "uvloop"),
        default="asyncio",
        help="uvloop: add runcomfy-async under uvloop as its own row",
    )
    ap.add_argument("--rate", type=float, default=200.0, help="server rate limit, requests/s")
    ap.add_argument("--only", help="comma-separated workload keys (e.g. lognormal-1k)")
    ap.add_argument("--jobs", type=int, help="replace every job count (smoke tests)")
    ap.add_argument("--out-dir", default="benchmarks/results")
    ap.add_argument("--render", metavar="JSON", help="only redraw the table and chart of a run")
    ap.add_argument(
        "--regimes", action="store_true", help="only the schedule's regimes (benchmarks.regimes)"
    )
    args = ap.parse_args(argv)
    if args.regimes:
        from .regimes import main as regimes_main

        return regimes_main(["--out-dir", args.out_dir])
    if args.render:
        with open(args.render) as fh:
            return _write(json.load(fh), args.out_dir)

    start = time.monotonic()
    server_uvloop = has_uvloop()
    notes: list[str] = []
    uvloop_row = args.loop == "uvloop"
    if uvloop_row and not server_uvloop:
        uvloop_row = False
        notes.append("`--loop uvloop` asked for, but uvloop is not installed: row skipped.")
    command = "python -m benchmarks" + (" --quick" if args.quick else "")
    command += " --loop uvloop" if args.loop == "uvloop" else ""
    command += f" --rate {args.rate:g}" if args.rate != 200.0 else ""
    command += f" --only {args.only}" if args.only else ""
    command += f" --jobs {args.jobs}" if args.jobs else ""
    todo = workloads(quick=args.quick, rate=args.rate, jobs=args.jobs)
    if args.only:
        keys = set(args.only.split(","))
        todo = [w for w in todo if w.key in keys]

    floor_args = ["--loop", "uvloop"] if server_uvloop else []
    print("floor: bare aiohttp requests in a tight loop (before)", file=sys.stderr, flush=True)
    floors = [run_cell(floor_args, {"client": "floor"})]
    results = []
    for w in todo:
        print(f"{w.key}: {w.title}", file=sys.stderr, flush=True)
        results.append(run_workload(w, uvloop_row=uvloop_row, uvloop_server=server_uvloop))
    print("floor: bare aiohttp requests in a tight loop (after)", file=sys.stderr, flush=True)
    floors.append(run_cell(floor_args, {"client": "floor"}))
    floor = _floor(floors)
    report: dict[str, Any] = {
        "command": command,
        "quick": args.quick,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": _cpus(), "platform": platform.platform(), **_versions()},
        "emulator_loop": "uvloop" if server_uvloop else "asyncio",
        "notes": notes,
        "floor": floor,
        "workloads": results,
        "run_s": time.monotonic() - start,
    }
    code = _write(report, args.out_dir)
    if not (args.quick or args.only or args.jobs):
        from .regimes import main as regimes_main

        code = code or regimes_main(["--out-dir", args.out_dir])
    return code


def _write(report: dict[str, Any], out_dir: str) -> int:
    """Write latest.json, latest.md and latest.png; print the markdown."""
    from ._chart import write_chart
    from ._report import render

    md = render(report)
    report["targets"] = md.targets
    write_json(f"{out_dir}/latest.json", report)
    with open(f"{out_dir}/latest.md", "w") as fh:
        fh.write(md.text)
    chart = write_chart(report, f"{out_dir}/latest.png")
    print(md.text)
    print(
        f"wrote {out_dir}/latest.json, latest.md{', latest.png' if chart else ''} "
        f"(run took {report['run_s']:.0f} s)",
        file=sys.stderr,
    )
    return 0


def _floor(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The tight-loop floor measured before and after the workloads; the lower one counts.

    The lower figure is the conservative one: it makes the client's ratios larger.
    """
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return {"error": runs[0].get("error", "no floor"), "runs": runs}
    return {"tight_s": min(r["tight_s"] for r in ok), "runs": runs}


def _cpus() -> int:
    import os

    return os.cpu_count() or 0
