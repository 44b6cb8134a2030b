"""Typed inputs for known RunComfy models: Structs, a catalog, validation and introspection.

Any RunComfy model may be submitted with plain dict inputs; the models listed in
:data:`MODELS` also have a typed input Struct whose fields, defaults, enums and ranges are
those of the model's API page, so mistakes are caught before a request is sent (and paid for).

Example:
    >>> from runcomfy_async.models import NanoBanana2TextToImage, to_payload, validate_inputs
    >>> to_payload(NanoBanana2TextToImage(prompt="a fox", num_images=2).validated())
    {'prompt': 'a fox', 'num_images': 2}
    >>> validate_inputs("google/nano-banana-2/text-to-image", {"prompt": "a fox", "num_images": 9})
    Traceback (most recent call last):
    ...
    runcomfy_async._exceptions.InputValidationError: google/nano-banana-2/text-to-image: \
field 'num_images' must be an integer from 1 to 4 (default 1); got the integer 9
"""

from ._base import ModelInput, to_payload
from ._catalog import MODELS, get_model, media_fields_of, validate_inputs
from ._schema import PROMPT_MAX_CHARS, FieldInfo, describe
from .google import (
    NanoBanana2Edit,
    NanoBanana2LiteTextToImage,
    NanoBanana2TextToImage,
    NanoBananaProTextToImage,
)

__all__ = [
    "MODELS",
    "PROMPT_MAX_CHARS",
    "FieldInfo",
    "ModelInput",
    "NanoBanana2Edit",
    "NanoBanana2LiteTextToImage",
    "NanoBanana2TextToImage",
    "NanoBananaProTextToImage",
    "describe",
    "get_model",
    "media_fields_of",
    "to_payload",
    "validate_inputs",
]
