r"""What the client learns, kept for the next process: durations, queue speed, rate limit.

Every client learns how long each model's jobs run, how fast a server queue moves and, when
no ``max_requests_per_second`` is set, what rate the account is allowed. Without a cache all
of that dies with the process, and every new script starts cold. So a client reads what
earlier ones learned when it opens, and writes what it learned when it closes, into one
small JSON file per user:

* **Where.** ``$RUNCOMFY_CACHE_DIR/learned.json``; by default the platform's user cache
  folder: ``$XDG_CACHE_HOME/runcomfy-async`` (``~/.cache/runcomfy-async``) on Linux,
  ``~/Library/Caches/runcomfy-async`` on macOS, ``%LOCALAPPDATA%\runcomfy-async\Cache`` on
  Windows (see :func:`default_cache_dir`).
* **Off.** ``AsyncClient(cache=False)``, or ``RUNCOMFY_CACHE=off`` in the environment.
* **What.** Keyed by API origin (the base URL) and model id: the log-normal duration model
  (``mu``, ``sigma`` and how many jobs it rests on), the queue's speed, and the origin's
  learned rate limit. Never a token, an input or a request id.
* **Never fatal.** A missing, unreadable, corrupt, oversized or foreign file is ignored (and
  overwritten by the next save); a value out of range is dropped; a failed save is logged
  at debug level and forgotten.
* **Shared.** Several processes may use the file at once: a save re-reads the file, merges
  (the newer entry of each model wins) and replaces it atomically (a temp file in the same
  folder, then :func:`os.replace`), so a reader never sees half a file. Two saves racing
  may lose one side's newest update, never the file.
* **Small.** At most :data:`MAX_ORIGINS` origins (the most recently used) and
  :data:`MAX_MODELS` models per origin are kept.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

import msgspec

__all__ = [
    "CACHE_DIR_ENV",
    "CACHE_SWITCH_ENV",
    "PRIORS",
    "LearnedCache",
    "ModelKnowledge",
    "OriginKnowledge",
    "default_cache_dir",
    "resolve_cache",
]

logger = logging.getLogger("runcomfy_async")

CACHE_DIR_ENV = "RUNCOMFY_CACHE_DIR"
"""Environment variable naming the cache folder."""
CACHE_SWITCH_ENV = "RUNCOMFY_CACHE"
"""Environment variable that turns the cache off with ``0``, ``off``, ``false`` or ``no``."""
FILE_NAME = "learned.json"
FORMAT = "runcomfy-async/learned/1"
"""The file's ``format`` field; a file with any other value is foreign and ignored."""
MAX_ORIGINS = 16
MAX_MODELS = 64
MAX_BYTES = 1 << 20
"""A larger file is not read (it is not one this library wrote)."""
MAX_COUNT = 1e6
_MU_RANGE = (math.log(1e-3), math.log(7 * 86400.0))  # a millisecond to a week


