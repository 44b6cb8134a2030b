"""Line-level pieces shared by the batch input readers: decoding, length and schema checks.

The text readers in :mod:`runcomfy_async._inputs` and the CSV reader in
:mod:`runcomfy_async._inputs_csv` both turn raw lines into items through these.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from .._exceptions import InputValidationError, _one_line
from .._media import resolve_media_fields
from ..models import get_model, media_fields_of, validate_inputs

__all__ = ["InputError"]

_KEY = "_key"


class InputError(ValueError):
    """An input file that cannot be read as a batch's inputs at all (the CLI exits 2).

    Problems with single items are never raised: they are reported in the item's ``error``.
    """


_Lines = Iterator[bytes | bytearray | None]


def _decode(raw: bytes | bytearray) -> tuple[str | None, str | None]:
    """Decode one line as UTF-8: ``(text, None)``, or ``(None, reason)`` when it is invalid."""
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        return None, f"invalid UTF-8 at byte {exc.start + 1} of the line"


def _too_long(max_bytes: int) -> str:
    return f"line longer than the limit of {max_bytes:,} bytes"


def _check(
    model_id: str,
    inputs: dict[str, Any],
    own: Mapping[str, Any] | None = None,
    source: str = "",
) -> str | None:
    """Validate ``inputs`` against the model's schema; the reason as one line, or ``None``.

    Local paths in the media fields of ``own`` (the line's own fields, not ``--set``'s) are
    taken relative to the folder of ``source`` (the input file) and become ``file://`` URIs
    in ``inputs``; a missing file is the line's error (``image_urls[0]: no such file x.png``).
    """
    cls = get_model(model_id)
    if own and cls is not None:
        try:
            inputs.update(resolve_media_fields(own, media_fields_of(cls), Path(source).parent))
        except InputValidationError as exc:
            return _one_line(f"{exc.field}: {exc.reason}", 600)
    prompt = inputs.get("prompt")
    if isinstance(prompt, str) and prompt and not prompt.strip():
        return "prompt must be a non-empty string; got only whitespace"
    try:
        validate_inputs(model_id, inputs)
    except InputValidationError as exc:
        if exc.field is None:
            return _one_line(exc.reason, 600)
        field = exc.field
        if len(field) > 64 or not field.isidentifier():
            field = repr(field[:64]) + ("..." if len(field) > 64 else "")
        return _one_line(f"{field} {exc.reason}", 600)
    return None
