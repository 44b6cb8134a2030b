"""Download policy, pure and network-free: which URLs may be fetched, what files are called.

The rules the :class:`~runcomfy_async._download.Downloader` applies before and around each
request, apart from the I/O that carries them out:

* URLs: ``https://`` only, or ``http://`` to loopback unless insecure http is allowed;
  ``file:``, ``data:`` and the like, credentials, spaces, control characters and missing hosts
  are refused. Every redirect hop (at most :data:`MAX_REDIRECTS`) is checked like the first
  URL, and a redirect from ``https://`` never goes down to plain ``http://`` to a remote host.
* Names: files are named from the caller's stem (through :func:`safe_stem`) and the output's
  position, never from the URL, which may only suggest an extension from
  :data:`ALLOWED_EXTENSIONS`; otherwise the Content-Type picks one, or ``.bin``.
* Errors: :class:`DownloadError` and :class:`DownloadTimeoutError`, raised here for refusals
  and by the downloader for failures; their messages never show a URL's query string.

Example:
    >>> file_name("00042", 1, url="https://cdn.example/x/out.PNG?sig=abc")
    '00042-1.png'
"""

from __future__ import annotations

import posixpath
import re
from contextlib import suppress
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

from ._config import is_loopback
from ._exceptions import RunComfyError, _one_line

__all__ = [
    "ALLOWED_EXTENSIONS",
    "MAX_REDIRECTS",
    "REDIRECT_STATUSES",
    "DownloadError",
    "DownloadTimeoutError",
    "check_url",
    "file_name",
    "inside_folder",
    "media_type",
    "redirect_target",
    "safe_stem",
]

MAX_REDIRECTS = 3
"""Redirects followed per download, each hop checked like the first URL."""

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
"""HTTP statuses followed as redirects (by hand, through :func:`redirect_target`)."""

ALLOWED_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".webp", ".gif", ".mp4", ".webm", ".mov", ".mp3", ".wav", ".json"}
)
"""Extensions that may be taken from a URL's path; anything else comes from the Content-Type."""

_TYPE_EXTENSIONS = {
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/webp": ".webp",
    "image/gif": ".gif",
    "video/mp4": ".mp4",
    "video/webm": ".webm",
    "video/quicktime": ".mov",
    "audio/mpeg": ".mp3",
    "audio/wav": ".wav",
    "audio/x-wav": ".wav",
    "application/json": ".json",
}
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]")
_CONTROL_OR_SPACE = re.compile(r"[\x00-\x20\x7f]")
_MAX_STEM = 100
# Names Windows reserves whatever the extension ("CON.png" cannot be created there).
_WINDOWS_RESERVED = frozenset(
    {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(10)), *(f"LPT{i}" for i in range(10))}
)


class DownloadError(RunComfyError):
    """An output could not be downloaded, or its URL was refused before any request.

    ``str(err)`` is one line and shows the URL without its query string (signed CDN URLs carry
    credentials there); the API token never reaches the downloader at all.

    Attributes:
        url: the URL that was asked for, exactly as given.
        reason: what went wrong, one line.
        status_code: the HTTP status of the last answer, or ``None`` when there was none.
        retryable: whether the failure was transient (transport error, timeout, 408, 429,
            5xx). When :meth:`Downloader.fetch` raises it, the retries are used up.
        retry_after: seconds the server asked us to wait (429/503), or ``None``.
        attempts: how many attempts were made.
    """

    def __init__(
        self,
        reason: str,
        *,
        url: str,
        status_code: int | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
    ):
        with suppress(ValueError):
            query = urlsplit(url).query
            reason = reason.replace(query, "...") if query else reason
        self.url = url
        self.reason = _one_line(reason)
        self.status_code = status_code
        self.retryable = retryable
        self.retry_after = retry_after
        self.attempts = 1
        super().__init__(self.reason, url)

    def __str__(self) -> str:
        tries = f" after {self.attempts} attempts" if self.attempts > 1 else ""
        return f"download failed{tries}: {self.reason} ({_display_url(self.url)})"


class DownloadTimeoutError(DownloadError, TimeoutError):
    """The connect or read timeout passed while downloading an output."""


# ---------------------------------------------------------------------------------- URLs


def check_url(url: str, *, allow_http: bool) -> None:
    """Refuse a URL that may not be fetched; nothing is sent.

    Args:
        url: the URL, as given or as a redirect's resolved target.
        allow_http: also accept ``http://`` to hosts that are not loopback.

    Raises:
        DownloadError: spaces or control characters, a malformed URL or port, a scheme other
            than https/http, no host, credentials, or ``http://`` to a host that is not
            loopback while ``allow_http`` is false. The reason starts with ``"refused: "``.
    """
    if _CONTROL_OR_SPACE.search(url):
        raise DownloadError("refused: spaces or control characters in the URL", url=url)
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        parts.port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError as exc:
        raise DownloadError(f"refused: malformed URL ({exc})", url=url) from None
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        shown = f"scheme {scheme + ':'!r}" if scheme else "no scheme"
        raise DownloadError(
            f"refused: {shown} is not allowed (only https, or http to loopback)", url=url
        )
    if not host:
        raise DownloadError("refused: the URL has no host", url=url)
    if parts.username is not None or parts.password is not None:
        raise DownloadError("refused: credentials in the URL", url=url)
    if scheme == "http" and not allow_http and not is_loopback(host):
        raise DownloadError(
            f"refused: plain http to {host!r}, which is not loopback "
            "(use https, or allow_insecure=True)",
            url=url,
        )


