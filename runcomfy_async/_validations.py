"""A schema's ``validations`` on a media field, checked where it is cheap.

RunComfy's schemas attach to some media fields a list of
``{validation_rule, validation_value, validation_error}``, e.g. ``file_size_mb<`` 30,
``width/height>`` 0.0625, ``width_pixels>`` 14. The rules on size and image dimensions are
checked here; any other rule (or a value that is not a number) is left to the server.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ._exceptions import InputValidationError

__all__ = ["check_validations"]

_RULE = re.compile(r"\s*(file_size_mb|width/height|width_pixels|height_pixels)\s*(<=|>=|<|>)\s*")
_OPS: Mapping[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    ">": operator.gt,
    "<=": operator.le,
    ">=": operator.ge,
}


def check_validations(
    rules: Iterable[Mapping[str, Any]], size: int, dims: tuple[int, int] | None
) -> None:
    """Check a file against a field's ``validations``.

    Args:
        rules: the field's validation rules, as the schema gives them.
        size: the file's size in bytes (``file_size_mb`` counts MiB).
        dims: the image's ``(width, height)``, or ``None`` if not an image or unknown.

    Raises:
        InputValidationError: a rule fails; the reason is the rule's ``validation_error``,
            followed by what was measured.
    """
    for rule in rules:
        match = _RULE.fullmatch(str(rule.get("validation_rule", "")))
        try:
            limit = float(rule.get("validation_value"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            continue
        if match is None:
            continue
        subject, op = match.groups()
        measured: float
        if subject == "file_size_mb":
            measured = size / 2**20
            shown = f"the file is {measured:.2f} MB"
        elif dims is None or dims[1] == 0:
            continue
        elif subject == "width/height":
            measured = dims[0] / dims[1]
            shown = f"the image is {dims[0]}x{dims[1]}"
        else:
            measured = dims[0] if subject == "width_pixels" else dims[1]
            shown = f"the image is {dims[0]}x{dims[1]}"
        if not _OPS[op](measured, limit):
            text = rule.get("validation_error")
            if not (isinstance(text, str) and text):
                text = f"must have {subject} {op} {limit:g}"
            reason = text
            raise InputValidationError(f"{reason} ({shown})")
