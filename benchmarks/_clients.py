"""The clients of the side-by-side benchmark, each run inside its own cell process.

* :func:`run_runcomfy_async`: runcomfy-async at its defaults: a few submitter tasks, one
  done-callback per job handle, the client's single poller doing all the checks.
* :func:`run_runcomfy_map`: the batch API, ``client.map()``, at its default of 64 jobs in
  flight, the capped baseline's concurrency.
* :func:`run_fixed_baseline`: what a user writes without it: ``httpx.AsyncClient``,
  ``asyncio.gather`` of one coroutine per job, each under ``async with Semaphore(64)``:
  submit, poll ``/status`` at a fixed interval, then read ``/result``; a 429 sleeps
  ``Retry-After`` and retries the same request. Variants: the semaphore around each request
  instead (every job at once), and the same code over aiohttp (a control).
* :func:`run_floor`: bare aiohttp GETs, the CPU cost of one request on this machine, in a
  tight loop (the event loop batches them). Every cell also measures
  :func:`paced_request_cpu` at its own average request rate after its work: what one bare
  request costs when requests come that often.

Each runner measures only the work itself (from the first submit to the last result in
hand): CPU of this process, its peak RSS over its idle RSS, the event-loop lag, and per job
the detection delay: ``time.time()`` when the result is in hand minus the server's
``finished_at``. Timestamps are parsed after the timed section so that parsing them is not
billed to the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import resource
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ._harness import TOKEN, bare_request_cpu, cpu_seconds, quantile, rss_mb

if TYPE_CHECKING:  # the baseline cells never import the client
    from runcomfy_async import AsyncClient

MODEL = "google/nano-banana-2/text-to-image"
TERMINAL = ("completed", "failed", "cancelled")
STATS_PATH = "/_emulator/stats"
"""Not part of the Model API: the emulator neither counts nor rate-limits it."""
FLOOR_PATH = "/_emulator/floor"
"""No route: a small 404 the emulator neither counts nor rate-limits, so a cell's floor
requests stay out of its request counts and its rate limit."""
SUBMITTERS = 64
"""Concurrent submits of the runcomfy-async cell (its default connection pool size)."""


class Recorder:
    """Counts jobs in and out, and keeps each finished job's raw timestamps."""

    def __init__(self, jobs: int) -> None:
        self.jobs = jobs
        self.submitted = 0
        self.finished = 0
        self.failed = 0
        self.peak_in_flight = 0
        self.seen: list[tuple[float, str | None, str | None]] = []
        self.all_done = asyncio.Event()

    def submit(self) -> None:
        """One job was accepted by the server."""
        self.submitted += 1
        self.peak_in_flight = max(self.peak_in_flight, self.submitted - self.finished)

    def done(self, created: str | None, finished: str | None, *, ok: bool = True) -> None:
        """One job's result is in hand (``ok=False``: it ended without one)."""
        self.seen.append((time.time(), created, finished))
        self.finished += 1
        self.failed += not ok
        if self.finished >= self.jobs:
            self.all_done.set()

    def figures(self, mean: float) -> dict[str, Any]:
        """Delay quantiles (in mean job durations) and the server-side span of the jobs."""
        delays: list[float] = []
        created: list[float] = []  # server clock = this machine's clock
        finished: list[float] = []
        longest = 0.0
        for now, c_raw, f_raw in self.seen:
            if f_raw is None:
                continue
            f = datetime.fromisoformat(f_raw).timestamp()
            delays.append(now - f)
            finished.append(f)
            if c_raw is not None:
                c = datetime.fromisoformat(c_raw).timestamp()
                created.append(c)
                longest = max(longest, f - c)
        return {
            "delay_p50": quantile(delays, 0.5) / mean,
            "delay_p95": quantile(delays, 0.95) / mean,
            "server_span_s": max(finished) - min(created) if created and finished else None,
            "last_finished_wall": max(finished) if finished else None,
            "longest_job_s": longest,
            "failed": self.failed,
            "peak_in_flight": self.peak_in_flight,
        }


class LagProbe:
    """Event-loop lag: how late a 10 ms sleep wakes up, sampled while a workload runs."""

    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval
        self.lags: list[float] = []

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(self.interval)
            self.lags.append(max(0.0, loop.time() - start - self.interval))

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[LagProbe]:
        """Sample while the block runs."""
        task = asyncio.create_task(self._run())
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def p99_ms(self) -> float:
        """99th percentile of the lag, in milliseconds."""
        return 1000 * quantile(self.lags, 0.99) if self.lags else 0.0


