"""A self-contained HTML gallery of a batch run: ``DIR/index.html`` beside ``DIR/results.jsonl``.

The page opens from the filesystem (``file://``) with no server: inline CSS, no script, no
external fonts or stylesheets. Images and videos are referenced by relative URLs to the files
the downloader wrote into ``DIR``; a result that was not downloaded shows its remote URL.

Every value taken from a record is untrusted. Text is HTML-escaped, attributes are quoted,
local paths must be relative and stay inside ``DIR`` (an absolute path or one with ``..`` is
skipped), and remote URLs are used only when they are ``http(s)://``. A Content-Security-Policy
``<meta>`` forbids scripts, so even a mistake in escaping could not run code.

Memory stays small for any number of records: each card is rendered once, as it arrives
(:mod:`._gallery_cards`), into an anonymous temporary file (:mod:`._spool`), and only a few
numbers per record (where its card lies in that file, its status, its timings) are kept. At the
end the header, the failures list and the cards (in index order) are copied into a temporary
``index.html`` that replaces the old one atomically. Cards name records by the line of the
input file they came from (1-based, as editors number lines) when the record says it.
"""

from __future__ import annotations

import contextlib
import datetime
import math
import os
import pathlib
import tempfile
from array import array
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import IO, Any

from .._states import BATCH_STATUSES
from ._gallery_cards import (
    Card,
    as_seconds,
    as_text,
    badge,
    card,
    esc,
    fmt_duration,
    fmt_size,
    safe_relative_path,
)
from ._spool import NO_INDEX, Spool, index_order

__all__ = ["safe_relative_path", "write_gallery"]

_MAX_FAILURES_LISTED = 1000
_MAX_MODELS = 20  # named in the header
_MAX_MODELS_KEPT = 1000  # counted

_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src file: data: http: https: 'self'; "
    "media-src file: http: https: 'self'; base-uri 'none'; form-action 'none'"
)

