"""A self-contained HTML gallery of a batch run: ``DIR/index.html`` beside ``DIR/results.jsonl``.

The page opens from the filesystem (``file://``) with no server: inline CSS, no script, no
external fonts or stylesheets. Images and videos are referenced by relative URLs to the files
the downloader wrote into ``DIR``; a result that was not downloaded shows its remote URL.

Every value taken from a record is untrusted. Text is HTML-escaped, attributes are quoted,
local paths must be relative and stay inside ``DIR`` (an absolute path or one with ``..`` is
skipped), and remote URLs are used only when they are ``http(s)://``. A Content-Security-Policy
``<meta>`` forbids scripts, so even a mistake in escaping could not run code.

Memory stays small for any number of records: each card is rendered once, as it arrives, into an
anonymous temporary file, and only a few numbers per record (where its card lies in that file,
its status, its timings) are kept. At the end the header, the failures list and the cards (in
index order) are copied into a temporary ``index.html`` that replaces the old one atomically.
"""

from __future__ import annotations

import contextlib
import datetime
import html
import math
import os
import pathlib
import posixpath
import tempfile
import urllib.parse
from array import array
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import IO, Any

__all__ = ["write_gallery"]

STATUSES = ("succeeded", "failed", "cancelled", "uncertain", "invalid", "timeout")
"""The statuses a batch record can end in, in the order the header counts them."""

_PROBLEMS = frozenset({"failed", "uncertain", "invalid", "timeout"})
# Cancelled jobs are left out of the failures list: someone asked for them to stop.
_MAX_FAILURES_LISTED = 1000
_MAX_MEDIA_PER_CARD = 12
_MAX_TEXT = 2000  # characters of a prompt or error shown on a card
_MAX_MODELS = 20  # named in the header
_MAX_MODELS_KEPT = 1000  # counted
_SCHEMES = ("https://", "http://")
_VIDEO_EXT = frozenset({".mp4", ".webm", ".mov", ".m4v"})
_AUDIO_EXT = frozenset({".mp3", ".wav", ".ogg", ".flac", ".m4a"})
_IMAGE_EXT = frozenset({".png", ".jpg", ".jpeg", ".webp", ".gif", ".avif", ".bmp", ".svg"})

_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src file: data: http: https: 'self'; "
    "media-src file: http: https: 'self'; base-uri 'none'; form-action 'none'"
)

_CSS = """
:root{color-scheme:light dark;--bg:#f6f7f9;--fg:#1b1f24;--muted:#5c6670;--card:#fff;
--line:#dde1e6;--tile:#eceef1;--ok:#1a7f37;--bad:#c62828;--warn:#b26a00;--inv:#6f42c1;
--off:#6b7280;--tmo:#c2410c;--badbg:#fdecec;--onst:#fff}
@media (prefers-color-scheme:dark){:root{--bg:#111418;--fg:#e6e8eb;--muted:#9aa4ae;
--card:#1a1e24;--line:#2c323a;--tile:#23282f;--ok:#3fb950;--bad:#f07178;--warn:#e3a008;
--inv:#a78bfa;--off:#9ca3af;--tmo:#fb923c;--badbg:#3a1d20;--onst:#111418}}
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
.s-uncertain{--st:var(--warn)}.s-invalid{--st:var(--inv)}.s-timeout{--st:var(--tmo)}
.s-other{--st:var(--off)}
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
.media a,.media video{display:block}
.media img,.media video{display:block;width:100%;height:auto;aspect-ratio:1/1;
object-fit:contain;background:var(--tile)}
.media audio{width:100%;margin:8px 0}
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


def _esc(value: object) -> str:
    """Escape any value for HTML text or a double-quoted attribute."""
    return html.escape(str(value), quote=True)


def _text(value: object, limit: int = _MAX_TEXT) -> str | None:
    """Return a record's text field as a string (numbers too), shortened to ``limit``."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (str, int, float)):
        text = str(value)
        return text if len(text) <= limit else text[: limit - 1] + "\u2026"
    return None


