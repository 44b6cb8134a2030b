"""An in-process emulator of the RunComfy Model API, for tests, benchmarks and local runs.

:class:`FakeRunComfy` serves the four Model API endpoints on one loopback listener and the
generated images on a second one (a different origin, as the real CDN is), with knobs for job
durations, server-side queueing, failures, rate limits and transport faults, plus scripted
answers for exercising every protocol variant. Job states are computed lazily from the clock
when a request arrives, so it holds 100,000 jobs and thousands of requests a second without
one task or timer per job.

Example:
    >>> import aiohttp
    >>> async def demo() -> None:
    ...     async with FakeRunComfy(duration_mean=0.01) as fake:
    ...         async with aiohttp.ClientSession() as http:
    ...             url = f"{fake.base_url}/v1/models/google/nano-banana-2/text-to-image"
    ...             async with http.post(url, json={"prompt": "a cat"}) as resp:
    ...                 job = await resp.json()
    ...         assert fake.jobs[job["request_id"]].model_id.startswith("google/")
"""

from __future__ import annotations

import asyncio
import hmac
import math
import random
import time
from collections import Counter
from collections.abc import Collection, Mapping
from types import TracebackType
from typing import Any

from aiohttp import web

from ._emulator._api import ModelApi
from ._emulator._faults import Faults, Handler, check_endpoints
from ._emulator._http import ALL_ENDPOINTS, Script, error_response, listen
from ._emulator._jobs import FakeJob, JobScheduler, TokenBucket, draw_duration

__all__ = ["FakeJob", "FakeRunComfy", "draw_duration"]


