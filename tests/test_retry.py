"""The pure retry policy: what is retried, how long to wait, Retry-After parsing."""

from __future__ import annotations

import random
from email.utils import formatdate

import pytest

from runcomfy_async import (
    APIStatusError,
    RateLimitError,
    ResponseValidationError,
    RetryPolicy,
    ServerError,
    TransportError,
)
from runcomfy_async._retry import (
    is_retryable_read,
    is_retryable_submit,
    may_have_reached_server,
    parse_retry_after,
)


def test_retry_after_seconds_and_http_date() -> None:
    """Retry-After is delta-seconds or an HTTP date; junk and absence give None."""
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 0 ") == 0.0
    now = 1_700_000_000.0
    assert parse_retry_after(formatdate(now + 30, usegmt=True), now=now) == pytest.approx(30)
    assert parse_retry_after(formatdate(now - 30, usegmt=True), now=now) == 0.0
    for bad in (None, "", "soon", "nan", "inf"):
        assert parse_retry_after(bad) is None


def test_full_jitter_backoff_bounds() -> None:
    """Backoff draws from [0, min(max, base * 2**n)]."""
    policy = RetryPolicy(backoff_base=0.5, backoff_max=4.0)
    rng = random.Random(1)
    for attempt in range(8):
        ceiling = min(4.0, 0.5 * 2**attempt)
        draws = [policy.backoff(attempt, rng) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in draws) and max(draws) > ceiling * 0.8


def test_retry_after_capped() -> None:
    """A server's Retry-After beyond max_retry_after is capped."""
    policy = RetryPolicy(max_retry_after=10)
    exc = RateLimitError("slow down", status_code=429, retry_after=3600)
    assert policy.delay_for(exc, 0) == 10


def _status(code: int) -> APIStatusError:
    cls = ServerError if code >= 500 else RateLimitError if code == 429 else APIStatusError
    return cls("x", status_code=code)


@pytest.mark.parametrize("code", [408, 429, 500, 502, 503, 504])
def test_reads_retry_transient_statuses(code: int) -> None:
    """Reads retry 408, 429 and 5xx."""
    assert is_retryable_read(_status(code))


@pytest.mark.parametrize("code", [400, 401, 403, 404, 422])
def test_reads_do_not_retry_client_errors(code: int) -> None:
    """Reads do not retry other 4xx."""
    assert not is_retryable_read(_status(code))


def test_reads_retry_transport_and_bad_bodies() -> None:
    """Reads retry broken connections and undecodable bodies."""
    assert is_retryable_read(TransportError("reset"))
    assert is_retryable_read(ResponseValidationError("bad json"))


def test_submit_retried_only_when_provably_not_sent() -> None:
    """A submit is retried after a refused connection or a 429, never after anything else."""
    assert is_retryable_submit(TransportError("refused", connected=False))
    assert is_retryable_submit(_status(429))
    assert not is_retryable_submit(TransportError("reset after sending", connected=True))
    for code in (500, 502, 503, 504, 408):
        assert not is_retryable_submit(_status(code))
    assert may_have_reached_server(_status(503))
    assert may_have_reached_server(ResponseValidationError("no request_id"))
    assert not may_have_reached_server(_status(422))
    assert not may_have_reached_server(TransportError("refused", connected=False))