_CSS = """
:root{color-scheme:light dark;--bg:#f6f7f9;--fg:#1b1f24;--muted:#5c6670;--card:#fff;
--line:#dde1e6;--tile:#eceef1;--ok:#1a7f37;--bad:#c62828;--warn:#b26a00;--inv:#6f42c1;
--off:#6b7280;--dl:#c2410c;--wait:#2563eb;--badbg:#fdecec;--onst:#fff}
@media (prefers-color-scheme:dark){:root{--bg:#111418;--fg:#e6e8eb;--muted:#9aa4ae;
--card:#1a1e24;--line:#2c323a;--tile:#23282f;--ok:#3fb950;--bad:#f07178;--warn:#e3a008;
--inv:#a78bfa;--off:#9ca3af;--dl:#fb923c;--wait:#60a5fa;--badbg:#3a1d20;--onst:#111418}}
*{box-sizing:border-box}
body{margin:0;padding:24px;background:var(--bg);color:var(--fg);
font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
header h1{margin:0 0 4px;font-size:22px}
.sub{color:var(--muted);margin:0 0 12px}
.counts{display:flex;flex-wrap:wrap;gap:8px;margin:8px 0}
.figs{display:flex;flex-wrap:wrap;gap:6px 22px;margin:10px 0 0;padding:0}
.figs div{display:flex;flex-direction:column}
.figs dt{color:var(--muted);font-size:12px}.figs dd{margin:0;font-weight:600}
.badge{display:inline-block;padding:1px 8px;border-radius:999px;font-size:12px;font-weight:600;
color:var(--onst);background:var(--off);white-space:nowrap}
.s-succeeded{--st:var(--ok)}.s-failed{--st:var(--bad)}.s-cancelled{--st:var(--off)}
.s-uncertain{--st:var(--warn)}.s-invalid{--st:var(--inv)}.s-download_failed{--st:var(--dl)}
.s-submitted{--st:var(--wait)}.s-pending{--st:var(--off)}.s-other{--st:var(--off)}
.badge[class*=" s-"]{background:var(--st)}
section.failures{margin:18px 0;padding:12px 16px;border:1px solid var(--bad);border-radius:10px;
background:var(--badbg)}
section.failures h2{margin:0 0 8px;font-size:16px;color:var(--bad)}
section.failures ul{margin:0;padding-left:18px;max-height:320px;overflow:auto}
section.failures li{margin:3px 0;overflow-wrap:anywhere}
section.failures a{color:inherit}
.kind{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(230px,1fr));gap:14px;
margin-top:18px}
.card{background:var(--card);border:1px solid var(--line);border-top:3px solid var(--st);
border-radius:10px;overflow:hidden;display:flex;flex-direction:column;
content-visibility:auto;contain-intrinsic-size:auto 380px}
.media{display:grid;gap:2px;background:var(--tile)}
.media.n2{grid-template-columns:1fr 1fr}.media.n3{grid-template-columns:1fr 1fr 1fr}
.media a.tile{display:flex;align-items:center;justify-content:center;aspect-ratio:1/1}
.media img{display:block;max-width:100%;max-height:100%;width:auto;height:auto}
.media video{display:block;width:100%;height:auto;aspect-ratio:1/1;object-fit:contain;
background:var(--tile)}
.media audio{width:100%;margin:8px 0}
.inputs{display:flex;gap:4px;align-items:center;padding:4px 10px 0;font-size:12px;
color:var(--muted)}
.inputs img{display:block;max-width:56px;max-height:56px;width:auto;height:auto}
.file{display:flex;align-items:center;justify-content:center;aspect-ratio:1/1;padding:8px;
color:var(--fg);overflow-wrap:anywhere;text-align:center;font-size:12px}
.note{font-size:12px;color:var(--muted);padding:4px 10px;background:var(--tile)}
.reason{aspect-ratio:1/1;overflow:auto;padding:14px;background:var(--badbg);
border-bottom:1px solid var(--line)}
.reason strong{display:block;color:var(--st);font-size:15px;margin-bottom:6px}
.reason p{margin:0;white-space:pre-wrap;overflow-wrap:anywhere}
.empty{aspect-ratio:1/1;display:flex;align-items:center;justify-content:center;
color:var(--muted)}
.meta{padding:8px 10px 10px;display:flex;flex-direction:column;gap:5px;min-width:0}
.top{display:flex;align-items:center;gap:8px;min-width:0}
.id{font-weight:600;white-space:nowrap;overflow:hidden;text-overflow:ellipsis;flex:1}
.prompt summary{display:-webkit-box;-webkit-box-orient:vertical;-webkit-line-clamp:3;
overflow:hidden;cursor:pointer;list-style:none;overflow-wrap:anywhere}
.prompt summary::-webkit-details-marker{display:none}
.prompt[open] summary{display:block}
.times{color:var(--muted);font-size:12px}
.rid{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:11px;
color:var(--muted);overflow-wrap:anywhere}
footer{margin-top:24px;color:var(--muted);font-size:12px}
"""


