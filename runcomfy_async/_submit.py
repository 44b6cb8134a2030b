"""What a submit sends, and what it takes from the answer.

The body is built and checked before anything leaves: a typed model input is validated and
sent without its defaults, a plain mapping is checked against the model's schema when the
model is known, and the body must fit the API's request limit. The request id that comes
back is checked before any request is built from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from ._config import check_model_id, check_request_id
from ._exceptions import ConfigError, SubmissionUncertainError
from ._wire import SubmitResponse
from .models import ModelInput, to_payload, validate_inputs

__all__ = ["MAX_REQUEST_BYTES", "check_answer", "encode_submit", "inputs_of"]

MAX_REQUEST_BYTES = 64 * 2**20
"""The largest submit body sent (RunComfy's request limit as its own tools assume it)."""


def encode_submit(model: str | ModelInput, inputs: Mapping[str, Any] | None) -> tuple[str, bytes]:
    """The model id and the JSON body of a submit, checked before anything is sent.

    Raises:
        ConfigError: a malformed model id, a typed input with ``inputs`` too, inputs that are
            not a JSON-serialisable mapping, or a body over :data:`MAX_REQUEST_BYTES`.
        InputValidationError: the inputs break the model's schema.
    """
    if isinstance(model, ModelInput):
        if inputs is not None:
            raise ConfigError("pass either a typed model input or (model_id, inputs), not both")
        model_id = type(model).model_id
        # Building a Struct directly checks nothing: validate, then send only non-defaults.
        body = msgspec.json.encode(to_payload(model.validated()))
    else:
        model_id = check_model_id(model)
        data = {} if inputs is None else inputs
        if not isinstance(data, Mapping):
            raise ConfigError(f"inputs must be a mapping, got {type(data).__name__}")
        validate_inputs(model_id, data)
        try:
            body = msgspec.json.encode(data)
        except (TypeError, msgspec.EncodeError) as exc:
            raise ConfigError(f"inputs are not JSON-serialisable: {exc}") from None
    if len(body) > MAX_REQUEST_BYTES:
        raise ConfigError(
            f"request body of {len(body)} bytes exceeds the {MAX_REQUEST_BYTES}-byte limit"
        )
    return model_id, body


def inputs_of(model: str | ModelInput, inputs: Mapping[str, Any] | None) -> Any:
    """The inputs as sent, for an error that must say what was submitted."""
    return to_payload(model) if isinstance(model, ModelInput) else inputs


def check_answer(answer: SubmitResponse, model_id: str, inputs: Any) -> None:
    """Refuse to follow a job whose request id would change the paths we call.

    Raises:
        SubmissionUncertainError: a job may exist, but following it would send
            authenticated requests to a path the id picks.
    """
    try:
        check_request_id(answer.request_id)
    except ConfigError as exc:
        raise SubmissionUncertainError(
            str(exc), model_id=model_id, inputs=inputs, request_id=None
        ) from None