def _seconds(value: object) -> float | None:
    """Return a number of seconds in [0, 1e9), or None for anything else (NaN, inf, text)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if 0 <= value < 1e9 else None


def _duration(seconds: float) -> str:
    """Format seconds for people: ``0.42 s``, ``12.3 s``, ``4 m 05 s``, ``2 h 03 m``."""
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        minutes, rest = divmod(round(seconds), 60)
        return f"{minutes} m {rest:02d} s"
    hours, rest = divmod(round(seconds) // 60, 60)
    return f"{hours} h {rest:02d} m"


def _size(count: float) -> str:
    """Format a byte count with a binary unit."""
    unit = 0
    while count >= 1024 and unit < 4:
        count, unit = count / 1024, unit + 1
    return f"{count:.0f} B" if unit == 0 else f"{count:.1f} {'KMGT'[unit - 1]}iB"


def _status_class(status: str) -> str:
    """Return the CSS class of a status; unknown statuses never reach the class attribute."""
    return f"s-{status}" if status in STATUSES else "s-other"


def _badge(status: str, label: str | None = None) -> str:
    """Render a coloured status badge."""
    return f'<span class="badge {_status_class(status)}">{_esc(label or status)}</span>'


def safe_relative_path(path: object) -> str | None:
    """Return ``path`` URL-quoted if it is a relative POSIX path inside the gallery's directory.

    Absolute paths, Windows drive or UNC paths, backslashes and any ``..`` segment are refused,
    so a hostile record cannot point the page at files outside the output directory.

    Args:
        path: the ``path`` of a record's file entry, as found in ``results.jsonl``.

    Returns:
        The quoted relative URL, or None when the path is unusable.
    """
    if not isinstance(path, str) or not 0 < len(path) <= 4096 or "\\" in path or "\x00" in path:
        return None
    if path.startswith("/") or (len(path) > 1 and path[1] == ":"):
        return None
    parts = path.split("/")
    if ".." in parts or all(part in ("", ".") for part in parts):
        return None
    return urllib.parse.quote(posixpath.normpath(path), safe="/")


def _remote_url(url: object) -> str | None:
    """Return ``url`` if it is an ``http(s)://`` URL of sane length, else None."""
    ok = isinstance(url, str) and len(url) <= 8192 and url[:8].lower().startswith(_SCHEMES)
    return url if ok and isinstance(url, str) else None


def _media_kind(name: str, content_type: object = None) -> str:
    """Classify a file as ``image``, ``video``, ``audio`` or ``file`` by type or extension."""
    if isinstance(content_type, str):
        major = content_type.split("/", 1)[0].strip().lower()
        if major in ("image", "video", "audio"):
            return major
    ext = posixpath.splitext(urllib.parse.urlsplit(name).path)[1].lower()
    if ext in _VIDEO_EXT:
        return "video"
    if ext in _AUDIO_EXT:
        return "audio"
    return "image" if ext in _IMAGE_EXT else "file"


def _media_tile(src: str, kind: str, label: str, *, remote: bool) -> str:
    """Render one thumbnail (or player) for ``src``, an already safe URL."""
    href = _esc(src)
    rel = ' rel="noopener noreferrer"' if remote else ""
    ref = ' referrerpolicy="no-referrer"' if remote else ""
    if kind == "video":
        return f'<video controls preload="metadata" width="512" height="512" src="{href}"></video>'
    if kind == "audio":
        return f'<audio controls preload="metadata" src="{href}"{ref}></audio>'
    if kind == "file":
        return f'<a class="file" href="{href}"{rel}>{_esc(label)}</a>'
    return (
        f'<a href="{href}"{rel}><img src="{href}" loading="lazy" decoding="async" width="512" '
        f'height="512" alt="{_esc(label)}"{ref}></a>'
    )


