"""The :class:`Job` handle: one submitted request, awaitable for its result."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Generator, Iterable
from typing import Any, Protocol

import anyio

from ._exceptions import JobTimeoutError, RunComfyError
from ._states import FINAL_PHASES, Phase
from ._wire import CancelResponse, Result, StatusResponse

__all__ = ["Job", "JobRequests", "JobUpdate", "as_completed", "cancel_queued"]

logger = logging.getLogger("runcomfy_async")

CANCEL_GRACE = 5.0
"""Seconds a best-effort remote cancel may take when a wait is abandoned."""
CANCEL_ALL_GRACE = 10.0
"""Seconds the remote cancels of every queued job may take when a client leaves on an error."""
CANCEL_CONCURRENCY = 16
"""Remote cancels sent at once when a client leaves on an error."""


class JobRequests(Protocol):
    """What a job asks of its client: one request about a job, by its id."""

    async def status(self, request_id: str) -> StatusResponse:
        """The job's current status."""
        ...

    async def result(self, request_id: str) -> Result:
        """The job's result now, or its current state while pending."""
        ...

    async def cancel(self, request_id: str) -> CancelResponse:
        """Ask the server to cancel the job."""
        ...


class JobUpdate:
    """One change of a job's state, as seen by the client.

    Attributes:
        request_id: the job's id.
        phase: ``queued``, ``running``, ``succeeded``, ``failed`` or ``cancelled``.
        queue_position: jobs ahead of it while queued, when the server said.
        at: ``time.monotonic()`` when the client saw the change.
    """

    __slots__ = ("at", "phase", "queue_position", "request_id")

    def __init__(self, request_id: str, phase: Phase, queue_position: int | None, at: float):
        self.request_id = request_id
        self.phase = phase
        self.queue_position = queue_position
        self.at = at

    def __repr__(self) -> str:
        pos = f", queue_position={self.queue_position}" if self.queue_position is not None else ""
        return f"JobUpdate({self.request_id!r}, {self.phase!r}{pos})"


