"""What a submit takes from the answer, and what its errors say was sent.

The body itself is built and checked in :mod:`runcomfy_async._prepare`. The request id that
comes back is checked here before any request is built from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from ._config import check_request_id
from ._exceptions import ConfigError, InputValidationError, SubmissionUncertainError
from ._wire import SubmitResponse
from .models import ModelInput, to_payload

__all__ = ["check_answer", "inputs_of"]


def inputs_of(model: str | ModelInput, inputs: Mapping[str, Any] | None) -> Any:
    """The inputs as given, for an error that must say what was submitted."""
    if not isinstance(model, ModelInput):
        return inputs
    try:
        return to_payload(model)
    except InputValidationError:  # a local file in a media field: name it, not its bytes
        return msgspec.structs.asdict(model)


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