def _media(record: Mapping[str, Any]) -> tuple[str, int, int]:
    """Render the media block of a card; also return the file count and bytes on disk."""
    tiles: list[str] = []
    skipped = count = size = 0
    files = record.get("files")
    for entry in files if isinstance(files, list) else ():
        if not isinstance(entry, Mapping):
            continue
        src = safe_relative_path(entry.get("path"))
        if src is None:
            skipped += 1
            continue
        count += 1
        size += (
            entry["bytes"] if type(entry.get("bytes")) is int and 0 < entry["bytes"] < 2**50 else 0
        )
        name = str(entry["path"])
        tiles.append(
            _media_tile(src, _media_kind(name, entry.get("content_type")), name, remote=False)
        )
    notes: list[str] = []
    if not tiles:
        urls = record.get("urls")
        for url in urls if isinstance(urls, list) else ():
            remote = _remote_url(url)
            if remote is not None:
                tiles.append(_media_tile(remote, _media_kind(remote), remote, remote=True))
        if tiles:
            notes.append("not downloaded: showing the remote URL")
    if skipped:
        notes.append(f"{skipped} unsafe file path{'s' if skipped > 1 else ''} skipped")
    extra = len(tiles) - _MAX_MEDIA_PER_CARD
    if extra > 0:
        tiles = tiles[:_MAX_MEDIA_PER_CARD]
        notes.append(f"{extra} more output{'s' if extra > 1 else ''} not shown")
    shown = len(tiles)
    if not tiles:
        tiles.append('<div class="empty">no outputs</div>')
    columns = "" if shown <= 1 else " n2" if shown <= 4 else " n3"
    note = "".join(f'<div class="note">{_esc(n)}</div>' for n in notes)
    return f'<div class="media{columns}">{"".join(tiles)}</div>{note}', count, size


class _Table:
    """What is kept per record, in typed arrays: about 40 bytes, never a Python object.

    A row holds where the record's card lies in the scratch file (its failure line, if any,
    follows the card), its status as a small code, its timings (NaN when unknown) and its files.
    """

    _NO_INDEX = -(2**63)

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
        self.names: list[str] = [*STATUSES, "other"]
        self._codes = {name: code for code, name in enumerate(self.names)}
        self._indexed = 0
        self._low = self._high = 0

    def code(self, status: str) -> int:
        """Return the code of ``status``; past 64 distinct statuses, new ones count as "other"."""
        code = self._codes.get(status)
        if code is None:
            if len(self.names) >= 64:
                return self._codes["other"]
            code = self._codes[status] = len(self.names)
            self.names.append(status)
        return code

    def add(self, index: int | None, status: str, card: tuple[int, int], *numbers: float) -> None:
        """Append a row: ``card`` is (offset, length), then failure length, timings, files."""
        if index is None:
            self.index.append(self._NO_INDEX)
        else:
            self.index.append(index)
            self._low = index if not self._indexed else min(self._low, index)
            self._high = index if not self._indexed else max(self._high, index)
            self._indexed += 1
        self.status.append(self.code(status))
        self.card_at.append(card[0])
        self.card_len.append(card[1])
        failure_len, duration, wait, files, size = numbers
        self.failure_len.append(int(failure_len))
        self.duration.append(duration)
        self.wait.append(wait)
        self.files.append(int(files))
        self.size.append(int(size))

    def rows(self) -> array[int]:
        """Return the rows to show: by index (the last of a repeated index), then unindexed ones."""
        index, none = self.index, self._NO_INDEX
        order = array("q")
        if self._indexed and self._low >= 0 and self._high < 4 * self._indexed + 1024:
            # Dense indexes (the usual 0..n-1): a position map sorts and de-duplicates in O(n).
            where = array("q", [-1]) * (self._high + 1)
            for row, value in enumerate(index):
                if value != none:
                    where[value] = row
            order.extend(row for row in where if row >= 0)
        elif self._indexed:
            for row in sorted((r for r, v in enumerate(index) if v != none), key=index.__getitem__):
                if order and index[order[-1]] == index[row]:
                    order[-1] = row  # a stable sort keeps repeats in arrival order: last wins
                else:
                    order.append(row)
        order.extend(row for row, value in enumerate(index) if value == none)
        return order