def redirect_target(
    url: str,
    current: str,
    status: int,
    location: str | None,
    *,
    redirects: int,
    allow_insecure: bool,
) -> str:
    """The checked target of a redirect; never a downgrade from https to remote http.

    Args:
        url: the URL first asked for (the one errors name).
        current: the URL that answered with the redirect.
        status: the redirect's HTTP status.
        location: its ``Location`` header, or ``None`` when there was none.
        redirects: redirects already followed for ``url``.
        allow_insecure: the downloader's ``allow_insecure``; it only lets an ``http://`` hop
            go on to remote ``http://``, never an ``https://`` one.

    Returns:
        The absolute URL to request next.

    Raises:
        DownloadError: more than :data:`MAX_REDIRECTS` redirects, no ``Location``, or a
            target :func:`check_url` refuses (``"redirect refused: ..."``).
    """
    if redirects >= MAX_REDIRECTS:
        raise DownloadError(f"more than {MAX_REDIRECTS} redirects", url=url, status_code=status)
    if not location:
        raise DownloadError(
            f"HTTP {status} redirect without a Location", url=url, status_code=status
        )
    target = urljoin(current, location.strip())
    allow_http = allow_insecure and urlsplit(current).scheme == "http"
    try:
        check_url(target, allow_http=allow_http)
    except DownloadError as exc:
        reason = exc.reason.removeprefix("refused: ")
        raise DownloadError(
            f"redirect refused: {reason} (to {_display_url(target)})",
            url=url,
            status_code=status,
        ) from None
    return target


def _display_url(url: str, limit: int = 160) -> str:
    """The URL for messages: no credentials, no query string, one short line."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<malformed URL>"
    if parts.scheme.lower() in ("http", "https"):
        netloc = parts.netloc.rpartition("@")[2]
        shown = f"{parts.scheme}://{netloc}{parts.path}" + ("?..." if parts.query else "")
    else:
        shown = url
    shown = _CONTROL_OR_SPACE.sub(" ", shown).strip()
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


# ---------------------------------------------------------------------------------- names


def safe_stem(text: str) -> str:
    """Turn any text into a file-name stem that cannot leave the output folder.

    Every character outside ``[A-Za-z0-9._-]`` becomes ``_``, leading dots become ``_`` (no
    hidden files, never ``.`` or ``..``), the result is cut to 100 characters, an empty result
    becomes ``_``, and names Windows reserves (``CON``, ``NUL``...) get a ``_`` prefix. The
    mapping is deterministic, so a resumed batch finds the same names; distinct texts may
    map to the same stem (``"a/b"`` and ``"a_b"``).

    Args:
        text: an input's index, key or any label.

    Returns:
        The safe stem.

    Example:
        >>> safe_stem("../../etc/passwd")
        '__.._etc_passwd'
    """
    stem = _UNSAFE_CHARS.sub("_", text)
    if stem.startswith("."):
        stem = "_" + stem.lstrip(".")
    stem = stem[:_MAX_STEM] or "_"
    if stem.split(".", 1)[0].upper() in _WINDOWS_RESERVED:
        stem = ("_" + stem)[:_MAX_STEM]
    return stem


def media_type(content_type: str) -> str:
    """A Content-Type header's media type, lower-cased, without parameters (``""`` if none).

    Example:
        >>> media_type("Image/PNG; charset=binary")
        'image/png'
    """
    return content_type.split(";", 1)[0].strip().lower()


def file_name(
    base: str,
    position: int,
    *,
    single: bool = False,
    url: str,
    final_url: str = "",
    media: str = "",
) -> str:
    """The name an output is saved under: ``{base}-{position}{ext}``, or ``{base}{ext}``.

    The extension is the first of: an allowlisted one on the path of ``url``, then of
    ``final_url``; the one ``media`` maps to; ``.bin``.

    Args:
        base: the stem, already passed through :func:`safe_stem`.
        position: the output's 0-based position among its job's outputs.
        single: leave the position out.
        url: the URL asked for.
        final_url: the URL that answered, after redirects (``""`` when none).
        media: the answer's media type, as :func:`media_type` gives it.

    Returns:
        The file name, without any folder.
    """
    ext = _extension(url) or _extension(final_url) or _TYPE_EXTENSIONS.get(media, ".bin")
    return f"{base}{ext}" if single else f"{base}-{position}{ext}"


def inside_folder(folder: Path, name: str) -> Path:
    """``folder / name``, refused unless it resolves to a direct child of ``folder``.

    Defence in depth: names from :func:`file_name` are safe already. Resolving follows any
    symlinks on disk (a read, never a write), so ``folder`` must be resolved itself.

    Args:
        folder: the resolved output folder.
        name: the file name.

    Returns:
        The target path.

    Raises:
        ValueError: the name leaves the output folder.
    """
    target = folder / name
    if target.resolve().parent != folder:
        raise ValueError(f"file name {name!r} leaves the output folder")
    return target


def _extension(url: str) -> str:
    """The allowlisted extension of the URL path's last segment, or ``""``."""
    try:
        path = urlsplit(url).path
    except ValueError:
        return ""
    ext = posixpath.splitext(unquote(path).rsplit("/", 1)[-1])[1].lower()
    return ext if ext in ALLOWED_EXTENSIONS else ""
