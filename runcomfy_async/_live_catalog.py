"""Which schema checks a submit to a model with no typed inputs: the live catalog's, if it answers.

:meth:`LiveCatalog.schema_for` looks in memory, then on disk (see
:mod:`runcomfy_async._schema_cache`), then asks ``GET /v1/models/{id}`` once, bounded by
:data:`FETCH_TIMEOUT`. A catalog that does not answer (or does not know the model) is never an
error: the submit goes ahead unchecked, with one warning, and the model is not asked about
again for :data:`RETRY_AFTER` seconds, so a batch does not pay a failed look-up per input.
Concurrent submits of one model share one look-up.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

from ._exceptions import APIError, NotFoundError
from ._schema_cache import SchemaCache
from .models import MODELS
from .models._live import MODEL_DECODER, ModelInfo

__all__ = ["FETCH_TIMEOUT", "RETRY_AFTER", "LiveCatalog"]

logger = logging.getLogger("runcomfy_async")

FETCH_TIMEOUT = 5.0
"""Seconds a submit waits for the catalog before it goes ahead unchecked."""

RETRY_AFTER = 300.0
"""Seconds before a model the catalog did not describe is looked up again."""


class LiveCatalog:
    """Model schemas for submits: memory, disk, then the API.

    Args:
        fetch: one ``GET /v1/models/{id}``, decoded.
        cache: the disk cache.
        enabled: ``False`` turns look-ups off (untyped models are then sent unchecked).
    """

    def __init__(
        self,
        fetch: Callable[[str], Awaitable[ModelInfo]],
        cache: SchemaCache,
        *,
        enabled: bool = True,
    ):
        self._fetch = fetch
        self.cache = cache
        self.enabled = enabled
        self._known: dict[str, tuple[float, ModelInfo | None]] = {}
        self._pending: dict[str, asyncio.Future[ModelInfo | None]] = {}
        self._warned = False

    @classmethod
    def for_client(cls, client: Any, cache_file: Path | None, *, enabled: bool) -> LiveCatalog:
        """The catalog of a client: its one-shot reads, beside its cache file (if any)."""

        def fetch(model_id: str) -> Awaitable[ModelInfo]:
            path = f"/v1/models/{model_id}"
            decoded: Awaitable[ModelInfo] = client._once(
                "read", "catalog", "GET", path, MODEL_DECODER.decode
            )
            return decoded

        folder = None if cache_file is None else cache_file.parent
        cache = SchemaCache(client.base_url, folder, enabled=folder is not None)
        return cls(fetch, cache, enabled=enabled)

    def remember(self, info: ModelInfo) -> None:
        """Keep details fetched by the user (``get_model``) for later submits."""
        if info.input_schema is not None:
            self._known[info.model_id] = (time.monotonic(), info)
            self.cache.save(info)

    async def schema_for(self, model_id: str) -> ModelInfo | None:
        """The catalog's details of an untyped model, or ``None`` (typed, off or unknown)."""
        if not self.enabled or model_id in MODELS:
            return None
        now = time.monotonic()
        known = self._known.get(model_id)
        if known is not None:
            ttl = self.cache.ttl if known[1] is not None else RETRY_AFTER
            if now - known[0] < ttl:
                return known[1]
        pending = self._pending.get(model_id)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[ModelInfo | None] = asyncio.get_running_loop().create_future()
        self._pending[model_id] = future
        try:
            info = self.cache.load(model_id)
            if info is None or info.input_schema is None:
                info = await self._ask(model_id)
            self._known[model_id] = (time.monotonic(), info)
            future.set_result(info)
            return info
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters get it, an unwaited one must not warn
            raise
        finally:
            del self._pending[model_id]

    async def _ask(self, model_id: str) -> ModelInfo | None:
        try:
            with anyio.fail_after(FETCH_TIMEOUT):
                info = await self._fetch(model_id)
        except NotFoundError as exc:
            logger.info("%s is not in the model catalog (%s); sending unchecked", model_id, exc)
            return None
        except (APIError, TimeoutError) as exc:
            if getattr(exc, "error_code", None) == 400001:
                logger.info("%s is not in the model catalog; sending unchecked", model_id)
                return None
            if not self._warned:
                self._warned = True
                logger.warning(
                    "the model catalog did not answer (%s); inputs of models without bundled "
                    "schemas are sent unchecked",
                    exc,
                )
            return None
        if info.input_schema is None:
            return None
        self.cache.save(info)
        return info
