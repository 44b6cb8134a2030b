"""runcomfy-async: a fast, economical asyncio client and batch runner for the RunComfy Model API.

Example:
    >>> from runcomfy_async import AsyncClient
    >>> async with AsyncClient() as client:  # token from RUNCOMFY_API_TOKEN
    ...     job = await client.submit("google/nano-banana-2/text-to-image", {"prompt": "a fox"})
    ...     result = await job
    ...     print(result.output.urls)

Importing the package is cheap: the errors, options and answer types load at once; the
client, the jobs, the batch runner and the downloader (which need aiohttp and anyio) load
on first use of their names, so ``runcomfy-async --help`` and ``runcomfy-async models``
start without them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

import msgspec

from ._config import PollSettings as PollSettings
from ._config import RetryPolicy as RetryPolicy
from ._download_policy import DownloadError as DownloadError
from ._download_policy import DownloadTimeoutError as DownloadTimeoutError
from ._exceptions import APIError as APIError
from ._exceptions import APIStatusError as APIStatusError
from ._exceptions import AuthenticationError as AuthenticationError
from ._exceptions import ClientClosedError as ClientClosedError
from ._exceptions import ConfigError as ConfigError
from ._exceptions import InputValidationError as InputValidationError
from ._exceptions import JobCancelledError as JobCancelledError
from ._exceptions import JobError as JobError
from ._exceptions import JobFailedError as JobFailedError
from ._exceptions import JobTimeoutError as JobTimeoutError
from ._exceptions import NotFoundError as NotFoundError
from ._exceptions import RateLimitError as RateLimitError
from ._exceptions import RequestTimeoutError as RequestTimeoutError
from ._exceptions import ResponseValidationError as ResponseValidationError
from ._exceptions import RunComfyError as RunComfyError
from ._exceptions import ServerError as ServerError
from ._exceptions import SubmissionUncertainError as SubmissionUncertainError
from ._exceptions import TransportError as TransportError
from ._version import __version__ as __version__
from ._wire import CancelResponse as CancelResponse
from ._wire import Output as Output
from ._wire import Result as Result
from ._wire import StatusResponse as StatusResponse
from ._wire import SubmitResponse as SubmitResponse

if TYPE_CHECKING:  # loaded on first use (see __getattr__); type checkers see them here
    from ._batch import BatchItem as BatchItem
    from ._batch import BatchResult as BatchResult
    from ._batch import BatchRunner as BatchRunner
    from ._client import AsyncClient as AsyncClient
    from ._download import DownloadedFile as DownloadedFile
    from ._jobs import Job as Job
    from ._jobs import JobUpdate as JobUpdate
    from ._journal import JournalError as JournalError
    from ._sync import SyncClient as SyncClient
    from ._sync import SyncJob as SyncJob

__all__ = [
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

_LAZY = {
    "AsyncClient": "._client",
    "BatchItem": "._batch",
    "BatchResult": "._batch",
    "BatchRunner": "._batch",
    "DownloadedFile": "._download",
    "Job": "._jobs",
    "JobUpdate": "._jobs",
    "JournalError": "._journal",
    "SyncClient": "._sync",
    "SyncJob": "._sync",
}
"""Public names loaded on first use, and the module each one lives in."""


def _present(value: object) -> None:
    """Let a public class introduce itself as ``runcomfy_async.X`` in reprs and tracebacks.

    Not msgspec Structs: msgspec resolves their (string) annotations in the module that
    ``__module__`` names, and this package's namespace does not hold those names.
    """
    if isinstance(value, type) and not issubclass(value, msgspec.Struct):
        value.__module__ = __name__


def __getattr__(name: str) -> object:
    """Load a public name that needs aiohttp or anyio on first use (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value: object = getattr(importlib.import_module(module, __name__), name)
    _present(value)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


for _name in __all__:
    if _name not in _LAZY:
        _present(globals()[_name])
del _name
