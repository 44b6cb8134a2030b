"""The input media of an edit job, shown as small thumbnails on its card beside the outputs.

Which inputs are media comes from the model's schema (``format`` ``image_uri(s)`` …), so a
prompt that happens to look like a URL is never drawn. A hosted input is shown from its
URL, a local file from its ``file://`` URI (the page opens from the filesystem), and an
inline ``data:`` URI is written once to ``inputs/`` beside the page, named by its content:
the page never holds a data URI, so it stays small however large the inputs were.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import html
import pathlib
import urllib.parse
from collections.abc import Mapping
from typing import Any

from ..models import get_model, media_fields_of

__all__ = ["input_strip"]

_MAX_PER_CARD = 4
_MAX_INLINE_CHARS = 96 * 2**20  # a base64 data URI this long decodes past the 64 MiB cap
_EXTENSIONS = {
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/webp": ".webp",
    "image/gif": ".gif",
}


def _media_values(record: Mapping[str, Any]) -> list[str]:
    """The media strings of a record's input, in field order, per the model's schema."""
    model_id = record.get("model_id")
    inputs = record.get("input")
    if not isinstance(model_id, str) or not isinstance(inputs, Mapping):
        return []
    cls = get_model(model_id)
    if cls is None:
        return []
    values: list[str] = []
    for name, spec in media_fields_of(cls).items():
        if spec.kind not in (None, "image"):
            continue  # a thumbnail of a video or a sound is not cheap to show
        value = inputs.get(name)
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str):
                values.append(item)
    return values


def _file_src(value: str) -> str | None:
    """A ``file://`` URI of an absolute local path, re-quoted; None for anything else."""
    parts = urllib.parse.urlsplit(value)
    path = urllib.parse.unquote(parts.path)
    if parts.netloc not in ("", "localhost") or not path.startswith("/") or "\x00" in path:
        return None
    return "file://" + urllib.parse.quote(path, safe="/")


def _inline_src(value: str, inputs_dir: pathlib.Path) -> str | None:
    """Write a ``data:image/...;base64`` URI's bytes to ``inputs_dir``; the relative link."""
    head, sep, payload = value.partition(",")
    mime = head[5:].split(";", 1)[0].strip().lower()
    if not sep or ";base64" not in head.lower() or mime not in _EXTENSIONS:
        return None
    if len(payload) > _MAX_INLINE_CHARS:
        return None
    try:
        raw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        return None
    name = hashlib.sha256(raw).hexdigest()[:24] + _EXTENSIONS[mime]
    target = inputs_dir / name
    if not target.exists():
        inputs_dir.mkdir(exist_ok=True)
        scratch = target.with_suffix(target.suffix + ".tmp")
        scratch.write_bytes(raw)
        scratch.replace(target)
    return f"{inputs_dir.name}/{name}"


def _src(value: str, inputs_dir: pathlib.Path | None) -> str | None:
    """Where the page finds one input image, or None when it cannot be shown safely."""
    lowered = value[:8].lower()
    if lowered.startswith(("https://", "http://")) and len(value) <= 8192:
        return value
    if lowered.startswith("file://"):
        return _file_src(value)
    if lowered.startswith("data:") and inputs_dir is not None:
        try:
            return _inline_src(value, inputs_dir)
        except OSError:
            return None  # a full disk or a read-only folder costs the thumbnail, not the page
    return None


def input_strip(record: Mapping[str, Any], inputs_dir: pathlib.Path | None) -> str:
    """Render the strip of input thumbnails of a record; empty when it has no media input.

    Args:
        record: one line of ``results.jsonl``.
        inputs_dir: where inline inputs are written (``inputs/`` beside ``index.html``);
            None shows hosted and local inputs only.
    """
    tiles: list[str] = []
    values = _media_values(record)
    for value in values[:_MAX_PER_CARD]:
        src = _src(value, inputs_dir)
        if src is None:
            continue
        href = html.escape(src, quote=True)
        tiles.append(
            f'<a href="{href}" rel="noopener noreferrer"><img src="{href}" alt="input" '
            'loading="lazy" decoding="async" referrerpolicy="no-referrer"></a>'
        )
    if not tiles:
        return ""
    more = len(values) - _MAX_PER_CARD
    extra = f'<span class="more">+{more}</span>' if more > 0 else ""
    return f'<div class="inputs"><span>input</span>{"".join(tiles)}{extra}</div>'
