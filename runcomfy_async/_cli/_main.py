"""The ``runcomfy-async`` command: run, submit, status, result, cancel, models, batch, emulator.

Start-up stays light: this module imports neither the client nor aiohttp; each command
imports what it needs when it runs. Errors are printed here, in the command line's words.

Exit codes: 0 success, 1 a job failed (or some did), 2 usage error, 3 auth or configuration
error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from .._exceptions import (
    AuthenticationError,
    ConfigError,
    InputValidationError,
    RunComfyError,
)
from ._args import (
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    UsageError,
    nearest_model,
    unknown_model_warning,
)
from ._parser import build_parser

__all__ = ["cli_words", "main"]

_NO_TOKEN = (
    "no RunComfy API token: set RUNCOMFY_API_TOKEN, or pass --token-file PATH or --token "
    "(create a token on your RunComfy profile page); or try run, submit or batch with "
    "--sandbox, which needs none"
)

# The library speaks of arguments; the command line of flags and variables. Each entry maps
# a fragment of a library ConfigError message (runcomfy_async._config) to the CLI's words.
_CLI_WORDS: tuple[tuple[str, str], ...] = (
    ("pass allow_insecure=True", "pass --allow-insecure"),
    ("pass api_token instead", "pass --token instead"),
)


def cli_words(exc: ConfigError) -> str:
    """Say a library configuration error in the command line's words (flags, variables).

    The one place where a :class:`ConfigError` becomes a CLI sentence.
    """
    text = str(exc)
    if text.startswith("no RunComfy API token"):
        return _NO_TOKEN
    for library, cli in _CLI_WORDS:
        text = text.replace(library, cli)
    return text


def _models(args: argparse.Namespace) -> int:
    from ..models import MODELS
    from ._models import models_command

    name = args.model
    if name and name not in MODELS and args.search is None and not _has_connection(args):
        near = nearest_model(name)
        hint = f"; did you mean {near!r}?" if near else ""
        raise UsageError(
            f"no bundled model {name!r}{hint} Bundled models: {', '.join(sorted(MODELS))}; "
            "to look it up in the live catalog, set RUNCOMFY_API_TOKEN (or pass --sandbox)"
        )
    return models_command(args)


def _has_connection(args: argparse.Namespace) -> bool:
    """Whether a live catalog could be asked: a token, or the sandbox."""
    from .._config import TOKEN_ENV_VARS

    if getattr(args, "sandbox", False) or getattr(args, "token", None):
        return True
    return any(os.environ.get(name, "").strip() for name in TOKEN_ENV_VARS)


def _setup_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def _read_token(args: argparse.Namespace) -> None:
    """Take the token from ``--token-file``; warn when it was given on the command line."""
    path = getattr(args, "token_file", None)
    if path is not None:
        if getattr(args, "token", None):
            raise UsageError("pass --token or --token-file, not both")
        try:
            with open(path, encoding="utf-8") as fh:
                args.token = fh.read().strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise UsageError(f"cannot read --token-file {path}: {reason}") from None
        if not args.token:
            raise UsageError(f"--token-file {path} is empty")
    elif getattr(args, "token", None):
        print(
            "warning: a --token on the command line can be read by other users of this "
            "machine (ps); prefer --token-file PATH or RUNCOMFY_API_TOKEN",
            file=sys.stderr,
        )


def _dispatch(args: argparse.Namespace) -> int:
    _read_token(args)
    if args.command == "models":
        return _models(args)
    if args.command == "emulator":
        from ._emulator import run_emulator_main

        return run_emulator_main(args)
    model = getattr(args, "model", None)
    if model is not None:  # before anything is submitted
        warning = unknown_model_warning(model)
        if warning is not None:
            print(warning, file=sys.stderr)
    import asyncio

    from ._commands import one_job_command, open_client

    if args.command == "batch":
        from ._batch import run_batch

        return run_batch(args, open_client)
    return asyncio.run(one_job_command(args))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    args = build_parser().parse_args(argv)
    _setup_logging(getattr(args, "verbose", 0))
    try:
        return _dispatch(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (UsageError, InputValidationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ConfigError as exc:
        print(f"error: {cli_words(exc)}", file=sys.stderr)
        return EXIT_CONFIG
    except AuthenticationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except RunComfyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED


def entry() -> None:
    """Console-script entry point."""
    sys.exit(main())