class _Table:
    """What is kept per record, in typed arrays: about 40 bytes, never a Python object.

    A row holds where the record's card lies in the scratch file (its failure line, if any,
    follows the card), its status as a small code, its timings (NaN when unknown) and its files.
    """

    def __init__(self) -> None:
        self.index = array("q")
        self.status = array("B")
        self.card_at = array("q")
        self.card_len = array("I")
        self.failure_len = array("I")
        self.duration = array("f")
        self.wait = array("f")
        self.files = array("I")
        self.size = array("q")
        self.names: list[str] = [*BATCH_STATUSES, "other"]
        self._codes = {name: code for code, name in enumerate(self.names)}

    def code(self, status: str) -> int:
        """Return the code of ``status``; past 64 distinct statuses, new ones count as "other"."""
        code = self._codes.get(status)
        if code is None:
            if len(self.names) >= 64:
                return self._codes["other"]
            code = self._codes[status] = len(self.names)
            self.names.append(status)
        return code

    def add(self, spool: Spool, rendered: Card) -> None:
        """Spool a rendered card (then its failure line) and append its row."""
        card_at, card_len = spool.put(rendered.html.encode("utf-8"))
        failure_len = spool.put(rendered.failure.encode("utf-8"))[1] if rendered.failure else 0
        self.index.append(NO_INDEX if rendered.position is None else rendered.position)
        self.status.append(self.code(rendered.status))
        self.card_at.append(card_at)
        self.card_len.append(card_len)
        self.failure_len.append(failure_len)
        for column, value in ((self.duration, rendered.duration), (self.wait, rendered.wait)):
            column.append(math.nan if value is None else value)
        self.files.append(rendered.files)
        self.size.append(rendered.size)

    def rows(self) -> array[int]:
        """Return the rows to show: by index (the last of a repeated index), then unindexed ones."""
        return index_order(self.index)


def _percentiles(values: list[float]) -> str:
    """Format the median and 95th percentile (nearest rank) of sorted ``values``."""
    p50 = values[(len(values) - 1) // 2]
    p95 = values[min(len(values) - 1, math.ceil(0.95 * len(values)) - 1)]
    return f"{fmt_duration(p50)} / {fmt_duration(p95)}"


def _figure(value: object, name: str) -> str:
    """Format one summary value: seconds for ``*_s`` keys, short floats, mappings as lists."""
    if isinstance(value, Mapping):
        pairs = sorted(value.items(), key=lambda kv: -kv[1] if isinstance(kv[1], int) else 0)
        return "; ".join(f"{_figure(v, '')} \u00d7 {k}" for k, v in pairs[:20]) or "none"
    seconds = as_seconds(value) if name.endswith("_s") else None
    if seconds is not None:
        return fmt_duration(seconds)
    if isinstance(value, float) and math.isfinite(value):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value[:20])
    return str(value)[:500]


_LABELS = {"wall_s": "wall time", "requests_per_job": "requests / job"}


def _label(name: str) -> str:
    """Turn a summary key into a header label: ``wall_s`` is "wall time", ``x_y_s`` is "x y"."""
    return _LABELS.get(name) or name.removesuffix("_s").replace("_", " ")


def _header(
    title: str,
    models: Counter[str],
    table: _Table,
    rows: array[int],
    summary: Mapping[str, Any] | None,
) -> str:
    """Render the page head and the header: title, models, counts and figures."""
    codes = Counter(table.status[row] for row in rows)
    counts = {table.names[code]: n for code, n in sorted(codes.items())}
    badges = "".join(badge(s, f"{s} {n:,}") for s, n in counts.items())
    figures: list[tuple[str, str]] = []
    for label, column in (("run time", table.duration), ("wait", table.wait)):
        values = sorted(x for row in rows if not math.isnan(x := column[row]))
        if values:
            figures.append((f"{label} p50 / p95", _percentiles(values)))
    files = sum(table.files[row] for row in rows)
    if files:
        size = fmt_size(sum(table.size[row] for row in rows))
        figures.append(("files", f"{files:,} ({size})"))
    for name, value in (summary or {}).items():
        figures.append((_label(str(name)), _figure(value, str(name))))
    model_names = ", ".join(m for m, _ in models.most_common(_MAX_MODELS)) or "unknown model"
    if len(models) > _MAX_MODELS:
        model_names += f" and {len(models) - _MAX_MODELS} more"
    written = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    figs = "".join(f"<div><dt>{esc(k)}</dt><dd>{esc(v)}</dd></div>" for k, v in figures)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{esc(_CSP)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>\n"
        f"<header><h1>{esc(title)}</h1>"
        f'<p class="sub">{esc(model_names)} \u00b7 {len(rows):,} records \u00b7 '
        f"written {esc(written)}</p>"
        f'<div class="counts">{badges}</div><dl class="figs">{figs}</dl></header>\n'
    )


