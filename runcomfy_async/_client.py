"""``AsyncClient``: the session manager every other part of the library stands on."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import anyio
import anyio.abc
import msgspec

from ._batch import BatchRunner
from ._budget import Kind, RequestBudget
from ._config import PollSettings, check_model_id, check_request_id, resolve_base_url, resolve_token
from ._exceptions import (
    APIError,
    APIStatusError,
    ClientClosedError,
    ConfigError,
    RateLimitError,
    ResponseValidationError,
    SubmissionUncertainError,
    TransportError,
)
from ._http import ApiTransport
from ._jobs import Job
from ._learned import resolve_cache
from ._pacer import SubmitPacer
from ._poller import NOT_READY, Poller
from ._retry import RetryPolicy, is_retryable_read, is_retryable_submit, may_have_reached_server
from ._wire import (
    CANCEL_DECODER,
    RESULT_DECODER,
    STATUS_DECODER,
    SUBMIT_DECODER,
    CancelResponse,
    Result,
    StatusResponse,
    SubmitResponse,
)
from .models import ModelInput, to_payload, validate_inputs

__all__ = ["AsyncClient"]

logger = logging.getLogger("runcomfy_async")

T = TypeVar("T")

MAX_REQUEST_BYTES = 64 * 2**20
"""The largest submit body sent (RunComfy's request limit as its own tools assume it)."""


class AsyncClient:
    """An asyncio client for the RunComfy Model API.

    One client owns one connection pool, one request budget and one poller task that follows
    every job in flight. Use it as an async context manager.

    Example:
        >>> async with AsyncClient() as client:   # token from RUNCOMFY_API_TOKEN
        ...     result = await client.run(
        ...         "google/nano-banana-2/text-to-image", {"prompt": "a red fox"}
        ...     )
        ...     print(result.output.urls)

    Args:
        api_token: the RunComfy API token; default: the first of ``RUNCOMFY_API_TOKEN``,
            ``RUNCOMFY_TOKEN``, ``RUNCOMFY_API_KEY`` that is set.
        base_url: the API origin; default ``RUNCOMFY_BASE_URL`` or
            ``https://model-api.runcomfy.net``.
        connect_timeout: seconds to open a connection.
        read_timeout: seconds to wait on each read of an answer.
        max_connections: size of the keep-alive connection pool.
        max_requests_per_second: one budget shared by submit, poll and cancel; ``None`` means
            no client-side limit (429s are still honoured).
        rate_burst: requests allowed at once after an idle spell (default: 90 % of one
            second's worth; see :data:`runcomfy_async._budget.BURST_SHARE`).
        retry: how reads are retried and how long to back off.
        poll: knobs of the adaptive poller (see :class:`PollSettings`; ``ratio`` trades
            requests for latency).
        allow_insecure: permit ``http://`` to a host that is not loopback.
        cancel_on_error: when the ``async with`` block exits with an exception, cancel the
            jobs still queued on the server.
        max_response_bytes: answers larger than this are refused without reading them whole.
        pace_submits: space submits so this process can check every job it creates on time
            (see :mod:`runcomfy_async._pacer`). It binds only when the event loop, not the
            API, limits the rate: against the sandbox emulator, or when the loop is busy
            with other work (then never below 200 submits a second).
        cache: keep what the client learns (job durations per model, queue speed, the
            learned rate limit) for the next client: ``True`` in the user's cache folder
            (``RUNCOMFY_CACHE_DIR``, else the platform's; ``RUNCOMFY_CACHE=off`` turns it
            off), a path for that folder, ``False`` for off. See
            :mod:`runcomfy_async._learned`.
    """

    def __init__(
        self,
        api_token: str | None = None,
        base_url: str | None = None,
        *,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        max_connections: int = 64,
        max_requests_per_second: float | None = None,
        rate_burst: float | None = None,
        retry: RetryPolicy | None = None,
        poll: PollSettings | None = None,
        allow_insecure: bool = False,
        cancel_on_error: bool = True,
        max_response_bytes: int = 8 * 2**20,
        pace_submits: bool = True,
        cache: bool | str | os.PathLike[str] = True,
    ):
        if connect_timeout <= 0 or read_timeout <= 0:
            raise ConfigError("timeouts must be > 0 seconds")
        if max_connections < 1:
            raise ConfigError("max_connections must be >= 1")
        try:
            self._budget = RequestBudget(
                max_requests_per_second,
                burst=rate_burst,
                max_concurrency=max_connections,
                adaptive=True,
            )
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        self.base_url = resolve_base_url(base_url, allow_insecure=allow_insecure)
        self._transport = ApiTransport(
            base_url=self.base_url,
            token=resolve_token(api_token),
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_connections=max_connections,
            max_body_bytes=max_response_bytes,
        )
        self.retry = retry or RetryPolicy()
        self.poll_settings = poll or PollSettings()
        self.cancel_on_error = cancel_on_error
        self.requests: collections.Counter[str] = collections.Counter()
        """Requests sent, by endpoint (``submit``, ``status``, ``result``, ``cancel``)."""
        self.rate_limited = 0
        """How many answers were 429."""
        self._pacer = SubmitPacer(slots=max_connections) if pace_submits else None
        self._cache = resolve_cache(cache)
        self._poller: Poller | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._closed = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("open" if self._poller else "new")
        return f"<AsyncClient {self.base_url} {state}>"

    # ----- lifecycle ----------------------------------------------------------------------

    async def __aenter__(self) -> AsyncClient:
        if self._closed or self._poller is not None:
            raise RuntimeError("an AsyncClient can be entered only once")
        await self._transport.open()
        known = self._cache.load(self.base_url)
        self._budget.start_from(known.rate_limit)
        self._poller = Poller(
            fetch_result=self._poll_result,
            fetch_status=self.status_once,
            settings=self.poll_settings,
            retry=self.retry,
            redact=self._transport.redact_value,
            known=known.models,
        )
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        try:
            await tg.start(self._poller.run)
        except BaseException:
            await self._shutdown(None, None, None)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        await self._shutdown(exc_type, exc, tb)
        return None

    async def _shutdown(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._closed:
            return
        poller = self._poller
        try:
            if exc_type is not None and self.cancel_on_error and poller is not None:
                await self._cancel_queued(poller.jobs())
        finally:
            self._closed = True
            self._save_learned()
            if self._tg is not None:
                self._tg.cancel_scope.cancel()
                await self._tg.__aexit__(None, None, None)
            if poller is not None:
                for job in poller.jobs():
                    if not job.done():
                        job._future.set_exception(ClientClosedError(request_id=job.request_id))
                        job._future.exception()
            await self._transport.close()

    def _save_learned(self) -> None:
        """Hand what this client learned to the next one (see the ``cache`` option)."""
        adaptive = self._budget.adaptive
        rate = adaptive.limit if adaptive is not None and adaptive.confident else None
        models = self._poller.knowledge() if self._poller is not None else {}
        self._cache.save(self.base_url, models, rate)

    async def _cancel_queued(self, jobs: list[Job]) -> None:
        """Best-effort remote cancel of jobs that may still be queued, bounded in time."""
        targets = [j for j in jobs if not j.done() and j.phase in (None, "queued")]
        if not targets:
            return
        logger.info("leaving on an error: cancelling %d queued job(s) remotely", len(targets))
        limiter = anyio.CapacityLimiter(16)

        async def one(job: Job) -> None:
            async with limiter:
                await job.cancel_quietly()

        with anyio.CancelScope(shield=True), anyio.move_on_after(10):
            async with anyio.create_task_group() as tg:
                for job in targets:
                    tg.start_soon(one, job)

    def _require_open(self) -> Poller:
        if self._poller is None or self._closed:
            raise RuntimeError("use the client inside 'async with AsyncClient(...) as client:'")
        return self._poller

    # ----- one request --------------------------------------------------------------------

    async def _once(
        self,
        kind: Kind,
        endpoint: str,
        method: str,
        path: str,
        decode: Callable[[bytes], T],
        body: bytes | None = None,
        sent: list[float] | None = None,
        before_send: Callable[[], object] | None = None,
    ) -> T:
        """One budgeted request, decoded; a 429 pauses the whole client before re-raising.

        When ``sent`` is given, the moment the request left is appended to it;
        ``before_send`` is called once the budget granted the request, just before it leaves.
        """
        await self._budget.acquire(kind)
        try:
            if kind == "submit":
                self._require_open()  # closed while it waited: nothing sent or journaled
            if before_send is not None:
                before_send()
            self.requests[endpoint] += 1
            sent_at = time.monotonic()
            if sent is not None:
                sent.append(sent_at)
            reply = await self._transport.send(method, path, body)
        finally:
            self._budget.release()
            if self._pacer is not None:
                self._pacer.observe()
        try:
            return self._transport.decode(reply, decode, method, path)
        except RateLimitError as exc:
            self.rate_limited += 1
            self._budget.rate_limited(
                self.retry.delay_for(exc, 0)
                if exc.retry_after is not None
                else self.retry.backoff(2),
                sent_at,
            )
            raise

    async def _read(self, endpoint: str, method: str, path: str, decode: Callable[[bytes], T]) -> T:
        """An idempotent call, retried with backoff on what :func:`is_retryable_read` allows."""
        attempt = limited = 0
        while True:
            try:
                return await self._once("read", endpoint, method, path, decode)
            except RateLimitError:
                # The budget has paused for it; 429s have their own, larger allowance.
                limited += 1
                if limited >= self.retry.rate_limited_attempts:
                    raise
            except APIError as exc:
                attempt += 1
                if attempt >= self.retry.max_attempts or not is_retryable_read(exc):
                    raise
                await asyncio.sleep(self.retry.delay_for(exc, attempt - 1))

    # ----- the API ------------------------------------------------------------------------

    async def submit(
        self,
        model: str | ModelInput,
        inputs: Mapping[str, Any] | None = None,
        *,
        before_send: Callable[[], object] | None = None,
    ) -> Job:
        """Submit a job and return its handle as soon as the server has accepted it.

        When the client creates jobs faster than it could check them, the submit first waits
        for a turn (see ``pace_submits``).

        Args:
            model: a model id such as ``"google/nano-banana-2/text-to-image"``, or a typed input
                Struct from :mod:`runcomfy_async.models` (then ``inputs`` must be omitted).
            inputs: the model's inputs. For a model with a typed Struct they are validated
                before anything is sent; any other model id is passed through as is.
            before_send: called just before the request leaves (after validation, the
                pacing turn and the request budget), e.g. to journal "submitting"; if the
                call is cancelled before that, nothing was sent.

        Returns:
            A :class:`Job`; await it for the result.

        Raises:
            InputValidationError: the inputs break the model's schema (nothing was sent).
            ConfigError: malformed model id (nothing was sent).
            SubmissionUncertainError: the request may have reached the server but its answer
                was lost; it is never retried, since a duplicate job is billed.
            APIStatusError: the API refused the job (e.g. 401, 404, 422).
        """
        poller = self._require_open()
        model_id, body = self._encode(model, inputs)
        sent: list[float] = []
        async with self._submit_turn(poller):
            answer = await self._send_submit(model, inputs, model_id, body, sent, before_send)
            # The job was created somewhere between sending and the answer: take the midpoint
            # as its start, which is what the poller's clock for this job counts from.
            started = (sent[-1] + time.monotonic()) / 2
        try:
            check_request_id(answer.request_id)
        except ConfigError as exc:
            # A job may exist, but following it would send authenticated requests to a path
            # the id picks: report it as uncertain instead of following it.
            raise SubmissionUncertainError(
                str(exc), model_id=model_id, inputs=inputs, request_id=None
            ) from None
        future = asyncio.get_running_loop().create_future()
        job = Job(self, answer.request_id, model_id, future, submitted_at=started)
        poller.track(job)
        return job

    def _submit_turn(self, poller: Poller) -> contextlib.AbstractAsyncContextManager[None]:
        """The pacer's turn for one submit (see :mod:`runcomfy_async._pacer`), if pacing."""
        if self._pacer is None:
            return contextlib.nullcontext()
        return self._pacer.turn(lambda: poller.requests_per_job)

    async def _send_submit(
        self,
        model: str | ModelInput,
        inputs: Mapping[str, Any] | None,
        model_id: str,
        body: bytes,
        sent: list[float],
        before_send: Callable[[], object] | None,
    ) -> SubmitResponse:
        """The submit request, re-sent only when it surely did not reach the server."""
        path = f"/v1/models/{model_id}"
        attempt = limited = 0
        while True:
            try:
                return await self._once(
                    "submit",
                    "submit",
                    "POST",
                    path,
                    SUBMIT_DECODER.decode,
                    body,
                    sent,
                    before_send if not sent else None,
                )
            except RateLimitError:
                # Refused, so no job: safe to send again once the budget's pause is over.
                limited += 1
                if limited >= self.retry.rate_limited_attempts:
                    raise
            except APIError as exc:
                attempt += 1
                if is_retryable_submit(exc) and attempt < self.retry.submit_attempts:
                    await asyncio.sleep(self.retry.delay_for(exc, attempt - 1))
                    continue
                if isinstance(exc, (TransportError, ResponseValidationError, APIStatusError)) and (
                    may_have_reached_server(exc)
                ):
                    raise SubmissionUncertainError(
                        exc.message,
                        url=exc.url,
                        model_id=model_id,
                        inputs=_inputs_of(model, inputs),
                    ) from exc
                raise

    def _encode(
        self, model: str | ModelInput, inputs: Mapping[str, Any] | None
    ) -> tuple[str, bytes]:
        if isinstance(model, ModelInput):
            if inputs is not None:
                raise ConfigError("pass either a typed model input or (model_id, inputs), not both")
            model_id = type(model).model_id
            # Building a Struct directly checks nothing: validate, then send only non-defaults.
            body = msgspec.json.encode(to_payload(model.validated()))
        else:
            model_id = check_model_id(model)
            data = {} if inputs is None else inputs
            if not isinstance(data, Mapping):
                raise ConfigError(f"inputs must be a mapping, got {type(data).__name__}")
            validate_inputs(model_id, data)
            try:
                body = msgspec.json.encode(data)
            except (TypeError, msgspec.EncodeError) as exc:
                raise ConfigError(f"inputs are not JSON-serialisable: {exc}") from None
        if len(body) > MAX_REQUEST_BYTES:
            raise ConfigError(
                f"request body of {len(body)} bytes exceeds the {MAX_REQUEST_BYTES}-byte limit"
            )
        return model_id, body

    async def status(self, request_id: str) -> StatusResponse:
        """The job's current status (retried on transient errors).

        Returns:
            A Struct with ``.status`` (``in_queue``, ``in_progress``, ``completed``,
            ``cancelled``) and ``.queue_position`` while queued.
        """
        path = f"/v1/requests/{check_request_id(request_id)}/status"
        self._require_open()
        return await self._read("status", "GET", path, STATUS_DECODER.decode)

    async def status_once(self, request_id: str) -> StatusResponse:
        """One status request, no retry (the poller reschedules instead)."""
        path = f"/v1/requests/{check_request_id(request_id)}/status"
        return await self._once("read", "status", "GET", path, STATUS_DECODER.decode)

    async def result(self, request_id: str) -> Result:
        """The job's result now, or its current state while it is pending (no waiting).

        While pending, ``.status`` is ``in_queue`` or ``in_progress`` (``pending`` when the
        server only says "not ready") and ``.output`` is ``None``. A failed job is returned,
        not raised: look at ``.status`` and ``.error``. To wait, await the job instead.
        """
        path = f"/v1/requests/{check_request_id(request_id)}/result?include_cost=true"
        self._require_open()
        try:
            return await self._read("result", "GET", path, RESULT_DECODER.decode)
        except APIStatusError as exc:
            if exc.error_code == NOT_READY:
                return Result(status="pending", request_id=request_id)
            raise

    async def _poll_result(self, request_id: str) -> Result:
        path = f"/v1/requests/{request_id}/result?include_cost=true"
        return await self._once("read", "result", "GET", path, RESULT_DECODER.decode)

    async def cancel(self, request_id: str) -> CancelResponse:
        """Ask the server to cancel a job; only queued jobs can be cancelled.

        Returns:
            A Struct whose ``.outcome`` is ``"cancelled"`` or ``"not_cancellable"``.
        """
        path = f"/v1/requests/{check_request_id(request_id)}/cancel"
        poller = self._require_open()
        answer = await self._read("cancel", "POST", path, CANCEL_DECODER.decode)
        if answer.cancelled:
            poller.resolve_cancelled(request_id)
        return answer

    async def run(
        self,
        model: str | ModelInput,
        inputs: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,
        cancel_on_timeout: bool = True,
    ) -> Result:
        """Submit a job and wait for its result.

        If the task running this is cancelled while the job waits, one best-effort remote
        cancel is sent for the job (shielded, bounded to a few seconds).

        Args:
            model: a model id or a typed input Struct (see :meth:`submit`).
            inputs: the inputs, with a model id.
            timeout: seconds to wait for the result; ``None`` waits as long as it takes.
            cancel_on_timeout: on timeout, also cancel the job on the server.

        Raises:
            JobFailedError, JobCancelledError, JobTimeoutError: the job ended badly.
            InputValidationError, ConfigError, APIError: as for :meth:`submit`.
        """
        job = await self.submit(model, inputs)
        try:
            return await job.wait(timeout, cancel_on_timeout=cancel_on_timeout)
        except anyio.get_cancelled_exc_class():
            await job.cancel_quietly()
            raise

    def job(self, request_id: str, model_id: str | None = None) -> Job:
        """Re-attach to a job submitted earlier (by this process or another) and follow it.

        Args:
            request_id: the job's id.
            model_id: its model, if known (helps the poller's estimates).

        Returns:
            The job's handle; the same handle if this client already follows it.
        """
        poller = self._require_open()
        check_request_id(request_id)
        if model_id is not None:
            check_model_id(model_id)
        existing = poller.get(request_id)
        if existing is not None:
            return existing
        job = Job(self, request_id, model_id, asyncio.get_running_loop().create_future())
        poller.track(job, check_now=True)
        return job

    async def as_completed(self, jobs: Iterable[Job]) -> AsyncIterator[Job]:
        """Yield the given jobs as they finish (successfully or not); await each for its result.

        Example:
            >>> async for job in client.as_completed(jobs):
            ...     try:
            ...         print((await job).output.urls)
            ...     except JobFailedError as exc:
            ...         print(job.request_id, "failed:", exc.error)
        """
        done: asyncio.Queue[Job] = asyncio.Queue()
        count = 0

        def notifier(job: Job) -> Callable[[asyncio.Future[Result]], None]:
            return lambda _future: done.put_nowait(job)

        for job in jobs:
            count += 1
            job._future.add_done_callback(notifier(job))
        for _ in range(count):
            yield await done.get()

    def map(
        self,
        model: str | None,
        inputs: Iterable[Any] | AsyncIterable[Any],
        *,
        max_in_flight: int = 64,
        ordered: bool = False,
        journal: str | os.PathLike[str] | None = None,
        fsync: bool = False,
        download_to: str | os.PathLike[str] | None = None,
        resubmit_uncertain: bool = False,
        max_downloads: int = 8,
    ) -> BatchRunner:
        """Run ``model`` over many inputs; iterate the runner for one result per input.

        Inputs are read lazily (an iterable or async iterable of dicts, typed Structs, or
        ``(key, inputs)`` pairs). A failed input is a result with its error, never the end
        of the batch. With a ``journal``, a killed batch resumes: finished inputs are
        skipped, submitted ones are polled again, never resubmitted.

        Example:
            >>> async with client.map(MODEL, prompts_as_dicts, max_in_flight=200) as batch:
            ...     async for res in batch:
            ...         print(res.index, res.status, res.urls)

        See :class:`BatchRunner` for every argument.
        """
        self._require_open()
        return BatchRunner(
            self,
            model,
            inputs,
            max_in_flight=max_in_flight,
            ordered=ordered,
            journal=None if journal is None else Path(journal),
            fsync=fsync,
            download_to=None if download_to is None else Path(download_to),
            resubmit_uncertain=resubmit_uncertain,
            max_downloads=max_downloads,
        )

    @property
    def jobs_in_flight(self) -> int:
        """How many jobs the poller follows now."""
        return self._poller.in_flight if self._poller is not None else 0

    @property
    def pacer(self) -> SubmitPacer | None:
        """The submit pacer (measured cost per request, submits paced); ``None`` if disabled."""
        return self._pacer

    @property
    def budget(self) -> RequestBudget:
        """The client's shared request budget (rate, pause state, grants by kind)."""
        return self._budget


def _inputs_of(model: str | ModelInput, inputs: Mapping[str, Any] | None) -> Any:
    return to_payload(model) if isinstance(model, ModelInput) else inputs
