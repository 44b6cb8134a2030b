"""``AsyncClient``: the public client, its calls (from :class:`BaseClient`) and its batch entry.

The client's machinery lives in :mod:`runcomfy_async._base_client`; the batch runner is
built on it. This class adds :meth:`AsyncClient.map`, so the batch depends on the client and
never the reverse.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterable, Iterable
from pathlib import Path
from typing import Any

from ._base_client import BaseClient
from ._batch import BatchRunner

__all__ = ["AsyncClient"]


class AsyncClient(BaseClient):
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