def peak_rss_mb() -> float:
    """The peak resident memory of this process so far, in MiB.

    ``VmHWM`` of this process's own address space where Linux has it: ``ru_maxrss`` also
    keeps the peak of the parent that spawned it (folded in at ``exec``), which here is the
    benchmark's parent with its own tens of MB.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def warm_pool(send: Callable[[], Awaitable[Any]], n: int = 64) -> None:
    """Open the connection pool with ``n`` concurrent uncounted requests before measuring.

    A pool of 64 keep-alive connections is a fixed cost (buffers of some tens of KB each),
    not a cost per job; opening it first keeps it out of memory per job in flight.
    """
    await asyncio.gather(*(send() for _ in range(n)))


def idle_rss_mb() -> float:
    """Resident memory now, after a full collection, in MiB."""
    gc.collect()
    return rss_mb()


def _common(
    rec: Recorder,
    probe: LagProbe,
    *,
    cpu: float,
    wall: float,
    submit_s: float,
    idle: float,
    start_wall: float,
) -> dict[str, Any]:
    n = rec.jobs
    peak = peak_rss_mb()
    return {
        "jobs": n,
        "start_wall": start_wall,
        "wall_s": wall,
        "submit_s": submit_s,
        "cpu_s": cpu,
        "cpu_per_job_s": cpu / n,
        "idle_rss_mb": idle,
        "peak_rss_mb": peak,
        "kb_per_job": 1024 * max(0.0, peak - idle) / n,
        "loop_lag_p99_ms": probe.p99_ms(),
    }


def prompt(i: int) -> dict[str, str]:
    """The inputs of job ``i``, the same for every client."""
    return {"prompt": f"a lighthouse at dusk, #{i}"}


async def _warmed(client: AsyncClient) -> float:
    """Open ``client``'s connection pool (see :func:`warm_pool`); return the idle RSS after."""
    transport = getattr(client, "_transport", None)  # private: skipped if it moves
    if transport is not None:
        await warm_pool(lambda: transport.send("GET", STATS_PATH))
    return idle_rss_mb()


def _client_counts(client: AsyncClient) -> dict[str, Any]:
    """The client's own request counts, beside the emulator's."""
    pacer = client.pacer
    return {
        "client_requests": sum(client.requests.values()),
        "client_429": client.rate_limited,
        "by_endpoint": dict(client.requests),
        "submits_paced": pacer.paced if pacer is not None else 0,
        "pace_wait_s": pacer.waited if pacer is not None else 0.0,
        "pace_cost_us": 1e6 * pacer.cost if pacer is not None and pacer.cost else None,
    }


async def run_runcomfy_async(
    base_url: str,
    jobs: int,
    mean: float,
    *,
    rate: float | None = None,
    arrivals: float | None = None,
) -> dict[str, Any]:
    """Submit ``jobs`` jobs through one AsyncClient and follow them all to their results.

    ``arrivals``: submit job ``i`` no earlier than ``i / arrivals`` seconds after the first
    (the scaling series, where every size must see the same request rate); ``None``: as
    fast as the client goes. With a fixed arrival rate the client's own submit pacing is
    off: it would hold 2,000 submits a second of 1 s jobs to what it can check on time,
    and the largest sizes would never have every job in flight at once.
    """
    from runcomfy_async import AsyncClient, Result

    rec = Recorder(jobs)
    probe = LagProbe()

    def on_done(fut: asyncio.Future[Result]) -> None:
        if fut.cancelled() or fut.exception() is not None:
            rec.done(None, None, ok=False)
            return
        res = fut.result()
        rec.done(res.created_at_raw, res.finished_at_raw)

    async with AsyncClient(
        TOKEN, base_url, max_requests_per_second=rate, pace_submits=arrivals is None
    ) as client:
        idle = await _warmed(client)
        counter = iter(range(jobs))

        async def submitter() -> None:
            for i in counter:
                if arrivals is not None:
                    await asyncio.sleep(t0 + i / arrivals - time.monotonic())
                job = await client.submit(MODEL, prompt(i))
                rec.submit()
                job.add_done_callback(on_done)

        async with probe.running():
            cpu0, t0, t0_wall = cpu_seconds(), time.monotonic(), time.time()
            await asyncio.gather(*(submitter() for _ in range(SUBMITTERS)))
            submit_s = time.monotonic() - t0
            await rec.all_done.wait()
            wall, cpu = time.monotonic() - t0, cpu_seconds() - cpu0
        out = _common(
            rec, probe, cpu=cpu, wall=wall, submit_s=submit_s, idle=idle, start_wall=t0_wall
        )
        out.update(_client_counts(client))
    out.update(rec.figures(mean))
    return out


