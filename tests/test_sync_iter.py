"""SyncClient.as_completed and SyncJob.updates, like their async twins, from plain threads."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from runcomfy_async import PollSettings, SyncClient
from runcomfy_async.testing import FakeRunComfy

from .conftest import FAST_RETRY, TOKEN

T2I = "google/nano-banana-2/text-to-image"


@pytest.fixture
def emulator_url() -> Iterator[str]:
    """An emulator served by its own event loop in a background thread."""
    box: list[str] = []
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def serve() -> None:
        async with FakeRunComfy(token=TOKEN, duration_mean=0.05, seed=11) as fake:
            box.append(fake.base_url)
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),))
    thread.start()
    try:
        while not box:
            threading.Event().wait(0.01)
        yield box[0]
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()


def test_as_completed_yields_every_job_once(emulator_url: str) -> None:
    """Every submitted job comes back once, finished, as the same SyncJob object."""
    poll = PollSettings(first_check=0.02)
    with SyncClient(TOKEN, emulator_url, retry=FAST_RETRY, poll=poll) as client:
        jobs = [client.submit(T2I, {"prompt": f"fox {i}"}) for i in range(5)]
        done = list(client.as_completed(jobs))
        assert sorted(map(id, done)) == sorted(map(id, jobs))
        assert all(job.done() for job in done)
        assert all(job.result().status == "succeeded" for job in done)


def test_updates_end_with_the_final_state(emulator_url: str) -> None:
    """A job's updates arrive in order and end with its final state."""
    poll = PollSettings(first_check=0.02)
    with SyncClient(TOKEN, emulator_url, retry=FAST_RETRY, poll=poll) as client:
        job = client.submit(T2I, {"prompt": "a fox"})
        phases = [update.phase for update in job.updates()]
        assert phases and phases[-1] == "succeeded"
        assert job.done()
