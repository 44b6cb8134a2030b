"""``SyncClient``: the same verbs for scripts that are not async, over one background loop.

A thin layer: an anyio blocking portal runs one event loop in a background thread, and an
:class:`AsyncClient` lives in it for the whole ``with`` block. Every method hands the call
to that loop and waits for its answer. There is no second copy of any logic.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping
from types import TracebackType
from typing import Any, TypeVar

import anyio
import anyio.abc
from anyio.from_thread import BlockingPortal, start_blocking_portal

from ._batch import BatchResult
from ._client import AsyncClient
from ._jobs import Job, JobUpdate
from ._wire import CancelResponse, Result, StatusResponse
from .models import ModelInput

__all__ = ["SyncClient", "SyncJob"]

T = TypeVar("T")


def _blocking(portal: BlockingPortal, items: AsyncIterator[T]) -> Iterator[T]:
    """Iterate an async iterator of the portal's loop from this thread; closing closes it."""
    try:
        while True:
            try:
                yield portal.call(items.__anext__)
            except StopAsyncIteration:
                return
    finally:
        aclose = getattr(items, "aclose", None)
        if aclose is not None:
            portal.call(aclose)


class SyncJob:
    """A submitted job, for synchronous code. ``job.result()`` waits for its outcome."""

    def __init__(self, portal: BlockingPortal, job: Job):
        self._portal = portal
        self._job = job
        self.request_id = job.request_id
        self.model_id = job.model_id

    def __repr__(self) -> str:
        return f"<SyncJob {self.request_id} model={self.model_id!r}>"

    def result(self, timeout: float | None = None, *, cancel_on_timeout: bool = False) -> Result:
        """Wait for the job's result (see :meth:`Job.wait`)."""
        return self._portal.call(self._wait, timeout, cancel_on_timeout)

    async def _wait(self, timeout: float | None, cancel_on_timeout: bool) -> Result:
        return await self._job.wait(timeout, cancel_on_timeout=cancel_on_timeout)

    def done(self) -> bool:
        """Whether the job has a final outcome."""
        return self._job.done()

    def status(self) -> StatusResponse:
        """Ask the server for the job's status now."""
        return self._portal.call(self._job.status)

    def cancel(self) -> CancelResponse:
        """Ask the server to cancel the job (only queued jobs can be cancelled)."""
        return self._portal.call(self._job.cancel)

    def updates(self) -> Iterator[JobUpdate]:
        """Yield the job's state changes until it ends (see :meth:`Job.updates`).

        Example:
            >>> for update in job.updates():
            ...     print(update.phase, update.queue_position)
        """
        return _blocking(self._portal, self._job.updates())


class SyncClient:
    """A blocking client with the verbs of :class:`AsyncClient`; use it in a ``with`` block.

    Example:
        >>> from runcomfy_async import SyncClient
        >>> with SyncClient() as client:
        ...     result = client.run("google/nano-banana-2/text-to-image", {"prompt": "a fox"})
        ...     print(result.output.urls)

    Args:
        api_token: as for :class:`AsyncClient`.
        base_url: as for :class:`AsyncClient`.
        **options: every keyword option of :class:`AsyncClient`.
    """

    def __init__(self, api_token: str | None = None, base_url: str | None = None, **options: Any):
        # Build (and so validate) the async client now, in the caller's thread: bad tokens
        # and URLs fail here, before any thread or loop starts.
        self._client = AsyncClient(api_token, base_url, **options)
        self._portal_cm: Any = None
        self._portal: BlockingPortal | None = None
        self._stop: anyio.Event | None = None
        self._life: Any = None

    def __repr__(self) -> str:
        return f"<SyncClient over {self._client!r}>"

    def __enter__(self) -> SyncClient:
        self._portal_cm = start_blocking_portal("asyncio")
        self._portal = self._portal_cm.__enter__()
        try:
            self._life, _ = self._portal.start_task(self._serve)
        except BaseException:
            self._portal_cm.__exit__(None, None, None)
            raise
        return self

    async def _serve(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        # The client is entered and left in this one task, as its task group requires.
        self._stop = anyio.Event()
        async with self._client:
            task_status.started()
            await self._stop.wait()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        portal = self._require()
        stop = self._stop
        if stop is not None:
            portal.call(stop.set)
        try:
            self._life.result()
        finally:
            self._portal_cm.__exit__(exc_type, exc, tb)
            self._portal = None

    def _require(self) -> BlockingPortal:
        if self._portal is None:
            raise RuntimeError("use the client inside 'with SyncClient(...) as client:'")
        return self._portal

    def submit(self, model: str | ModelInput, inputs: Mapping[str, Any] | None = None) -> SyncJob:
        """Submit a job and return its handle at once (see :meth:`AsyncClient.submit`)."""
        portal = self._require()
        return SyncJob(portal, portal.call(self._client.submit, model, inputs))

    def run(
        self,
        model: str | ModelInput,
        inputs: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> Result:
        """Submit a job and wait for its result (see :meth:`AsyncClient.run`)."""
        result: Result = self._require().call(self._run, model, inputs, timeout)
        return result

    async def _run(
        self, model: str | ModelInput, inputs: Mapping[str, Any] | None, timeout: float | None
    ) -> Result:
        return await self._client.run(model, inputs, timeout=timeout)

    def status(self, request_id: str) -> StatusResponse:
        """A job's status now (see :meth:`AsyncClient.status`)."""
        return self._require().call(self._client.status, request_id)

    def result(self, request_id: str) -> Result:
        """A job's result or current state now (see :meth:`AsyncClient.result`)."""
        return self._require().call(self._client.result, request_id)

    def cancel(self, request_id: str) -> CancelResponse:
        """Cancel a queued job (see :meth:`AsyncClient.cancel`)."""
        return self._require().call(self._client.cancel, request_id)

    def job(self, request_id: str, model_id: str | None = None) -> SyncJob:
        """Re-attach to a job submitted earlier (see :meth:`AsyncClient.job`)."""
        portal = self._require()
        return SyncJob(portal, portal.call(self._attach, request_id, model_id))

    async def _attach(self, request_id: str, model_id: str | None) -> Job:
        return self._client.job(request_id, model_id)

    def as_completed(self, jobs: Iterable[SyncJob]) -> Iterator[SyncJob]:
        """Yield the given jobs as they finish (see :meth:`AsyncClient.as_completed`).

        Example:
            >>> jobs = [client.submit(MODEL, {"prompt": p}) for p in prompts]
            >>> for job in client.as_completed(jobs):
            ...     print(job.request_id, job.result().urls)
        """
        portal = self._require()
        by_job = {id(job._job): job for job in jobs}
        inner = self._client.as_completed(job._job for job in by_job.values())
        for done in _blocking(portal, inner):
            yield by_job[id(done)]

    def map(
        self, model: str | None, inputs: Iterable[Any] | AsyncIterable[Any], **options: Any
    ) -> Iterator[BatchResult]:
        """Run a model over many inputs, yielding one result per input as they finish.

        Takes the options of :meth:`AsyncClient.map`. Closing the iterator early stops the
        batch (jobs already submitted keep running on the server).
        """
        portal = self._require()
        runner = portal.call(lambda: self._client.map(model, inputs, **options))
        results = runner.__aiter__()
        try:
            while True:
                try:
                    yield portal.call(results.__anext__)
                except StopAsyncIteration:
                    return
        finally:
            portal.call(runner.aclose)
