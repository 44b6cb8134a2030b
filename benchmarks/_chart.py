"""The PNG of ``python -m benchmarks``: requests and delay per client; CPU and memory vs N."""

from __future__ import annotations

from typing import Any

from ._workloads import RA, ordered_rows


def write_chart(report: dict[str, Any], path: str) -> bool:
    """Draw two panels to ``path``; ``False`` (and nothing written) without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8))
    _clients_panel(left, report)
    _scaling_panel(right, report)
    fig.suptitle(f"runcomfy-async vs alternatives — {report['command']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _clients_panel(ax: Any, report: dict[str, Any]) -> None:
    main = [w for w in report["workloads"] if w["key"].startswith("lognormal-")]
    if not main:
        ax.set_axis_off()
        return
    w = max(main, key=lambda w: (len(w["rows"]), -w["jobs"]))  # the one with every client
    rows = [(c, r) for c, r in ordered_rows(w["rows"]) if "error" not in r]
    xs = range(len(rows))
    width = 0.38
    ax.bar(
        [x - width / 2 for x in xs],
        [r["requests_per_job"] for _, r in rows],
        width,
        color="#4c72b0",
        label="HTTP requests / job",
    )
    ax.set_ylabel("HTTP requests per job", color="#4c72b0")
    ax.set_ylim(0, 1.12 * max(r["requests_per_job"] for _, r in rows))
    ax.set_xticks(list(xs))
    ax.set_xticklabels([c.replace(" (", "\n(").replace(", ", ",\n") for c, _ in rows], fontsize=8)
    twin = ax.twinx()
    twin.bar(
        [x + width / 2 for x in xs],
        [100 * r["delay_p50"] for _, r in rows],
        width,
        color="#dd8452",
        label="delay p50",
    )
    twin.set_ylabel("detection delay p50 (% of mean job)", color="#dd8452")
    delays = [100 * r["delay_p50"] for _, r in rows]
    if max(delays) > 10 * max(1e-9, min(delays)):  # one client far behind: a log axis
        twin.set_yscale("log")
        twin.set_ylim(min(delays) / 2, max(delays) * 3)
    else:
        twin.set_ylim(0, 1.12 * max(delays))
    for x, (_, r) in zip(xs, rows, strict=True):
        twin.annotate(
            f"{100 * r['delay_p50']:.0f} %",
            (x + width / 2, 100 * r["delay_p50"]),
            ha="center",
            va="bottom",
            fontsize=7,
        )
    ax.set_title(f"{w['title']}: requests and detection delay", fontsize=10, pad=22)
    for x, (_, r) in zip(xs, rows, strict=True):
        ax.annotate(
            f"{r['requests_per_job']:.2f}",
            (x - width / 2, r["requests_per_job"]),
            ha="center",
            va="bottom",
            fontsize=7,
        )
    handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    ax.legend(
        handles,
        ["HTTP requests / job", "delay p50"],
        fontsize=8,
        loc="lower center",
        bbox_to_anchor=(0.5, 1.0),
        ncol=2,
        frameon=False,
    )


def _scaling_panel(ax: Any, report: dict[str, Any]) -> None:
    pts = sorted(
        (w["rows"][RA]["peak_in_flight"], w["rows"][RA])
        for w in report["workloads"]
        if w["scaling"] and RA in w["rows"] and "error" not in w["rows"][RA]
    )
    if not pts:
        ax.set_axis_off()
        return
    ns = [n for n, _ in pts]
    ax.plot(
        ns,
        [1e6 * r["cpu_per_job_s"] for _, r in pts],
        "o-",
        color="#4c72b0",
        label="CPU per job (µs)",
    )
    ax.set_xscale("log")
    ax.set_xticks(ns)
    ax.set_xticklabels([f"{n / 1000:g}k" for n in ns])
    ax.minorticks_off()
    ax.set_xlabel("jobs in flight")
    ax.set_ylabel("client CPU per job (µs)", color="#4c72b0")
    ax.set_ylim(0, 1.15 * max(1e6 * r["cpu_per_job_s"] for _, r in pts))
    twin = ax.twinx()
    twin.plot(
        ns,
        [r["kb_per_job"] for _, r in pts],
        "s--",
        color="#55a868",
        label="memory per job in flight (KB)",
    )
    twin.set_ylabel("memory per job in flight (KB)", color="#55a868")
    twin.set_ylim(0, 1.15 * max(r["kb_per_job"] for _, r in pts))
    ax.set_title(f"{RA}: CPU and memory against jobs in flight", fontsize=10, pad=22)
    handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    ax.legend(
        handles,
        [h.get_label() for h in handles],
        fontsize=8,
        loc="lower center",
        bbox_to_anchor=(0.5, 1.0),
        ncol=2,
        frameon=False,
    )
