"""``runcomfy-async emulator``: serve the built-in Model API emulator from the shell."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from typing import Any

__all__ = ["add_emulator_parser", "emulator_kwargs", "run_emulator"]


def add_emulator_parser(sub: Any) -> None:
    """Add the ``emulator`` sub-command and its knobs to ``sub`` (an argparse subparsers)."""
    emu = sub.add_parser(
        "emulator",
        help="serve the built-in emulator of the Model API",
        description="Serve an emulator of the RunComfy Model API on loopback, for tests and "
        "benchmarks. Point a client at the printed base URL with any token (or --token).",
    )
    emu.add_argument("--host", default="127.0.0.1", help="address to listen on")
    emu.add_argument("--port", type=int, default=8787, help="API port (0: any free port)")
    emu.add_argument(
        "--output-port", type=int, default=0, help="port of the outputs origin (0: any free port)"
    )
    emu.add_argument("--token", help="require this token (default: accept any)")
    emu.add_argument("--duration-mean", type=float, default=1.0, help="mean job seconds")
    emu.add_argument("--duration-sigma", type=float, default=0.3, help="lognormal sigma")
    emu.add_argument(
        "--model-duration",
        action="append",
        default=[],
        metavar="MODEL=MEAN[,SIGMA]",
        help="jobs of one model last MEAN seconds (lognormal SIGMA); repeatable",
    )
    emu.add_argument(
        "--concurrency", type=int, help="jobs run at once; more wait in a queue (default: no queue)"
    )
    emu.add_argument("--failure-rate", type=float, default=0.0, help="share of jobs that fail")
    emu.add_argument(
        "--failed-status",
        choices=("completed", "failed"),
        default="completed",
        help="what /status says of a failed job",
    )
    emu.add_argument(
        "--pending-result",
        choices=("200", "400005"),
        default="200",
        help="how /result answers while a job runs: its state, or error 400005",
    )
    emu.add_argument("--rate-limit", type=float, help="requests/second before 429")
    emu.add_argument(
        "--rate-burst",
        type=int,
        help="requests allowed back to back before 429 (default: the rate, rounded up)",
    )
    emu.add_argument("--no-retry-after", action="store_true", help="send 429 without Retry-After")
    emu.add_argument("--error-rate", type=float, default=0.0, help="injected 5xx probability")
    emu.add_argument("--reset-rate", type=float, default=0.0, help="connection reset probability")
    emu.add_argument("--slow-rate", type=float, default=0.0, help="share of slow answers")
    emu.add_argument("--slow-seconds", type=float, default=5.0, help="delay of a slow answer")
    emu.add_argument(
        "--malformed-rate", type=float, default=0.0, help="share of answers with a broken body"
    )
    emu.add_argument(
        "--fault-endpoints",
        default="status,result",
        help="comma-separated endpoints the faults apply to "
        "(submit,status,result,cancel,models,output)",
    )
    emu.add_argument("--no-validate", action="store_true", help="skip seed-model validation")
    emu.add_argument("--seed", type=int, help="random seed, for repeatable runs")
    emu.add_argument(
        "--balance",
        type=int,
        help="jobs the account can pay for; beyond it submits are refused (default: unlimited)",
    )
    emu.add_argument(
        "--balance-error",
        choices=("400002", "402"),
        default="400002",
        help="answer to a submit beyond the balance: HTTP 400 with 400002, or HTTP 402",
    )
    emu.add_argument(
        "--auth-error",
        choices=("401", "400004"),
        default="401",
        help="answer to bad or revoked credentials: HTTP 401, or HTTP 400 with 400004",
    )
    emu.add_argument(
        "--revoke-after",
        type=int,
        help="revoke the token after this many authorized API requests (default: never)",
    )
    emu.add_argument(
        "--output-drip",
        type=float,
        help="seconds between single bytes of an output body (a slow-drip output host)",
    )
    emu.add_argument(
        "--output-drip-count",
        type=int,
        help="only the first N output requests drip (default: all, with --output-drip)",
    )
    emu.add_argument(
        "--state",
        metavar="PATH",
        help="keep the jobs in this file, so a restarted emulator continues them",
    )
    emu.add_argument(
        "--accept-any-model",
        action="store_true",
        help="accept any well-formed model id (default: unknown ids get error 400001)",
    )
    emu.add_argument(
        "--extra-models",
        metavar="PATH",
        help="a JSON file holding a list of catalog entries to serve besides the bundled models",
    )
    emu.add_argument(
        "--loop",
        choices=("asyncio", "uvloop"),
        default="asyncio",
        help="event loop of the emulator process (uvloop must be installed)",
    )


def emulator_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The FakeRunComfy keyword arguments for parsed ``emulator`` options."""
    return {
        "host": args.host,
        "port": args.port,
        "output_port": args.output_port,
        "token": args.token,
        "duration_mean": args.duration_mean,
        "duration_sigma": args.duration_sigma,
        "model_durations": _model_durations(args.model_duration, args.duration_sigma),
        "concurrency": args.concurrency,
        "failure_rate": args.failure_rate,
        "failed_status": args.failed_status,
        "pending_result": args.pending_result,
        "rate_limit": args.rate_limit,
        "rate_burst": args.rate_burst,
        "retry_after": not args.no_retry_after,
        "error_rate": args.error_rate,
        "reset_rate": args.reset_rate,
        "slow_rate": args.slow_rate,
        "slow_seconds": args.slow_seconds,
        "malformed_rate": args.malformed_rate,
        "fault_endpoints": tuple(e for e in args.fault_endpoints.split(",") if e),
        "validate": not args.no_validate,
        "seed": args.seed,
        "balance": args.balance,
        "balance_error": args.balance_error,
        "auth_error": args.auth_error,
        "revoke_after": args.revoke_after,
        "output_drip": args.output_drip,
        "output_drip_count": args.output_drip_count,
        "state_path": args.state,
        "accept_any_model": args.accept_any_model,
        "extra_models": _extra_models(args.extra_models),
    }


