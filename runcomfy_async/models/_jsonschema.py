"""Inputs checked against a model's JSON input schema from the live catalog.

The subset RunComfy's schemas use: ``type``, ``enum``, ``minimum``/``maximum`` (and the
exclusive forms), ``minLength``/``maxLength``, ``pattern``, ``required``, ``items``,
``minItems``/``maxItems``. A ``required`` field with a ``default`` is still required (the
catalog has such fields; ``required`` wins). Media fields (``format`` ``image_uri(s)`` ...)
also accept local files, which :mod:`runcomfy_async._media` reads and checks at submit.
A field the schema does not know is let through (logged once), unless it is a near-miss of
a known one. Anything the schema says that is not understood here is left to the server.
"""

from __future__ import annotations

import difflib
import logging
import math
import re
from collections.abc import Mapping
from typing import Any

from .._exceptions import InputValidationError
from .._media import MEDIA_FORMATS
from ._schema import literal, show_value

__all__ = ["check_against_schema"]

logger = logging.getLogger("runcomfy_async")

_NEAR_MISS = 0.8
_warned: set[tuple[str, str]] = set()
_TYPES: Mapping[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list, tuple),
    "object": (dict,),
    "null": (type(None),),
}
_NAMES = {"string": "a string", "integer": "an integer", "number": "a number"}
_NAMES |= {"boolean": "true or false", "array": "a list", "object": "an object", "null": "null"}


def check_against_schema(
    model_id: str, schema: Mapping[str, Any], inputs: Mapping[str, Any]
) -> None:
    """Check ``inputs`` against a JSON input schema.

    Args:
        model_id: the model, for messages.
        schema: its ``input_schema``.
        inputs: the inputs as given.

    Raises:
        InputValidationError: a required field is missing, a value breaks its field's rule,
            or an unknown field is a near-miss of a known one; ``field`` names the field.
    """
    props = schema.get("properties")
    props = props if isinstance(props, Mapping) else {}
    required = schema.get("required")
    for name in required if isinstance(required, list) else ():
        if isinstance(name, str) and name not in inputs:
            rule = props.get(name)
            hint = f"; it must be {_describe(rule)}" if isinstance(rule, Mapping) else ""
            raise InputValidationError(f"is required{hint}", field=name, model_id=model_id)
    for name, value in inputs.items():
        rule = props.get(name)
        if isinstance(rule, Mapping):
            problem = _check(rule, value)
            if problem is not None:
                raise InputValidationError(problem, field=name, model_id=model_id)
        elif props and isinstance(name, str):
            _unknown(model_id, name, list(props))


def _unknown(model_id: str, name: str, known: list[str]) -> None:
    close = (
        difflib.get_close_matches(name, known, n=1, cutoff=_NEAR_MISS) if len(name) <= 64 else []
    )
    if close:
        raise InputValidationError(
            f"is not an input of {model_id}; did you mean {close[0]!r}? "
            f"(known fields: {', '.join(known)})",
            field=name,
            model_id=model_id,
        )
    if (model_id, name) not in _warned:
        _warned.add((model_id, name))
        logger.warning(
            "%s: field %r is not in its schema; sending it as given", model_id, name[:64]
        )


def _is_local(value: Any) -> bool:
    if isinstance(value, str):
        return value.startswith(("data:", "file://"))
    return not isinstance(value, (int, float, list, tuple, dict, type(None)))


