"""Turning command-line text into inputs: ``--set key=value`` typed by the model's schema.

Also the command's exit codes, its usage error, and the warning for a model id that is not in
the bundled catalog. The model catalog is imported only when a value has to be typed, so the
parser and ``--help`` stay light.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

import msgspec

__all__ = [
    "EXIT_CONFIG",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "UsageError",
    "nearest_model",
    "parse_sets",
    "unknown_model_warning",
]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CONFIG, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
"""The command's exit codes: success, some job failed, usage, auth/config, interrupted."""


class UsageError(Exception):
    """A command line that cannot be acted on (exit code 2)."""


_TYPES: dict[str, type] = {"integer": int, "number": float, "boolean": bool}
# msgspec's lax mode reads true/false/1/0; people also write these.
_WORDS = {"yes": "true", "on": "true", "no": "false", "off": "false"}
_EXPECTED = {"integer": "an integer", "number": "a number", "boolean": "true or false"}


def _coerce(kind: str, raw: str, key: str) -> Any:
    """Type ``raw`` as the schema's ``kind`` (``integer``, ``list[string]`` ...) says.

    Raises:
        UsageError: the text does not read as that type.
    """
    if kind == "string":
        return raw
    if kind.startswith("list"):
        if raw.startswith("["):
            return _json_value(raw, key)
        return [part.strip() for part in raw.split(",") if part.strip()]
    target = _TYPES.get(kind)
    if target is None:
        return _guess(raw)
    text = _WORDS.get(raw.strip().lower(), raw.strip()) if target is bool else raw.strip()
    try:
        return msgspec.convert(text, target, strict=False)
    except msgspec.ValidationError:
        raise UsageError(f"--set {key}={raw}: expected {_EXPECTED[kind]}") from None


def _json_value(raw: str, key: str) -> Any:
    try:
        return msgspec.json.decode(raw.encode())
    except msgspec.DecodeError:
        raise UsageError(f"--set {key}={raw}: not valid JSON") from None


def _guess(raw: str) -> Any:
    """For models without a schema: JSON scalars and arrays, else the text itself."""
    if raw in ("true", "false", "null") or raw[:1] in "[{-0123456789":
        try:
            return msgspec.json.decode(raw.encode())
        except msgspec.DecodeError:
            pass
    return raw


def parse_sets(model_id: str, pairs: Iterable[str]) -> dict[str, Any]:
    """Parse ``key=value`` pairs into inputs, typing values by the model's fields when known.

    A local path in a media field (``--set image_urls=cat.png``) is taken relative to the
    current folder and becomes a ``file://`` URI, read when the job is submitted.

    Raises:
        UsageError: a pair without ``=``, a value that does not fit its field's type, or a
            media path that names no file.
    """
    from .._exceptions import InputValidationError
    from .._media import resolve_media_fields
    from ..models import describe, get_model, media_fields_of

    cls = get_model(model_id)
    kinds = {f.name: f.type for f in describe(cls)} if cls is not None else {}
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"--set expects key=value, got {pair!r}")
        kind = kinds.get(key)
        out[key] = _coerce(kind, raw, key) if kind is not None else _guess(raw)
    if cls is None:
        return out
    try:
        return dict(resolve_media_fields(out, media_fields_of(cls)))
    except InputValidationError as exc:
        raise UsageError(f"--set {exc.field}: {exc.reason}") from None


def nearest_model(model_id: str) -> str | None:
    """The bundled catalog's model id closest to ``model_id`` (``None`` if none is close)."""
    from ..models import MODELS

    near = difflib.get_close_matches(model_id, list(MODELS), n=1, cutoff=0.75)
    return near[0] if near else None


def unknown_model_warning(model_id: str) -> str | None:
    """A warning for a model id missing from the bundled catalog, naming the nearest one.

    Returns:
        ``None`` for a known model; else one line, with a suggestion when an id is close.
    """
    from ..models import MODELS

    if model_id in MODELS:
        return None
    near = nearest_model(model_id)
    if near:
        return f"warning: unknown model {model_id!r}; did you mean {near!r}?"
    return (
        f"warning: {model_id!r} is not in the bundled catalog (runcomfy-async models); "
        "sending it as given"
    )
