"""The emulator's server: two listeners, the request pipeline and the knobs' wiring.

:class:`EmulatorServer` is the body of :class:`FakeRunComfy <runcomfy_async.testing.FakeRunComfy>`,
which documents every knob. The Model API's semantics live in :mod:`._api`, the account in
:mod:`._account`, the output host in :mod:`._outputs`, faults in :mod:`._faults` and the state
file in :mod:`._state`.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterable, Mapping
from types import TracebackType
from typing import Any, TypeVar

from aiohttp import web

from ._account import Account, AuthError, BalanceError
from ._api import ModelApi
from ._catalog import Catalog
from ._controls import Controls
from ._faults import Faults, Handler
from ._http import error_response, listen
from ._jobs import JobScheduler, TokenBucket
from ._options import check_knobs
from ._outputs import OutputHost
from ._state import StateFile

__all__ = ["EmulatorServer"]

_S = TypeVar("_S", bound="EmulatorServer")


class EmulatorServer(Controls):
    """The body of :class:`FakeRunComfy <runcomfy_async.testing.FakeRunComfy>` (see there)."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        output_port: int = 0,
        token: str | None = None,
        duration_mean: float = 0.05,
        duration_sigma: float = 0.0,
        model_durations: Mapping[str, tuple[float, float]] | None = None,
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
        balance: int | None = None,
        balance_error: BalanceError = "400002",
        auth_error: AuthError = "401",
        revoke_after: int | None = None,
        output_drip: float | None = None,
        output_drip_count: int | None = None,
        state_path: str | os.PathLike[str] | None = None,
        accept_any_model: bool = False,
        extra_models: Iterable[Mapping[str, Any]] = (),
    ):
        check_knobs(
            port=port,
            output_port=output_port,
            duration_mean=duration_mean,
            duration_sigma=duration_sigma,
            model_durations=model_durations,
            concurrency=concurrency,
            rates={
                "failure_rate": failure_rate,
                "error_rate": error_rate,
                "reset_rate": reset_rate,
                "slow_rate": slow_rate,
                "malformed_rate": malformed_rate,
            },
            failed_status=failed_status,
            pending_result=pending_result,
            rate_limit=rate_limit,
            rate_burst=rate_burst,
            slow_seconds=slow_seconds,
            fault_endpoints=fault_endpoints,
            num_outputs_key=num_outputs_key,
            max_body_bytes=max_body_bytes,
            balance=balance,
            balance_error=balance_error,
            auth_error=auth_error,
            revoke_after=revoke_after,
            output_drip=output_drip,
            output_drip_count=output_drip_count,
        )
        self._host = host
        self._port = port
        self._output_port = output_port
        self._account = Account(
            token=token,
            auth_error=auth_error,
            revoke_after=revoke_after,
            balance=balance,
            balance_error=balance_error,
        )
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
        self._state = None if state_path is None else StateFile(state_path)
        self._state_loaded = False
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
            catalog=Catalog(extra_models),
            accept_any_model=accept_any_model,
            charge=self._account.charge,
            state=self._state,
            model_durations=model_durations,
        )
        self._outputs = OutputHost(
            jobs=self._api.jobs,
            faults=self._faults,
            drip=output_drip,
            drip_count=output_drip_count,
        )
        self._max_body = max_body_bytes
        self._bucket: TokenBucket | None = None
        self._runners: list[web.AppRunner] = []
        self._record_arrivals = record_arrivals

        self.requests: Counter[str] = Counter()
        self.responses: Counter[int] = Counter()
        self.rate_limited = 0
        self.arrivals: list[tuple[float, str]] = []

    def __repr__(self) -> str:
        where = self.base_url if self.running else "stopped"
        balance = "" if self.balance is None else f" balance={self.balance}"
        revoked = " token revoked" if self.token_revoked else ""
        return f"<{type(self).__name__} {where} jobs={self.jobs_created}{balance}{revoked}>"

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
        which is how tests simulate a server restart. The first start loads ``state_path``.

        Raises:
            RuntimeError: if already running.
            OSError: if a port cannot be bound.
            ValueError: ``state_path`` exists but is not an emulator state file.
        """
        if self._runners:
            raise RuntimeError("FakeRunComfy is already running")
        if self._rate_limit is not None and self._bucket is None:
            self._bucket = TokenBucket(self._rate_limit, self._rate_burst, time.monotonic())
        recorded = None
        if self._state is not None and not self._state_loaded:
            recorded = self._state.load(self._api)
            self._state_loaded = True
        try:
            api_port, output_port = recorded or (None, None)
            runner, self._port = await _listen_preferring(
                self._api_app, self._host, self._port, api_port
            )
            self._runners.append(runner)
            runner, self._output_port = await _listen_preferring(
                self._outputs.app, self._host, self._output_port, output_port
            )
            self._runners.append(runner)
            if self._state is not None:
                self._state.attach(self._port, self._output_port)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop both listeners; jobs, counters and ports are kept. Safe to call twice.

        Handlers still running (e.g. a scripted delay) get a short grace period, then are
        cancelled, and open connections are closed. With ``state_path``, the state file is
        rewritten as a compact snapshot.
        """
        runners, self._runners = self._runners, []
        for runner in reversed(runners):
            await runner.cleanup()
        if runners and self._state is not None:
            self._state.detach(self.jobs.values(), self._port, self._output_port)

    async def go_down(self) -> None:
        """Begin an outage: both listeners stop (connections are refused); jobs keep running.

        Same as :meth:`stop`; :meth:`come_back` ends the outage.
        """
        await self.stop()

    async def come_back(self) -> None:
        """End an outage: serve again on the same ports, every job where its clock says.

        Jobs that finished during the outage answer finished. Same as :meth:`start`.

        Raises:
            OSError: if a port was taken meanwhile.
        """
        await self.start()

    @contextlib.asynccontextmanager
    async def outage(self) -> AsyncIterator[None]:
        """An API and output outage for the body of an ``async with`` block.

        Example:
            >>> async def demo(fake: FakeRunComfy) -> None:
            ...     async with fake.outage():
            ...         await asyncio.sleep(2.0)  # clients see refused connections
        """
        await self.go_down()
        try:
            yield
        finally:
            await self.come_back()

    async def serve_forever(self) -> None:
        """Start (unless already running), serve until this task is cancelled, then stop."""
        if not self._runners:
            await self.start()
        try:
            await asyncio.get_running_loop().create_future()  # resolved by nobody: wait for cancel
        finally:
            await self.stop()

    async def __aenter__(self: _S) -> _S:
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
        catalog = self._api.catalog
        app.router.add_get("/v1/models", self._handle("models", catalog.list_models))
        app.router.add_get("/v1/models/categories", self._handle("models", catalog.categories))
        app.router.add_get("/v1/models/{model_id:.+}", self._handle("models", catalog.get_model))
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
            "balance": self.balance,
            "balance_refusals": self.balance_refusals,
            "auth_refusals": self.auth_refusals,
            "output_drips": self.output_drips,
        }

    async def _on_stats(self, request: web.Request) -> web.Response:
        # Not part of the Model API: lets a benchmark read the counters of an emulator that
        # runs in another process. It is not counted, rate limited or faulted.
        return web.json_response(self.stats())

    # ------------------------------------------------------------------------------ pipeline

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
            return await self._faults.play(script, request, handler, counter, self._account.accepts)
        refusal = self._account.check(request)
        if refusal is not None:
            response = refusal
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

    def _handle(
        self, endpoint: str, handler: Handler
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """A route that sends ``handler`` through the pipeline as ``endpoint``."""

        async def route(request: web.Request) -> web.StreamResponse:
            return await self._serve(endpoint, request, handler)

        return route

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


async def _listen_preferring(
    make_app: Callable[[], web.Application], host: str, port: int, recorded: int | None
) -> tuple[web.AppRunner, int]:
    """Listen on ``port``; when it is 0, try the port a state file recorded first."""
    if port == 0 and recorded:
        with contextlib.suppress(OSError):
            return await listen(make_app(), host, recorded)
    return await listen(make_app(), host, port)