def _check(rule: Mapping[str, Any], value: Any, item: str = "") -> str | None:
    """What is wrong with ``value`` under ``rule``, or ``None``."""
    fmt = rule.get("format")
    media = isinstance(fmt, str) and fmt in MEDIA_FORMATS
    if media and _is_local(value):
        if not MEDIA_FORMATS[str(fmt)][1]:
            return None
        value = [value]  # one file for a list field: the client sends it as a list of one
    enum = rule.get("enum")
    if isinstance(enum, list) and enum:
        if not any(type(value) is type(choice) and value == choice for choice in enum):
            return f"must be one of: {', '.join(literal(c) for c in enum)}; {_got(value, item)}"
        return None
    kind = rule.get("type")
    kinds = [kind] if isinstance(kind, str) else kind if isinstance(kind, list) else []
    known = [k for k in kinds if k in _TYPES]
    if known and not any(_is_type(value, k) for k in known):
        what = " or ".join(_NAMES[k] for k in known)
        return f"must be {what}; {_got(value, item)}"
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return _check_number(rule, value, item)
    if isinstance(value, str):
        return _check_string(rule, value, item)
    if isinstance(value, (list, tuple)):
        return _check_list(rule, value, media)
    return None


def _is_type(value: Any, kind: str) -> bool:
    if kind in ("integer", "number") and isinstance(value, bool):
        return False
    if kind == "integer" and isinstance(value, float):
        return value.is_integer()
    if kind in ("string", "array") and _is_local(value) and not isinstance(value, str):
        return False
    return isinstance(value, _TYPES[kind])


def _check_number(rule: Mapping[str, Any], value: float, item: str) -> str | None:
    if isinstance(value, float) and not math.isfinite(value):
        return f"must be a finite number; {_got(value, item)}"
    low, high = _num(rule.get("minimum")), _num(rule.get("maximum"))
    xlow, xhigh = _num(rule.get("exclusiveMinimum")), _num(rule.get("exclusiveMaximum"))
    if (
        (low is not None and value < low)
        or (high is not None and value > high)
        or (xlow is not None and value <= xlow)
        or (xhigh is not None and value >= xhigh)
    ):
        return f"must be {_describe(rule)}; {_got(value, item)}"
    return None


def _check_string(rule: Mapping[str, Any], value: str, item: str) -> str | None:
    low, high = _num(rule.get("minLength")), _num(rule.get("maxLength"))
    if (low is not None and len(value) < low) or (high is not None and len(value) > high):
        return f"must be {_describe(rule)}; {_got(value, item)}"
    pattern = rule.get("pattern")
    if isinstance(pattern, str):
        try:
            matched = re.search(pattern, value) is not None
        except re.error:
            return None  # a pattern Python cannot read: left to the server
        if not matched:
            return f"must match {pattern!r}; {_got(value, item)}"
    return None


def _check_list(
    rule: Mapping[str, Any], value: list[Any] | tuple[Any, ...], media: bool
) -> str | None:
    low, high = _num(rule.get("minItems")), _num(rule.get("maxItems"))
    if (low is not None and len(value) < low) or (high is not None and len(value) > high):
        return f"must be {_describe(rule)}; got {show_value(list(value))}"
    items = rule.get("items")
    if isinstance(items, Mapping):
        for i, each in enumerate(value):
            if media and _is_local(each):
                continue  # read and checked at submit
            problem = _check(items, each, f"item {i}")
            if problem is not None:
                return problem
    return None


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value


def _got(value: Any, item: str) -> str:
    return f"{item} is {show_value(value)}" if item else f"got {show_value(value)}"


def _describe(rule: Mapping[str, Any]) -> str:
    """What a field accepts, e.g. ``an integer from 2 to 30`` or ``a list of 1 to 4 items``."""
    enum = rule.get("enum")
    if isinstance(enum, list) and enum:
        return "one of: " + ", ".join(literal(c) for c in enum)
    kind = rule.get("type")
    text = _NAMES.get(kind, "a value") if isinstance(kind, str) else "a value"
    bounds = [
        ("minimum", ">="),
        ("exclusiveMinimum", ">"),
        ("maximum", "<="),
        ("exclusiveMaximum", "<"),
        ("minLength", "characters >="),
        ("maxLength", "characters <="),
        ("minItems", "items >="),
        ("maxItems", "items <="),
    ]
    parts = [f"{op} {literal(rule[key])}" for key, op in bounds if _num(rule.get(key)) is not None]
    return text + (f" ({', '.join(parts)})" if parts else "")