class _Scratch:
    """An anonymous scratch file holding rendered cards and failure lines, addressed by offset."""

    def __init__(self, file: IO[bytes]) -> None:
        self._file = file
        self._end = 0

    def put(self, text: str) -> tuple[int, int]:
        """Append ``text``; return its offset and length in bytes."""
        data = text.encode("utf-8")
        start = self._end
        self._file.write(data)
        self._end += len(data)
        return start, len(data)

    def copy(self, spans: Iterable[tuple[int, int]], out: IO[bytes]) -> None:
        """Copy each ``(offset, length)`` span to ``out``, in the given order."""
        self._file.flush()
        for start, length in spans:
            if length:
                self._file.seek(start)
                out.write(self._file.read(length))


def _render(record: Mapping[str, Any], seq: int, scratch: _Scratch, table: _Table) -> None:
    """Render one record's card (and failure line) into ``scratch`` and add its row to ``table``."""
    raw_index = record.get("index")
    # Outside +-2**62 an index would not fit the table's int64 column (nor mean anything).
    index = raw_index if type(raw_index) is int and abs(raw_index) < 2**62 else None
    status = _text(record.get("status"), 40) or "unknown"
    key = _text(record.get("key"), 200)
    anchor = f"r-{index}" if index is not None else f"n-{seq}"
    label = f"#{index}" if index is not None else "#?"
    if key is not None:
        label += f" \u00b7 {key}"
    error = _text(record.get("error"))
    kind = _text(record.get("error_kind"), 100)
    duration = _seconds(record.get("duration_s"))
    wait = _seconds(record.get("wait_s"))

    if status == "succeeded" or (status not in STATUSES and not error):
        media, files, size = _media(record)
    else:
        heading = _esc(kind or status)
        why = _esc(error or "no reason recorded")
        media = f'<div class="reason"><strong>{heading}</strong><p>{why}</p></div>'
        files = size = 0

    inputs = record.get("input")
    prompt = _text(inputs.get("prompt")) if isinstance(inputs, Mapping) else None
    parts = [
        f'<article class="card {_status_class(status)}" id="{anchor}">',
        media,
        '<div class="meta"><div class="top">',
        f'<span class="id" title="{_esc(label)}">{_esc(label)}</span>{_badge(status)}</div>',
    ]
    if prompt:
        parts.append(f'<details class="prompt"><summary>{_esc(prompt)}</summary></details>')
    times = []
    if duration is not None:
        times.append(f"run {_duration(duration)}")
    if wait is not None:
        times.append(f"wait {_duration(wait)}")
    finished = _text(record.get("finished_at"), 64)
    if times:
        title = f' title="finished {_esc(finished)}"' if finished else ""
        joined = " \u00b7 ".join(times)
        parts.append(f'<div class="times"{title}>{joined}</div>')
    model = _text(record.get("model_id"), 200)
    request_id = _text(record.get("request_id"), 200)
    if request_id:
        parts.append(f'<div class="rid" title="{_esc(model or "")}">{_esc(request_id)}</div>')
    parts.append("</div></article>\n")
    card_at, card_len = scratch.put("".join(parts))

    failure_len = 0
    if status in _PROBLEMS:
        line = (
            f'<li><a href="#{anchor}">{_esc(label)}</a> {_badge(status)} '
            + (f'<span class="kind">{_esc(kind)}</span> ' if kind else "")
            + _esc(_text(error, 300) or "no reason recorded")  # the card has it in full
            + "</li>\n"
        )
        failure_len = scratch.put(line)[1]
    timings = (math.nan if t is None else t for t in (duration, wait))
    table.add(index, status, (card_at, card_len), failure_len, *timings, files, size)


