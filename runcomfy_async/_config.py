"""Configuration: the option objects, and the checks that run before any request.

The option objects are frozen dataclasses that check themselves when built and raise
:class:`~runcomfy_async.ConfigError`, naming the option, for a value out of range:
:class:`PollSettings` (the adaptive poller's knobs) and :class:`RetryPolicy` (what is
retried and how long to wait). The checks resolve the token and the base URL and refuse
model and request ids that would change a request's path.
"""

from __future__ import annotations

import ipaddress
import os
import random
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from ._exceptions import ConfigError

__all__ = [
    "DEFAULT_BASE_URL",
    "TOKEN_ENV_VARS",
    "PollSettings",
    "RetryPolicy",
    "check_model_id",
    "check_request_id",
    "is_loopback",
    "resolve_base_url",
    "resolve_token",
]

DEFAULT_BASE_URL = "https://model-api.runcomfy.net"
TOKEN_ENV_VARS = ("RUNCOMFY_API_TOKEN", "RUNCOMFY_TOKEN", "RUNCOMFY_API_KEY")
BASE_URL_ENV_VAR = "RUNCOMFY_BASE_URL"

_MODEL_ID = re.compile(r"[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)*")
# One rule for every request id, at submit and on resume: printable, one path segment, never
# a dot segment. ':' and '~' are allowed (ids such as "job:<uuid>" exist) and are safe in a path.
_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:~-]{0,127}")
_TOKEN = re.compile(r"[\x21-\x7e]+")


@dataclass(frozen=True)
class PollSettings:
    """Knobs of the adaptive schedule (all times in seconds).

    Attributes:
        ratio: the one trade-off knob, in (0, 1). Each check is placed where the chance that
            the job is still running has fallen to ``ratio`` times its value at the previous
            check. Lower means fewer requests and slower answers (about ``1/(1-ratio)``
            checks per job); higher means faster answers for more requests.
        min_interval: the shortest gap between two checks of one job.
        max_interval: the longest gap between two checks of one job.
        first_check: the first rung of the probes' ladders, for a model nothing is known
            about (each rung doubles; see :mod:`runcomfy_async._schedule`).
        probes: how many jobs per unknown model probe before the first estimate.
        learn_after: finished probes needed before the other jobs get a schedule.
        jitter: relative jitter of every gap (``0.1`` = +-10 %).
        workers: concurrent checks in flight (fixed pool of tasks).
        error_limit: consecutive failed checks of one job before it fails with the error.
    """

    ratio: float = 0.52
    min_interval: float = 0.05
    max_interval: float = 30.0
    first_check: float = 0.25
    probes: int = 16
    learn_after: int = 6
    jitter: float = 0.05
    workers: int = 16
    error_limit: int = 30

    def __post_init__(self) -> None:
        _check(self, "ratio", 0 < self.ratio < 1, "must be in (0, 1)")
        _check(self, "min_interval", self.min_interval > 0, "must be > 0")
        _check(self, "max_interval", self.max_interval >= self.min_interval, ">= min_interval")
        _check(self, "first_check", self.first_check > 0, "must be > 0")
        _check(self, "jitter", 0 <= self.jitter < 1, "must be in [0, 1)")
        for name in ("workers", "probes", "learn_after", "error_limit"):
            _check(self, name, getattr(self, name) >= 1, "must be >= 1")


