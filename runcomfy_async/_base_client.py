"""``BaseClient``: the session manager every other part of the library stands on."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any, TypeVar

import anyio
import anyio.abc

from ._budget import Kind, RequestBudget
from ._config import (
    PollSettings,
    RetryPolicy,
    check_model_id,
    check_request_id,
    resolve_base_url,
    resolve_token,
)
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
from ._jobs import Job, cancel_queued
from ._learned import resolve_cache
from ._live_catalog import LiveCatalog
from ._media import Uploader
from ._netopts import check_headers, check_proxy
from ._pacer import SubmitPacer
from ._poller import NOT_READY, Poller
from ._prepare import check_submit, encode_inputs
from ._retry import (
    is_retryable_read,
    is_retryable_submit,
    may_have_reached_server,
    retrying,
)
from ._submit import check_answer, inputs_of
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
from .models import ModelInput

__all__ = ["BaseClient"]

logger = logging.getLogger("runcomfy_async")

T = TypeVar("T")
_C = TypeVar("_C", bound="BaseClient")


class BaseClient:
    """The client without its batch entry: session, budget, poller and the API's calls.

    :class:`~runcomfy_async.AsyncClient` adds :meth:`~runcomfy_async.AsyncClient.map` on
    top; the batch runner is built on this class, so it never depends on the client that
    offers it. The arguments are :class:`~runcomfy_async.AsyncClient`'s.
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
        uploader: Uploader | None = None,
        check_catalog: bool = True,
        proxy: str | None = None,
        default_headers: Mapping[str, str] | None = None,
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
            proxy=check_proxy(proxy),
            headers=check_headers(default_headers),
        )
        self.proxy = check_proxy(proxy)  # also the batch downloads' (None: the environment's)
        self._uploader = uploader
        self.retry = retry or RetryPolicy()
        self.poll_settings = poll or PollSettings()
        self.cancel_on_error = cancel_on_error
        self.requests: collections.Counter[str] = collections.Counter()
        """Requests sent, by endpoint (``submit``, ``status``, ``result``, ``cancel``)."""
        self.rate_limited = 0
        """How many answers were 429."""
        self._pacer = SubmitPacer(slots=max_connections) if pace_submits else None
        self._cache = resolve_cache(cache)
        self._catalog = LiveCatalog.for_client(self, self._cache.path, enabled=check_catalog)
        self._poller: Poller | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._closed = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("open" if self._poller else "new")
        return f"<{type(self).__name__} {self.base_url} {state}>"

    # ----- lifecycle ----------------------------------------------------------------------

    async def __aenter__(self: _C) -> _C:
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
                await cancel_queued(poller.jobs())
        finally:
            self._closed = True
            self._save_learned()
            if self._tg is not None:
                self._tg.cancel_scope.cancel()
                await self._tg.__aexit__(None, None, None)
            if poller is not None:
                for job in poller.jobs():
                    job._fail(ClientClosedError(request_id=job.request_id))
            await self._transport.close()

    def _save_learned(self) -> None:
        """Hand what this client learned to the next one (see the ``cache`` option)."""
        adaptive = self._budget.adaptive
        rate = adaptive.limit if adaptive is not None and adaptive.confident else None
        models = self._poller.knowledge() if self._poller is not None else {}
        self._cache.save(self.base_url, models, rate)

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
        return await retrying(
            lambda: self._once("read", endpoint, method, path, decode),
            policy=self.retry,
            attempts=self.retry.max_attempts,
            retryable=is_retryable_read,
            errors=APIError,
            paused=_is_rate_limited,  # the budget has paused for it; counted apart
        )

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
            inputs: the model's inputs, checked before anything is sent against the typed
                Struct, else the live catalog's schema (see :mod:`runcomfy_async._prepare`
                for local files in media fields, read when the submit's turn comes).
            before_send: called just before the request leaves (after validation, the
                pacing turn and the request budget), e.g. to journal "submitting"; if the
                call is cancelled before that, nothing was sent.

        Returns:
            A :class:`Job`; await it for the result.

        Raises:
            InputValidationError: the inputs break the model's schema, or a local file is
                missing, of the wrong kind or too large (nothing was sent).
            ConfigError: malformed model id (nothing was sent).
            SubmissionUncertainError: the request may have reached the server but its answer
                was lost; it is never retried, since a duplicate job is billed.
            APIStatusError: the API refused the job (e.g. 401, 404, 422).
        """
        poller = self._require_open()
        prepared = await check_submit(self._catalog, model, inputs)
        model_id = prepared.model_id
        sent: list[float] = []
        async with self._submit_turn(poller):
            # Files are read only now, so submits waiting their turn hold none in memory.
            body = await encode_inputs(prepared, uploader=self._uploader)
            answer = await self._send_submit(model, inputs, model_id, body, sent, before_send)
            # The job was created somewhere between sending and the answer: take the midpoint
            # as its start, which is what the poller's clock for this job counts from.
            started = (sent[-1] + time.monotonic()) / 2
        check_answer(answer, model_id, inputs_of(model, inputs))
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

        def once() -> Awaitable[SubmitResponse]:
            # A 429 refused the request, so no job: safe to send again once the budget's
            # pause is over. Anything else is re-sent only when it surely did not arrive.
            hook = before_send if not sent else None
            return self._once(
                "submit", "submit", "POST", path, SUBMIT_DECODER.decode, body, sent, hook
            )

        try:
            return await retrying(
                once,
                policy=self.retry,
                attempts=self.retry.submit_attempts,
                retryable=is_retryable_submit,
                errors=APIError,
                paused=_is_rate_limited,
            )
        except (TransportError, ResponseValidationError, APIStatusError) as exc:
            if not may_have_reached_server(exc):
                raise
            raise SubmissionUncertainError(
                exc.message, url=exc.url, model_id=model_id, inputs=inputs_of(model, inputs)
            ) from exc

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

    def redact(self, text: str) -> str:
        """``text`` with the client's API token replaced by ``<redacted>``."""
        return self._transport.redact(text)


def _is_rate_limited(exc: Exception) -> bool:
    return isinstance(exc, RateLimitError)
