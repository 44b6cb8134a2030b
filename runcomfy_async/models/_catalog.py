"""The catalog of typed models: :data:`MODELS`, :func:`get_model`, :func:`validate_inputs`.

The API is open: any RunComfy model id may be submitted. Models in this catalog get their
inputs checked client-side; all others are sent as given.
"""

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from ._base import ModelInput, convert
from ._schema import field_table
from .google import (
    NanoBanana2Edit,
    NanoBanana2LiteTextToImage,
    NanoBanana2TextToImage,
    NanoBananaProTextToImage,
)

__all__ = ["MODELS", "get_model", "validate_inputs"]

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
        The checked inputs as the model's Struct, or ``None`` when the model has no typed
        inputs (any other RunComfy model is allowed, unchecked).

    Raises:
        InputValidationError: the inputs break the model's schema. ``field`` names the
            offending top-level field, ``model_id`` is set, and the reason lists what is
            allowed, e.g. ``must be one of: '21:9', '16:9', ... (default '16:9')``.

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
    return convert(cls, data)
