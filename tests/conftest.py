"""Shared fixtures: the anyio plugin pinned to asyncio, an emulator and a client on loopback."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from typing import Protocol, TypeVar

import pytest
from aiohttp import web
from hypothesis import settings

from runcomfy_async import AsyncClient, PollSettings, RetryPolicy
from runcomfy_async._emulator._http import listen
from runcomfy_async.testing import FakeRunComfy

# Property tests: no per-example deadline (a loaded machine is slow, not wrong); under CI the
# same examples every run, so a red CI is a finding to reproduce, not a roll of the dice.
settings.register_profile("dev", deadline=None)
settings.register_profile("ci", deadline=None, derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

TOKEN = "rc-test-token-5ecr3t-value"
"""A token distinctive enough to search for in logs and files."""

FAST_RETRY = RetryPolicy(backoff_base=0.01, backoff_max=0.05)
"""Retries that keep tests quick."""


class Served(Protocol):
    """A test server: an aiohttp app, and the origin it is served at once listening."""

    base: str

    def app(self) -> web.Application: ...


ServedT = TypeVar("ServedT", bound=Served)


@contextlib.asynccontextmanager
async def serving(server: ServedT) -> AsyncIterator[ServedT]:
    """Serve ``server.app()`` on a free loopback port, with ``server.base`` set to it."""
    runner, port = await listen(server.app(), "127.0.0.1", 0)
    server.base = f"http://127.0.0.1:{port}"
    try:
        yield server
    finally:
        await runner.cleanup()


@pytest.fixture(autouse=True)
def _private_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every test gets its own learned-knowledge folder, never the user's."""
    monkeypatch.setenv("RUNCOMFY_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("RUNCOMFY_CACHE", raising=False)


@pytest.fixture
def anyio_backend() -> str:
    """Run every async test on asyncio."""
    return "asyncio"


@pytest.fixture
async def fake() -> AsyncIterator[FakeRunComfy]:
    """An emulator with short jobs, requiring the test token."""
    async with FakeRunComfy(token=TOKEN, duration_mean=0.05, seed=7) as emulator:
        yield emulator


@pytest.fixture
async def client(fake: FakeRunComfy) -> AsyncIterator[AsyncClient]:
    """A client on the emulator with quick retries."""
    async with AsyncClient(
        TOKEN, fake.base_url, retry=FAST_RETRY, poll=PollSettings(first_check=0.02)
    ) as c:
        yield c
