"""Checks of :class:`FakeRunComfy <runcomfy_async.testing.FakeRunComfy>`'s knobs, in one place.

Every message names the parameter, so a mistyped knob fails at construction with a clear
sentence instead of misbehaving under load.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping

from ._faults import check_endpoints

__all__ = ["check_knobs"]


def _rate(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")


def _seconds(name: str, value: float) -> None:
    if not (math.isfinite(value) and value >= 0.0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")


def _count(name: str, value: int | None, low: int) -> None:
    if value is not None and value < low:
        raise ValueError(f"{name} must be >= {low} or None, got {value}")


def check_knobs(
    *,
    port: int,
    output_port: int,
    duration_mean: float,
    duration_sigma: float,
    model_durations: Mapping[str, tuple[float, float]] | None,
    concurrency: int | None,
    rates: dict[str, float],
    failed_status: str,
    pending_result: str,
    rate_limit: float | None,
    rate_burst: int | None,
    slow_seconds: float,
    fault_endpoints: Collection[str],
    num_outputs_key: str,
    max_body_bytes: int,
    balance: int | None,
    balance_error: str,
    auth_error: str,
    revoke_after: int | None,
    output_drip: float | None,
    output_drip_count: int | None,
) -> None:
    """Raise ``ValueError`` naming the first knob that is out of range.

    Args:
        port: API port.
        output_port: output port.
        duration_mean: mean job seconds.
        duration_sigma: lognormal sigma.
        model_durations: per model id, ``(mean, sigma)``, or ``None``.
        concurrency: server slots or ``None``.
        rates: probabilities by knob name.
        failed_status: status word of a failed job.
        pending_result: answer mode of an early ``/result``.
        rate_limit: requests a second or ``None``.
        rate_burst: bucket size or ``None``.
        slow_seconds: delay of a slow answer.
        fault_endpoints: endpoint names.
        num_outputs_key: output shape mode.
        max_body_bytes: submit body limit.
        balance: jobs the account can pay for, or ``None``.
        balance_error: answer mode of an empty balance.
        auth_error: answer mode of a credentials failure.
        revoke_after: authorized requests before the token is revoked, or ``None``.
        output_drip: seconds between bytes of a dripped output, or ``None``.
        output_drip_count: how many output requests drip, or ``None``.

    Raises:
        ValueError: a knob is out of range.
    """
    for name, value in (("port", port), ("output_port", output_port)):
        if not 0 <= value <= 65535:
            raise ValueError(f"{name} must be in 0..65535, got {value}")
    for name, rate in rates.items():
        _rate(name, rate)
    _seconds("duration_mean", duration_mean)
    _seconds("duration_sigma", duration_sigma)
    if duration_sigma > 0.0 and duration_mean == 0.0:
        raise ValueError("duration_sigma > 0 needs duration_mean > 0")
    for model_id, (mean, sigma) in (model_durations or {}).items():
        if not (math.isfinite(mean) and mean > 0 and math.isfinite(sigma) and sigma >= 0):
            raise ValueError(f"model_durations[{model_id!r}] must be (mean > 0, sigma >= 0)")
    _count("concurrency", concurrency, 1)
    _choice("failed_status", failed_status, ("completed", "failed"))
    _choice("pending_result", pending_result, ("200", "400005"))
    if rate_limit is not None and not (math.isfinite(rate_limit) and rate_limit > 0.0):
        raise ValueError(f"rate_limit must be a positive number or None, got {rate_limit}")
    _count("rate_burst", rate_burst, 1)
    _seconds("slow_seconds", slow_seconds)
    check_endpoints(fault_endpoints)
    _choice("num_outputs_key", num_outputs_key, ("auto", "images"))
    if max_body_bytes < 1:
        raise ValueError(f"max_body_bytes must be >= 1, got {max_body_bytes}")
    _count("balance", balance, 0)
    _choice("balance_error", balance_error, ("400002", "402"))
    _choice("auth_error", auth_error, ("401", "400004"))
    _count("revoke_after", revoke_after, 0)
    if output_drip is not None:
        _seconds("output_drip", output_drip)
    _count("output_drip_count", output_drip_count, 0)
