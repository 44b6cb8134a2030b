"""Network options shared by the API session and the downloader: proxies and extra headers.

Proxies follow the usual environment variables unless one is given: ``HTTPS_PROXY`` for
``https://`` URLs, ``HTTP_PROXY`` for ``http://`` ones, ``ALL_PROXY`` for both (lower-case
names too), and ``NO_PROXY`` lists hosts reached directly. They are resolved here with the
standard library rather than by aiohttp's ``trust_env``, which would also read ``~/.netrc``
and could attach its credentials to a request.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Mapping
from urllib.parse import urlsplit

from ._exceptions import ConfigError

__all__ = ["check_headers", "check_proxy", "proxy_for"]


def check_proxy(proxy: str | None) -> str | None:
    """Check a ``proxy=`` option: ``None``, or an ``http(s)://host[:port]`` URL.

    Raises:
        ConfigError: not an http(s) URL with a host.
    """
    if proxy is None:
        return None
    parts = urlsplit(proxy.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError("proxy must be an http:// or https:// URL such as http://proxy:3128")
    return proxy.strip()


def proxy_for(url: str, proxy: str | None = None) -> str | None:
    """The proxy to reach ``url`` through: ``proxy`` if given, else the environment's.

    Args:
        url: the URL to fetch.
        proxy: an explicit proxy for every URL; ``None`` to follow the environment.

    Returns:
        The proxy URL, or ``None`` to connect directly.
    """
    if proxy is not None:
        return proxy
    found = urllib.request.getproxies_environment()
    parts = urlsplit(url)
    chosen = found.get(parts.scheme) or found.get("all")
    if not chosen or not parts.hostname:
        return None
    host = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
    if urllib.request.proxy_bypass_environment(host, found):  # type: ignore[attr-defined]
        return None
    return chosen if "://" in chosen else f"http://{chosen}"


def check_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    """Check ``default_headers=``: strings without line breaks, never ``Authorization``.

    Raises:
        ConfigError: a header that would override the API token, or that cannot be sent.
    """
    out: dict[str, str] = {}
    for name, value in (headers or {}).items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise ConfigError("default_headers must map header names to string values")
        if name.strip().lower() in ("authorization", "proxy-authorization", "host"):
            raise ConfigError(
                f"default_headers cannot set {name.strip()!r}: pass the token as api_token"
                if name.strip().lower() == "authorization"
                else f"default_headers cannot set {name.strip()!r}"
            )
        if not name.strip() or any(c in name + value for c in "\r\n\0"):
            raise ConfigError(f"default_headers: {name!r} has an empty name or a line break")
        out[name.strip()] = value
    return out