async def run_runcomfy_map(base_url: str, jobs: int, mean: float, *, cap: int) -> dict[str, Any]:
    """Run ``jobs`` prompts through ``client.map()`` with ``cap`` jobs in flight (its default: 64).

    What a user of the batch API gets, at the capped baseline's concurrency: a like-for-like
    comparison of the polling, where the every-job-at-once cell measures throughput. A
    result counts as in hand when the runner yields it. Its ``submitted_at`` (this machine's
    clock, which the emulator shares) stands in for the server's ``created_at``.
    """
    from runcomfy_async import AsyncClient

    rec = Recorder(jobs)
    probe = LagProbe()
    inputs = (prompt(i) for i in range(jobs))
    async with AsyncClient(TOKEN, base_url) as client:
        idle = await _warmed(client)
        async with probe.running():
            cpu0, t0, t0_wall = cpu_seconds(), time.monotonic(), time.time()
            async with client.map(MODEL, inputs, max_in_flight=cap) as batch:
                async for res in batch:
                    rec.submitted += 1
                    rec.peak_in_flight = max(rec.peak_in_flight, client.jobs_in_flight + 1)
                    rec.done(res.submitted_at, res.finished_at, ok=res.ok)
            wall, cpu = time.monotonic() - t0, cpu_seconds() - cpu0
        out = _common(rec, probe, cpu=cpu, wall=wall, submit_s=wall, idle=idle, start_wall=t0_wall)
        out.update(_client_counts(client))
    out.update(rec.figures(mean))
    return out


async def run_fixed_baseline(
    base_url: str,
    jobs: int,
    mean: float,
    *,
    interval: float,
    transport: str = "httpx",
    cap: int | None = 64,
) -> dict[str, Any]:
    """The naive client: gather + semaphore, one fixed-interval polling loop per job.

    ``transport`` is ``httpx`` (the baseline of the comparison) or ``aiohttp`` (a control:
    the same strategy over aiohttp, to tell the cost of the strategy from httpx's own).
    ``cap``: the semaphore holds each job from submit to result, so at most ``cap`` jobs
    are in flight (the usual idiom); ``None``: it holds each request instead (64 at once),
    so every job is in flight at once and each loop waits its turn for a request.
    """
    rec = Recorder(jobs)
    probe = LagProbe()
    # One semaphore does the limiting: around each job (cap) or around each request.
    job_sem: contextlib.AbstractAsyncContextManager[Any]
    sem: contextlib.AbstractAsyncContextManager[Any]
    job_sem, sem = (
        (asyncio.Semaphore(cap), contextlib.nullcontext())
        if cap is not None
        else (contextlib.nullcontext(), asyncio.Semaphore(64))
    )
    counts = {"requests": 0, "429": 0, "errors": 0}

    async with _open_transport(transport, base_url) as send:

        async def call(method: str, url: str, body: Any = None) -> Any:
            while True:
                try:
                    async with sem:
                        counts["requests"] += 1
                        status, retry_after, data = await send(method, url, body)
                except _TransportFailure:
                    counts["errors"] += 1
                    await asyncio.sleep(1.0)
                    continue
                if status == 429:
                    counts["429"] += 1
                    await asyncio.sleep(float(retry_after or 1))
                    continue
                if status >= 400:
                    raise RuntimeError(f"{method} {url}: HTTP {status}")
                return data

        async def one(i: int) -> None:
            async with job_sem:
                await job(i)

        async def job(i: int) -> None:
            body = prompt(i)
            rid = (await call("POST", f"/v1/models/{MODEL}", body))["request_id"]
            rec.submit()
            while True:
                await asyncio.sleep(interval)
                if (await call("GET", f"/v1/requests/{rid}/status"))["status"] in TERMINAL:
                    break
            res = await call("GET", f"/v1/requests/{rid}/result")
            rec.done(res.get("created_at"), res.get("finished_at"))

        await warm_pool(lambda: send("GET", STATS_PATH, None))
        idle = idle_rss_mb()
        async with probe.running():
            cpu0, t0, t0_wall = cpu_seconds(), time.monotonic(), time.time()
            await asyncio.gather(*(one(i) for i in range(jobs)))
            wall, cpu = time.monotonic() - t0, cpu_seconds() - cpu0
    # Every job's loop runs submit-then-poll, so "all submitted" is not one moment here.
    out = _common(
        rec, probe, cpu=cpu, wall=wall, submit_s=float("nan"), idle=idle, start_wall=t0_wall
    )
    out["client_requests"] = counts["requests"]
    out["client_429"] = counts["429"]
    out["transport_errors"] = counts["errors"]
    out["interval_s"] = interval
    out["cap"] = cap
    out.update(rec.figures(mean))
    return out


