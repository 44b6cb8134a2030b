"""Turning command-line text into inputs: ``--set key=value`` typed by the model's schema."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from ..models import describe, get_model

__all__ = [
    "EXIT_CONFIG",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "UsageError",
    "parse_sets",
]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CONFIG, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
"""The command's exit codes: success, some job failed, usage, auth/config, interrupted."""


class UsageError(Exception):
    """A command line that cannot be acted on (exit code 2)."""


def _coerce(kind: str, raw: str, key: str) -> Any:
    if kind == "string":
        return raw
    if kind == "integer":
        try:
            return int(raw)
        except ValueError:
            raise UsageError(f"--set {key}={raw}: expected an integer") from None
    if kind == "number":
        try:
            return float(raw)
        except ValueError:
            raise UsageError(f"--set {key}={raw}: expected a number") from None
    if kind == "boolean":
        low = raw.lower()
        if low in ("true", "1", "yes", "on"):
            return True
        if low in ("false", "0", "no", "off"):
            return False
        raise UsageError(f"--set {key}={raw}: expected true or false")
    if kind.startswith("list"):
        if raw.startswith("["):
            return _json_value(raw, key)
        return [part.strip() for part in raw.split(",") if part.strip()]
    return _guess(raw)


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

    Raises:
        UsageError: a pair without ``=``, or a value that does not fit its field's type.
    """
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
    return out