@dataclass(frozen=True)
class RetryPolicy:
    """How calls are retried.

    Attributes:
        max_attempts: attempts per read call, the first included (``1`` disables retries).
        backoff_base: seconds; the ceiling of the n-th wait is ``backoff_base * 2**n``.
        backoff_max: seconds; the largest wait between two attempts.
        max_retry_after: seconds; a server's ``Retry-After`` above this is capped to it.
        submit_attempts: attempts for a submit when it provably did not reach the server.
        rate_limited_attempts: 429 answers one call accepts before giving up. They are
            counted apart: each one pauses the whole client for its Retry-After first.
    """

    max_attempts: int = 6
    backoff_base: float = 0.25
    backoff_max: float = 10.0
    max_retry_after: float = 120.0
    submit_attempts: int = 4
    rate_limited_attempts: int = 30

    def __post_init__(self) -> None:
        for name in ("max_attempts", "submit_attempts", "rate_limited_attempts"):
            _check(self, name, getattr(self, name) >= 1, "must be >= 1")
        for name in ("backoff_base", "backoff_max", "max_retry_after"):
            _check(self, name, getattr(self, name) >= 0, "must be >= 0")

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based): full jitter.

        Full jitter draws uniformly from ``[0, min(backoff_max, backoff_base * 2**attempt)]``
        so that many clients failing together do not retry together.
        """
        ceiling = min(self.backoff_max, self.backoff_base * (2 ** min(attempt, 30)))
        return (rng or random).uniform(0.0, ceiling)

    def delay_for(self, exc: BaseException, attempt: int) -> float:
        """The wait before retrying after ``exc``: ``Retry-After`` when given, else backoff.

        A server's ``Retry-After`` (an error's ``retry_after``: a 429 from the API, a 429 or
        503 from an output host) is capped to :attr:`max_retry_after`.
        """
        retry_after = getattr(exc, "retry_after", None)
        if isinstance(retry_after, (int, float)):
            return min(float(retry_after), self.max_retry_after)
        return self.backoff(attempt)


def _check(options: object, name: str, ok: bool, rule: str) -> None:
    """Raise :class:`ConfigError` naming ``name`` and its value unless ``ok``."""
    if not ok:
        value = getattr(options, name)
        raise ConfigError(f"{type(options).__name__}.{name} {rule}, got {value!r}")


def resolve_token(api_token: str | None) -> str:
    """The token from the argument, else the first of :data:`TOKEN_ENV_VARS` that is set.

    Raises:
        ConfigError: no token anywhere, or one that cannot travel in an HTTP header.
    """
    token = api_token
    if token is None:
        for name in TOKEN_ENV_VARS:
            value = os.environ.get(name, "").strip()
            if value:
                token = value
                break
    if not token:
        raise ConfigError(
            "no RunComfy API token: pass api_token=... or set one of "
            + ", ".join(TOKEN_ENV_VARS)
            + " (create a token on your RunComfy profile page)"
        )
    token = token.strip()
    if token.lower().startswith("bearer "):
        raise ConfigError("pass the API token without the 'Bearer ' prefix")
    if not _TOKEN.fullmatch(token):
        raise ConfigError("the API token contains spaces or characters that cannot be sent")
    return token


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an IP literal, brackets allowed) is this machine."""
    if host.lower() in ("localhost", "localhost.") or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def resolve_base_url(base_url: str | None, *, allow_insecure: bool = False) -> str:
    """The API origin from the argument, else ``RUNCOMFY_BASE_URL``, else the production URL.

    A trailing ``/v1`` (the convention of RunComfy's CLI) is accepted and dropped, since the
    client adds ``/v1/...`` itself.

    Raises:
        ConfigError: not an http(s) URL, credentials or a query in it, or ``http://`` to a
            host that is not loopback (the token would travel in clear text) unless
            ``allow_insecure`` is true.
    """
    raw = base_url if base_url is not None else os.environ.get(BASE_URL_ENV_VAR) or DEFAULT_BASE_URL
    raw = raw.strip()
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"malformed base URL {raw!r}: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"base URL must be http(s)://host[:port], got {raw!r}")
    if parts.username or parts.password:
        raise ConfigError("base URL must not carry credentials; pass api_token instead")
    if parts.query or parts.fragment:
        raise ConfigError(f"base URL must not have a query or fragment, got {raw!r}")
    if parts.scheme == "http" and not allow_insecure and not is_loopback(parts.hostname):
        raise ConfigError(
            f"refusing http:// to {parts.hostname}: the token would travel in clear text; "
            "use https:// or pass allow_insecure=True"
        )
    path = parts.path.rstrip("/")
    if path.endswith("/v1"):
        path = path[:-3]
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    netloc = host if port is None else f"{host}:{port}"
    return f"{parts.scheme}://{netloc}{path}"


def check_model_id(model_id: str) -> str:
    """Check that ``model_id`` is ``segment(/segment)*`` of ``[A-Za-z0-9_.-]``, no ``.``/``..``.

    Raises:
        ConfigError: the id is malformed (it would change the request path).
    """
    if not isinstance(model_id, str) or not _MODEL_ID.fullmatch(model_id):
        raise ConfigError(
            f"malformed model id {model_id!r}: expected segments of letters, digits, '_', '.', '-'"
            " separated by '/', e.g. 'google/nano-banana-2/text-to-image'"
        )
    if any(segment in (".", "..") for segment in model_id.split("/")):
        raise ConfigError(f"malformed model id {model_id!r}: '.' and '..' segments are not allowed")
    return model_id


def check_request_id(request_id: str) -> str:
    """Check that ``request_id`` is an opaque id that cannot change the request path.

    The same rule holds for an id the server answers a submit with and one given to resume.

    Raises:
        ConfigError: empty, too long, or holding ``/``, ``..``, ``?``, ``%``, control
            characters or the like.
    """
    if not isinstance(request_id, str) or not _REQUEST_ID.fullmatch(request_id):
        raise ConfigError(
            f"malformed request id {request_id[:140]!r}: expected 1-128 letters, digits, "
            "'_', '-', '.', ':', '~'"
            if isinstance(request_id, str)
            else f"malformed request id {request_id!r}"
        )
    if ".." in request_id:
        raise ConfigError(f"malformed request id {request_id!r}: '..' is not allowed")
    return request_id