class _TransportFailure(Exception):
    """No HTTP answer (connect failure, reset, timeout): the baseline waits 1 s and retries."""


_Send = Callable[[str, str, Any], Awaitable[tuple[int, str | None, Any]]]


@contextlib.asynccontextmanager
async def _open_transport(name: str, base_url: str) -> AsyncIterator[_Send]:
    """A ``send(method, path, json_body) -> (status, Retry-After, decoded body)``."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    if name == "httpx":
        import httpx

        async with httpx.AsyncClient(
            base_url=base_url,
            headers=headers,
            limits=httpx.Limits(max_connections=64),
            timeout=httpx.Timeout(60.0),
        ) as client:

            async def send_httpx(method: str, path: str, body: Any) -> tuple[int, str | None, Any]:
                try:
                    r = await client.request(method, path, json=body)
                except httpx.TransportError as exc:
                    raise _TransportFailure(str(exc)) from exc
                data = r.json() if r.status_code < 400 and path != STATS_PATH else None
                return r.status_code, r.headers.get("Retry-After"), data

            yield send_httpx
    elif name == "aiohttp":
        import aiohttp

        conn = aiohttp.TCPConnector(limit=64)
        timeout = aiohttp.ClientTimeout(total=60.0)
        async with aiohttp.ClientSession(
            base_url, headers=headers, connector=conn, timeout=timeout
        ) as session:

            async def send_aiohttp(
                method: str, path: str, body: Any
            ) -> tuple[int, str | None, Any]:
                try:
                    async with session.request(method, path, json=body) as r:
                        ok = r.status < 400 and path != STATS_PATH
                        data = await r.json() if ok else None
                        return r.status, r.headers.get("Retry-After"), data
                except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                    raise _TransportFailure(str(exc)) from exc

            yield send_aiohttp
    else:
        raise ValueError(f"unknown transport {name!r}")


async def paced_request_cpu(base_url: str, rate: float = 500.0, seconds: float = 2.0) -> float:
    """CPU seconds of one bare aiohttp GET issued at ``rate`` per second (one wake-up each)."""
    import aiohttp

    n = int(rate * seconds)
    url = base_url + FLOOR_PATH
    pending: set[asyncio.Task[None]] = set()
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as session:

        async def one() -> None:
            async with session.get(url) as resp:
                await resp.read()

        for _ in range(50):  # warm the pool
            await one()
        cpu0, t0 = cpu_seconds(), loop.time()
        for i in range(n):
            delay = t0 + i / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(one())
            pending.add(task)
            task.add_done_callback(pending.discard)
        await asyncio.gather(*pending)
        return (cpu_seconds() - cpu0) / n


async def same_rate_floor(base_url: str, out: dict[str, Any], seconds: float = 1.0) -> None:
    """Add ``floor_s``: one bare request's CPU at the cell's own average request rate.

    A bare request costs more CPU the rarer requests are (each one wakes the loop for itself;
    at thousands a second one wake-up serves many), so a client is compared with bare
    requests arriving as often as its own did.
    """
    rate = max(50.0, out["client_requests"] / out["wall_s"])
    out["floor_rate"] = rate
    out["floor_s"] = await paced_request_cpu(base_url, rate, seconds)


async def run_floor(base_url: str) -> dict[str, Any]:
    """The floor: CPU of one bare aiohttp request in a tight loop."""
    return {"tight_s": await bare_request_cpu(base_url, 2000)}
