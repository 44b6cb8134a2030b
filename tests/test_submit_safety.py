"""A submit is billed: it is retried only when it provably created no job."""

from __future__ import annotations

import socket

import pytest

from runcomfy_async import (
    AsyncClient,
    RetryPolicy,
    SubmissionUncertainError,
    TransportError,
)
from runcomfy_async.testing import FakeRunComfy

from .conftest import FAST_RETRY, TOKEN

pytestmark = pytest.mark.anyio

T2I = "google/nano-banana-2/text-to-image"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_refused_connection_is_retried_then_raised() -> None:
    """A refused connection never reached a server: retried, then a plain TransportError."""
    async with AsyncClient(TOKEN, f"http://127.0.0.1:{_closed_port()}", retry=FAST_RETRY) as client:
        with pytest.raises(TransportError) as info:
            await client.submit(T2I, {"prompt": "x"})
        assert not isinstance(info.value, SubmissionUncertainError)
        assert info.value.connected is False
        assert client.requests["submit"] == FAST_RETRY.submit_attempts


async def test_429_on_submit_is_retried(client: AsyncClient, fake: FakeRunComfy) -> None:
    """A 429 refused the submit, so it is sent again; one job results."""
    fake.inject("submit", status=429, headers={"Retry-After": "0"})
    job = await client.submit(T2I, {"prompt": "x"})
    assert fake.requests["submit"] == 2 and fake.jobs_created == 1
    await job


@pytest.mark.parametrize(
    ("script", "created"),
    [
        (
            {"status": 503, "body": "<html><title>503</title></html>", "content_type": "text/html"},
            0,
        ),
        ({"status": 500}, 0),
        ({"reset": True, "after": True}, 1),
        ({"status": 200, "body": {"status": "in_queue"}, "after": True}, 1),
        ({"status": 200, "body": b"{not json", "after": True}, 1),
        ({"status": 502, "after": True}, 1),
    ],
)
async def test_ambiguous_submit_is_never_retried(
    client: AsyncClient, fake: FakeRunComfy, script: dict[str, object], created: int
) -> None:
    """5xx, a reset after sending, or an answer without request_id: uncertain, sent once."""
    fake.inject("submit", **script)  # type: ignore[arg-type]
    with pytest.raises(SubmissionUncertainError) as info:
        await client.submit(T2I, {"prompt": "billed once"})
    err = info.value
    assert err.model_id == T2I and err.inputs == {"prompt": "billed once"}
    assert "may exist" in str(err)
    assert fake.requests["submit"] == 1
    assert fake.jobs_created == created


async def test_timeout_after_sending_is_uncertain(fake: FakeRunComfy) -> None:
    """A submit whose answer outlasts the read timeout is uncertain and not retried."""
    async with AsyncClient(TOKEN, fake.base_url, read_timeout=0.2, retry=RetryPolicy()) as client:
        fake.inject("submit", delay=1.0, after=True)
        with pytest.raises(SubmissionUncertainError) as info:
            await client.submit(T2I, {"prompt": "x"})
        assert isinstance(info.value.__cause__, TimeoutError)
    assert fake.requests["submit"] == 1


async def test_definite_refusals_raise_as_is(client: AsyncClient, fake: FakeRunComfy) -> None:
    """A 4xx answer says no job was made: its own error, not 'uncertain'."""
    fake.inject("submit", status=400, body={"error_code": 400002, "error_message": "no balance"})
    with pytest.raises(Exception, match="no balance") as info:
        await client.submit(T2I, {"prompt": "x"})
    assert not isinstance(info.value, SubmissionUncertainError)
    assert fake.requests["submit"] == 1


async def test_429s_do_not_use_up_submit_attempts(client: AsyncClient, fake: FakeRunComfy) -> None:
    """More 429s than submit_attempts are still waited out: one job, never an error."""
    fake.inject(
        "submit", status=429, headers={"Retry-After": "0"}, times=FAST_RETRY.submit_attempts + 2
    )
    job = await client.submit(T2I, {"prompt": "x"})
    assert fake.jobs_created == 1
    assert fake.requests["submit"] == FAST_RETRY.submit_attempts + 3
    await job
