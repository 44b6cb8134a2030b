"""Introspection of model input Structs: :class:`FieldInfo`, :func:`describe`, and rule phrases.

Everything here is derived once per Struct class from ``msgspec.inspect.type_info`` and the
class annotations, then cached, so that describing a model (for the CLI) and explaining a
validation failure (for every rejected submit) never re-walks the types.
"""

import typing
from collections.abc import Mapping
from typing import Annotated, Any, Literal, NamedTuple, Union

import msgspec
import msgspec.inspect as mi

__all__ = [
    "HTTPS_URL_PATTERN",
    "MEDIA_URL_PATTERN",
    "PROMPT_MAX_CHARS",
    "SEED_MAX",
    "SEED_MIN",
    "FieldInfo",
    "describe",
    "field_table",
    "literal",
    "show_value",
]

PROMPT_MAX_CHARS = 100_000
"""Client-side cap on prompt length, in characters (a sanity limit, not from the API pages)."""

HTTPS_URL_PATTERN = r"^https://\S+$"
"""Pattern every image URL must match: ``https://`` then no whitespace (the pages ask for a
publicly reachable HTTPS URL)."""

SEED_MIN = -(2**63)
"""Smallest seed accepted client-side: seeds must fit in a signed 64-bit integer."""

SEED_MAX = 2**63 - 1
"""Largest seed accepted client-side: seeds must fit in a signed 64-bit integer."""

MEDIA_URL_PATTERN = r"^(?:https://|data:|file://)\S+$"
"""Pattern of a media field's value: an ``https://`` URL, a ``data:`` URI, or a ``file://`` URI
of a local file (the client reads it and sends it inline). :class:`pathlib.Path`, ``bytes``
and binary file objects are accepted too (see :mod:`runcomfy_async._media`)."""

# Nouns for list items constrained by a known pattern, so a rule reads "1 to 20 https:// URLs".
_PATTERN_NOUNS = {
    HTTPS_URL_PATTERN: "https:// URLs",
    MEDIA_URL_PATTERN: "https:// URLs, data: URIs or local files",
}


class FieldInfo(msgspec.Struct, frozen=True, kw_only=True):
    """One input field of a typed model, as shown by ``runcomfy-async models``.

    Attributes:
        name: the field name, as sent on the wire.
        type: a short type name: ``"string"``, ``"integer"``, ``"number"``, ``"boolean"``
            or ``"list[string]"``.
        required: whether the field must be given.
        default: the value the API uses when the field is omitted (``None`` when the field
            is required or has no default). Defaults are never sent on the wire.
        choices: the allowed values in the page's order, or ``None`` when any value of
            ``type`` is allowed.
        minimum: the smallest allowed integer, or ``None`` for no lower bound.
        maximum: the largest allowed integer, or ``None`` for no upper bound.
        min_items: the fewest list items allowed, or ``None``.
        max_items: the most list items allowed, or ``None``.
        min_length: the fewest characters a string may have, or ``None``.
        max_length: the most characters a string may have, or ``None``.
        pattern: a regular expression every string (or every list item) must match, or ``None``.
        description: a short English description of the field.
        format: the schema's ``format``: ``image_uri(s)``, ``video_uri(s)`` and
            ``audio_uri(s)`` mark media fields; ``None`` for other fields.
    """

    name: str
    type: str
    required: bool
    default: Any = None
    choices: tuple[Any, ...] | None = None
    minimum: int | None = None
    maximum: int | None = None
    min_items: int | None = None
    max_items: int | None = None
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None
    description: str = ""
    format: str | None = None

    @property
    def rule(self) -> str:
        """What the field accepts, as a phrase such as ``"must be an integer from 1 to 4"``."""
        return _rule(self)


class FieldTable(NamedTuple):
    """The cached introspection of one Struct class (internal)."""

    infos: tuple[FieldInfo, ...]
    by_name: Mapping[str, FieldInfo]
    defaults: Mapping[str, Any]


_TABLES: dict[type[msgspec.Struct], FieldTable] = {}


def describe(cls: type[msgspec.Struct]) -> list[FieldInfo]:
    """List the input fields of a typed model with their types, defaults, choices and ranges.

    Args:
        cls: a model input Struct class, e.g. ``NanoBanana2TextToImage``.

    Returns:
        One :class:`FieldInfo` per field, in the order of the model's page.

    Example:
        >>> from runcomfy_async.models import NanoBananaProTextToImage, describe
        >>> [f.name for f in describe(NanoBananaProTextToImage)]
        ['prompt', 'aspect_ratio', 'resolution', 'output_format']
    """
    return list(field_table(cls).infos)


def field_table(cls: type[msgspec.Struct]) -> FieldTable:
    """Return the cached :class:`FieldTable` of ``cls``, building it on first use."""
    table = _TABLES.get(cls)
    if table is None:
        infos = _build_infos(cls)
        by_name = {info.name: info for info in infos}
        defaults = {i.name: i.default for i in infos if not i.required and i.default is not None}
        table = FieldTable(infos, by_name, defaults)
        _TABLES[cls] = table
    return table


