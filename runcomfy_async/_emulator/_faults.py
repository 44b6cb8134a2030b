"""Scripted answers and random transport faults of the emulator: what may replace a real answer.

:class:`FakeRunComfy <runcomfy_async.testing.FakeRunComfy>` asks :class:`Faults`, per request,
for a queued canned answer first and, failing that, whether random faults apply to the
endpoint; the handler itself and the counting of requests stay with the emulator.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Collection

from aiohttp import web

from ._http import ALL_ENDPOINTS, Script, reset_connection, server_error, truncated

Handler = Callable[[web.Request], Awaitable[web.Response]]
"""An endpoint's real handler, as the emulator's model API provides it."""


def check_endpoints(endpoints: Collection[str]) -> None:
    """Reject a ``fault_endpoints`` value that is one string or names an unknown endpoint.

    Raises:
        ValueError: the value is a string or holds a name outside ``ALL_ENDPOINTS``.
    """
    if isinstance(endpoints, str):
        raise ValueError("fault_endpoints must be a collection of names, not one string")
    unknown = set(endpoints) - ALL_ENDPOINTS
    if unknown:
        raise ValueError(f"unknown fault_endpoints {sorted(unknown)}; use {sorted(ALL_ENDPOINTS)}")


class Faults:
    """The canned answers queued per endpoint, and the random fault knobs with their own RNG.

    Args:
        error_rate: probability of an injected 5xx instead of the handler.
        reset_rate: probability that the connection is reset after the handler ran.
        slow_rate: probability that an answer is delayed by ``slow_seconds``.
        slow_seconds: the delay of a slow answer.
        malformed_rate: probability that a 2xx answer's JSON body is truncated.
        endpoints: the endpoints the random faults apply to.
        seed: seed of the fault stream; ``None`` for a fresh random seed.
    """

    def __init__(
        self,
        *,
        error_rate: float,
        reset_rate: float,
        slow_rate: float,
        slow_seconds: float,
        malformed_rate: float,
        endpoints: Collection[str],
        seed: int | None,
    ):
        self._error_rate = error_rate
        self._reset_rate = reset_rate
        self._slow_rate = slow_rate
        self._slow_seconds = slow_seconds
        self._malformed_rate = malformed_rate
        self._endpoints = frozenset(endpoints)
        self._faulty = bool(error_rate or reset_rate or slow_rate or malformed_rate)
        # A separate stream, so changing a fault knob does not change the jobs' durations.
        self._rng = random.Random(None if seed is None else f"faults-{seed}")
        self.scripts: dict[str, deque[Script]] = {}

    def applies(self, endpoint: str) -> bool:
        """Whether random faults are drawn for requests to ``endpoint``."""
        return self._faulty and endpoint in self._endpoints

    # ------------------------------------------------------------------------------- scripting

    def add(self, endpoint: str, script: Script) -> None:
        """Queue ``script`` after the canned answers already queued for ``endpoint``."""
        self.scripts.setdefault(endpoint, deque()).append(script)

    def clear(self, endpoint: str | None) -> None:
        """Drop the queued canned answers of ``endpoint``, or of all when ``None``."""
        if endpoint is None:
            self.scripts.clear()
        else:
            self.scripts.pop(endpoint, None)

    def pending(self, endpoint: str) -> int:
        """How many requests to ``endpoint`` will still get a canned answer."""
        return sum(script.remaining for script in self.scripts.get(endpoint, ()))

    def next_script(self, endpoint: str) -> Script | None:
        """Use up one canned answer for ``endpoint``, or ``None`` when none is queued."""
        if not self.scripts:
            return None
        queue = self.scripts.get(endpoint)
        if not queue:
            return None
        script = queue[0]
        script.remaining -= 1
        if script.remaining <= 0:
            queue.popleft()
        return script

    async def play(
        self,
        script: Script,
        request: web.Request,
        handler: Handler,
        counter: Counter[int],
        authorized: Callable[[web.Request], bool] | None = None,
    ) -> web.StreamResponse:
        """Answer with ``script``, running ``handler`` first for an ``after`` script.

        ``authorized`` (``None`` for no check) decides whether an ``after`` script's request
        may reach the handler.
        """
        if script.after and (authorized is None or authorized(request)):
            await handler(request)  # the side effect happens; its answer is replaced
        if script.delay:
            await asyncio.sleep(script.delay)
        if script.reset:
            return reset_connection(request, counter)
        counter[script.status] += 1
        return script.response()

    # ---------------------------------------------------------------------------- random faults

    async def serve(
        self, request: web.Request, handler: Handler, counter: Counter[int]
    ) -> web.StreamResponse:
        """Answer through ``handler`` with random faults: a 5xx, a reset or cut body, a delay."""
        rng = self._rng
        if self._error_rate and rng.random() < self._error_rate:
            response = server_error(rng)
        else:
            response = await handler(request)
            if self._reset_rate and rng.random() < self._reset_rate:
                return reset_connection(request, counter)
            if self._malformed_rate and rng.random() < self._malformed_rate:
                response = truncated(response)
        if self._slow_rate and rng.random() < self._slow_rate:
            await asyncio.sleep(self._slow_seconds)
        counter[response.status] += 1
        return response
