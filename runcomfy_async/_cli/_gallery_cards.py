"""One card of the gallery: a record's outputs (or why it has none), prompt, state and timings.

Every value taken from a record is untrusted: text is HTML-escaped, attributes are quoted,
local paths must be relative and stay inside the output folder, and remote URLs are used only
when they are ``http(s)://``.
"""

from __future__ import annotations

import html
import pathlib
import posixpath
import urllib.parse
from collections.abc import Mapping
from typing import Any, NamedTuple

from .._states import BATCH_STATUSES, PROBLEM_STATUSES
from ._gallery_inputs import input_strip

__all__ = [
    "Card",
    "as_seconds",
    "as_text",
    "badge",
    "card",
    "esc",
    "fmt_duration",
    "fmt_size",
    "safe_relative_path",
]

_MAX_MEDIA_PER_CARD = 12
_MAX_TEXT = 2000  # characters of a prompt or error shown on a card
_SCHEMES = ("https://", "http://")
_VIDEO_EXT = frozenset({".mp4", ".webm", ".mov", ".m4v"})
_AUDIO_EXT = frozenset({".mp3", ".wav", ".ogg", ".flac", ".m4a"})
_IMAGE_EXT = frozenset({".png", ".jpg", ".jpeg", ".webp", ".gif", ".avif", ".bmp", ".svg"})


class Card(NamedTuple):
    """A rendered card and what the page's header and failures list need of its record."""

    html: str
    failure: str  # its line in the failures list ("" when it is not a problem)
    position: int | None  # the record's index, if it has a usable one
    status: str
    duration: float | None
    wait: float | None
    files: int
    size: int


def _where(line: object, index: int | None) -> str:
    """Name a record as people find it: its 1-based line in the input file, else its index."""
    if type(line) is int and 0 < line < 2**62:
        return f"line {line}"
    return f"index {index}" if index is not None else "index ?"


def esc(value: object) -> str:
    """Escape any value for HTML text or a double-quoted attribute."""
    return html.escape(str(value), quote=True)


def as_text(value: object, limit: int = _MAX_TEXT) -> str | None:
    """Return a record's text field as a string (numbers too), shortened to ``limit``."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (str, int, float)):
        shown = str(value)
        return shown if len(shown) <= limit else shown[: limit - 1] + "\u2026"
    return None


def as_seconds(value: object) -> float | None:
    """Return a number of seconds in [0, 1e9), or None for anything else (NaN, inf, text)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if 0 <= value < 1e9 else None


def fmt_duration(seconds: float) -> str:
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


def fmt_size(count: float) -> str:
    """Format a byte count with a binary unit."""
    unit = 0
    while count >= 1024 and unit < 4:
        count, unit = count / 1024, unit + 1
    return f"{count:.0f} B" if unit == 0 else f"{count:.1f} {'KMGT'[unit - 1]}iB"


def _status_class(status: str) -> str:
    """Return the CSS class of a status; unknown statuses never reach the class attribute."""
    return f"s-{status}" if status in BATCH_STATUSES else "s-other"


def badge(status: str, label: str | None = None) -> str:
    """Render a coloured status badge."""
    return f'<span class="badge {_status_class(status)}">{esc(label or status)}</span>'


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
    href = esc(src)
    rel = ' rel="noopener noreferrer"' if remote else ""
    ref = ' referrerpolicy="no-referrer"' if remote else ""
    # No width or height attributes: CSS fits a tile to its card and never enlarges a small
    # image past its own size (a 64x64 output stays 64x64, centred).
    if kind == "video":
        return f'<video controls preload="metadata" src="{href}"></video>'
    if kind == "audio":
        return f'<audio controls preload="metadata" src="{href}"{ref}></audio>'
    if kind == "file":
        return f'<a class="file" href="{href}"{rel}>{esc(label)}</a>'
    return (
        f'<a class="tile" href="{href}"{rel}><img src="{href}" loading="lazy" decoding="async" '
        f'alt="{esc(label)}"{ref}></a>'
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
    note = "".join(f'<div class="note">{esc(n)}</div>' for n in notes)
    return f'<div class="media{columns}">{"".join(tiles)}</div>{note}', count, size


def card(record: Mapping[str, Any], seq: int, inputs_dir: pathlib.Path | None = None) -> Card:
    """Render one record's card, and its line in the failures list if it is a problem.

    ``seq`` is the record's position in the stream, naming a card that has no index;
    ``inputs_dir`` is where inline input images are written for their thumbnails.
    """
    raw_index = record.get("index")
    # Outside +-2**62 an index would not fit the table's int64 column (nor mean anything).
    index = raw_index if type(raw_index) is int and abs(raw_index) < 2**62 else None
    status = as_text(record.get("status"), 40) or "unknown"
    key = as_text(record.get("key"), 200)
    anchor = f"r-{index}" if index is not None else f"n-{seq}"
    label = _where(record.get("line"), index)
    if key is not None:
        label += f" \u00b7 {key}"
    error = as_text(record.get("error"))
    kind = as_text(record.get("error_kind"), 100)
    duration = as_seconds(record.get("duration_s"))
    wait = as_seconds(record.get("wait_s"))

    if status == "succeeded" or (status not in BATCH_STATUSES and not error):
        media, files, size = _media(record)
    else:
        heading = esc(kind or status)
        why = esc(error or "no reason recorded")
        media = f'<div class="reason"><strong>{heading}</strong><p>{why}</p></div>'
        files = size = 0

    inputs = record.get("input")
    prompt = as_text(inputs.get("prompt")) if isinstance(inputs, Mapping) else None
    parts = [
        f'<article class="card {_status_class(status)}" id="{anchor}">',
        media,
        input_strip(record, inputs_dir),
        '<div class="meta"><div class="top">',
        f'<span class="id" title="{esc(label)}">{esc(label)}</span>{badge(status)}</div>',
    ]
    if prompt:
        parts.append(f'<details class="prompt"><summary>{esc(prompt)}</summary></details>')
    times = []
    if duration is not None:
        times.append(f"run {fmt_duration(duration)}")
    if wait is not None:
        times.append(f"wait {fmt_duration(wait)}")
    finished = as_text(record.get("finished_at"), 64)
    if times:
        title = f' title="finished {esc(finished)}"' if finished else ""
        joined = " \u00b7 ".join(times)
        parts.append(f'<div class="times"{title}>{joined}</div>')
    model = as_text(record.get("model_id"), 200)
    request_id = as_text(record.get("request_id"), 200)
    if request_id:
        parts.append(f'<div class="rid" title="{esc(model or "")}">{esc(request_id)}</div>')
    parts.append("</div></article>\n")
    failure = ""
    if status in PROBLEM_STATUSES:
        failure = (
            f'<li><a href="#{anchor}">{esc(label)}</a> {badge(status)} '
            + (f'<span class="kind">{esc(kind)}</span> ' if kind else "")
            + esc(as_text(error, 300) or "no reason recorded")  # the card has it in full
            + "</li>\n"
        )
    return Card("".join(parts), failure, index, status, duration, wait, files, size)
