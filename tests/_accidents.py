"""The accident suite's harness: the emulator on its own thread, the batch command, checks."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from runcomfy_async._cli._main import main
from runcomfy_async.testing import FakeRunComfy

from .conftest import TOKEN

T2I = "google/nano-banana-2/text-to-image"
T = TypeVar("T")


class Api:
    """A FakeRunComfy served by its own event loop in a background thread."""

    def __init__(self, **knobs: Any):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.fake: FakeRunComfy = self.run(self._start(knobs))

    @staticmethod
    async def _start(knobs: dict[str, Any]) -> FakeRunComfy:
        fake = FakeRunComfy(token=TOKEN, **knobs)
        await fake.start()
        return fake

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the emulator's loop and wait for it."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    def later(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Start a coroutine on the emulator's loop without waiting (an accident to come)."""
        asyncio.run_coroutine_threadsafe(coro, self.loop)

    def close(self) -> None:
        self.run(self.fake.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def api_servers() -> Iterator[Callable[..., Api]]:
    """The body of an ``api_factory`` fixture: make emulators, close them all afterwards."""
    made: list[Api] = []

    def make(**knobs: Any) -> Api:
        knobs.setdefault("duration_mean", 0.05)
        made.append(Api(**knobs))
        return made[-1]

    yield make
    for api in made:
        api.close()


def token_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The body of an autouse fixture: the token in RUNCOMFY_API_TOKEN, no other variable."""
    for name in ("RUNCOMFY_TOKEN", "RUNCOMFY_API_KEY", "RUNCOMFY_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RUNCOMFY_API_TOKEN", TOKEN)


def batch(api: Api, inp: Path, out: Path, *extra: str) -> int:
    """Run ``runcomfy-async batch`` in this process against ``api``; its exit code."""
    return main(
        ["batch", str(inp), "--model", T2I, "--out", str(out), "--base-url", api.fake.base_url,
         "--progress", "none", *extra]
    )  # fmt: skip


def results(out: Path) -> list[dict[str, Any]]:
    """The lines of results.jsonl."""
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def prompts(tmp_path: Path, n: int, name: str = "in.txt") -> Path:
    path = tmp_path / name
    path.write_text("".join(f"a watercolor fox number {i}\n" for i in range(n)))
    return path


def assert_all_done(out: Path, n: int, api: Api) -> None:
    """Exactly one line per input, in input order, all succeeded; one job per input."""
    lines = results(out)
    assert [r["index"] for r in lines] == list(range(n))
    assert {r["status"] for r in lines} == {"succeeded"}, [r["error"] for r in lines]
    assert api.fake.jobs_created == n
    assert len({r["request_id"] for r in lines}) == n
    assert (out / "index.html").exists()


def finish_now(api: Api) -> None:
    """End every running job now, and make later jobs quick."""
    now = time.monotonic()
    for job in api.fake.jobs.values():
        if job.ends is not None:
            job.ends = min(job.ends, now)
    api.fake._api._duration_mean = 0.05


def submitted(out: Path) -> int:
    """Submits whose answer the batch has journaled.

    An outage that begins after them cuts only checks and downloads, which are retried; one
    that cut a submit on the wire would rightly leave it uncertain, and how many submits are on
    the wire at a given count of jobs created is the machine's doing.
    """
    journal = out / "journal.jsonl"
    return journal.read_bytes().count(b'"e":"submitted"') if journal.exists() else 0


async def when(condition: Callable[[], bool], action: Callable[[], Awaitable[Any]]) -> None:
    """Wait (on the emulator's loop) until ``condition`` holds, then run ``action``."""
    while not condition():
        await asyncio.sleep(0.005)
    await action()
