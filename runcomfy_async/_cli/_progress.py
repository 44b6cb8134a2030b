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

from .._states import BATCH_STATUSES

if TYPE_CHECKING:
    from .._batch import BatchResult, BatchRunner
    from .._client import AsyncClient

__all__ = ["Progress"]

PLAIN_EVERY = 5.0
"""Seconds between two plain progress lines."""


def _fmt_time(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


#: How the live jobs are counted, in display order: what the server last said of each job
#: (its Phase), ``not checked yet`` before its first answer, ``finishing`` while its outputs
#: download.
LIVE_STATES = ("not checked yet", "queued", "running", "finishing")

MAX_REASONS = 5
"""Failure reasons listed in the summary; the rest are counted as "+N more"."""


class Progress:
    """Shows a batch's progress: the live jobs by state, done / failed / invalid, rate, ETA.

    ``queued`` and ``running`` are the server's answers; a job with no answer yet is
    ``not checked yet``. Inputs refused before sending (``invalid``) are counted apart
    from the jobs that failed.
    """

    def __init__(self, mode: str, *, total: int, runner: BatchRunner, client: AsyncClient):
        self.total = total
        self.runner = runner
        self.client = client
        self.done = 0
        self.failed = 0
        self.invalid = 0
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

    def live(self) -> collections.Counter[str]:
        """The jobs alive now, by :data:`LIVE_STATES`."""
        states: collections.Counter[str] = collections.Counter()
        for item in list(self.runner._live.values()):
            phase = item.job.phase if item.job is not None else None
            if phase is None:
                states["not checked yet"] += 1
            elif phase in ("queued", "running"):
                states[phase] += 1
            else:  # the server's answer is final; the outputs are on their way
                states["finishing"] += 1
        return states

    def _skipped_unseen(self) -> int:
        """Inputs done before (resume) that the batch does not hand over again."""
        counts = self.runner.counts
        return counts["skipped"] - counts["unchanged"]

    def _rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.done / elapsed if elapsed > 0 else 0.0

    def _parts(self) -> list[tuple[str, int, str]]:
        """(label, count, colour) of each figure shown; the zero ones left out but the main."""
        live = self.live()
        parts = [(state, live[state], "yellow") for state in LIVE_STATES if live[state]]
        parts += [
            ("done", self.done - self.failed - self.invalid, "green"),
            ("failed", self.failed, "red"),
        ]
        if self.invalid:
            parts.append(("invalid", self.invalid, "magenta"))
        return parts

    def line(self) -> str:
        """The plain progress line: the live jobs by state, then done, failed and invalid."""
        rate = self._rate()
        left = self.total - self.done - self._skipped_unseen()
        eta = f" eta {_fmt_time(left / rate)}" if rate > 0 and left > 0 else ""
        figures = "  ".join(f"{label} {n}" for label, n, _ in self._parts())
        return f"{figures}  {rate:.1f}/s{eta}"

    def advance(self, res: BatchResult) -> None:
        """Count one finished input and refresh the display."""
        self.done += 1
        if res.status == "invalid":
            self.invalid += 1
        elif not res.ok:
            self.failed += 1
        self._refresh()

    def _refresh(self, force: bool = False) -> None:
        if self._rich is not None:
            counts = " ".join(f"[{c}]{label} {n}[/]" for label, n, c in self._parts())
            completed = self.done + self._skipped_unseen()
            rate = f"{self._rate():.1f}/s"
            self._rich.update(self._task, completed=completed, counts=counts, rate=rate)
        elif self.mode == "plain":
            self._plain(force)

    def _plain(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last_plain >= PLAIN_EVERY:
            self._last_plain = now
            print(f"[{_fmt_time(now - self.started)}] {self.line()}", file=sys.stderr, flush=True)

    def note(self, message: str) -> None:
        """Print a message without breaking the bar."""
        if self._rich is not None:
            self._rich.console.print(message)
        elif self.mode != "none":
            print(message, file=sys.stderr, flush=True)

    @staticmethod
    def summary(
        counts: collections.Counter[str],
        reasons: collections.Counter[str],
        *,
        runner: BatchRunner,
        requests: int,
        wall: float,
        out: Path,
        invalid_skipped: int = 0,
    ) -> None:
        """Print the end-of-batch table: counts, wall time, requests per job, failure reasons.

        Args:
            counts: inputs by :data:`~runcomfy_async._states.BatchStatus` (results.jsonl).
            reasons: why inputs did not succeed, ``status: error`` by count; lines refused
                by the pre-scan are left out (they were listed before the run).
            runner: the batch, for its submitted and skipped counts.
            requests: requests sent in all.
            wall: seconds the run took.
            out: the output folder.
            invalid_skipped: invalid lines that ``--on-invalid skip`` left out.
        """
        submitted = runner.counts["submitted"]
        rows: list[tuple[str, str]] = [
            (status, f"{counts[status]:,}") for status in BATCH_STATUSES if counts[status]
        ]
        rows += [
            (status, f"{n:,}")
            for status, n in sorted(counts.items())
            if n and status not in BATCH_STATUSES
        ]
        rows += [("total", f"{sum(counts.values()):,}")]
        if invalid_skipped:
            rows.append(("invalid lines skipped", f"{invalid_skipped:,} (listed above)"))
        rows += [
            ("done before (resume)", f"{runner.counts['skipped']:,}"),
            ("wall time", _fmt_time(wall)),
            ("requests per job", f"{requests / submitted:.2f}" if submitted else "-"),
        ]
        listed = reasons.most_common(MAX_REASONS)
        more = len(reasons) - len(listed)
        tail = f"+{more} more reason{'s' if more > 1 else ''} in results.jsonl" if more else ""
        try:
            from rich.console import Console
            from rich.table import Table
        except ImportError:
            for name, value in rows:
                print(f"{name:>24}  {value}", file=sys.stderr)
            for reason, n in listed:
                print(f"{n:>23,}x {reason}", file=sys.stderr)
            if tail:
                print(f"{'':>24}  {tail}", file=sys.stderr)
        else:
            table = Table(title="batch summary", show_header=False)
            for name, value in rows:
                table.add_row(name, value)
            for reason, n in listed:
                table.add_row(f"[red]{n:,} x[/]", reason)
            if tail:
                table.add_row("", tail)
            Console(stderr=True).print(table)
        print(f"results: {out / 'results.jsonl'}  gallery: {out / 'index.html'}", file=sys.stderr)