class Job:
    """A submitted job. Await it for its :class:`~runcomfy_async.Result`.

    The handle is cheap: the client's single poller follows every job in flight, so awaiting
    many handles (with ``asyncio.gather``, ``asyncio.as_completed``, an anyio task group or
    :meth:`AsyncClient.as_completed`) costs no extra requests.

    Example:
        >>> job = await client.submit("google/nano-banana-2/text-to-image", {"prompt": "a fox"})
        >>> job.request_id
        '3f2a6c1e-...'
        >>> result = await job          # raises JobFailedError / JobCancelledError
        >>> result.output.urls

    Attributes:
        request_id: the server's id for the job.
        model_id: the model it runs (``None`` for a re-attached job whose model is unknown).
        submitted_at: ``time.monotonic()`` at submit (or at re-attach).
        phase: the last state the client saw (``None`` before the first check).
        queue_position: the last queue position the server reported, if queued.
    """

    __slots__ = (
        "__weakref__",
        "_client",
        "_future",
        "_listeners",
        "model_id",
        "phase",
        "queue_position",
        "request_id",
        "submitted_at",
    )

    def __init__(
        self,
        client: JobRequests,
        request_id: str,
        model_id: str | None,
        future: asyncio.Future[Result],
        submitted_at: float | None = None,
    ):
        self._client = client
        self.request_id = request_id
        self.model_id = model_id
        self._future = future
        self.submitted_at = time.monotonic() if submitted_at is None else submitted_at
        self.phase: Phase | None = None
        self.queue_position: int | None = None
        self._listeners: list[Callable[[JobUpdate], Any]] | None = None

    def __repr__(self) -> str:
        state = self.phase or "submitted"
        return f"<Job {self.request_id} model={self.model_id!r} {state}>"

    def __await__(self) -> Generator[Any, None, Result]:
        return self.wait().__await__()

    def done(self) -> bool:
        """Whether the job has a final outcome (success, failure or cancellation)."""
        return self._future.done()

    def add_done_callback(self, callback: Callable[[asyncio.Future[Result]], object]) -> None:
        """Call ``callback(future)`` once the job has ended (at once if it has).

        The future passed is done: ``future.result()`` returns the result or raises the
        job's error. This costs nothing per job beyond the callback itself; prefer it to
        ``future().add_done_callback`` when following many jobs.
        """
        self._future.add_done_callback(callback)

    def future(self) -> asyncio.Future[Result]:
        """A future that resolves with the job's outcome, e.g. for ``add_done_callback``.

        Cancel-safe: each call returns a shield of the job's own future, so cancelling it
        (or a task awaiting it) leaves the job followed for every other waiter.
        """
        outer = asyncio.shield(self._future)
        if outer is not self._future:
            outer.add_done_callback(_seen)  # like the job's own: a failure is not "unretrieved"
        return outer

    async def wait(
        self, timeout: float | None = None, *, cancel_on_timeout: bool = False
    ) -> Result:
        """Wait for the job's result.

        Args:
            timeout: seconds to wait; ``None`` waits as long as it takes.
            cancel_on_timeout: when the timeout passes, also ask the server to cancel the job.

        Returns:
            The decoded result (status ``succeeded``).

        Raises:
            JobFailedError: the server reports failure.
            JobCancelledError: the job was cancelled.
            JobTimeoutError: ``timeout`` passed first (the job may still run).
            APIError: the job could not be followed (e.g. the token was revoked).
        """
        if timeout is None:
            return await asyncio.shield(self._future)
        try:
            return await asyncio.wait_for(asyncio.shield(self._future), timeout)
        except asyncio.TimeoutError:
            if self._future.done():
                return self._future.result()
            cancelled = False
            if cancel_on_timeout:
                cancelled = await self.cancel_quietly()
            raise JobTimeoutError(
                request_id=self.request_id, timeout=timeout, cancelled_remotely=cancelled
            ) from None

    async def status(self) -> StatusResponse:
        """Ask the server for the job's current status (one request)."""
        return await self._client.status(self.request_id)

    async def result(self) -> Result:
        """Ask the server for the job's result or current state now (one request, no waiting)."""
        return await self._client.result(self.request_id)

    async def cancel(self) -> CancelResponse:
        """Ask the server to cancel the job. Only queued jobs can be cancelled.

        Returns:
            The server's answer; ``.outcome`` is ``"cancelled"`` or ``"not_cancellable"``.
        """
        return await self._client.cancel(self.request_id)

    async def cancel_quietly(self, grace: float = CANCEL_GRACE) -> bool:
        """Best-effort remote cancel, shielded and bounded to ``grace`` seconds.

        Errors are logged, never raised: this runs while something else is already going
        wrong (a cancelled wait, a timeout, an exception leaving the client).

        Returns:
            Whether the server accepted the cancel.
        """
        if self._future.done():
            return False
        with anyio.CancelScope(shield=True), anyio.move_on_after(grace):
            try:
                answer = await self.cancel()
            except RunComfyError as exc:
                logger.warning("remote cancel of %s failed: %s", self.request_id, exc)
                return False
            logger.info("remote cancel of %s: %s", self.request_id, answer.outcome)
            return answer.cancelled
        logger.warning("remote cancel of %s gave no answer within %.1f s", self.request_id, grace)
        return False

    def on_update(self, callback: Callable[[JobUpdate], Any]) -> None:
        """Call ``callback(update)`` each time the job's state changes (queued, running, done).

        Callbacks run in the poller; they must be quick and must not block. Exceptions they
        raise are logged and ignored.
        """
        if self._listeners is None:
            self._listeners = []
        self._listeners.append(callback)

    async def updates(self) -> AsyncIterator[JobUpdate]:
        """Iterate over the job's state changes until it ends (the final change included)."""
        queue: asyncio.Queue[JobUpdate] = asyncio.Queue()
        self.on_update(queue.put_nowait)
        if self.phase is not None:
            yield JobUpdate(self.request_id, self.phase, self.queue_position, time.monotonic())
        while not self._future.done() or not queue.empty():
            getter: asyncio.Future[JobUpdate] = asyncio.ensure_future(queue.get())
            waiting: set[asyncio.Future[Any]] = {getter, self._future}
            try:
                await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            finally:
                if not getter.done():
                    getter.cancel()
            if getter.done() and not getter.cancelled():
                update = getter.result()
                yield update
                if update.phase in FINAL_PHASES:
                    return

    def _notify(self, phase: Phase, queue_position: int | None) -> None:
        """Record a state the poller saw; tell listeners if it changed."""
        if phase == self.phase and queue_position == self.queue_position:
            return
        self.phase = phase
        self.queue_position = queue_position
        if not self._listeners:
            return
        update = JobUpdate(self.request_id, phase, queue_position, time.monotonic())
        for callback in tuple(self._listeners):
            try:
                callback(update)
            except Exception:  # a listener's bug must not stop the poller
                logger.exception("job update callback failed for %s", self.request_id)

    def _set_result(self, result: Result) -> None:
        """End the job with ``result`` (a no-op once it has ended)."""
        if not self._future.done():
            self._future.set_result(result)

    def _fail(self, exc: BaseException) -> None:
        """End the job with ``exc`` (a no-op once it has ended).

        The error counts as seen: a job nobody awaits must not log "exception was never
        retrieved" when it fails.
        """
        if not self._future.done():
            self._future.set_exception(exc)
            self._future.exception()


def _seen(future: asyncio.Future[Result]) -> None:
    if not future.cancelled():
        future.exception()


async def cancel_queued(jobs: list[Job]) -> None:
    """Best-effort remote cancel of the jobs that may still be queued, bounded in time.

    Shielded from cancellation: it runs while a client leaves on an error.
    """
    targets = [j for j in jobs if not j.done() and j.phase in (None, "queued")]
    if not targets:
        return
    logger.info("leaving on an error: cancelling %d queued job(s) remotely", len(targets))
    limiter = anyio.CapacityLimiter(CANCEL_CONCURRENCY)

    async def one(job: Job) -> None:
        async with limiter:
            await job.cancel_quietly()

    with anyio.CancelScope(shield=True), anyio.move_on_after(CANCEL_ALL_GRACE):
        async with anyio.create_task_group() as tg:
            for job in targets:
                tg.start_soon(one, job)


async def as_completed(jobs: Iterable[Job]) -> AsyncIterator[Job]:
    """Yield the given jobs as they finish (successfully or not), each once."""
    done: asyncio.Queue[Job] = asyncio.Queue()
    count = 0

    def notifier(job: Job) -> Callable[[asyncio.Future[Result]], None]:
        return lambda _future: done.put_nowait(job)

    for job in jobs:
        count += 1
        job.add_done_callback(notifier(job))
    for _ in range(count):
        yield await done.get()