def _percentiles(values: list[float]) -> str:
    """Format the median and 95th percentile (nearest rank) of sorted ``values``."""
    p50 = values[(len(values) - 1) // 2]
    p95 = values[min(len(values) - 1, math.ceil(0.95 * len(values)) - 1)]
    return f"{_duration(p50)} / {_duration(p95)}"


def _figure(value: object, name: str) -> str:
    """Format one summary value: seconds for ``*_s`` keys, short floats, mappings as lists."""
    if isinstance(value, Mapping):
        pairs = sorted(value.items(), key=lambda kv: -kv[1] if isinstance(kv[1], int) else 0)
        return "; ".join(f"{_figure(v, '')} \u00d7 {k}" for k, v in pairs[:20]) or "none"
    seconds = _seconds(value) if name.endswith("_s") else None
    if seconds is not None:
        return _duration(seconds)
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
    badges = "".join(_badge(s, f"{s} {n:,}") for s, n in counts.items())
    figures: list[tuple[str, str]] = []
    for label, column in (("run time", table.duration), ("wait", table.wait)):
        values = sorted(x for row in rows if not math.isnan(x := column[row]))
        if values:
            figures.append((f"{label} p50 / p95", _percentiles(values)))
    files = sum(table.files[row] for row in rows)
    if files:
        size = _size(sum(table.size[row] for row in rows))
        figures.append(("files", f"{files:,} ({size})"))
    for name, value in (summary or {}).items():
        figures.append((_label(str(name)), _figure(value, str(name))))
    model_names = ", ".join(m for m, _ in models.most_common(_MAX_MODELS)) or "unknown model"
    if len(models) > _MAX_MODELS:
        model_names += f" and {len(models) - _MAX_MODELS} more"
    written = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    figs = "".join(f"<div><dt>{_esc(k)}</dt><dd>{_esc(v)}</dd></div>" for k, v in figures)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_esc(_CSP)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body>\n"
        f"<header><h1>{_esc(title)}</h1>"
        f'<p class="sub">{_esc(model_names)} \u00b7 {len(rows):,} records \u00b7 '
        f"written {_esc(written)}</p>"
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
        scratch = _Scratch(scratch_file)
        for seq, record in enumerate(records):
            if not isinstance(record, Mapping):
                continue  # a stray value in results.jsonl: nothing to show
            _render(record, seq, scratch, table)
            model = _text(record.get("model_id"), 200)
            # Bounded, so a file with a different model on every line cannot grow this.
            if model and (model in models or len(models) < _MAX_MODELS_KEPT):
                models[model] += 1
        rows = table.rows()
        fd, temp_name = tempfile.mkstemp(prefix=".index.", suffix=".html.tmp", dir=directory)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(_header(title, models, table, rows, summary).encode("utf-8"))
                _write_failures(table, rows, scratch, out)
                out.write(b'<main class="grid">\n')
                scratch.copy(((table.card_at[r], table.card_len[r]) for r in rows), out)
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


def _write_failures(table: _Table, rows: array[int], scratch: _Scratch, out: IO[bytes]) -> None:
    """Write the failures section (failed, uncertain, invalid, timed out), if there are any."""
    problems = array("q", (row for row in rows if table.failure_len[row]))
    if not problems:
        return
    kinds = Counter(table.names[table.status[row]] for row in problems)
    counts = ", ".join(f"{n:,} {s}" for s, n in kinds.most_common())
    out.write(
        f'<section class="failures"><h2>Failures: {len(problems):,} ({_esc(counts)})</h2>'
        "<ul>\n".encode()
    )
    listed = problems[:_MAX_FAILURES_LISTED]
    spans = ((table.card_at[r] + table.card_len[r], table.failure_len[r]) for r in listed)
    scratch.copy(spans, out)
    out.write(b"</ul>")
    if len(problems) > len(listed):
        rest = len(problems) - len(listed)
        out.write(f"<p>{rest:,} more not listed here; their cards below show why.</p>".encode())
    out.write(b"</section>\n")
