"""``AsyncClient``: the public client, its calls (from :class:`BaseClient`) and its batch entry.

The client's machinery lives in :mod:`runcomfy_async._base_client`; the batch runner is
built on it. This class adds :meth:`AsyncClient.map`, so the batch depends on the client and
never the reverse.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from ._base_client import BaseClient
from ._batch import BatchRunner
from ._config import check_model_id
from ._jobs import Job, as_completed
from .models._live import MODEL_DECODER, PAGE_DECODER, ModelInfo, ModelPage

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
        uploader: an async callable ``(data, mime) -> URL`` that hosts a local media file
            given in the inputs; without one, local files are sent inline as ``data:`` URIs.
        check_catalog: check the inputs of models without typed inputs against their schema
            from the live catalog (fetched once, kept in the cache folder for a day). A
            catalog that does not answer never blocks a submit: the inputs go unchecked.
        proxy: an ``http(s)://`` proxy for every request, downloads included; ``None``
            follows ``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY`` and ``NO_PROXY``.
        default_headers: extra headers sent with every API request (not with downloads);
            they cannot set ``Authorization``.
    """

    async def as_completed(self, jobs: Iterable[Job]) -> AsyncIterator[Job]:
        """Yield the given jobs as they finish (successfully or not); await each for its result.

        Example:
            >>> async for job in client.as_completed(jobs):
            ...     try:
            ...         print((await job).output.urls)
            ...     except JobFailedError as exc:
            ...         print(job.request_id, "failed:", exc.error)
        """
        async for job in as_completed(jobs):
            yield job

    async def list_models(
        self,
        search: str | None = None,
        *,
        category: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
        include_schema: bool = False,
    ) -> ModelPage:
        """Search the live model catalog (``GET /v1/models``).

        Args:
            search: words every listed model must mention (id, name, description).
            category: only models of this category, e.g. ``"text-to-image"``.
            limit: models per page (the API allows 1 to 500); ``None``: the API's default.
            offset: where the page starts.
            include_schema: also fetch each model's ``input_schema``.

        Returns:
            A page: ``.models`` and the ``.total`` that match.

        Example:
            >>> page = await client.list_models("nano banana", limit=10)
            >>> [m.model_id for m in page.models]
        """
        query = {
            "search": search,
            "category": category,
            "limit": None if limit is None else str(limit),
            "offset": None if offset is None else str(offset),
            "include_schema": "true" if include_schema else None,
        }
        pairs = {k: v for k, v in query.items() if v is not None}
        path = "/v1/models" + ("?" + urlencode(pairs) if pairs else "")
        self._require_open()
        page = await self._read("catalog", "GET", path, PAGE_DECODER.decode)
        for info in page.models:
            self._catalog.remember(info)
        return page

    async def get_model(self, model_id: str) -> ModelInfo:
        """One model's details from the live catalog, with its ``input_schema`` and price.

        Raises:
            APIStatusError: the catalog does not know the model (400001 or 404).
        """
        self._require_open()
        path = f"/v1/models/{check_model_id(model_id)}"
        info = await self._read("catalog", "GET", path, MODEL_DECODER.decode)
        self._catalog.remember(info)
        return info

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
        retry_failed: bool = False,
        max_downloads: int = 8,
        download_timeout: float | None = 600.0,
        outage_tolerance: float | None = 900.0,
    ) -> BatchRunner:
        """Run ``model`` over many inputs; iterate the runner for one result per input.

        Inputs are read lazily (an iterable or async iterable of dicts, typed Structs, or
        ``(key, inputs)`` pairs). A failed input is a result with its error, never the end
        of the batch. With a ``journal``, a killed batch resumes: finished inputs are
        skipped, submitted ones are polled again, never resubmitted. Inputs are identified by
        key or content, never by position (see :class:`BatchRunner`).

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
            retry_failed=retry_failed,
            max_downloads=max_downloads,
            download_timeout=download_timeout,
            outage_tolerance=outage_tolerance,
        )