def write_gallery(
    out_dir: str | os.PathLike[str],
    records: Iterable[Mapping[str, Any]],
    *,
    title: str = "runcomfy-async batch",
    summary: Mapping[str, Any] | None = None,
) -> pathlib.Path:
    """Write ``out_dir/index.html``, a self-contained gallery of a batch's results.

    The page needs no server and no network: it opens from the filesystem and shows one card per
    record in index order, with the downloaded images and videos (relative links into
    ``out_dir``), the prompt, the status, timings and request id; failed jobs show their reason,
    and a list of failures heads the page. Records are consumed one at a time, so ``records``
    may be a generator over a ``results.jsonl`` of any size. When two records share an
    ``index`` (a resumed run that logged one input twice) the later one wins.

    Example:
        >>> import json, pathlib
        >>> out = pathlib.Path("out")
        >>> with open(out / "results.jsonl") as lines:
        ...     write_gallery(out, (json.loads(line) for line in lines))
        PosixPath('out/index.html')

    Args:
        out_dir: the batch's output directory; it must exist.
        records: the results, as the batch runner writes them to ``results.jsonl``. Missing
            keys and wrong types are tolerated; values that are not mappings are skipped.
        title: the page title.
        summary: optional run figures (``total``, ``wall_s``, ``failures_by_reason``, ...)
            shown in the header; keys ending in ``_s`` are formatted as durations.

    Returns:
        The path of the written ``index.html``.
    """
    directory = pathlib.Path(out_dir)
    target = directory / "index.html"
    table = _Table()
    models: Counter[str] = Counter()
    with tempfile.TemporaryFile(dir=directory) as scratch_file:
        spool = Spool(scratch_file)
        for seq, record in enumerate(records):
            if not isinstance(record, Mapping):
                continue  # a stray value in results.jsonl: nothing to show
            table.add(spool, card(record, seq, directory / "inputs"))
            model = as_text(record.get("model_id"), 200)
            # Bounded, so a file with a different model on every line cannot grow this.
            if model and (model in models or len(models) < _MAX_MODELS_KEPT):
                models[model] += 1
        rows = table.rows()
        fd, temp_name = tempfile.mkstemp(prefix=".index.", suffix=".html.tmp", dir=directory)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(_header(title, models, table, rows, summary).encode("utf-8"))
                _write_failures(table, rows, spool, out)
                out.write(b'<main class="grid">\n')
                spool.copy(((table.card_at[r], table.card_len[r]) for r in rows), out)
                out.write(b"</main>\n<footer>written by runcomfy-async</footer></body></html>\n")
                out.flush()
                os.fsync(out.fileno())
            os.chmod(temp_name, 0o644)  # mkstemp makes 0600; a gallery is meant to be shared
            os.replace(temp_name, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp_name)
            raise
    return target


def _write_failures(table: _Table, rows: array[int], spool: Spool, out: IO[bytes]) -> None:
    """Write the failures section (failed, uncertain, invalid, timed out), if there are any."""
    problems = array("q", (row for row in rows if table.failure_len[row]))
    if not problems:
        return
    kinds = Counter(table.names[table.status[row]] for row in problems)
    counts = ", ".join(f"{n:,} {s}" for s, n in kinds.most_common())
    out.write(
        f'<section class="failures"><h2>Failures: {len(problems):,} ({esc(counts)})</h2>'
        "<ul>\n".encode()
    )
    listed = problems[:_MAX_FAILURES_LISTED]
    spans = ((table.card_at[r] + table.card_len[r], table.failure_len[r]) for r in listed)
    spool.copy(spans, out)
    out.write(b"</ul>")
    if len(problems) > len(listed):
        rest = len(problems) - len(listed)
        out.write(f"<p>{rest:,} more not listed here; their cards below show why.</p>".encode())
    out.write(b"</section>\n")