def _extra_models(path: str | None) -> list[Any]:
    """The catalog entries in the ``--extra-models`` JSON file (a list), or none."""
    if path is None:
        return []
    try:
        with open(path, "rb") as f:
            entries = json.load(f)
    except (OSError, ValueError) as exc:
        raise ValueError(f"--extra-models {path}: {exc}") from None
    if not isinstance(entries, list):
        raise ValueError(f"--extra-models {path}: expected a JSON list of catalog entries")
    return entries


def _model_durations(specs: list[str], sigma: float) -> dict[str, tuple[float, float]]:
    """``MODEL=MEAN[,SIGMA]`` flags as a mapping (a malformed one raises ValueError)."""
    out: dict[str, tuple[float, float]] = {}
    for spec in specs:
        model, sep, value = spec.partition("=")
        if not sep or not model:
            raise ValueError(f"--model-duration wants MODEL=MEAN[,SIGMA], got {spec!r}")
        mean, _, spread = value.partition(",")
        out[model] = (float(mean), float(spread) if spread else sigma)
    return out


def run_emulator_main(args: argparse.Namespace) -> int:
    """Run :func:`run_emulator` on the chosen event loop."""
    if args.loop == "uvloop":
        # uvloop is optional and untyped here: look it up at run time so the type
        # checker never needs it installed.
        try:
            uvloop = importlib.import_module("uvloop")
        except ImportError:
            print("error: --loop uvloop needs uvloop installed", file=sys.stderr)
            return 2
        code: int = uvloop.run(run_emulator(args))
        return code
    import asyncio  # here, not at the top: the parser imports this module for --help

    return asyncio.run(run_emulator(args))


async def run_emulator(args: argparse.Namespace) -> int:
    """Serve until interrupted; prints the base URLs first."""
    from ..testing import FakeRunComfy

    try:
        fake = FakeRunComfy(**emulator_kwargs(args))
        await fake.start()
    except ValueError as exc:  # a knob out of range, or --state naming a foreign file
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"emulator: API {fake.base_url}  outputs {fake.output_base_url}", flush=True)
    try:
        await fake.serve_forever()
    finally:
        await fake.stop()
    return 0
