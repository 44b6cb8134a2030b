"""runcomfy-async: a fast, economical asyncio client and batch runner for the RunComfy Model API.

Example:
    >>> from runcomfy_async import AsyncClient
    >>> async with AsyncClient() as client:  # token from RUNCOMFY_API_TOKEN
    ...     job = await client.submit("google/nano-banana-2/text-to-image", {"prompt": "a fox"})
    ...     result = await job
    ...     print(result.output.urls)
"""

from ._batch import BatchResult, BatchRunner
from ._client import AsyncClient
from ._config import PollSettings, RetryPolicy
from ._download import DownloadedFile, DownloadError
from ._exceptions import (
    APIError,
    APIStatusError,
    AuthenticationError,
    ClientClosedError,
    ConfigError,
    InputValidationError,
    JobCancelledError,
    JobError,
    JobFailedError,
    JobTimeoutError,
    NotFoundError,
    RateLimitError,
    RequestTimeoutError,
    ResponseValidationError,
    RunComfyError,
    ServerError,
    SubmissionUncertainError,
    TransportError,
)
from ._jobs import Job, JobUpdate
from ._sync import SyncClient, SyncJob
from ._version import __version__
from ._wire import CancelResponse, Output, Result, StatusResponse, SubmitResponse

__all__ = [
    "APIError",
    "APIStatusError",
    "AsyncClient",
    "AuthenticationError",
    "BatchResult",
    "BatchRunner",
    "CancelResponse",
    "ClientClosedError",
    "ConfigError",
    "DownloadError",
    "DownloadedFile",
    "InputValidationError",
    "Job",
    "JobCancelledError",
    "JobError",
    "JobFailedError",
    "JobTimeoutError",
    "JobUpdate",
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
    "__version__",
]
