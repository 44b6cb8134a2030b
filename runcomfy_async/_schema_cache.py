"""Model schemas from the live catalog, kept on disk with an expiry.

* **Where.** ``$RUNCOMFY_CACHE_DIR/schemas/<origin hash>/<model id>.json``; by default the
  platform's user cache folder (``~/.cache/runcomfy-async`` on Linux, honouring
  ``XDG_CACHE_HOME``; ``~/Library/Caches/runcomfy-async`` on macOS;
  ``runcomfy-async/Cache`` under ``%LOCALAPPDATA%`` on Windows), the same folder as the
  client's other learned state.
* **Off.** ``RUNCOMFY_CACHE=off`` (or ``0``, ``false``, ``no``) keeps nothing on disk.
* **Expiry.** An entry older than :data:`SCHEMA_TTL` is fetched again; a file that does not
  decode is ignored. Writes go to a temporary file renamed into place, so a reader never sees
  half a schema. Nothing here ever raises: a cache that cannot be used is no cache.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
from pathlib import Path

import msgspec

from ._learned import CACHE_SWITCH_ENV, default_cache_dir
from .models._live import MODEL_DECODER, ModelInfo

__all__ = ["SCHEMA_TTL", "SchemaCache", "user_cache_dir"]

logger = logging.getLogger("runcomfy_async")

SCHEMA_TTL = 24 * 3600.0
"""Seconds a cached model schema is used before it is fetched again."""


def user_cache_dir() -> Path:
    """The per-user cache folder of this platform (``RUNCOMFY_CACHE_DIR`` wins)."""
    return default_cache_dir()


class _Entry(msgspec.Struct):
    fetched_at: float
    model: msgspec.Raw


_ENTRY = msgspec.json.Decoder(_Entry)


class SchemaCache:
    """Model details per API origin, on disk.

    Args:
        origin: the API's base URL (schemas of a sandbox never mix with production's).
        folder: the cache folder; ``None``: :func:`user_cache_dir`, or off when
            ``RUNCOMFY_CACHE`` says so.
        ttl: seconds an entry stays fresh.
        enabled: ``False`` keeps nothing (the client's ``cache=False``).
    """

    def __init__(
        self,
        origin: str,
        folder: Path | None = None,
        *,
        ttl: float = SCHEMA_TTL,
        enabled: bool = True,
    ):
        switch = os.environ.get(CACHE_SWITCH_ENV, "").strip().lower()
        if not enabled or (folder is None and switch in ("0", "off", "false", "no")):
            self.folder: Path | None = None
        else:
            base = folder if folder is not None else user_cache_dir()
            digest = hashlib.sha256(origin.encode()).hexdigest()[:16]
            self.folder = base / "schemas" / digest
        self.ttl = ttl

    def __repr__(self) -> str:
        return f"SchemaCache({str(self.folder) if self.folder else 'off'!r}, ttl={self.ttl:g})"

    def _path(self, model_id: str) -> Path | None:
        if self.folder is None:
            return None
        return self.folder / (model_id.replace("/", "__") + ".json")

    def load(self, model_id: str, *, now: float | None = None) -> ModelInfo | None:
        """The cached details of ``model_id`` if fresh, else ``None``."""
        path = self._path(model_id)
        if path is None:
            return None
        try:
            entry = _ENTRY.decode(path.read_bytes())
            if (now if now is not None else time.time()) - entry.fetched_at > self.ttl:
                return None
            info = MODEL_DECODER.decode(bytes(entry.model))
        except (OSError, msgspec.DecodeError, msgspec.ValidationError):
            return None
        return info if info.model_id == model_id else None

    def save(self, info: ModelInfo, *, now: float | None = None) -> None:
        """Keep ``info`` (atomically; any failure is logged at debug level and ignored)."""
        path = self._path(info.model_id)
        if path is None:
            return
        entry = {"fetched_at": now if now is not None else time.time(), "model": info}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(msgspec.json.encode(entry))
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            logger.debug("schema cache %s not written: %s", path, exc)