def _build_infos(cls: type[msgspec.Struct]) -> tuple[FieldInfo, ...]:
    """Derive the :class:`FieldInfo` tuple of ``cls`` from msgspec's type info."""
    struct = mi.type_info(cls)
    if not isinstance(struct, mi.StructType):  # pragma: no cover - guarded by the signature
        raise TypeError(f"{cls!r} is not a msgspec Struct")
    hints = typing.get_type_hints(cls, include_extras=True)
    infos = []
    for field in struct.fields:
        kind: mi.Type = field.type
        description = ""
        fmt = None
        if isinstance(kind, mi.Metadata):
            extra = kind.extra_json_schema or {}
            description = str(extra.get("description", ""))
            fmt = extra.get("format")
            kind = kind.type
        if field.default is not msgspec.NODEFAULT:
            default = field.default
        elif field.default_factory is not msgspec.NODEFAULT:
            default = field.default_factory()
        else:
            default = None
        info: dict[str, Any] = {
            "name": field.encode_name,
            "required": field.required,
            "default": None if field.required else default,
            "description": description,
            "format": fmt,
        }
        if isinstance(kind, mi.LiteralType):
            # type_info sorts literal values; the annotation keeps the page's order.
            choices = _literal_values(hints[field.name]) or tuple(kind.values)
            info["choices"] = choices
            info["type"] = "string" if all(isinstance(c, str) for c in choices) else "integer"
        elif isinstance(kind, mi.IntType):
            info["type"] = "integer"
            info["minimum"] = kind.ge if kind.ge is not None else _plus(kind.gt, 1)
            info["maximum"] = kind.le if kind.le is not None else _plus(kind.lt, -1)
        elif isinstance(kind, mi.ListType):
            info["type"] = f"list[{_type_name(kind.item_type)}]"
            info["min_items"] = kind.min_length
            info["max_items"] = kind.max_length
            if isinstance(kind.item_type, mi.StrType):
                info["pattern"] = kind.item_type.pattern
        else:
            info["type"] = _type_name(kind)
            if isinstance(kind, mi.StrType):
                info["min_length"] = kind.min_length
                info["max_length"] = kind.max_length
                info["pattern"] = kind.pattern
        infos.append(FieldInfo(**info))
    return tuple(infos)


def _plus(value: int | None, delta: int) -> int | None:
    """Turn an exclusive integer bound into an inclusive one."""
    return None if value is None else value + delta


def _type_name(kind: mi.Type) -> str:
    """Name a msgspec type the way JSON Schema does."""
    if isinstance(kind, mi.Metadata):
        return _type_name(kind.type)
    names: dict[type[mi.Type], str] = {
        mi.StrType: "string",
        mi.IntType: "integer",
        mi.FloatType: "number",
        mi.BoolType: "boolean",
        mi.NoneType: "null",
    }
    for cls, name in names.items():
        if isinstance(kind, cls):
            return name
    if isinstance(kind, mi.ListType):
        return f"list[{_type_name(kind.item_type)}]"
    return type(kind).__name__.removesuffix("Type").lower()


def _literal_values(hint: Any) -> tuple[Any, ...] | None:
    """Find the ``Literal[...]`` values inside an annotation, in declaration order."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        return typing.get_args(hint)
    if origin is Annotated:
        return _literal_values(typing.get_args(hint)[0])
    if origin is Union or type(hint).__name__ == "UnionType":
        for arg in typing.get_args(hint):
            found = _literal_values(arg)
            if found is not None:
                return found
    return None


def literal(value: Any) -> str:
    """Render an allowed value the way a JSON user writes it: ``'16:9'``, ``4``, ``true``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    return repr(value)


def _rule(info: FieldInfo) -> str:
    """Phrase what ``info`` accepts, including its default when it has one."""
    if info.choices is not None:
        text = "must be one of: " + ", ".join(literal(c) for c in info.choices)
    elif info.type == "integer":
        text = "must be an integer" + _span(info.minimum, info.maximum, "")
    elif info.type == "boolean":
        text = "must be true or false"
    elif info.type == "string":
        text = _string_rule(info.min_length, info.max_length, info.pattern)
    elif info.type.startswith("list["):
        noun = _PATTERN_NOUNS.get(info.pattern or "", "strings")
        if info.pattern and info.pattern not in _PATTERN_NOUNS:
            noun = f"strings matching {info.pattern!r}"
        lo, hi = info.min_items, info.max_items
        if lo is not None and hi is not None:
            text = f"must be a list of {lo} to {hi} {noun}"
        else:
            text = f"must be a list of {noun}" + _span(lo, hi, " items")
    else:
        text = f"must be a {info.type}"
    if not info.required and info.default is not None:
        text += f" (default {literal(info.default)})"
    return text


def _span(lo: int | None, hi: int | None, unit: str) -> str:
    """Phrase an inclusive range: ``" from 1 to 4"``, ``" of at least 1 items"``..."""
    if lo is not None and hi is not None:
        return f" from {literal(lo)} to {literal(hi)}{unit}"
    if lo is not None:
        return f" of at least {literal(lo)}{unit}"
    if hi is not None:
        return f" of at most {literal(hi)}{unit}"
    return ""


def _string_rule(lo: int | None, hi: int | None, pattern: str | None) -> str:
    """Phrase a string rule: ``"must be a non-empty string of at most 100,000 characters"``."""
    if lo == 1:
        text = "must be a non-empty string"
        if hi is not None:
            text += f" of at most {hi:,} characters"
    else:
        text = "must be a string" + _span(lo or None, hi, " characters")
    if pattern:
        text += f" matching {pattern!r}"
    return text


def show_value(value: Any) -> str:
    """Summarise a rejected value in a few words, never quoting a huge string in full."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"{literal(value)} (a boolean)"
    if isinstance(value, int):
        return f"the integer {value}" if abs(value) < 10**30 else "a very large integer"
    if isinstance(value, float):
        return f"the number {value!r}"
    if isinstance(value, str):
        if len(value) <= 80:
            return f"the string {value!r}"
        return f"a string of {len(value):,} characters"
    if isinstance(value, (list, tuple)):
        return "an empty list" if not value else f"a list of {len(value):,} items"
    if isinstance(value, Mapping):
        return f"an object with {len(value):,} keys"
    return f"a value of type {type(value).__name__}"
