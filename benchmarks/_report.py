"""The markdown report of ``python -m benchmarks``: a table per workload and the targets."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ._workloads import (
    AIOHTTP,
    BASELINE_CAP,
    BASELINE_INTERVAL_RATIO,
    HTTPX,
    HTTPX_ALL,
    RA,
    RA_MAP,
    RA_UVLOOP,
    ordered_rows,
    size_label,
)

CPU_TARGET = 4.0
REQUEST_TARGET = 0.5
DELAY_TARGET = 1.5
SHARE_429_TARGET = 0.01
RATE_USED_TARGET = 0.95
FLAT_TARGET = 0.20


@dataclass
class Rendered:
    """The report as markdown, and the targets as data."""

    text: str
    targets: list[dict[str, Any]] = field(default_factory=list)


def _pct(x: float | None) -> str:
    if x is None or x != x:
        return "n/a"
    return f"{100 * x:.1f} %" if abs(x) < 0.1 else f"{100 * x:.0f} %"


def _us(x: float) -> str:
    return f"{1e6 * x:,.0f} µs"


def _x(x: float) -> str:
    return f"{x:.2f}x"


def render(report: dict[str, Any]) -> Rendered:
    """Render the whole report; the targets table is computed from the same run."""
    floor = report["floor"]
    m = report["machine"]
    cap = BASELINE_CAP
    lines = [
        "# runcomfy-async against the alternatives",
        "",
        f"Made by `{report['command']}` on {report['date']}, in {report['run_s']:.0f} s: "
        f"{m['cpus']} CPUs, Python {m['python']}, aiohttp {m['aiohttp']}, httpx {m['httpx']} "
        f"(httpcore {m['httpcore']}), uvloop {m['uvloop']}. The emulator runs in its own "
        f"process ({report['emulator_loop']} loop), fresh for every cell and seeded, so every "
        "client of a workload gets the same job durations; each client runs in a process of "
        "its own, so CPU and peak RSS are its alone.",
        "",
        "* **Time scale.** Jobs last 1 s on average (lognormal, sigma 0.3): a 10 s generation "
        f"scaled down 10x. RunComfy's CLI polls every 2 s; scaled the same way the baselines "
        f"poll every {BASELINE_INTERVAL_RATIO:g} x the mean duration (0.2 s).",
        f"* **Clients.** `{RA}`: defaults, 64 submitter tasks, a done-callback per job handle, "
        "no cap on jobs in flight: the client paces its own submits to what it can check "
        f"on time (about 1,800 a second here). `{HTTPX}`: what a user writes without it: "
        "`httpx.AsyncClient(limits=Limits(max_connections=64))` and `asyncio.gather` of one "
        f"coroutine per job, each under `async with Semaphore({cap})`: submit, then "
        "sleep/`GET status` until terminal, then `GET result`; a 429 sleeps Retry-After and "
        f"retries the same request. At most {cap} jobs are in flight, so it keeps its polling "
        f"pace but its wall time grows with the number of jobs. `{HTTPX_ALL}`: the same, with "
        f"the semaphore around each request instead of each job, so every job is in flight "
        f"and each polling loop waits its turn for one of 64 requests at a time. `{AIOHTTP}`: "
        "the capped baseline over aiohttp, a control that separates the cost of the "
        "fixed-interval strategy from the cost of httpx itself."
        + (
            f" `{RA_MAP}`: the batch API at its defaults, `client.map(model, prompts)`, "
            f"which keeps {cap} jobs in flight like the capped baseline: the like-for-like "
            "comparison of the polling."
            if any(RA_MAP in w["rows"] for w in report["workloads"])
            else ""
        )
        + (
            f" `{RA_UVLOOP}` (with `--loop uvloop`): the same client on uvloop, in the "
            "workloads without a rate limit."
            if any(RA_UVLOOP in w["rows"] for w in report["workloads"])
            else ""
        ),
        "* **Figures.** Wall time from the first submit to the last result in hand, over the "
        "ideal bound (replayed from the seeded durations: the slowest job; with a queue the "
        "server's FIFO makespan; with a rate limit at least 2 requests a job). HTTP requests "
        "as counted by the emulator (429s included). Detection delay: `time.time()` when the "
        "result is in hand minus the server's `finished_at`, in % of the mean job duration. "
        "CPU (user + system) of the client process over the same span, per job. Each client "
        "opens its 64 connections (uncounted requests) before anything is measured. Peak RSS: "
        "`VmHWM` of the client process. Rate used: requests served (not 429) over what the "
        "server's token bucket allowed while work remained, from the first submit to the last "
        "result in hand (R per second plus one burst of R). "
        "Loop lag: how late a 10 ms sleep wakes, p99.",
        "* **Floor.** The CPU of one bare aiohttp GET against the same emulator depends on how "
        "often requests come: each rare one wakes the event loop for itself, while at "
        "thousands a second one wake-up serves many. So after its work every cell sends bare "
        "GETs for a second at its own average request rate, on its own event loop, and the "
        "CPU ratio column divides its CPU per job by that figure (the rate is in the cell). In "
        f"a tight loop a bare GET costs {_us(floor.get('tight_s', float('nan')))} (the lower "
        "of two runs, before and after the workloads); the targets show that ratio too.",
    ]
    lines += [f"* {n}" for n in report.get("notes", [])]
    scaling = [w for w in report["workloads"] if w["scaling"]]
    for w in report["workloads"]:
        if not w["scaling"]:
            lines += ["", *_workload_table(w)]
    if scaling:
        lines += ["", *_scaling_table(scaling)]
    targets = compute_targets(report)
    lines += ["", "## Targets (ratios from this run)", ""]
    lines += ["| target | measured | limit | result |", "|---|---|---|---|"]
    for t in targets:
        verdict = "info" if t["pass"] is None else ("PASS" if t["pass"] else "FAIL")
        lines.append(f"| {t['name']} | {t['measured']} | {t['limit']} | {verdict} |")
    lines += ["", *_observations(report)]
    return Rendered("\n".join(lines) + "\n", targets)


def _floor_cell(r: dict[str, Any]) -> str:
    """CPU per job over the same-rate bare request, with the rate it was measured at."""
    floor = r.get("floor_s")
    if not floor:
        return "n/a"
    return f"{_x(r['cpu_per_job_s'] / floor)} (at {r['floor_rate']:,.0f}/s)"


def _workload_table(w: dict[str, Any]) -> list[str]:
    rate = w["rate"] is not None
    out = [
        f"## {w['title']}",
        "",
        f"Ideal wall time {w['ideal_s']:.2f} s ({w['ideal_how']}); total work "
        f"{w['work_s']:.0f} job-seconds; baselines poll every {w['baseline_interval_s']:g} s.",
        "",
    ]
    head = "| client | wall / ideal | HTTP requests/job | delay p50 | delay p95 | CPU/job "
    head += "| CPU/job ÷ same-rate request | peak RSS | 429s | "
    head += "rate used | " if rate else ""
    head += "loop lag p99 |"
    out += [head, "|" + "---|" * (head.count("|") - 1)]
    for client, r in ordered_rows(w["rows"]):
        if "error" in r:
            out.append(_error_row(client, r))
            continue
        cells = [
            client,
            _x(r["wall_over_ideal"]),
            f"{r['requests_per_job']:.2f}",
            _pct(r["delay_p50"]),
            _pct(r["delay_p95"]),
            _us(r["cpu_per_job_s"]),
            _floor_cell(r),
            f"{r['peak_rss_mb']:.0f} MB",
            f"{r['server_429']:,} ({_pct(r['share_429'])})",
        ]
        if rate:
            cells.append(_pct(r["rate_used"]))
        cells.append(f"{r['loop_lag_p99_ms']:.1f} ms")
        out.append("| " + " | ".join(cells) + " |")
    return out


def _error_row(client: str, r: dict[str, Any]) -> str:
    """A table row for a cell that failed: the last line of its error."""
    return f"| {client} | error: {r['error'].splitlines()[-1][:120]} |"


def _scaling_table(ws: list[dict[str, Any]]) -> list[str]:
    out = [
        "## Scaling: CPU and memory against jobs in flight",
        "",
        f"Jobs are submitted at a steady {ws[0].get('arrivals') or 0:,.0f} a second and "
        "last N/1000 s on average (sigma 0.1), so requests arrive at the same rate at every "
        "size and only the number in flight grows; all N are in flight at once (the peak "
        "column says so; the submitters' pacing sleeps count in the client's CPU, and the "
        "client's own submit pacing is off, since the arrival rate is fixed). Memory "
        "per job = (peak RSS - RSS before the first submit) / N. The baselines are left "
        "out: following 100k jobs with one polling loop each at httpx's cost per request "
        "would take tens of minutes. With more than one run per size, CPU and memory per "
        "job are the medians, and the runs column lists each run's CPU per job.",
        "",
        "| client | jobs in flight (peak) | mean job | wall / ideal | HTTP requests/job "
        "| delay p50 | CPU/job | runs | CPU/job ÷ same-rate request | memory/job in flight "
        "| peak RSS | loop lag p99 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for w in ws:
        for client, r in ordered_rows(w["rows"]):
            if "error" in r:
                out.append(_error_row(client, r))
                continue
            cells = [
                client,
                f"{r['peak_in_flight']:,} of {w['jobs']:,}",
                f"{w['mean_s']:g} s",
                _x(r["wall_over_ideal"]),
                f"{r['requests_per_job']:.2f}",
                _pct(r["delay_p50"]),
                _us(r["cpu_per_job_s"]),
                ", ".join(_us(x["cpu_per_job_s"]) for x in r.get("runs", [r])),
                _floor_cell(r),
                f"{r['kb_per_job']:.2f} KB",
                f"{r['peak_rss_mb']:.0f} MB",
                f"{r['loop_lag_p99_ms']:.1f} ms",
            ]
            out.append("| " + " | ".join(cells) + " |")
    return out


def _ok(w: dict[str, Any] | None, client: str) -> dict[str, Any] | None:
    if w is None:
        return None
    r = w["rows"].get(client)
    return r if r is not None and "error" not in r else None


def _find(report: dict[str, Any], prefix: str) -> dict[str, Any] | None:
    """The largest workload whose key starts with ``prefix``."""
    found = [w for w in report["workloads"] if w["key"].startswith(prefix)]
    return max(found, key=lambda w: w["jobs"]) if found else None


def compute_targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of issue 5 as a ratio from this run, with its verdict."""
    out: list[dict[str, Any]] = []

    def add(name: str, measured: str, limit: str, ok: bool | None) -> None:
        out.append({"name": name, "measured": measured, "limit": limit, "pass": ok})

    tight = report["floor"].get("tight_s")
    mains = [w for w in report["workloads"] if w["key"].startswith("lognormal-")]
    for w in mains:
        for client in (RA, RA_UVLOOP):
            r = _ok(w, client)
            if r is None or not r.get("floor_s"):
                continue
            ratio = r["cpu_per_job_s"] / r["floor_s"]
            add(
                f"{client}: CPU per completed job ÷ one bare aiohttp request at the same "
                f"rate ({w['key']}, {r['floor_rate']:,.0f} requests/s)",
                f"{_us(r['cpu_per_job_s'])} / {_us(r['floor_s'])} = {_x(ratio)}",
                f"<= {CPU_TARGET:g}x",
                ratio <= CPU_TARGET,
            )
            if tight:
                add(
                    f"{client}: the same ÷ one tight-loop bare request ({w['key']})",
                    _x(r["cpu_per_job_s"] / tight),
                    f"{CPU_TARGET:g}x",
                    None,
                )
    for w in [w for w in report["workloads"] if w["key"].startswith(("lognormal-", "queue-"))]:
        # Every job at once against each baseline; map() against the capped baseline, at
        # the same 64 jobs in flight. Both comparisons with the capped baseline are judged.
        pairs = (
            (RA, HTTPX, True),
            (RA, HTTPX_ALL, False),
            (RA, AIOHTTP, False),
            (RA_MAP, HTTPX, True),
        )
        for client, base, judged in pairs:
            ra, b = _ok(w, client), _ok(w, base)
            if ra is None or b is None:
                continue
            req = ra["requests_per_job"] / b["requests_per_job"]
            delay = ra["delay_p50"] / b["delay_p50"]
            tag = f"{w['key']}, vs {base}"
            who = "" if client == RA else f"{client}: "
            add(
                f"{who}HTTP requests/job ÷ the other's ({tag})",
                f"{ra['requests_per_job']:.2f} / {b['requests_per_job']:.2f} = {_x(req)}",
                f"<= {REQUEST_TARGET:g}x",
                req <= REQUEST_TARGET if judged else None,
            )
            add(
                f"{who}delay p50 ÷ the other's ({tag})",
                f"{_pct(ra['delay_p50'])} / {_pct(b['delay_p50'])} = {_x(delay)}",
                f"<= {DELAY_TARGET:g}x",
                delay <= DELAY_TARGET if judged else None,
            )
    rw = _find(report, "rate-limit")
    ra = _ok(rw, RA)
    if ra is not None:
        add(
            f"{RA}: 429s under a server rate limit (share of its requests)",
            f"{ra['server_429']} ({_pct(ra['share_429'])})",
            f"<= {_pct(SHARE_429_TARGET)}",
            ra["share_429"] <= SHARE_429_TARGET,
        )
        add(
            f"{RA}: allowed request rate used",
            _pct(ra["rate_used"]),
            f">= {_pct(RATE_USED_TARGET)}",
            ra["rate_used"] >= RATE_USED_TARGET,
        )
        for base in (HTTPX, HTTPX_ALL, AIOHTTP):
            b = _ok(rw, base)
            if b is not None:
                add(
                    f"{base}: 429s received and retried, rate used (beside it)",
                    f"{b['server_429']:,} ({_pct(b['share_429'])}), {_pct(b['rate_used'])}",
                    "-",
                    None,
                )
    scaled = [(w, _ok(w, RA)) for w in report["workloads"] if w["scaling"]]
    pts = [(w, r) for w, r in scaled if r is not None]
    if len(pts) >= 2:
        sizes = " → ".join(size_label(w["jobs"]) for w, _ in pts)
        for key, label, fmt in (
            ("cpu_per_job_s", "CPU per job", _us),
            ("kb_per_job", "memory per job in flight", lambda v: f"{v:.2f} KB"),
        ):
            vals = [r[key] for _, r in pts]
            spread = max(vals) / min(vals) - 1 if min(vals) > 0 else float("inf")
            add(
                f"{RA}: {label} flat from {sizes} in flight (max/min - 1)",
                f"{' → '.join(fmt(v) for v in vals)}: {_pct(spread)}",
                f"<= {_pct(FLAT_TARGET)}",
                spread <= FLAT_TARGET,
            )
    return out


def _observations(report: dict[str, Any]) -> list[str]:
    """Facts from this run that explain the numbers (computed, not written by hand)."""
    out: list[str] = []
    for w in report["workloads"]:
        if not w["key"].startswith("lognormal-"):
            continue
        expect = w["mean_s"] / w["baseline_interval_s"]
        per_request = []
        for base in (HTTPX, HTTPX_ALL, AIOHTTP):
            b = _ok(w, base)
            if b is None:
                continue
            cost = b["cpu_s"] / max(1, b["client_requests"])
            polls = b["server_by_endpoint"].get("status", 0) / w["jobs"]
            kept = "keeps" if polls >= 0.8 * expect else "cannot keep"
            per_request.append(
                f"`{base}` spent {_us(cost)} of CPU a request and made {polls:.1f} status "
                f"polls a job where its {w['baseline_interval_s']:g} s schedule asks for "
                f"about {expect:.0f}: it {kept} its pace"
            )
        if per_request:
            out.append(f"* In {w['key']}: " + "; ".join(per_request) + ".")
    return out
