"""Configuration is checked before any request: token, base URL, model and request ids."""

from __future__ import annotations

from typing import Any

import pytest

from runcomfy_async import AsyncClient, ConfigError, PollSettings, RetryPolicy
from runcomfy_async._config import (
    TOKEN_ENV_VARS,
    check_model_id,
    check_request_id,
    resolve_base_url,
    resolve_token,
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start every test without RunComfy variables in the environment."""
    for name in (*TOKEN_ENV_VARS, "RUNCOMFY_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


def test_missing_token_names_every_env_var() -> None:
    """With no token anywhere the error says which variables are read."""
    with pytest.raises(ConfigError) as info:
        AsyncClient()
    for name in TOKEN_ENV_VARS:
        assert name in str(info.value)


def test_token_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    """Argument, then RUNCOMFY_API_TOKEN, then RUNCOMFY_TOKEN, then RUNCOMFY_API_KEY."""
    monkeypatch.setenv("RUNCOMFY_API_KEY", "key3")
    assert resolve_token(None) == "key3"
    monkeypatch.setenv("RUNCOMFY_TOKEN", "key2")
    assert resolve_token(None) == "key2"
    monkeypatch.setenv("RUNCOMFY_API_TOKEN", "key1")
    assert resolve_token(None) == "key1"
    assert resolve_token("arg") == "arg"


@pytest.mark.parametrize("bad", ["Bearer abc", "two words", "tab\there", "new\nline"])
def test_malformed_tokens_refused(bad: str) -> None:
    """A token that is prefixed or cannot travel in a header is refused."""
    with pytest.raises(ConfigError):
        resolve_token(bad)


def test_token_not_in_repr() -> None:
    """Neither the client's repr nor its transport's shows the token."""
    client = AsyncClient("sekrit-token-value", "http://127.0.0.1:9")
    assert "sekrit" not in repr(client)
    assert "sekrit" not in repr(client._transport)


def test_base_url_default_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The production origin by default; RUNCOMFY_BASE_URL overrides it."""
    assert resolve_base_url(None) == "https://model-api.runcomfy.net"
    monkeypatch.setenv("RUNCOMFY_BASE_URL", "https://model-api-int.runcomfy.net/v1/")
    assert resolve_base_url(None) == "https://model-api-int.runcomfy.net"


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8787", "http://localhost:1", "http://[::1]:8080", "https://example.com"],
)
def test_base_url_allowed(url: str) -> None:
    """https anywhere, http only to loopback."""
    assert resolve_base_url(url).startswith(url.split(":")[0])


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://model-api.runcomfy.net", "clear text"),
        ("http://10.0.0.5:8787", "clear text"),
        ("ftp://x.example", "must be http"),
        ("https://user:pw@x.example", "credentials"),
        ("https://x.example/?a=1", "query"),
        ("not a url", "must be http"),
    ],
)
def test_base_url_refused(url: str, why: str) -> None:
    """Insecure or malformed base URLs are refused with a reason."""
    with pytest.raises(ConfigError, match=why):
        resolve_base_url(url)


def test_insecure_allowed_when_asked() -> None:
    """allow_insecure=True permits http:// to a remote host."""
    assert resolve_base_url("http://10.0.0.5:8787", allow_insecure=True) == "http://10.0.0.5:8787"


@pytest.mark.parametrize(
    "model_id",
    [
        "google/nano-banana-2/text-to-image",
        "a",
        "blackforestlabs/flux-1-kontext/pro/edit",
        "x_1.2-y",
    ],
)
def test_good_model_ids(model_id: str) -> None:
    """Slash-separated segments of letters, digits, '_', '.', '-' pass."""
    assert check_model_id(model_id) == model_id


@pytest.mark.parametrize(
    "model_id",
    ["", "/a", "a/", "a//b", "../x", "a/../b", "a/./b", ".", "a b", "a?b=1", "a%2Fb", "a#b", "ü"],
)
def test_bad_model_ids(model_id: str) -> None:
    """Anything that could change the request path is refused."""
    with pytest.raises(ConfigError, match="model id"):
        check_model_id(model_id)


@pytest.mark.parametrize(
    "request_id",
    ["", "a/b", "../status", "..", "a?x=1", "a%2F", "a b", "x" * 129, "-abc", "a..b"],
)
def test_bad_request_ids(request_id: str) -> None:
    """Request ids that could inject a path are refused."""
    with pytest.raises(ConfigError, match="request id"):
        check_request_id(request_id)


def test_uuid_request_id_ok() -> None:
    """A UUID request id passes."""
    rid = "3f2a6c1e-8b7d-4e21-9a0c-5d4f1b2e7a90"
    assert check_request_id(rid) == rid


@pytest.mark.parametrize(
    "kwargs",
    [
        {"connect_timeout": 0},
        {"read_timeout": -1},
        {"max_connections": 0},
        {"max_requests_per_second": 0},
    ],
)
def test_bad_options_refused(kwargs: dict[str, float]) -> None:
    """Out-of-range options raise ConfigError at construction."""
    with pytest.raises(ConfigError):
        AsyncClient("t", "http://127.0.0.1:9", **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("options", "kwargs", "name"),
    [
        (PollSettings, {"ratio": 1.0}, "ratio"),
        (PollSettings, {"ratio": 0}, "ratio"),
        (PollSettings, {"min_interval": 0}, "min_interval"),
        (PollSettings, {"min_interval": 2.0, "max_interval": 1.0}, "max_interval"),
        (PollSettings, {"first_check": -1}, "first_check"),
        (PollSettings, {"jitter": 1.5}, "jitter"),
        (PollSettings, {"workers": 0}, "workers"),
        (PollSettings, {"probes": 0}, "probes"),
        (PollSettings, {"learn_after": 0}, "learn_after"),
        (PollSettings, {"error_limit": 0}, "error_limit"),
        (RetryPolicy, {"max_attempts": 0}, "max_attempts"),
        (RetryPolicy, {"submit_attempts": 0}, "submit_attempts"),
        (RetryPolicy, {"rate_limited_attempts": 0}, "rate_limited_attempts"),
        (RetryPolicy, {"backoff_base": -1}, "backoff_base"),
        (RetryPolicy, {"backoff_max": -1}, "backoff_max"),
        (RetryPolicy, {"max_retry_after": -1}, "max_retry_after"),
    ],
)
def test_option_objects_refuse_bad_values_naming_them(
    options: type[PollSettings | RetryPolicy], kwargs: dict[str, Any], name: str
) -> None:
    """An out-of-range option raises ConfigError (a ValueError) naming the option and value."""
    with pytest.raises(ConfigError, match=rf"{options.__name__}\.{name} .*got") as info:
        options(**kwargs)
    assert isinstance(info.value, ValueError)


def test_option_objects_accept_their_defaults_and_edges() -> None:
    """Defaults and the edge values of each range are accepted."""
    PollSettings()
    PollSettings(jitter=0.0, min_interval=1.0, max_interval=1.0, workers=1, probes=1)
    RetryPolicy()
    RetryPolicy(max_attempts=1, backoff_base=0.0, backoff_max=0.0, max_retry_after=0.0)
