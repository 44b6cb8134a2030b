"""From ``submit(model, inputs)`` to the request body: check the inputs, then read their media.

The work is split in two so that a submit fails fast and holds no file while it waits:
:func:`check_inputs` runs at once (model id, the schema, local files accepted as such), and
:func:`encode_inputs` runs when the submit's turn has come, reading each local file then
(see :mod:`runcomfy_async._media`) and encoding the body.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import msgspec

from ._config import check_model_id
from ._exceptions import ConfigError
from ._live_catalog import LiveCatalog
from ._media import MAX_REQUEST_BYTES, MediaField, Uploader, prepare_media
from .models import MODELS, ModelInput, to_payload, validate_inputs
from .models._base import convert
from .models._catalog import media_fields_of
from .models._jsonschema import check_against_schema
from .models._live import ModelInfo

__all__ = ["Prepared", "check_inputs", "check_submit", "encode_inputs"]


class Prepared(NamedTuple):
    """Inputs checked for one submit, their media not yet read.

    Attributes:
        model_id: the model.
        data: the inputs as given (for a typed Struct: its fields, unset ones left out).
        typed: the model's input Struct when the inputs are checked and sent through it.
        media: the model's media fields.
    """

    model_id: str
    data: Mapping[str, Any]
    typed: type[ModelInput] | None
    media: Mapping[str, MediaField]


def check_inputs(
    model: str | ModelInput, inputs: Mapping[str, Any] | None, live: ModelInfo | None = None
) -> Prepared:
    """Check a submit's model and inputs, reading no file.

    A model with typed inputs is checked against its bundled Struct; any other against
    ``live``'s ``input_schema`` (the live catalog's) when given, else not at all.

    Raises:
        ConfigError: a malformed model id, inputs that are not a mapping, or both a typed
            Struct and inputs.
        InputValidationError: the inputs break the model's schema.
    """
    if isinstance(model, ModelInput):
        if inputs is not None:
            raise ConfigError("pass either a typed model input or (model_id, inputs), not both")
        cls = type(model)
        fields: dict[str, Any] = {
            name: getattr(model, name)
            for name in cls.__struct_fields__
            if getattr(model, name) is not msgspec.UNSET
        }
        validate_inputs(cls.model_id, fields)
        return Prepared(cls.model_id, fields, cls, media_fields_of(cls))
    model_id = check_model_id(model)
    data = {} if inputs is None else inputs
    if not isinstance(data, Mapping):
        raise ConfigError(f"inputs must be a mapping, got {type(data).__name__}")
    known = MODELS.get(model_id)
    if known is not None:
        validate_inputs(model_id, data)
        return Prepared(model_id, data, None, media_fields_of(known))
    if live is not None and live.input_schema is not None:
        check_against_schema(model_id, live.input_schema, data)
        return Prepared(model_id, data, None, live.media_fields)
    return Prepared(model_id, data, None, {})


async def check_submit(
    catalog: LiveCatalog, model: str | ModelInput, inputs: Mapping[str, Any] | None
) -> Prepared:
    """:func:`check_inputs`, with the live catalog's schema for a model without typed inputs.

    Raises:
        ConfigError, InputValidationError: as :func:`check_inputs`.
    """
    live = await catalog.schema_for(check_model_id(model)) if isinstance(model, str) else None
    return check_inputs(model, inputs, live)


async def encode_inputs(prepared: Prepared, *, uploader: Uploader | None = None) -> bytes:
    """Read the inputs' local media, send them inline (or upload them), and encode the body.

    Raises:
        InputValidationError: a local file is missing, of the wrong kind, or too large.
        ConfigError: the inputs cannot be sent as JSON, or the body is over the API's limit.
    """
    data = await prepare_media(
        prepared.data, prepared.media, uploader=uploader, model_id=prepared.model_id
    )
    if prepared.typed is not None:
        # Building a Struct directly checks nothing: convert, then send only non-defaults.
        body = msgspec.json.encode(to_payload(convert(prepared.typed, data)))
    else:
        try:
            body = msgspec.json.encode(data)
        except (TypeError, msgspec.EncodeError) as exc:
            raise ConfigError(f"inputs are not JSON-serialisable: {exc}") from None
    if len(body) > MAX_REQUEST_BYTES:
        raise ConfigError(
            f"request body of {len(body):,} bytes exceeds the {MAX_REQUEST_BYTES:,}-byte limit"
        )
    return body
