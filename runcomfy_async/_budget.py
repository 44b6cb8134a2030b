"""The client-wide request budget: one rate shared by submit, poll and cancel, and the 429 pause.

Every request the client sends first passes :meth:`RequestBudget.acquire`. Three things
happen there:

* **Pause.** After a 429 the whole client stops sending until ``Retry-After`` (or a backoff)
  has passed: no request leaves during the pause, whichever task wants to send it.
* **Priority.** When requests queue for a connection slot, reads (polls, cancels) go first,
  but one grant in ``submit_share`` goes to a waiting submit, so a flood of submits never
  starves the jobs already in flight and polling never stops new work from flowing. When
  they queue for the *rate* instead, the shares swap: submits go first and one grant in
  ``submit_share`` goes to a read. Under a binding rate limit every request costs the same
  scarce token, and a submit puts the server to work at once while a check that waits finds
  its job riper: fewer wasted checks, no idle tail of late-submitted jobs at the end.
* **Rate.** An :class:`aiolimiter.AsyncLimiter` leaky bucket of ``max_rate`` requests per
  second with a burst of ``burst``. With ``max_rate=None`` and ``adaptive``, a rate learned
  from the 429s (see :mod:`runcomfy_async._adaptive`); without ``adaptive``, no limit.
* **Concurrency.** At most ``max_concurrency`` requests in flight (the size of the
  connection pool), handed out in the same priority order, so a flood of submits cannot
  fill the pool ahead of the polls even with no rate limit.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from typing import Literal

from aiolimiter import AsyncLimiter

from ._adaptive import AdaptiveRate

__all__ = ["RequestBudget"]

logger = logging.getLogger("runcomfy_async")

Kind = Literal["read", "submit"]

HEADROOM = 0.98
"""Share of ``max_rate`` the client actually sends at (see :class:`RequestBudget`)."""
BURST_SHARE = 0.9
"""Default burst as a share of one second's worth of ``max_rate``.

