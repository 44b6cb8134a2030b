"""The error tree of runcomfy-async.

Every error the library raises on purpose is a :class:`RunComfyError`::

    RunComfyError
    ├── ConfigError (ValueError)           before any request: no token, bad URL, bad option
    ├── InputValidationError (ValueError)  inputs break a model's schema: field, allowed values
    ├── APIError                           a call to the API did not succeed (.method, .url)
    │   ├── TransportError                 no HTTP answer: connect failure, reset
    │   │   └── RequestTimeoutError (TimeoutError)
    │   ├── APIStatusError                 an error answer: 4xx/5xx, or HTTP 200 + error_code
    │   │   ├── AuthenticationError        401/403, codes 401001, 400004, 403xxx
    │   │   ├── NotFoundError              404: unknown model or request id
    │   │   ├── RateLimitError             429 (.retry_after)
    │   │   └── ServerError                5xx
    │   ├── ResponseValidationError        a 2xx body that does not decode
    │   └── SubmissionUncertainError       a submit failed after it may have reached the server
    ├── JobError                           the job itself ended badly (.request_id)
    │   ├── JobFailedError                 the server reports failure (.error as sent)
    │   ├── JobCancelledError
    │   ├── JobTimeoutError (TimeoutError) a client-side wait deadline passed; job may still run
    │   └── ClientClosedError              the client closed while the job was followed
    └── DownloadError                      an output could not be saved (.url, .retryable)
        └── DownloadTimeoutError (TimeoutError)

(``DownloadError`` lives with the downloader's rules in ``_download_policy``.)

``str(err)`` is always one line and never contains the API token: URLs carry no credentials
and response bodies are shortened before they are quoted. Every error pickles with its
attributes.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "APIError",
    "APIStatusError",
    "AuthenticationError",
    "ClientClosedError",
    "ConfigError",
    "InputValidationError",
    "JobCancelledError",
    "JobError",
    "JobFailedError",
    "JobTimeoutError",
    "NotFoundError",
    "RateLimitError",
    "RequestTimeoutError",
    "ResponseValidationError",
    "RunComfyError",
    "ServerError",
    "SubmissionUncertainError",
    "TransportError",
]


def _one_line(text: str, limit: int = 300) -> str:
    """Collapse whitespace and shorten ``text`` so an error message stays on one line."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


class RunComfyError(Exception):
    """Base class of every error raised by runcomfy-async.

    Every error pickles with its attributes (errors cross process boundaries: worker
    pools, task queues, error trackers), whatever its constructor's keyword arguments.
    """

    def __reduce__(self) -> tuple[Any, ...]:
        # The default rebuilds with cls(*args), which keyword-only constructors refuse.
        return (_rebuild, (type(self), self.args, self.__dict__))


def _rebuild(cls: type[RunComfyError], args: tuple[Any, ...], state: dict[str, Any]) -> Any:
    """Recreate a pickled error without calling its ``__init__``."""
    error = cls.__new__(cls, *args)
    error.args = args
    error.__dict__.update(state)
    return error


class ConfigError(RunComfyError, ValueError):
    """The client is misconfigured; raised before any request is sent.

    Examples: no API token, a malformed base URL, an ``http://`` URL to a remote host,
    a malformed model id or request id, an out-of-range option.
    """


class InputValidationError(RunComfyError, ValueError):
    """Inputs do not fit a model's schema; raised before any request is sent.

    Attributes:
        model_id: the model whose schema was broken, when known.
        field: the offending field (``None`` when the inputs as a whole are wrong).
        reason: what is wrong and what is allowed, e.g. ``"must be one of: '1:1', '16:9'"``.
    """

    def __init__(self, reason: str, *, field: str | None = None, model_id: str | None = None):
        self.model_id = model_id
        self.field = field
        self.reason = reason
        where = f"{model_id}: " if model_id else ""
        what = f"field {field!r} " if field else ""
        super().__init__(_one_line(f"{where}{what}{reason}", 600))


class APIError(RunComfyError):
    """A call to the API did not succeed.

    Attributes:
        method: the HTTP method (``"GET"`` or ``"POST"``).
        url: the URL that was called (it never carries credentials).
    """

    def __init__(self, message: str, *, method: str = "", url: str = ""):
        self.method = method
        self.url = url
        self.message = _one_line(message)
        where = f" ({method} {url})" if method and url else ""
        super().__init__(f"{self.message}{where}")


class TransportError(APIError):
    """No HTTP answer arrived: the connection failed or broke.

    The message sums up the low-level error; nothing is chained to it, since that error
    could hold the request and its headers.

    Attributes:
        connected: ``False`` when the connection could not even be opened, so the request
            provably never reached the server.
    """

    def __init__(self, message: str, *, method: str = "", url: str = "", connected: bool = True):
        self.connected = connected
        super().__init__(message, method=method, url=url)


