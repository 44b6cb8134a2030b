"""Progress for ``runcomfy-async batch``: a live bar on a terminal, a plain line otherwise.

The bar uses rich (the ``cli`` extra); without rich, or when stderr is not a terminal, a
plain status line is printed every few seconds instead.
"""

from __future__ import annotations

import collections
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .._batch import BatchResult, BatchRunner
    from .._client import AsyncClient

__all__ = ["Progress"]

PLAIN_EVERY = 5.0
"""Seconds between two plain progress lines."""


def _fmt_time(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class Progress:
    """Shows a batch's progress: queued / running / done / failed, throughput and ETA."""

    def __init__(self, mode: str, *, total: int, runner: BatchRunner, client: AsyncClient):
        self.total = total
        self.runner = runner
        self.client = client
        self.done = 0
        self.failed = 0
        self.started = time.monotonic()
        self._last_plain = 0.0
        self._rich: Any = None
        self._task: Any = None
        if mode == "auto":
            mode = "bar" if sys.stderr.isatty() else "plain"
        if mode == "bar":
            try:
                import rich.progress as rp
                from rich.console import Console
            except ImportError:
                mode = "plain"
            else:
                self._rich = rp.Progress(
                    rp.SpinnerColumn(),
                    rp.BarColumn(),
                    rp.MofNCompleteColumn(),
                    rp.TextColumn("{task.fields[counts]}"),
                    rp.TextColumn("{task.fields[rate]}"),
                    rp.TimeRemainingColumn(),
                    transient=False,
                    console=Console(stderr=True),
                )
        self.mode = mode

    def __enter__(self) -> Progress:
        if self._rich is not None:
            self._rich.start()
            self._task = self._rich.add_task("batch", total=self.total, counts="", rate="")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._rich is not None:
            self._refresh(force=True)
            self._rich.stop()
        elif self.mode == "plain":
            self._plain(force=True)

    def _phases(self) -> collections.Counter[str]:
        phases: collections.Counter[str] = collections.Counter()
        for item in list(self.runner._live.values()):
            job = item.job
            phases["running" if job is not None and job.phase == "running" else "queued"] += 1
        return phases

    def _rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.done / elapsed if elapsed > 0 else 0.0

    def _line(self) -> str:
        phases = self._phases()
        rate = self._rate()
        left = self.total - self.done - self.runner.counts["skipped"]
        eta = f" eta {_fmt_time(left / rate)}" if rate > 0 and left > 0 else ""
        return (
            f"queued {phases['queued']}  running {phases['running']}  done {self.done}  "
            f"failed {self.failed}  {rate:.1f}/s{eta}"
        )

    def advance(self, res: BatchResult) -> None:
        """Count one finished input and refresh the display."""
        self.done += 1
        if not res.ok:
            self.failed += 1
        self._refresh()

    def _refresh(self, force: bool = False) -> None:
        if self._rich is not None:
            phases = self._phases()
            rate = self._rate()
            counts = (
                f"[yellow]queued {phases['queued']}[/] [cyan]running {phases['running']}[/] "
                f"[green]done {self.done - self.failed}[/] [red]failed {self.failed}[/]"
            )
            completed = self.done + self.runner.counts["skipped"]
            self._rich.update(self._task, completed=completed, counts=counts, rate=f"{rate:.1f}/s")
        elif self.mode == "plain":
            self._plain(force)

    def _plain(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last_plain >= PLAIN_EVERY:
            self._last_plain = now
            print(f"[{_fmt_time(now - self.started)}] {self._line()}", file=sys.stderr, flush=True)

    def note(self, message: str) -> None:
        """Print a message without breaking the bar."""
        if self._rich is not None:
            self._rich.console.print(message)
        elif self.mode != "none":
            print(message, file=sys.stderr, flush=True)

    @staticmethod
    def summary(
        counts: collections.Counter[str],
        runner: BatchRunner,
        requests: int,
        wall: float,
        out: Path,
    ) -> None:
        """Print the end-of-batch table: counts, wall time, requests per job, failure reasons."""
        submitted = runner.counts["submitted"]
        rows = [(status, str(n)) for status, n in sorted(counts.items())]
        rows += [
            ("total", str(sum(counts.values()))),
            ("skipped (done before)", str(runner.counts["skipped"])),
            ("wall time", _fmt_time(wall)),
            ("requests per job", f"{requests / submitted:.2f}" if submitted else "-"),
        ]
        reasons = runner.failures
        try:
            from rich.console import Console
            from rich.table import Table
        except ImportError:
            for name, value in rows:
                print(f"{name:>24}  {value}", file=sys.stderr)
            for reason, n in reasons.most_common(5):
                print(f"{n:>24}x {reason}", file=sys.stderr)
        else:
            table = Table(title="batch summary", show_header=False)
            for name, value in rows:
                table.add_row(name, value)
            for reason, n in reasons.most_common(5):
                table.add_row(f"[red]{n} x[/]", reason)
            Console(stderr=True).print(table)
        print(f"results: {out / 'results.jsonl'}  gallery: {out / 'index.html'}", file=sys.stderr)