Requests of the first burst reach the server with uneven latency (the first ones queue
behind the connection set-up), so a client bucket exactly as deep as the server's draws a
429, and a whole Retry-After pause, at the start of nearly every run."""


class RequestBudget:
    """A shared, prioritised request rate with a global pause.

    Args:
        max_rate: requests per second for the whole client; ``None`` for no limit. The client
            paces at 98 % of it, leaving room for network jitter.
        burst: how many requests may leave at once after an idle spell (default: 90 % of
            one second's worth, so a server bucket of ``max_rate`` keeps a margin for the
            latency jitter of the first burst).
        submit_share: when both kinds wait, one grant in this many goes to the kind that
            is not preferred (see the module docstring).
        max_concurrency: requests in flight at once; ``None`` for no limit. Every
            :meth:`acquire` must then be paired with a :meth:`release`.
        adaptive: when ``max_rate`` is ``None``, learn a rate from the 429s instead of
            sending freely (see :mod:`runcomfy_async._adaptive`).
    """

    def __init__(
        self,
        max_rate: float | None = None,
        *,
        burst: float | None = None,
        submit_share: int = 4,
        max_concurrency: int | None = None,
        adaptive: bool = False,
    ):
        if max_rate is not None and max_rate <= 0:
            raise ValueError("max_rate must be > 0 or None")
        if max_concurrency is not None and max_concurrency < 1:
            raise ValueError("max_concurrency must be >= 1 or None")
        self._max_concurrency = max_concurrency
        self.in_flight = 0
        self._slot_free: asyncio.Event | None = None
        if submit_share < 1:
            raise ValueError("submit_share must be >= 1")
        self.max_rate = max_rate
        self._limiter: AsyncLimiter | None = None
        if max_rate is not None:
            size = burst if burst is not None else max(1.0, BURST_SHARE * max_rate)
            # A bucket of `size` leaking at HEADROOM x the rate: a server that limits to the
            # same rate sees our requests with network jitter, and a 2 % margin absorbs it
            # where an exact match would draw a 429 (and a whole Retry-After pause) now and then.
            self._limiter = AsyncLimiter(size, size / (max_rate * HEADROOM))
        self.adaptive: AdaptiveRate | None = None
        """The learned rate when no ``max_rate`` was given and ``adaptive`` is on."""
        if max_rate is None and adaptive:
            self.adaptive = AdaptiveRate(time.monotonic())
        self._submit_share = submit_share
        self._paused_until = 0.0
        self._busy = False
        self._waiters: dict[Kind, collections.deque[asyncio.Future[None]]] = {
            "read": collections.deque(),
            "submit": collections.deque(),
        }
        self._grants = 0
        self._rate_bound = False
        self.pauses = 0
        self.granted: collections.Counter[str] = collections.Counter()

    @property
    def paused_for(self) -> float:
        """Seconds left in the current pause (0 when not paused)."""
        return max(0.0, self._paused_until - time.monotonic())

    def pause(self, seconds: float) -> None:
        """Stop every request from leaving for ``seconds`` (extends, never shortens, a pause)."""
        until = time.monotonic() + max(0.0, seconds)
        if until > self._paused_until:
            self._paused_until = until
            self.pauses += 1
            logger.info("rate limited by the API: pausing all requests for %.2f s", seconds)

    def start_from(self, learned_rate: float | None) -> None:
        """Start the learned rate from a limit learned earlier (no effect without one)."""
        if self.adaptive is not None and learned_rate is not None:
            self.adaptive = AdaptiveRate(time.monotonic(), learned_rate)

    def rate_limited(self, seconds: float, sent_at: float) -> None:
        """A request sent at ``sent_at`` was answered 429: pause ``seconds``, learn from it."""
        if self.adaptive is not None:
            self.adaptive.limited(time.monotonic(), sent_at, seconds)
        self.pause(seconds)

    async def acquire(self, kind: Kind = "read") -> None:
        """Wait until a request of ``kind`` may leave (its turn, a free slot, no pause, rate).

        Pair every successful call with :meth:`release` once the answer is read.
        """
        if self._busy or self._waiters["read"] or self._waiters["submit"]:
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters[kind].append(fut)
            try:
                await fut
            except BaseException:
                if fut.done() and not fut.cancelled():
                    # We were handed the turn but are leaving: pass it on.
                    self._busy = False
                    self._wake_next()
                else:
                    self._remove(kind, fut)
                raise
        self._busy = True
        try:
            await self._wait_for_slot()
        finally:
            self._busy = False
            self._wake_next()
        self.granted[kind] += 1

    def release(self) -> None:
        """A request granted by :meth:`acquire` is finished: free its concurrency slot."""
        self.in_flight -= 1
        if self._slot_free is not None:
            self._slot_free.set()

    async def _wait_for_slot(self) -> None:
        limit = self._max_concurrency
        while True:
            if limit is not None and self.in_flight >= limit:
                if self._slot_free is None:
                    self._slot_free = asyncio.Event()
                self._slot_free.clear()
                await self._slot_free.wait()
                continue
            wait = self._paused_until - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            if self._limiter is not None:
                self._rate_bound = not self._limiter.has_capacity()
                await self._limiter.acquire()
                if self._paused_until > time.monotonic():
                    continue  # a 429 arrived while we waited for the rate: honour it first
            elif self.adaptive is not None:
                wait = self.adaptive.wait(time.monotonic())
                self._rate_bound = wait > 0
                if wait > 0:
                    await asyncio.sleep(wait)
                    continue  # the rate, or a pause, may have changed meanwhile
                self.adaptive.sent(time.monotonic())
            self.in_flight += 1
            return

    def _remove(self, kind: Kind, fut: asyncio.Future[None]) -> None:
        with contextlib.suppress(ValueError):
            self._waiters[kind].remove(fut)

    def _wake_next(self) -> None:
        reads, submits = self._waiters["read"], self._waiters["submit"]
        while reads or submits:
            self._grants += 1
            minority_turn = self._grants % self._submit_share == 0
            prefer_submit = minority_turn != self._rate_bound
            queue = submits if (submits and (prefer_submit or not reads)) else reads
            fut = queue.popleft()
            if not fut.done():
                self._busy = True
                fut.set_result(None)
                return