class RequestTimeoutError(TransportError, TimeoutError):
    """The connect or read timeout passed before the API answered."""


class APIStatusError(APIError):
    """The API answered with an error: a 4xx/5xx status, or HTTP 200 with an ``error_code``.

    Attributes:
        status_code: the HTTP status of the answer.
        error_code: the API's numeric error code, when the body had one.
        detail: the body's ``detail`` (e.g. a list of validation problems), when present.
        body: the first kilobyte of the raw body, for diagnosis.
    """

    def __init__(
        self,
        message: str,
        *,
        method: str = "",
        url: str = "",
        status_code: int,
        error_code: int | None = None,
        detail: Any = None,
        body: str = "",
    ):
        self.status_code = status_code
        self.error_code = error_code
        self.detail = detail
        self.body = body[:1024]
        code = f" [{error_code}]" if error_code is not None else ""
        super().__init__(f"HTTP {status_code}{code}: {message}", method=method, url=url)


class AuthenticationError(APIStatusError):
    """The token is missing, invalid, expired, or not allowed to see this resource."""


class NotFoundError(APIStatusError):
    """Unknown model id, or a request id that does not exist (or has expired)."""


class RateLimitError(APIStatusError):
    """The API answered 429.

    Attributes:
        retry_after: seconds the server asked us to wait, or ``None`` if it did not say.
    """

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any):
        self.retry_after = retry_after
        super().__init__(message, **kw)


class ServerError(APIStatusError):
    """The API (or a proxy in front of it) answered with a 5xx status."""


class ResponseValidationError(APIError):
    """A successful answer whose body could not be decoded into the expected shape."""


class SubmissionUncertainError(APIError):
    """A submit failed after the request may have reached the server: the job may exist.

    It is never retried automatically, because a duplicate job is billed twice. Check your
    RunComfy dashboard (or the journal of a batch) before submitting again.

    Attributes:
        model_id: the model that was submitted to.
        inputs: the inputs that were sent.
        request_id: the request id, if the server's answer carried one.
    """

    def __init__(
        self,
        message: str,
        *,
        method: str = "POST",
        url: str = "",
        model_id: str = "",
        inputs: Any = None,
        request_id: str | None = None,
    ):
        self.model_id = model_id
        self.inputs = inputs
        self.request_id = request_id
        super().__init__(
            f"submit outcome unknown, the job may exist and be billed; "
            f"do not resubmit blindly: {message}",
            method=method,
            url=url,
        )


class JobError(RunComfyError):
    """The job itself ended badly.

    Attributes:
        request_id: the job's request id.
    """

    def __init__(self, message: str, *, request_id: str):
        self.request_id = request_id
        super().__init__(_one_line(f"job {request_id}: {message}", 600))


class JobFailedError(JobError):
    """The server reports that the job failed.

    Attributes:
        error: the server's ``error`` exactly as sent (a string, an object or a list).
        result: the decoded result body.
    """

    def __init__(self, *, request_id: str, error: Any = None, result: Any = None):
        self.error = error
        self.result = result
        super().__init__(f"failed: {_describe_error(error)}", request_id=request_id)


class JobCancelledError(JobError):
    """The job was cancelled (by us or by someone else) before it produced a result."""

    def __init__(self, *, request_id: str, message: str = "cancelled"):
        super().__init__(message, request_id=request_id)


class JobTimeoutError(JobError, TimeoutError):
    """A client-side wait deadline passed before the job finished. The job may still run.

    Attributes:
        timeout: the deadline in seconds.
        cancelled_remotely: whether a remote cancel was sent and accepted.
    """

    def __init__(self, *, request_id: str, timeout: float, cancelled_remotely: bool = False):
        self.timeout = timeout
        self.cancelled_remotely = cancelled_remotely
        tail = "; cancelled remotely" if cancelled_remotely else "; the job may still be running"
        super().__init__(f"not finished after {timeout:g} s{tail}", request_id=request_id)


def _describe_error(error: Any) -> str:
    """Render the server's ``error`` (string, object or list of objects) as a short phrase."""
    if error is None:
        return "no reason given"
    if isinstance(error, str):
        return error or "no reason given"
    if isinstance(error, dict):
        for key in ("message", "error_message", "error", "detail", "type"):
            value = error.get(key)
            if isinstance(value, str) and value:
                return value
        return str(error)
    if isinstance(error, list):
        return "; ".join(_describe_error(item) for item in error) or "no reason given"
    return str(error)


class ClientClosedError(JobError):
    """The client was closed while it still followed the job; the job may still run.

    Re-attach from a new client with ``client.job(request_id)`` to collect its result.
    """

    def __init__(self, *, request_id: str):
        super().__init__(
            "the client closed before the job finished; re-attach with client.job(request_id)",
            request_id=request_id,
        )
