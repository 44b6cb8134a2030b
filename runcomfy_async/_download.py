"""Downloads of job outputs: a token-free session, streamed atomic writes, caps and retries.

A :class:`Downloader` owns a second aiohttp session, apart from the API's: it never sends an
``Authorization`` header or cookies, never reads ``.netrc``, goes through the proxy the client's
rules pick (:mod:`runcomfy_async._netopts`), and follows at most
:data:`MAX_REDIRECTS` redirects by hand. What it may fetch and what the files are called is
decided in :mod:`runcomfy_async._download_policy` (``https://``, or ``http://`` only on loopback
unless ``allow_insecure=True``; names from the caller's stem and the output's position, never
from the URL); this module does the I/O. Each answer is streamed to a ``.part`` file while
hashed, then renamed into place; partial files never survive a failure.

Example:
    >>> async def demo(urls: list[str]) -> None:
    ...     async with Downloader("out", max_concurrent=8) as downloader:
    ...         files = await downloader.fetch_all(urls, stem="00042")
    ...         print([f.path for f in files])  # ['00042-0.png', '00042-1.png']
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import TypeVar

import aiohttp
import anyio
import anyio.to_thread
import msgspec

from ._config import RetryPolicy
from ._download_files import PartFile, make_folder, on_disk
from ._download_policy import (
    ALLOWED_EXTENSIONS,
    MAX_REDIRECTS,
    REDIRECT_STATUSES,
    DownloadError,
    DownloadTimeoutError,
    _display_url,
    check_url,
    file_name,
    media_type,
    redirect_target,
    safe_stem,
)
from ._exceptions import ConfigError
from ._http import AiohttpErrors, NetFailure
from ._netopts import proxy_for
from ._retry import parse_retry_after, retrying
from ._version import __version__

__all__ = [
    "ALLOWED_EXTENSIONS",
    "MAX_REDIRECTS",
    "DownloadError",
    "DownloadTimeoutError",
    "DownloadedFile",
    "Downloader",
    "safe_stem",
]

logger = logging.getLogger("runcomfy_async")

T = TypeVar("T")

_FLUSH_BYTES = 1 << 20  # batch writes so the thread hop is paid once per MiB, not per packet
_OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)


class DownloadedFile(msgspec.Struct, frozen=True):
    """One output saved to disk.

    Attributes:
        url: the URL that was asked for (before any redirect).
        path: the file's path relative to the output folder, with ``/`` separators.
        bytes: the file's size.
        sha256: the hex SHA-256 of the file's content.
        content_type: the answer's media type without parameters (``"image/png"``), or ``""``
            when the server sent none.
    """

    url: str
    path: str
    bytes: int
    sha256: str
    content_type: str


class Downloader:
    """Downloads job outputs into one folder: concurrent, bounded, retried and atomic.

    Use it as an async context manager; it opens its own aiohttp session (never the API's,
    never with the token) and closes it on exit.

    Args:
        out_dir: the output folder; created (with parents) on entry if missing.
        max_concurrent: downloads in progress at once (a slot is held per attempt and given
            back while waiting to retry).
        max_bytes: largest accepted file in bytes; a larger Content-Length is refused at once
            and a longer body is cut off. ``None`` means no limit.
        connect_timeout: seconds to open a connection; ``None`` means no limit.
        read_timeout: seconds to wait for each read from the socket; ``None`` means no limit.
        file_timeout: seconds one file may take in all, retries included, so that a host
            sending a byte now and then cannot hold a download slot for ever; ``None`` means
            no limit.
        retry: the retry policy; transport errors, timeouts, 408, 429 and 5xx are retried with
            full-jitter backoff (429/503 honour ``Retry-After``). Other statuses are final.
        allow_insecure: also fetch ``http://`` URLs of hosts that are not loopback. A redirect
            from ``https://`` never goes down to plain ``http://`` to such a host.
        fsync: flush every file (and the folder entry) to disk before reporting it saved.
        proxy: the proxy for every download; ``None`` follows ``HTTPS_PROXY``/``NO_PROXY``
            per URL (the API token is never sent, to a proxy or anywhere else).

    Attributes:
        files: files saved so far.
        bytes_downloaded: bytes saved so far (in saved files only).
        retries: attempts that failed and were retried.
        failures: downloads that finally failed or were refused.
        requests_sent: HTTP requests sent, redirect hops included.

    Raises:
        ConfigError: for an out-of-range option.

    Example:
        >>> async def demo(result_urls: list[str]) -> None:
        ...     async with Downloader("out") as downloader:
        ...         saved = await downloader.fetch(result_urls[0], stem="cat", single=True)
        ...         print(saved.path, saved.bytes, saved.sha256)  # cat.png 310 9f2c...
    """

    def __init__(
        self,
        out_dir: str | os.PathLike[str],
        *,
        max_concurrent: int = 8,
        max_bytes: int | None = 512 * 2**20,
        connect_timeout: float | None = 10.0,
        read_timeout: float | None = 120.0,
        file_timeout: float | None = None,
        retry: RetryPolicy | None = None,
        allow_insecure: bool = False,
        fsync: bool = False,
        proxy: str | None = None,
    ):
        if max_concurrent < 1:
            raise ConfigError(f"max_concurrent must be at least 1, got {max_concurrent}")
        if max_bytes is not None and max_bytes < 0:
            raise ConfigError(f"max_bytes must be >= 0 or None, got {max_bytes}")
        for label, value in (
            ("connect_timeout", connect_timeout),
            ("read_timeout", read_timeout),
            ("file_timeout", file_timeout),
        ):
            if value is not None and not value > 0:
                raise ConfigError(f"{label} must be > 0 or None, got {value}")
        self.out_dir = Path(out_dir)
        self._proxy = proxy
        self._folder: Path | None = None
        self._max_concurrent = max_concurrent
        self._max_bytes = max_bytes
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout, sock_read=read_timeout
        )
        self._retry = retry or RetryPolicy()
        self._file_timeout = file_timeout
        self._allow_insecure = allow_insecure
        self._fsync = fsync
        self._slots = anyio.Semaphore(max_concurrent)
        self._session: aiohttp.ClientSession | None = None
        self.files = 0
        self.bytes_downloaded = 0
        self.retries = 0
        self.failures = 0
        self.requests_sent = 0

    def __repr__(self) -> str:
        return (
            f"Downloader(out_dir={str(self.out_dir)!r}, max_concurrent={self._max_concurrent}, "
            f"files={self.files}, bytes_downloaded={self.bytes_downloaded})"
        )

    async def __aenter__(self) -> Downloader:
        if self._session is None:
            self._folder = await anyio.to_thread.run_sync(make_folder, self.out_dir)
            connector = aiohttp.TCPConnector(
                limit=self._max_concurrent, limit_per_host=self._max_concurrent, ttl_dns_cache=300
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                headers={"User-Agent": f"runcomfy-async/{__version__}", "Accept": "*/*"},
                cookie_jar=aiohttp.DummyCookieJar(),
                raise_for_status=False,
                trust_env=False,
            )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def check_url(self, url: str) -> None:
        """Refuse a URL this downloader will not fetch, without sending anything.

        Args:
            url: the output URL.

        Raises:
            DownloadError: a scheme other than https/http, ``http://`` to a host that is not
                loopback (unless ``allow_insecure``), credentials, spaces or control characters
                in the URL, or no host.
        """
        check_url(url, allow_http=self._allow_insecure)

    async def fetch(
        self, url: str, *, stem: str, position: int = 0, single: bool = False
    ) -> DownloadedFile:
        """Download one output to ``{stem}-{position}{ext}`` (or ``{stem}{ext}`` if single).

        An existing file of that name is replaced atomically: a re-run overwrites its own
        earlier outputs instead of piling up copies.

        Args:
            url: the output URL (https, or http to loopback).
            stem: the name's stem, e.g. the input's index ``"00042"`` or a key; it is passed
                through :func:`safe_stem`.
            position: the output's 0-based position among its job's outputs.
            single: name the file ``{stem}{ext}``, without the position.

        Returns:
            The saved file.

        Raises:
            DownloadError: refused URL, an error status, too large a body, too many or unsafe
                redirects, a disk error, or a transient failure that outlived the retries.
            DownloadTimeoutError: the last attempt timed out, or ``file_timeout`` passed.
            ConfigError: a negative ``position``.
            RuntimeError: the downloader is not open.
        """
        if self._file_timeout is None:
            return await self._fetch(url, stem, position, single)
        with anyio.move_on_after(self._file_timeout) as scope:
            return await self._fetch(url, stem, position, single)
        assert scope.cancelled_caught
        self.failures += 1
        raise DownloadTimeoutError(
            f"not saved within the {self._file_timeout:g} s allowed for one file", url=url
        )

    async def _fetch(self, url: str, stem: str, position: int, single: bool) -> DownloadedFile:
        session = self._require_open()
        if position < 0:
            raise ConfigError(f"position must be >= 0, got {position}")
        self._refuse_early(url)
        base = safe_stem(stem)
        attempts = 0

        async def once() -> DownloadedFile:
            nonlocal attempts
            attempts += 1
            try:
                async with self._slots:  # held per attempt, given back while waiting to retry
                    return await self._attempt(session, url, base, position, single)
            except DownloadError as exc:
                exc.attempts = attempts
                raise

        def on_retry(exc: Exception, attempt: int, delay: float) -> None:
            self.retries += 1
            logger.debug("%s; retry %d in %.2f s", exc, attempt, delay)

        try:
            saved = await retrying(
                once,
                policy=self._retry,
                attempts=self._retry.max_attempts,
                retryable=_is_retryable,
                errors=DownloadError,
                on_retry=on_retry,
            )
        except DownloadError as exc:
            self.failures += 1
            logger.debug("%s", exc)
            raise
        self.files += 1
        self.bytes_downloaded += saved.bytes
        logger.debug("saved %s (%d bytes) from %s", saved.path, saved.bytes, _display_url(url))
        return saved

    async def fetch_all(self, urls: Sequence[str], *, stem: str) -> list[DownloadedFile]:
        """Download a job's outputs concurrently, as ``{stem}-0{ext}``, ``{stem}-1{ext}``...

        Files are always numbered, even when there is one URL, so that a job's files are named
        the same way whatever its number of outputs (use :meth:`fetch` with ``single=True``
        for a bare ``{stem}{ext}``). Every URL is checked before any request is sent; when one
        download fails, the others are cancelled (their partial files removed; files already
        saved stay) and its error is raised.

        Args:
            urls: the job's output URLs, in order.
            stem: the names' stem (see :meth:`fetch`).

        Returns:
            The saved files, in the order of ``urls``.

        Raises:
            DownloadError: the first download that failed (see :meth:`fetch`).
        """
        self._require_open()
        for url in urls:
            self._refuse_early(url)
        results: list[DownloadedFile | None] = [None] * len(urls)
        errors: list[DownloadError] = []

        async def one(index: int, url: str, scope: anyio.CancelScope) -> None:
            try:
                results[index] = await self.fetch(url, stem=stem, position=index)
            except DownloadError as exc:
                errors.append(exc)
                scope.cancel()

        async with anyio.create_task_group() as group:
            for index, url in enumerate(urls):
                group.start_soon(one, index, url, group.cancel_scope)
        if errors:
            raise errors[0]
        return [saved for saved in results if saved is not None]

    # ---------------------------------------------------------------------------- internals

    def _refuse_early(self, url: str) -> None:
        try:
            self.check_url(url)
        except DownloadError as exc:
            self.failures += 1
            logger.debug("%s", exc)
            raise

    def _require_open(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("the downloader is not open; use 'async with Downloader(...)'")
        return self._session

    async def _attempt(
        self, session: aiohttp.ClientSession, url: str, base: str, position: int, single: bool
    ) -> DownloadedFile:
        """One try: follow checked redirects, then stream the answer to disk."""
        current = url
        redirects = 0
        with AiohttpErrors(lambda failure: _transport_error(failure, url)):
            while True:
                self.requests_sent += 1
                proxy = proxy_for(current, self._proxy)
                async with session.get(current, allow_redirects=False, proxy=proxy) as resp:
                    if resp.status in REDIRECT_STATUSES:
                        current = redirect_target(
                            url,
                            current,
                            resp.status,
                            resp.headers.get("Location"),
                            redirects=redirects,
                            allow_insecure=self._allow_insecure,
                        )
                        redirects += 1
                        continue
                    if not 200 <= resp.status < 300:
                        raise _status_error(url, resp)
                    return await self._save(url, current, resp, base, position, single)

    async def _save(
        self,
        url: str,
        final_url: str,
        resp: aiohttp.ClientResponse,
        base: str,
        position: int,
        single: bool,
    ) -> DownloadedFile:
        """Stream a 2xx answer to a temp file, then rename it into place."""
        cap = self._max_bytes
        length = resp.content_length
        if cap is not None and length is not None and length > cap:
            raise DownloadError(
                f"Content-Length {length} exceeds the {cap}-byte cap",
                url=url,
                status_code=resp.status,
            )
        media = media_type(resp.headers.get("Content-Type", ""))
        name = file_name(base, position, single=single, url=url, final_url=final_url, media=media)
        assert self._folder is not None  # set with the session
        try:
            # Inline, not in a thread: a cancel can then never leave an orphan file behind.
            part = PartFile(self._folder, name)
        except (OSError, ValueError) as exc:
            raise DownloadError(f"could not create the file: {exc}", url=url) from exc
        try:
            size = 0
            pending = bytearray()
            async for chunk in resp.content.iter_any():
                size += len(chunk)
                if cap is not None and size > cap:
                    raise DownloadError(
                        f"body exceeds the {cap}-byte cap", url=url, status_code=resp.status
                    )
                pending += chunk
                if len(pending) >= _FLUSH_BYTES:
                    data, pending = pending, bytearray()
                    await on_disk(url, part.write, data)
            if pending:
                await on_disk(url, part.write, pending)
            await on_disk(url, part.commit, self._fsync)
        except BaseException:
            part.discard()  # whatever happened, cancellation included, no partial file stays
            raise
        return DownloadedFile(
            url=url, path=name, bytes=part.size, sha256=part.hexdigest(), content_type=media
        )


def _transport_error(failure: NetFailure, url: str) -> DownloadError:
    """A failure below HTTP as a download error: retryable, except an unusable URL."""
    if failure.kind == "invalid_url":
        return DownloadError(failure.message, url=url)
    cls = DownloadTimeoutError if failure.timeout else DownloadError
    return cls(failure.message, url=url, retryable=True)


def _is_retryable(exc: Exception) -> bool:
    return isinstance(exc, DownloadError) and exc.retryable


def _status_error(url: str, resp: aiohttp.ClientResponse) -> DownloadError:
    status = resp.status
    retryable = status in (408, 429) or status >= 500
    retry_after = (
        parse_retry_after(resp.headers.get("Retry-After")) if status in (429, 503) else None
    )
    reason = f"HTTP {status} {resp.reason or ''}".strip()
    return DownloadError(
        reason, url=url, status_code=status, retryable=retryable, retry_after=retry_after
    )