class ModelKnowledge(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """What is known about one model's jobs at one origin.

    Attributes:
        mu: mean of the log duration (seconds).
        sigma: standard deviation of the log duration.
        count: how many finished jobs the estimate rests on.
        queue_speed: queue places served per second when the model was last seen queueing.
        updated: when it was learned (Unix time).
    """

    mu: float
    sigma: float
    count: float
    queue_speed: float | None = None
    updated: float = 0.0

    def valid(self) -> bool:
        """Whether every value is finite and in a plausible range."""
        values = (self.mu, self.sigma, self.count, self.updated)
        if not all(math.isfinite(v) for v in values):
            return False
        if self.queue_speed is not None and not (
            math.isfinite(self.queue_speed) and self.queue_speed > 0
        ):
            return False
        return (
            _MU_RANGE[0] <= self.mu <= _MU_RANGE[1]
            and 0.01 <= self.sigma <= 5.0
            and 0 < self.count <= MAX_COUNT
        )


class OriginKnowledge(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """What is known about one API origin.

    Attributes:
        models: per model id.
        rate_limit: the request rate (per second) the origin was found to allow, if learned.
        rate_updated: when the rate limit was learned (Unix time).
        updated: when anything of this origin was last saved (Unix time).
    """

    models: dict[str, ModelKnowledge] = {}
    rate_limit: float | None = None
    rate_updated: float = 0.0
    updated: float = 0.0


class _File(msgspec.Struct, forbid_unknown_fields=False):
    format: str
    origins: dict[str, OriginKnowledge] = {}


_DECODER = msgspec.json.Decoder(_File)

PRIORS: dict[str, tuple[float, float]] = {
    "google/nano-banana-2/text-to-image": (12.0, 0.6),
    "google/nano-banana-2/edit": (15.0, 0.6),
    "google/nano-banana/pro/text-to-image": (25.0, 0.6),
    "google/nano-banana-2-lite/text-to-image": (8.0, 0.6),
}
"""Median seconds and log spread assumed for the seed models before anything is learned.

Wide on purpose: they only shape where a lone job's checks gather until its first job
finishes; a batch still probes from a fraction of a second up (see the poller)."""


def default_cache_dir() -> Path:
    """The per-user cache folder of this platform (``RUNCOMFY_CACHE_DIR`` wins)."""
    explicit = os.environ.get(CACHE_DIR_ENV, "").strip()
    if explicit:
        return Path(explicit).expanduser()
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA", "").strip()
        root = Path(base) if base else Path.home() / "AppData" / "Local"
        return root / "runcomfy-async" / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "runcomfy-async"
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(xdg) if xdg else Path.home() / ".cache") / "runcomfy-async"


def resolve_cache(cache: bool | str | os.PathLike[str]) -> LearnedCache:
    """The cache a client uses for its ``cache`` argument.

    ``True``: the default folder, unless ``RUNCOMFY_CACHE`` turns it off; ``False``: off;
    a path: that folder (even if the environment turns the default off).
    """
    if cache is False:
        return LearnedCache(None)
    if cache is True:
        if os.environ.get(CACHE_SWITCH_ENV, "").strip().lower() in ("0", "off", "false", "no"):
            return LearnedCache(None)
        return LearnedCache(default_cache_dir())
    return LearnedCache(Path(cache).expanduser())


class LearnedCache:
    """The learned-knowledge file: read once when a client opens, merged on each save.

    Args:
        folder: where ``learned.json`` lives; ``None`` turns the cache off (loads find
            nothing, saves do nothing).
    """

    def __init__(self, folder: Path | None) -> None:
        self.path: Path | None = None if folder is None else folder / FILE_NAME
        """The file, or ``None`` when the cache is off."""

    def __repr__(self) -> str:
        return f"<LearnedCache {self.path if self.path is not None else 'off'}>"

    @property
    def enabled(self) -> bool:
        """Whether the cache is on."""
        return self.path is not None

    def load(self, origin: str) -> OriginKnowledge:
        """What earlier clients learned about ``origin`` (empty if nothing, or off)."""
        return self._read().get(origin, OriginKnowledge())

    def save(
        self,
        origin: str,
        models: Mapping[str, ModelKnowledge],
        rate_limit: float | None = None,
    ) -> bool:
        """Merge what this client learned about ``origin`` into the file; ``True`` if written.

        For each model the newer entry (by ``updated``) wins, so a save from a process that
        learned less recently does not undo another's. Never raises for a file problem.
        """
        if self.path is None or (not models and rate_limit is None):
            return False
        now = time.time()
        origins = self._read()
        old = origins.get(origin, OriginKnowledge())
        merged = dict(old.models)
        for model_id, entry in models.items():
            if not entry.valid():
                continue
            current = merged.get(model_id)
            if current is None or current.updated <= entry.updated:
                merged[model_id] = entry
        if len(merged) > MAX_MODELS:
            keep = sorted(merged.items(), key=lambda kv: kv[1].updated)[-MAX_MODELS:]
            merged = dict(keep)
        rate, rate_at = old.rate_limit, old.rate_updated
        if rate_limit is not None and math.isfinite(rate_limit) and rate_limit > 0:
            rate, rate_at = rate_limit, now
        origins[origin] = OriginKnowledge(
            models=merged, rate_limit=rate, rate_updated=rate_at, updated=now
        )
        if len(origins) > MAX_ORIGINS:
            newest = sorted(origins.items(), key=lambda kv: kv[1].updated)[-MAX_ORIGINS:]
            origins = dict(newest)
        return self._write(_File(format=FORMAT, origins=origins))

    def _read(self) -> dict[str, OriginKnowledge]:
        if self.path is None:
            return {}
        try:
            with open(self.path, "rb") as fh:
                raw = fh.read(MAX_BYTES + 1)
        except OSError:
            return {}
        if len(raw) > MAX_BYTES:
            logger.debug("learned cache %s is too large: ignored", self.path)
            return {}
        try:
            data = _DECODER.decode(raw)
        except (msgspec.DecodeError, ValueError):
            logger.debug("learned cache %s is not one of ours: ignored", self.path)
            return {}
        if data.format != FORMAT:
            logger.debug("learned cache %s has format %r: ignored", self.path, data.format)
            return {}
        out: dict[str, OriginKnowledge] = {}
        for origin, known in data.origins.items():
            rate = known.rate_limit
            if rate is not None and not (math.isfinite(rate) and rate > 0):
                rate = None
            models = {m: k for m, k in known.models.items() if k.valid()}
            out[origin] = OriginKnowledge(
                models=models,
                rate_limit=rate,
                rate_updated=known.rate_updated,
                updated=known.updated if math.isfinite(known.updated) else 0.0,
            )
        return out

    def _write(self, data: _File) -> bool:
        assert self.path is not None
        folder = self.path.parent
        tmp: str | None = None
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".learned-", suffix=".tmp", dir=folder)
            with os.fdopen(fd, "wb") as fh:
                fh.write(msgspec.json.encode(data))
            os.replace(tmp, self.path)
            tmp = None
            return True
        except OSError as exc:
            logger.debug("could not save the learned cache %s: %s", self.path, exc)
            return False
        finally:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
