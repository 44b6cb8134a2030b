"""The job handle: its outcome is set only by its own methods, and no waiter can cancel it."""

from __future__ import annotations

import asyncio

import pytest

from runcomfy_async import AsyncClient, JobFailedError, PollSettings
from runcomfy_async.testing import FakeRunComfy

from .conftest import FAST_RETRY, TOKEN

pytestmark = pytest.mark.anyio

T2I = "google/nano-banana-2/text-to-image"


async def test_cancelling_the_future_leaves_the_job_followed(client: AsyncClient) -> None:
    """Cancelling job.future() (or a task awaiting it) never cancels the job for others."""
    job = await client.submit(T2I, {"prompt": "a fox"})
    first = job.future()
    waiter = asyncio.ensure_future(job.future())
    await asyncio.sleep(0)
    first.cancel()
    waiter.cancel()
    result = await job
    assert result.phase == "succeeded"
    assert job.done() and not job.future().cancelled()
    assert job.future().result() is result


async def test_future_of_a_failed_job_is_quiet_when_unawaited(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A future taken for a callback and never awaited logs no 'exception never retrieved'."""
    async with (
        FakeRunComfy(token=TOKEN, duration_mean=0.05, failure_rate=1.0, seed=3) as fake,
        AsyncClient(
            TOKEN, fake.base_url, retry=FAST_RETRY, poll=PollSettings(first_check=0.02)
        ) as client,
    ):
        job = await client.submit(T2I, {"prompt": "a fox"})
        seen: list[bool] = []
        job.future().add_done_callback(lambda f: seen.append(f.done()))
        with pytest.raises(JobFailedError):
            await job
        await asyncio.sleep(0)
    assert seen == [True]
    assert "never retrieved" not in caplog.text


async def test_done_callback_gets_the_finished_outcome(client: AsyncClient) -> None:
    """add_done_callback calls back once, with a done future holding the job's result."""
    job = await client.submit(T2I, {"prompt": "a fox"})
    outcomes: list[object] = []
    job.add_done_callback(lambda f: outcomes.append(f.result()))
    result = await job
    await asyncio.sleep(0)
    assert outcomes == [result]
    job.add_done_callback(lambda f: outcomes.append(f.done()))  # already ended: soon called
    await asyncio.sleep(0)
    assert outcomes == [result, True]
