"""Benchmark plumbing: the emulator in its own process, CPU/RSS/loop-lag probes, statistics."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import psutil

TOKEN = "bench-token"


@dataclass
class Emulator:
    """A handle on an emulator running in a child process."""

    proc: subprocess.Popen[str]
    base_url: str

    def stats(self) -> dict[str, Any]:
        """The emulator's counters (requests by endpoint, jobs created, 429s)."""
        with urllib.request.urlopen(f"{self.base_url}/_emulator/stats", timeout=10) as resp:
            return json.loads(resp.read())  # type: ignore[no-any-return]


@contextlib.contextmanager
def emulator(*args: str) -> Iterator[Emulator]:
    """Start ``runcomfy-async emulator --port 0 ARGS`` in a child process; stop it after."""
    cmd = [sys.executable, "-m", "runcomfy_async", "emulator", "--port", "0", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("emulator: API "):
            raise RuntimeError(f"emulator did not start: {line!r}")
        yield Emulator(proc, line.split()[2])
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def cpu_seconds() -> float:
    """CPU (user + system) this process has used."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def rss_mb() -> float:
    """This process's resident memory now, in MiB."""
    return float(psutil.Process(os.getpid()).memory_info().rss) / 2**20


@dataclass
class Probe:
    """Samples event-loop lag and peak RSS while a workload runs."""

    interval: float = 0.01
    lags: list[float] = field(default_factory=list)
    peak_rss: float = 0.0
    _task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        n = 0
        while True:
            start = loop.time()
            await asyncio.sleep(self.interval)
            self.lags.append(max(0.0, loop.time() - start - self.interval))
            n += 1
            if n % 10 == 0:
                self.peak_rss = max(self.peak_rss, rss_mb())

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Probe]:
        """Sample while the block runs."""
        self.peak_rss = rss_mb()
        self._task = asyncio.create_task(self._run())
        try:
            yield self
        finally:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self.peak_rss = max(self.peak_rss, rss_mb())

    def lag_p99_ms(self) -> float:
        """99th percentile of the event-loop lag, in milliseconds."""
        return 1000 * quantile(self.lags, 0.99) if self.lags else 0.0


def quantile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile of ``values`` (linear interpolation)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


async def bare_request_cpu(base_url: str, n: int = 2000) -> float:
    """CPU seconds of one bare aiohttp GET against the emulator (the floor), averaged."""
    import aiohttp

    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        url = f"{base_url}/_emulator/floor"  # a 404 the emulator does not count
        for _ in range(50):  # warm the pool
            async with session.get(url) as resp:
                await resp.read()
        start = cpu_seconds()
        sem = asyncio.Semaphore(32)

        async def one() -> None:
            async with sem, session.get(url) as resp:
                await resp.read()

        await asyncio.gather(*(one() for _ in range(n)))
        return (cpu_seconds() - start) / n


def write_json(path: str, data: Any) -> None:
    """Write ``data`` as indented JSON, creating the folder."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        json.dump(data, fh, indent=2, sort_keys=True)
        fh.write("\n")


def now_wall() -> float:
    """Wall-clock seconds (comparable with the emulator's finished_at on this machine)."""
    return time.time()
