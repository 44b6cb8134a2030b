"""The public API cannot drift: its names, how they present themselves, what importing costs."""

from __future__ import annotations

import subprocess
import sys

import msgspec

import runcomfy_async

PUBLIC = [
    "__version__",
    "APIError",
    "APIStatusError",
    "AsyncClient",
    "AuthenticationError",
    "BatchItem",
    "BatchResult",
    "BatchRunner",
    "CancelResponse",
    "ClientClosedError",
    "ConfigError",
    "DownloadedFile",
    "DownloadError",
    "DownloadTimeoutError",
    "InputValidationError",
    "Job",
    "JobCancelledError",
    "JobError",
    "JobFailedError",
    "JobTimeoutError",
    "JobUpdate",
    "JournalError",
    "NotFoundError",
    "Output",
    "PollSettings",
    "RateLimitError",
    "RequestTimeoutError",
    "ResponseValidationError",
    "Result",
    "RetryPolicy",
    "RunComfyError",
    "ServerError",
    "StatusResponse",
    "SubmissionUncertainError",
    "SubmitResponse",
    "SyncClient",
    "SyncJob",
    "TransportError",
]


def test_all_is_pinned_and_sorted() -> None:
    """__all__ is exactly the public names, sorted with str.casefold."""
    assert runcomfy_async.__all__ == PUBLIC
    assert sorted(PUBLIC, key=str.casefold) == PUBLIC


def test_public_names_resolve_and_present_as_the_package() -> None:
    """Every public name resolves; classes (msgspec Structs apart) show runcomfy_async.X."""
    for name in PUBLIC:
        value = getattr(runcomfy_async, name)
        if isinstance(value, type) and not issubclass(value, msgspec.Struct):
            assert value.__module__ == "runcomfy_async", name
    assert set(PUBLIC) <= set(dir(runcomfy_async))


def test_unknown_attribute_is_an_attribute_error() -> None:
    """A name the package does not have raises AttributeError, not an import error."""
    try:
        runcomfy_async.NoSuchThing  # noqa: B018
    except AttributeError as exc:
        assert "NoSuchThing" in str(exc)
    else:
        raise AssertionError("no AttributeError")


def test_importing_the_package_and_models_leaves_aiohttp_out() -> None:
    """`import runcomfy_async, runcomfy_async.models` loads neither aiohttp nor anyio."""
    code = (
        "import sys, runcomfy_async, runcomfy_async.models\n"
        "print(sorted(m for m in ('aiohttp', 'anyio') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"
