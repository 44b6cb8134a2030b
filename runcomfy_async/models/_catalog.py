"""The catalog of typed models: :data:`MODELS`, :func:`get_model`, :func:`validate_inputs`.

The API is open: any RunComfy model id may be submitted. Models in this catalog get their
inputs checked client-side; all others are sent as given. The bundled schemas may lag the
API: a field they do not know is sent as is (with a warning, once), and only a near-miss of a
known field (``aspect_ration``) is refused.
"""

import difflib
import functools
import logging
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from .._exceptions import InputValidationError
from .._media import MEDIA_FORMATS, MediaField
from ._base import ModelInput, convert
from ._schema import field_table
from .google import (
    NanoBanana2Edit,
    NanoBanana2LiteTextToImage,
    NanoBanana2TextToImage,
    NanoBananaProTextToImage,
)

__all__ = ["MODELS", "NEAR_MISS_CUTOFF", "get_model", "media_fields_of", "validate_inputs"]

logger = logging.getLogger("runcomfy_async")

NEAR_MISS_CUTOFF = 0.8
"""How alike (``difflib`` ratio, 0 to 1) an unknown field name must be to a known one to be
refused as a typo of it; a less alike name is taken for a field the bundled schema lacks."""

_warned: set[tuple[str, str]] = set()

_CLASSES: tuple[type[ModelInput], ...] = (
    NanoBanana2TextToImage,
    NanoBanana2Edit,
    NanoBananaProTextToImage,
    NanoBanana2LiteTextToImage,
)

MODELS: Mapping[str, type[ModelInput]] = MappingProxyType({c.model_id: c for c in _CLASSES})
"""Model id to input Struct class, for every model with typed inputs (read-only)."""

# Build the introspection tables now, so the first rejected submit pays no setup cost.
for _cls in _CLASSES:
    field_table(_cls)
del _cls


def get_model(model_id: str) -> type[ModelInput] | None:
    """Return the input Struct class of a model, or ``None`` if the model has no typed inputs.

    Args:
        model_id: a RunComfy model id such as ``"google/nano-banana-2/edit"``.

    Returns:
        The :class:`ModelInput` subclass, or ``None`` for a model outside the catalog.
    """
    return MODELS.get(model_id)


def validate_inputs(model_id: str, data: Mapping[str, Any] | ModelInput) -> ModelInput | None:
    """Check inputs against a model's schema, if the model is in the catalog.

    Conversion is strict: a string is never coerced to a number, a number never to a boolean.

    Args:
        model_id: a RunComfy model id.
        data: the inputs as a mapping of field names to JSON values, or a :class:`ModelInput`
            (checked against ``model_id``'s schema, whatever class it is).

    Returns:
        The checked inputs as the model's Struct (without the fields the schema does not
        know), or ``None`` when the model has no typed inputs (any other RunComfy model is
        allowed, unchecked).

    Raises:
        InputValidationError: the inputs break the model's schema. ``field`` names the
            offending top-level field, ``model_id`` is set, and the reason lists what is
            allowed, e.g. ``must be one of: '21:9', '16:9', ... (default '16:9')``, or
            the known field an unknown one resembles (``did you mean 'aspect_ratio'?``).
            A field that resembles none is not an error: it is logged once and the client
            sends it as given.

    Example:
        >>> from runcomfy_async.models import validate_inputs
        >>> validate_inputs("google/nano-banana/pro/text-to-image", {"prompt": "a fox"})
        NanoBananaProTextToImage(prompt='a fox', aspect_ratio='16:9', resolution='1K', \
output_format='png')
        >>> validate_inputs("someone/other-model", {"anything": 1}) is None
        True
    """
    cls = MODELS.get(model_id)
    if cls is None:
        return None
    if isinstance(data, Mapping):
        data = _local_media_as_placeholders(cls, _known_only(cls, data))
    return convert(cls, data)


@functools.cache
def media_fields_of(cls: type[ModelInput]) -> Mapping[str, MediaField]:
    """The media fields of a typed model, from the ``format`` its schema gives them.

    Example:
        >>> from runcomfy_async.models import NanoBanana2Edit
        >>> dict(media_fields_of(NanoBanana2Edit))
        {'image_urls': MediaField(kind='image', many=True, validations=())}
    """
    found = {}
    for info in field_table(cls).infos:
        if info.format is not None and info.format in MEDIA_FORMATS:
            kind, many = MEDIA_FORMATS[info.format]
            found[info.name] = MediaField(kind, many or info.type.startswith("list["))
    return MappingProxyType(found)


# Stands for a local file in a media field while the rest of the inputs are checked: the
# file itself is read and checked only when the input is submitted.
_LOCAL = "file:///local-file"


def _local_media_as_placeholders(
    cls: type[ModelInput], data: Mapping[str, Any]
) -> Mapping[str, Any]:
    """``data`` with Python file values (paths, bytes, file objects) in media fields replaced."""
    fields = media_fields_of(cls)
    out: dict[str, Any] | None = None
    for name in fields:
        value = data.get(name)
        if value is None or isinstance(value, str):
            continue
        if isinstance(value, (list, tuple)):
            plain = (str, int, float, dict, list)
            new: Any = [v if isinstance(v, plain) else _LOCAL for v in value]
        elif isinstance(value, (int, float, dict)):
            continue
        else:
            new = [_LOCAL] if fields[name].many else _LOCAL
        out = dict(data) if out is None else out
        out[name] = new
    return data if out is None else out


def _known_only(cls: type[ModelInput], data: Mapping[str, Any]) -> Mapping[str, Any]:
    """``data`` without the fields ``cls`` does not know; a near-miss of a known one is refused.

    Raises:
        InputValidationError: an unknown field resembles a known one, naming both.
    """
    table = field_table(cls)
    extra = [k for k in data if isinstance(k, str) and k not in table.by_name]
    if not extra:
        return data
    known = list(table.by_name)
    for name in extra:
        close = (
            difflib.get_close_matches(name, known, n=1, cutoff=NEAR_MISS_CUTOFF)
            if len(name) <= 64
            else []
        )
        if close:
            raise InputValidationError(
                f"is not an input of {cls.model_id}; did you mean {close[0]!r}? "
                f"(known fields: {', '.join(known)})",
                field=name,
                model_id=cls.model_id,
            )
        if (cls.model_id, name) not in _warned:
            _warned.add((cls.model_id, name))
            logger.warning(
                "%s: field %r is not in the bundled schema; sending it as given "
                "(the API may have added it)",
                cls.model_id,
                name[:64],
            )
    return {k: v for k, v in data.items() if not (isinstance(k, str) and k not in table.by_name)}