class FakeRunComfy:
    """An aiohttp.web emulator of the RunComfy Model API, with load and fault knobs.

    The API listener answers ``POST /v1/models/{model_id}``, ``GET /v1/requests/{id}/status``,
    ``GET /v1/requests/{id}/result`` and ``POST /v1/requests/{id}/cancel`` as PROTOCOL.md
    describes; the output listener serves ``GET /outputs/{id}/{i}.png`` (small real PNGs).

    Random faults are drawn per request, for endpoints in ``fault_endpoints`` only, in this
    order: a 5xx (the request never reaches the handler, so a submit creates no job); otherwise
    the handler runs and then the answer may be lost to a reset (a submit DID create its job)
    or, if it is 2xx, truncated to invalid JSON; finally any answer may be delayed. Scripted
    answers (:meth:`inject`) come before authentication, rate limiting and random faults.

    Args:
        host: interface both listeners bind to.
        port: API port; 0 picks a free one (kept across :meth:`stop`/:meth:`start`).
        output_port: output port; 0 picks a free one.
        token: the accepted API token. When set, every API call must carry
            ``Authorization: Bearer <token>`` or gets 401 with error code 401001. ``None``
            accepts anything, including no header.
        duration_mean: mean seconds a job runs once started (``>= 0``).
        duration_sigma: lognormal sigma of the duration; 0 makes every job take exactly
            ``duration_mean``.
        concurrency: server-side slots; ``None`` means no limit (jobs never queue). With a
            number, extra jobs wait in a FIFO queue and report ``queue_position``.
        failure_rate: probability that a job ends failed.
        failed_status: what ``/status`` says for a failed job: ``"completed"`` (documented)
            or ``"failed"``.
        pending_result: ``/result`` before the job ends: ``"200"`` answers the current state
            (documented); ``"400005"`` answers HTTP 400 with error code 400005.
        rate_limit: requests a second over all API calls (token bucket); beyond it 429.
            ``None`` means no limit.
        rate_burst: bucket size; ``None`` means ``ceil(rate_limit)``.
        retry_after: send ``Retry-After`` (whole seconds, at least 1) with each 429.
        error_rate: probability of an injected 5xx: half JSON 503 with error code 500001,
            half an HTML 502/503 proxy page.
        reset_rate: probability that the connection is reset instead of answered.
        slow_rate: probability that an answer is delayed by ``slow_seconds``.
        slow_seconds: the delay of a slow answer.
        malformed_rate: probability that a 2xx answer's JSON body is truncated.
        fault_endpoints: endpoints the random faults apply to: any of ``"submit"``,
            ``"status"``, ``"result"``, ``"cancel"``, ``"output"``.
        validate: validate the inputs of the known seed models (answer 422 on a violation).
        num_outputs_key: output shape: ``"auto"`` gives ``{"image": url}`` for one image and
            ``{"images": [...]}`` when ``num_images > 1``; ``"images"`` always gives a list.
        seed: seed for durations, failures and faults; ``None`` for a fresh random seed.
        max_body_bytes: larger submit bodies get 413.
        record_arrivals: append ``(time.monotonic(), endpoint)`` to :attr:`arrivals` for every
            API request.

    Attributes:
        requests: API requests that reached a handler, by endpoint (``"submit"``, ``"status"``,
            ``"result"``, ``"cancel"``, and ``"other"`` for unknown routes), including those
            answered 401/429/5xx or reset.
        responses: API answers by HTTP status; resets count as status 0.
        jobs: every job by request id.
        jobs_created: how many jobs were created.
        rate_limited: how many 429s were sent.
        arrivals: ``(monotonic time, endpoint)`` of every API request when ``record_arrivals``
            (endpoint ``"other"`` for unknown routes).
        output_requests: requests to the output listener.
        output_auth_headers: output requests that carried an ``Authorization`` header (a
            correct client never sends one there).
        output_responses: output answers by HTTP status; resets count as status 0.

    Example:
        >>> async def demo() -> None:
        ...     async with FakeRunComfy(concurrency=2, duration_mean=0.5, seed=1) as fake:
        ...         client_base_url = fake.base_url  # e.g. http://127.0.0.1:40123
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        output_port: int = 0,
        token: str | None = None,
        duration_mean: float = 0.05,
        duration_sigma: float = 0.0,
        concurrency: int | None = None,
        failure_rate: float = 0.0,
        failed_status: str = "completed",
        pending_result: str = "200",
        rate_limit: float | None = None,
        rate_burst: int | None = None,
        retry_after: bool = True,
        error_rate: float = 0.0,
        reset_rate: float = 0.0,
        slow_rate: float = 0.0,
        slow_seconds: float = 5.0,
        malformed_rate: float = 0.0,
        fault_endpoints: Collection[str] = ("status", "result"),
        validate: bool = True,
        num_outputs_key: str = "auto",
        seed: int | None = None,
        max_body_bytes: int = 64 * 2**20,
        record_arrivals: bool = False,
    ):
        for name, value in (("port", port), ("output_port", output_port)):
            if not 0 <= value <= 65535:
                raise ValueError(f"{name} must be in 0..65535, got {value}")
        for name, rate in (
            ("failure_rate", failure_rate),
            ("error_rate", error_rate),
            ("reset_rate", reset_rate),
            ("slow_rate", slow_rate),
            ("malformed_rate", malformed_rate),
        ):
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {rate}")
        if not (math.isfinite(duration_mean) and duration_mean >= 0.0):
            raise ValueError(f"duration_mean must be a finite number >= 0, got {duration_mean}")
        if not (math.isfinite(duration_sigma) and duration_sigma >= 0.0):
            raise ValueError(f"duration_sigma must be a finite number >= 0, got {duration_sigma}")
        if duration_sigma > 0.0 and duration_mean == 0.0:
            raise ValueError("duration_sigma > 0 needs duration_mean > 0")
        if concurrency is not None and concurrency < 1:
            raise ValueError(f"concurrency must be >= 1 or None, got {concurrency}")
        if failed_status not in ("completed", "failed"):
            raise ValueError(
                f"failed_status must be 'completed' or 'failed', got {failed_status!r}"
            )
        if pending_result not in ("200", "400005"):
            raise ValueError(f"pending_result must be '200' or '400005', got {pending_result!r}")
        if rate_limit is not None and not (math.isfinite(rate_limit) and rate_limit > 0.0):
            raise ValueError(f"rate_limit must be a positive number or None, got {rate_limit}")
        if rate_burst is not None and rate_burst < 1:
            raise ValueError(f"rate_burst must be >= 1 or None, got {rate_burst}")
        if not (math.isfinite(slow_seconds) and slow_seconds >= 0.0):
            raise ValueError(f"slow_seconds must be a finite number >= 0, got {slow_seconds}")
        check_endpoints(fault_endpoints)
        if num_outputs_key not in ("auto", "images"):
            raise ValueError(f"num_outputs_key must be 'auto' or 'images', got {num_outputs_key!r}")
        if max_body_bytes < 1:
            raise ValueError(f"max_body_bytes must be >= 1, got {max_body_bytes}")

        self._host = host
        self._port = port
        self._output_port = output_port
        self._auth = None if token is None else f"Bearer {token}".encode()
        self._rate_limit = rate_limit
        self._rate_burst = rate_burst or max(1, math.ceil(rate_limit or 1))
        self._retry_after = retry_after
        self._faults = Faults(
            error_rate=error_rate,
            reset_rate=reset_rate,
            slow_rate=slow_rate,
            slow_seconds=slow_seconds,
            malformed_rate=malformed_rate,
            endpoints=fault_endpoints,
            seed=seed,
        )
        self._sched = JobScheduler(concurrency, failed_status)
        self._api = ModelApi(
            sched=self._sched,
            rng=random.Random(None if seed is None else f"jobs-{seed}"),
            duration_mean=duration_mean,
            duration_sigma=duration_sigma,
            failure_rate=failure_rate,
            pending_400005=pending_result == "400005",
            validate=validate,
            always_list=num_outputs_key == "images",
            max_body_bytes=max_body_bytes,
            output_base_url=lambda: self.output_base_url,
        )
        self._max_body = max_body_bytes
        self._bucket: TokenBucket | None = None
        self._runners: list[web.AppRunner] = []
        self._record_arrivals = record_arrivals

        self.requests: Counter[str] = Counter()
        self.responses: Counter[int] = Counter()
        self.rate_limited = 0
        self.arrivals: list[tuple[float, str]] = []
        self.output_requests = 0
        self.output_auth_headers = 0
        self.output_responses: Counter[int] = Counter()

    @property
    def jobs(self) -> dict[str, FakeJob]:
        """Every job by request id (the live store: do not modify it)."""
        return self._api.jobs

    @property
    def jobs_created(self) -> int:
        """How many jobs were created."""
        return self._api.jobs_created

    @property
    def early_results(self) -> Counter[str]:
        """``/result`` answers given before the job ended, by state (``in_queue``, ...)."""
        return self._api.early_results

    # ----------------------------------------------------------------------------- lifecycle

    @property
    def port(self) -> int:
        """The API port (0 until the first :meth:`start` when a free port was asked for)."""
        return self._port

    @property
    def output_port(self) -> int:
        """The output listener's port (0 until the first :meth:`start` if picked freely)."""
        return self._output_port

    @property
    def running(self) -> bool:
        """Whether the listeners are up."""
        return bool(self._runners)

    def _origin(self, port: int) -> str:
        host = self._host
        if host in ("", "0.0.0.0", "::"):
            host = "127.0.0.1"  # a wildcard bind is reachable on loopback
        elif ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port}"

    @property
    def base_url(self) -> str:
        """The API origin, e.g. ``http://127.0.0.1:8787`` (no trailing slash, no ``/v1``)."""
        return self._origin(self._port)

    @property
    def output_base_url(self) -> str:
        """The output listener's origin; result URLs are ``{output_base_url}/outputs/...``."""
        return self._origin(self._output_port)

    async def start(self) -> None:
        """Start both listeners.

        After a :meth:`stop` this restarts on the same ports with every job and counter kept,
        which is how tests simulate a server restart.

        Raises:
            RuntimeError: if already running.
            OSError: if a port cannot be bound.
        """
        if self._runners:
            raise RuntimeError("FakeRunComfy is already running")
        if self._rate_limit is not None and self._bucket is None:
            self._bucket = TokenBucket(self._rate_limit, self._rate_burst, time.monotonic())
        try:
            runner, self._port = await listen(self._api_app(), self._host, self._port)
            self._runners.append(runner)
            runner, self._output_port = await listen(
                self._output_app(), self._host, self._output_port
            )
            self._runners.append(runner)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop both listeners; jobs, counters and ports are kept. Safe to call twice.

        Handlers still running (e.g. a scripted delay) get a short grace period, then are
        cancelled, and open connections are closed.
        """
        runners, self._runners = self._runners, []
        for runner in reversed(runners):
            await runner.cleanup()

    async def serve_forever(self) -> None:
        """Start (unless already running), serve until this task is cancelled, then stop."""
        if not self._runners:
            await self.start()
        try:
            await asyncio.get_running_loop().create_future()  # resolved by nobody: wait for cancel
        finally:
            await self.stop()

    async def __aenter__(self) -> FakeRunComfy:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def _api_app(self) -> web.Application:
        app = web.Application(client_max_size=self._max_body)
        app.router.add_post("/v1/models/{model_id:.+}", self._on_submit)
        app.router.add_get("/v1/requests/{request_id}/status", self._on_status)
        app.router.add_get("/v1/requests/{request_id}/result", self._on_result)
        app.router.add_post("/v1/requests/{request_id}/cancel", self._on_cancel)
        app.router.add_get("/_emulator/stats", self._on_stats)
        app.router.add_route("*", "/{tail:.*}", self._on_unknown)
        return app

    def stats(self) -> dict[str, Any]:
        """The counters as one JSON-able dict (also served at ``GET /_emulator/stats``)."""
        return {
            "requests": dict(self.requests),
            "responses": {str(k): v for k, v in self.responses.items()},
            "jobs_created": self.jobs_created,
            "early_results": dict(self.early_results),
            "rate_limited": self.rate_limited,
            "job_states": dict(self.job_states()),
            "output_requests": self.output_requests,
            "output_auth_headers": self.output_auth_headers,
        }

    async def _on_stats(self, request: web.Request) -> web.Response:
        # Not part of the Model API: lets a benchmark read the counters of an emulator that
        # runs in another process. It is not counted, rate limited or faulted.
        return web.json_response(self.stats())

    def _output_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get(r"/outputs/{request_id}/{index:\d+}.png", self._on_output)
        app.router.add_route("*", "/{tail:.*}", self._on_output_unknown)
        return app

    # --------------------------------------------------------------------------- introspection

    def job_states(self) -> Counter[str]:
        """Count jobs by detailed state now.

        Returns:
            Counts keyed by ``in_queue``, ``in_progress``, ``succeeded``, ``failed`` and
            ``cancelled`` (unlike :attr:`FakeJob.status`, success and failure are apart).
        """
        now = time.monotonic()
        self._sched.advance(now)
        state = self._sched.state_unadvanced
        return Counter(state(job, now) for job in self.jobs.values())

    def finished_at_monotonic(self, request_id: str) -> float | None:
        """When a job ended on the server, in ``time.monotonic()`` terms.

        Benchmarks subtract this from the moment the client noticed.

        Args:
            request_id: the job's id.

        Returns:
            ``started + duration`` for a finished job, the cancel time for a cancelled one,
            ``None`` for an unknown or unfinished job.
        """
        job = self.jobs.get(request_id)
        return None if job is None else job.finished_monotonic(time.monotonic())

    @property
    def finish_times(self) -> dict[str, float]:
        """``request_id -> monotonic end time`` of every job that has ended so far."""
        now = time.monotonic()
        ends = ((rid, job.finished_monotonic(now)) for rid, job in self.jobs.items())
        return {rid: end for rid, end in ends if end is not None}

    # ------------------------------------------------------------------------------- scripting

    def inject(
        self,
        endpoint: str,
        *,
        status: int = 200,
        body: bytes | str | dict[str, Any] | list[Any] | None = None,
        headers: Mapping[str, str] | None = None,
        content_type: str | None = None,
        times: int = 1,
        reset: bool = False,
        delay: float = 0.0,
        after: bool = False,
    ) -> None:
        """Queue a canned answer for the next ``times`` requests to ``endpoint``.

        Scripts queue up in order: a second call takes over when the first is used up. A
        scripted request still counts in :attr:`requests` and :attr:`responses`, and skips
        authentication, rate limiting and random faults.

        Args:
            endpoint: ``"submit"``, ``"status"``, ``"result"``, ``"cancel"`` or ``"output"``.
            status: the HTTP status to answer.
            body: the body; dicts and lists are JSON-encoded, ``str`` is UTF-8. ``None`` gives
                an error envelope ``{"error_code": status * 1000 + 1, ...}`` for statuses
                >= 400 and an empty body otherwise.
            headers: extra response headers, e.g. ``{"Retry-After": "3"}``.
            content_type: the Content-Type; defaults to ``application/json``.
            times: how many requests this answer serves.
            reset: abort the connection instead of answering.
            delay: seconds to wait before answering (or resetting).
            after: run the real handler first (a submit really creates its job, a cancel
                really cancels) and then replace its answer: "the request reached the
                server but the answer was lost".

        Raises:
            ValueError: for an unknown endpoint or a bad ``times``/``delay``/``status``.
        """
        if endpoint not in ALL_ENDPOINTS:
            raise ValueError(f"unknown endpoint {endpoint!r}; use {sorted(ALL_ENDPOINTS)}")
        script = Script.build(
            status=status,
            body=body,
            headers=headers,
            content_type=content_type,
            times=times,
            reset=reset,
            delay=delay,
            after=after,
        )
        self._faults.add(endpoint, script)

    def clear_injections(self, endpoint: str | None = None) -> None:
        """Drop queued canned answers.

        Args:
            endpoint: only this endpoint's; ``None`` for all.
        """
        self._faults.clear(endpoint)

    def pending_injections(self, endpoint: str) -> int:
        """How many requests to ``endpoint`` will still get a canned answer.

        Args:
            endpoint: the endpoint name.

        Returns:
            The number of queued answers left.
        """
        return self._faults.pending(endpoint)

    # ------------------------------------------------------------------------------- pipeline

    def _authorized(self, request: web.Request) -> bool:
        if self._auth is None:
            return True
        got = request.headers.get("Authorization")
        return got is not None and hmac.compare_digest(got.encode(), self._auth)

    async def _serve(
        self, endpoint: str, request: web.Request, handler: Handler
    ) -> web.StreamResponse:
        """Count, then script / auth / rate limit / faults, then the handler."""
        now = time.monotonic()
        self.requests[endpoint] += 1
        if self._record_arrivals:
            self.arrivals.append((now, endpoint))
        counter = self.responses
        script = self._faults.next_script(endpoint)
        if script is not None:
            return await self._faults.play(script, request, handler, counter, self._authorized)
        if not self._authorized(request):
            response = error_response(401, 401001, "Unauthorized: missing or invalid API token")
        elif self._bucket is not None and (wait := self._bucket.take(now)) > 0.0:
            self.rate_limited += 1
            response = error_response(429, 429001, "Too Many Requests: rate limit exceeded")
            if self._retry_after:
                response.headers["Retry-After"] = str(max(1, math.ceil(wait)))
        elif self._faults.applies(endpoint):
            return await self._faults.serve(request, handler, counter)
        else:
            response = await handler(request)
        counter[response.status] += 1
        return response

    # -------------------------------------------------------------------------------- handlers

    async def _on_submit(self, request: web.Request) -> web.StreamResponse:
        return await self._serve("submit", request, self._api.submit)

    async def _on_status(self, request: web.Request) -> web.StreamResponse:
        return await self._serve("status", request, self._api.status)

    async def _on_result(self, request: web.Request) -> web.StreamResponse:
        return await self._serve("result", request, self._api.result)

    async def _on_cancel(self, request: web.Request) -> web.StreamResponse:
        return await self._serve("cancel", request, self._api.cancel)

    async def _on_unknown(self, request: web.Request) -> web.StreamResponse:
        self.requests["other"] += 1
        if self._record_arrivals:
            self.arrivals.append((time.monotonic(), "other"))
        self.responses[404] += 1
        return error_response(404, 404001, f"not found: {request.method} {request.path}")

    # --------------------------------------------------------------------------------- outputs

    async def _on_output(self, request: web.Request) -> web.StreamResponse:
        self.output_requests += 1
        if "Authorization" in request.headers:
            self.output_auth_headers += 1
        counter = self.output_responses
        script = self._faults.next_script("output")
        if script is not None:
            return await self._faults.play(script, request, self._api.image, counter)
        if self._faults.applies("output"):
            return await self._faults.serve(request, self._api.image, counter)
        response = await self._api.image(request)
        counter[response.status] += 1
        return response

    async def _on_output_unknown(self, request: web.Request) -> web.StreamResponse:
        self.output_requests += 1
        if "Authorization" in request.headers:
            self.output_auth_headers += 1
        self.output_responses[404] += 1
        return error_response(404, 404001, "not found")
