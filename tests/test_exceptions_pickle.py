"""Every error the library raises survives pickle with its attributes (it crosses processes)."""

from __future__ import annotations

import inspect
import pickle

import pytest

import runcomfy_async
from runcomfy_async import RunComfyError
from runcomfy_async._wire import Result

SAMPLES: dict[str, RunComfyError] = {
    "RunComfyError": runcomfy_async.RunComfyError("plain"),
    "ConfigError": runcomfy_async.ConfigError("bad option"),
    "InputValidationError": runcomfy_async.InputValidationError(
        "must be one of: '1:1'", field="aspect_ratio", model_id="m/x"
    ),
    "APIError": runcomfy_async.APIError("oops", method="GET", url="https://h/v1/x"),
    "TransportError": runcomfy_async.TransportError(
        "could not connect", method="GET", url="https://h/v1/x", connected=False
    ),
    "RequestTimeoutError": runcomfy_async.RequestTimeoutError(
        "timed out", method="GET", url="https://h/v1/x"
    ),
    "APIStatusError": runcomfy_async.APIStatusError(
        "refused",
        method="POST",
        url="https://h/v1/models/m",
        status_code=422,
        error_code=422001,
        detail=[{"loc": "prompt"}],
        body='{"error": "x"}',
    ),
    "AuthenticationError": runcomfy_async.AuthenticationError("no", status_code=401),
    "NotFoundError": runcomfy_async.NotFoundError("gone", status_code=404),
    "RateLimitError": runcomfy_async.RateLimitError("slow", status_code=429, retry_after=2.5),
    "ServerError": runcomfy_async.ServerError("down", status_code=503),
    "ResponseValidationError": runcomfy_async.ResponseValidationError("junk", url="u"),
    "SubmissionUncertainError": runcomfy_async.SubmissionUncertainError(
        "reset", url="https://h/v1/models/m", model_id="m/x", inputs={"prompt": "a"}
    ),
    "JobError": runcomfy_async.JobError("bad", request_id="r1"),
    "JobFailedError": runcomfy_async.JobFailedError(
        request_id="r1",
        error={"message": "nsfw"},
        result=Result(status="failed", request_id="r1"),
    ),
    "JobCancelledError": runcomfy_async.JobCancelledError(request_id="r1"),
    "JournalError": runcomfy_async.JournalError("another run is using out (held by pid 1)"),
    "JobTimeoutError": runcomfy_async.JobTimeoutError(
        request_id="r1", timeout=3.0, cancelled_remotely=True
    ),
    "ClientClosedError": runcomfy_async.ClientClosedError(request_id="r1"),
    "DownloadError": runcomfy_async.DownloadError(
        "HTTP 503", url="https://cdn/x.png?sig=1", status_code=503, retryable=True, retry_after=1.0
    ),
    "DownloadTimeoutError": runcomfy_async.DownloadTimeoutError(
        "timed out", url="https://cdn/x.png", retryable=True
    ),
}


def _public_errors() -> list[str]:
    """The names of every public exception class."""
    return sorted(
        name
        for name in runcomfy_async.__all__
        if inspect.isclass(value := getattr(runcomfy_async, name))
        and issubclass(value, BaseException)
    )


def test_every_public_error_has_a_sample() -> None:
    """The samples below cover every public exception class, no more, no less."""
    assert sorted(SAMPLES) == _public_errors()


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_error_round_trips_through_pickle(name: str) -> None:
    """The error comes back as the same class, message, args and attributes."""
    error = SAMPLES[name]
    if isinstance(error, runcomfy_async.DownloadError):
        error.attempts = 3  # set after construction, as the downloader does
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is type(error)
    assert str(back) == str(error)
    assert back.args == error.args
    assert vars(back) == vars(error)
