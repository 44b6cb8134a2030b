"""Retry policy, pure and side-effect free: what may be retried, how long to wait.

Two rules carry the weight:

* Reads (status, result, cancel) are idempotent: they are retried on transport errors,
  timeouts, 408, 429, 5xx and undecodable bodies, with exponential backoff and full jitter,
  honouring ``Retry-After``.
* A submit is billed. It is retried only when it provably never reached the server (the
  connection could not be opened) or the server refused it with 429. Anything else that
  may have reached the server becomes a :class:`SubmissionUncertainError` upstream.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from email.utils import parsedate_to_datetime
from typing import TypeVar

import anyio

from ._config import RetryPolicy
from ._exceptions import (
    APIError,
    APIStatusError,
    RateLimitError,
    ResponseValidationError,
    TransportError,
)

__all__ = ["is_retryable_read", "is_retryable_submit", "parse_retry_after", "retrying"]

T = TypeVar("T")

_RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


def is_retryable_read(exc: BaseException) -> bool:
    """Whether an idempotent call (status, result, cancel) may be tried again after ``exc``."""
    if isinstance(exc, TransportError):
        return True
    if isinstance(exc, APIStatusError):
        return exc.status_code in _RETRYABLE_STATUS
    return isinstance(exc, ResponseValidationError)


def is_retryable_submit(exc: BaseException) -> bool:
    """Whether a submit may be sent again after ``exc`` without risking a duplicate job.

    True only when the request provably did not create a job: the connection could not be
    opened, or the server answered 429 (it refused the request).
    """
    if isinstance(exc, TransportError):
        return not exc.connected
    return isinstance(exc, RateLimitError)


def may_have_reached_server(exc: APIError) -> bool:
    """Whether a failed submit may nevertheless have created a job on the server.

    A definite 4xx answer (bad input, auth, not found, 429) says no job was created; a
    transport error after connecting, a 5xx (possibly from a proxy that forwarded the
    request), or an undecodable 2xx body leave the outcome unknown.
    """
    if isinstance(exc, TransportError):
        return exc.connected
    if isinstance(exc, APIStatusError):
        return exc.status_code >= 500 or exc.status_code < 400
    return True


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Parse a ``Retry-After`` header: delta-seconds or an HTTP-date. ``None`` if absent/bad.

    Example:
        >>> parse_retry_after("3")
        3.0
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        return None
    return max(0.0, seconds)


def _never(exc: Exception) -> bool:
    return False


async def retrying(
    call: Callable[[], Awaitable[T]],
    *,
    policy: RetryPolicy,
    attempts: int,
    retryable: Callable[[Exception], bool],
    errors: type[Exception] | tuple[type[Exception], ...],
    paused: Callable[[Exception], bool] = _never,
    on_retry: Callable[[Exception, int, float], None] | None = None,
) -> T:
    """Await ``call()`` until it returns; the one retry loop of submits, reads and downloads.

    After failure number ``n`` (one of ``errors``) that ``retryable`` allows, and while fewer
    than ``attempts`` were made, it waits :meth:`RetryPolicy.delay_for` (``Retry-After``
    capped, else full-jitter backoff) and calls again; ``on_retry(exc, n, delay)`` is told
    first. Errors for which ``paused`` is true (a 429 the client's request budget has
    already paused for) are retried at once and counted apart, up to
    ``policy.rate_limited_attempts``. Anything else is raised as it is.
    """
    attempt = limited = 0
    while True:
        try:
            return await call()
        except errors as exc:
            if paused(exc):
                limited += 1
                if limited >= policy.rate_limited_attempts:
                    raise
                continue
            attempt += 1
            if attempt >= attempts or not retryable(exc):
                raise
            delay = policy.delay_for(exc, attempt - 1)
            if on_retry is not None:
                on_retry(exc, attempt, delay)
            await anyio.sleep(delay)
