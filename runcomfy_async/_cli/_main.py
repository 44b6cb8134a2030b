"""The ``runcomfy-async`` command: run, submit, status, result, cancel, models, emulator.

Exit codes: 0 success, 1 a job failed (or some did), 2 usage error, 3 auth or configuration
error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from collections.abc import AsyncIterator, Sequence
from typing import Any

import msgspec

from .._client import AsyncClient
from .._exceptions import (
    AuthenticationError,
    ConfigError,
    InputValidationError,
    JobError,
    RunComfyError,
)
from .._version import __version__
from ..models import MODELS, describe
from ._args import (
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    UsageError,
    parse_sets,
)

__all__ = ["main"]


SANDBOX_TOKEN = "sandbox-token"
"""The token the in-process emulator accepts in ``--sandbox`` mode (it is not a secret)."""


def _common(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("connection")
    group.add_argument("--token", help="API token (default: $RUNCOMFY_API_TOKEN and friends)")
    group.add_argument("--base-url", help="API origin (default: $RUNCOMFY_BASE_URL or production)")
    group.add_argument(
        "--sandbox",
        action="store_true",
        help="run against a built-in emulator in this process: no token, no network",
    )
    group.add_argument("--rate", type=float, help="max requests per second for the client")
    group.add_argument("-v", "--verbose", action="count", default=0, help="log more (-vv: debug)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    parser = argparse.ArgumentParser(
        prog="runcomfy-async",
        description="Fast, economical client for the RunComfy Model API.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="submit one job and wait for its result")
    run.add_argument("model", help="model id, e.g. google/nano-banana-2/text-to-image")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="an input")
    run.add_argument("--json", dest="inputs_json", help="inputs as one JSON object")
    run.add_argument("--timeout", type=float, help="seconds to wait (default: no limit)")
    run.add_argument("--out", help="download the outputs into this folder")
    _common(run)

    submit = sub.add_parser("submit", help="submit one job and print its request id")
    submit.add_argument("model")
    submit.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    submit.add_argument("--json", dest="inputs_json", help="inputs as one JSON object")
    _common(submit)

    for name, text in (
        ("status", "print a job's status"),
        ("result", "print a job's result (or current state)"),
        ("cancel", "cancel a queued job"),
    ):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("request_id")
        _common(cmd)

    models = sub.add_parser("models", help="list the typed models with their fields")
    models.add_argument("model", nargs="?", help="show one model only")

    from ._batch import add_batch_parser
    from ._emulator import add_emulator_parser

    add_batch_parser(sub, _common)
    add_emulator_parser(sub)
    return parser


def _inputs(model: str, sets: list[str], raw_json: str | None) -> dict[str, Any]:
    inputs: dict[str, Any] = {}
    if raw_json:
        try:
            decoded = msgspec.json.decode(raw_json.encode())
        except msgspec.DecodeError as exc:
            raise UsageError(f"--json is not valid JSON: {exc}") from None
        if not isinstance(decoded, dict):
            raise UsageError("--json must be a JSON object")
        inputs.update(decoded)
    inputs.update(parse_sets(model, sets))
    return inputs


@contextlib.asynccontextmanager
async def open_client(args: argparse.Namespace) -> AsyncIterator[AsyncClient]:
    """An AsyncClient for the command line's connection options (an emulator if --sandbox)."""
    if getattr(args, "sandbox", False):
        from ..testing import FakeRunComfy

        async with (
            FakeRunComfy(
                token=SANDBOX_TOKEN, duration_mean=1.5, duration_sigma=0.4, concurrency=16
            ) as fake,
            AsyncClient(SANDBOX_TOKEN, fake.base_url, max_requests_per_second=args.rate) as client,
        ):
            yield client
        return
    async with AsyncClient(args.token, args.base_url, max_requests_per_second=args.rate) as client:
        yield client


def _print_json(obj: Any) -> None:
    sys.stdout.write(msgspec.json.format(msgspec.json.encode(obj), indent=2).decode() + "\n")


def _result_dict(res: Any) -> dict[str, Any]:
    return {
        "request_id": res.request_id,
        "status": res.status,
        "urls": list(res.urls),
        "output": res.output.to_dict() if res.output is not None else None,
        "error": res.error,
        "created_at": res.created_at_raw,
        "finished_at": res.finished_at_raw,
    }


async def _run(args: argparse.Namespace) -> int:
    inputs = _inputs(args.model, args.set, args.inputs_json)
    async with open_client(args) as client:
        job = await client.submit(args.model, inputs)
        print(f"submitted {job.request_id}", file=sys.stderr)
        try:
            res = await job.wait(args.timeout, cancel_on_timeout=True)
        except JobError as exc:
            _print_json({"request_id": job.request_id, "status": "error", "error": str(exc)})
            return EXIT_FAILED
        shown = _result_dict(res)
        if args.out and res.urls:
            from .._download import Downloader

            async with Downloader(args.out) as downloader:
                files = await downloader.fetch_all(list(res.urls), stem=job.request_id[:8])
            shown["files"] = [msgspec.to_builtins(f) for f in files]
        _print_json(shown)
    return EXIT_OK


async def _submit(args: argparse.Namespace) -> int:
    async with open_client(args) as client:
        job = await client.submit(args.model, _inputs(args.model, args.set, args.inputs_json))
        _print_json({"request_id": job.request_id, "model_id": job.model_id})
        client.cancel_on_error = False
    return EXIT_OK


async def _one(args: argparse.Namespace) -> int:
    async with open_client(args) as client:
        if args.command == "status":
            _print_json(msgspec.to_builtins(await client.status(args.request_id)))
        elif args.command == "result":
            _print_json(_result_dict(await client.result(args.request_id)))
        else:
            answer = await client.cancel(args.request_id)
            _print_json(msgspec.to_builtins(answer))
            return EXIT_OK if answer.cancelled else EXIT_FAILED
    return EXIT_OK


def _models(args: argparse.Namespace) -> int:
    names = [args.model] if args.model else sorted(MODELS)
    for name in names:
        cls = MODELS.get(name)
        if cls is None:
            raise UsageError(f"no typed model {name!r}; typed models: {', '.join(sorted(MODELS))}")
        print(f"{name}  ({cls.__name__})")
        for field in describe(cls):
            need = "required" if field.required else "optional"
            print(f"  {field.name:<18} {field.type:<13} {need:<9} {field.rule}")
        print()
    return EXIT_OK


def _setup_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(getattr(args, "verbose", 0))
    try:
        if args.command == "models":
            return _models(args)
        if args.command == "emulator":
            from ._emulator import run_emulator_main

            return run_emulator_main(args)
        if args.command == "batch":
            from ._batch import run_batch

            return run_batch(args, open_client)
        handler = {"run": _run, "submit": _submit}.get(args.command, _one)
        return asyncio.run(handler(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (UsageError, InputValidationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (ConfigError, AuthenticationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except RunComfyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED


def entry() -> None:
    """Console-script entry point."""
    sys.exit(main())
