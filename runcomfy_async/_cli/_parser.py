"""The command line's grammar: every sub-command, option and help line, nothing imported heavy.

``runcomfy-async --help`` must answer at once, so this module imports only :mod:`argparse`
and the emulator's option table; the commands themselves import the client when they run.
"""

from __future__ import annotations

import argparse
from typing import Any, NoReturn

from .._version import __version__

__all__ = ["build_parser"]

EXAMPLE_MODEL = "google/nano-banana-2/text-to-image"

OUTAGE_TOLERANCE = 900.0
"""Default of ``batch --outage-tolerance`` (the library's own default, without importing it)."""
DOWNLOAD_TIMEOUT = 600.0
"""Default of ``batch --download-timeout``: seconds one output file may take."""

_EPILOG = f"""\
examples:
  # 40 prompts through the built-in emulator (no token, no network), with a gallery:
  runcomfy-async batch examples/prompts.txt --model {EXAMPLE_MODEL} \\
      --out runcomfy-out --sandbox

  # one job with your token, then its status:
  export RUNCOMFY_API_TOKEN=...
  ID=$(runcomfy-async submit {EXAMPLE_MODEL} --set prompt="a red fox")
  runcomfy-async status "$ID"

Add --sandbox to run, submit or batch to try them without a token. Exit codes: 0 success,
1 a job did not succeed, 2 usage error, 3 authentication or configuration error,
130 interrupted.
"""


class _Formatter(argparse.HelpFormatter):
    """Keeps the epilog's line breaks; shows an option's default when it has a real one."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:  # laid out by hand (the examples)
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            "%(default)" in text
            or action.nargs == 0  # flags: their default is "off"
            or default is None
            or default is argparse.SUPPRESS
            or default == []
        ):
            return text
        return f"{text} (default: %(default)s)"


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors never repeat an unrecognized option's value.

    argparse lists every word it did not recognize, so a mistyped ``--tokn SECRET`` would
    print the token on stderr (and into the logs of whatever ran the command). Only the
    words that look like options are named; the others are counted.
    """

    def error(self, message: str) -> NoReturn:
        """Print the usage and a message without the unrecognized values, then exit 2."""
        prefix = "unrecognized arguments: "
        if message.startswith(prefix):
            words = message[len(prefix) :].split()
            options = [w.split("=", 1)[0] for w in words if w.startswith("-")]
            hidden = len(words) - len(options)
            named = " ".join(options)
            extra = f"{hidden} value{'s' if hidden != 1 else ''} not shown" if hidden else ""
            message = prefix + "; ".join(part for part in (named, extra) if part)
        super().error(message)


def _positive(text: str) -> float:
    """An argparse type: a number above zero."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number above 0, got {text!r}")
    return value


def _count(text: str) -> int:
    """An argparse type: a whole number from 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text!r}")
    return value


def _parser(sub: Any, name: str, *, help: str, description: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(
        name,
        help=help,
        description=description,
        formatter_class=_Formatter,
        allow_abbrev=False,  # a prefix such as --tok would otherwise be taken for --token
    )
    return parser


def add_connection(parser: argparse.ArgumentParser, *, sandbox: bool = True) -> None:
    """Add the options that say which API to talk to and how."""
    group = parser.add_argument_group("connection")
    group.add_argument(
        "--token",
        help="API token (default: $RUNCOMFY_API_TOKEN, $RUNCOMFY_TOKEN or $RUNCOMFY_API_KEY; "
        "prefer the variable or --token-file: a token on the command line shows in ps)",
    )
    group.add_argument("--token-file", metavar="PATH", help="read the API token from this file")
    group.add_argument(
        "--base-url",
        help="API origin (default: $RUNCOMFY_BASE_URL, else https://model-api.runcomfy.net)",
    )
    group.add_argument(
        "--allow-insecure",
        action="store_true",
        help="allow an http:// base URL to a host that is not this machine "
        "(the token then travels in clear text)",
    )
    if sandbox:
        group.add_argument(
            "--sandbox",
            action="store_true",
            help="run against a built-in emulator in this process: no token, no network, no cost",
        )
    group.add_argument(
        "--rate",
        type=_positive,
        metavar="R",
        help="at most R requests a second (default: none set; the client learns the "
        "account's limit from the server's 429 answers)",
    )
    group.add_argument(
        "--no-cache",
        action="store_true",
        help="neither read nor save what was learned of the models' timing (also: "
        "RUNCOMFY_CACHE=off; the cache folder is $RUNCOMFY_CACHE_DIR, default the user's "
        "cache folder)",
    )
    group.add_argument("-v", "--verbose", action="count", default=0, help="log more (-vv: debug)")


def _add_inputs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help=f"model id, e.g. {EXAMPLE_MODEL} (see: models)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="one input field, typed by the model's schema; repeat for more "
        "(e.g. --set prompt='a fox' --set num_images=2)",
    )
    parser.add_argument(
        "--inputs",
        metavar="JSON",
        help="the inputs as one JSON object; --set values are laid over it",
    )


def _add_batch(sub: Any) -> None:
    batch = _parser(
        sub,
        "batch",
        help="run a model over every line of a file (txt, jsonl, csv or - for stdin)",
        description="Run a model over many inputs, with progress, downloads, a journal for "
        "--resume, results.jsonl and an HTML gallery (index.html) in --out. The whole input "
        "is checked before anything is submitted.",
    )
    batch.add_argument("input", help="a .txt (one prompt a line), .jsonl, .csv file, or -")
    batch.add_argument(
        "--dry-run",
        action="store_true",
        help="check every input, count the jobs and estimate their cost from the model "
        "catalog's price; submit nothing",
    )
    batch.add_argument(
        "--max-cost",
        type=_positive,
        metavar="USD",
        help="submit no new job once reported plus estimated spend would pass USD; "
        "the rest stays pending for --resume",
    )
    batch.add_argument("--model", required=True, help="model id (see: models)")
    batch.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a field shared by every input (a line's own value wins); repeat for more",
    )
    batch.add_argument("--out", required=True, metavar="DIR", help="output folder")
    batch.add_argument(
        "--format",
        choices=("txt", "jsonl", "csv"),
        help="input format (default: from the file's extension; txt for -)",
    )
    batch.add_argument(
        "--max-in-flight", type=_count, default=64, metavar="N", help="jobs alive at once"
    )
    batch.add_argument("--no-download", action="store_true", help="record output URLs only")
    batch.add_argument("--resume", action="store_true", help="continue the journal in --out")
    batch.add_argument(
        "--resubmit-uncertain",
        action="store_true",
        help="on resume, submit again the inputs whose submit outcome is unknown "
        "(they may be billed twice)",
    )
    batch.add_argument(
        "--retry-failed",
        action="store_true",
        help="on resume, submit again the inputs whose job failed on the server "
        "(each is billed again)",
    )
    batch.add_argument(
        "--accept-changed-inputs",
        action="store_true",
        help="resume although --model or --set differ from the journal's run (its jobs are "
        "still followed and reported in orphans.jsonl; the changed inputs are new jobs)",
    )
    batch.add_argument(
        "--outage-tolerance",
        type=float,
        default=OUTAGE_TOLERANCE,
        metavar="SECONDS",
        help="how long to keep trying while the API cannot be reached, fails, or refuses the "
        "credentials, before leaving the jobs to --resume",
    )
    batch.add_argument(
        "--download-timeout",
        type=_positive,
        default=DOWNLOAD_TIMEOUT,
        metavar="SECONDS",
        help="the most one output file may take to download, retries included",
    )
    batch.add_argument(
        "--on-invalid",
        choices=("fail", "skip"),
        default="fail",
        help="bad lines: refuse the whole file, or run the good lines and skip the bad",
    )
    batch.add_argument("--fsync", action="store_true", help="fsync the journal after each record")
    batch.add_argument(
        "--progress",
        choices=("auto", "bar", "plain", "none"),
        default="auto",
        help="a live bar, a status line every few seconds, or nothing "
        "(auto: the bar on a terminal)",
    )
    add_connection(batch)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    from ._emulator import add_emulator_parser

    parser = _Parser(
        prog="runcomfy-async",
        description="Fast, economical client for the RunComfy Model API: one job, or a batch "
        "of thousands with a gallery. Try any command with --sandbox first.",
        epilog=_EPILOG,
        formatter_class=_Formatter,
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = _parser(
        sub,
        "run",
        help="submit one job, wait for it and print its result",
        description="Submit one job, wait for it and print its result as JSON. With --out the "
        "outputs are downloaded there (--sandbox always downloads: its URLs end with it).",
    )
    _add_inputs(run)
    run.add_argument(
        "--timeout",
        type=_positive,
        metavar="S",
        help="seconds to wait, then cancel the job if it has not started (default: no limit)",
    )
    run.add_argument(
        "--out",
        metavar="DIR",
        help="download the outputs into DIR (default: none; with --sandbox: runcomfy-sandbox)",
    )
    add_connection(run)

    submit = _parser(
        sub,
        "submit",
        help="submit one job and print its request id",
        description="Submit one job and print its request id alone on stdout, for "
        'ID=$(runcomfy-async submit ...); then: status "$ID", result "$ID", cancel "$ID".',
    )
    _add_inputs(submit)
    submit.add_argument(
        "--json",
        action="store_true",
        help="print the request id and model id as a JSON object instead",
    )
    add_connection(submit)

    for name, text, description in (
        (
            "status",
            "print a job's state",
            "Print a job's state as JSON: queued (with its queue position), running, "
            "succeeded, failed or cancelled.",
        ),
        (
            "result",
            "print a job's result (or its state while it runs)",
            "Print a job's result as JSON: its state, output URLs, outputs and error.",
        ),
        (
            "cancel",
            "cancel a queued job",
            "Cancel a job that is still queued. Exits 0 when it was cancelled or had already "
            "finished, 1 when it is running (it will run to the end).",
        ),
    ):
        cmd = _parser(sub, name, help=text, description=description)
        cmd.add_argument("request_id", help="the id printed by submit (or found in results.jsonl)")
        # No --sandbox: a sandbox job ends with the command that created it.
        add_connection(cmd, sandbox=False)

    models = _parser(
        sub,
        "models",
        help="list the bundled models, or search the live catalog",
        description="Without arguments, list the models this package knows (bundled) with "
        "each field's type, whether it is required, and what it accepts. With a model id "
        "that is not bundled, or --search, ask the live model catalog (needs a token).",
    )
    models.add_argument("model", nargs="?", help="show this model only (default: all bundled)")
    models.add_argument("--search", metavar="TEXT", help="search the live catalog for TEXT")
    models.add_argument("--category", help="only models of this category (live catalog)")
    models.add_argument("--limit", type=_count, metavar="N", help="at most N models")
    models.add_argument("--json", action="store_true", help="print JSON")
    add_connection(models)

    _add_batch(sub)
    add_emulator_parser(sub)
    for command in sub.choices.values():  # also the parsers added elsewhere
        command.allow_abbrev = False
        command.formatter_class = _Formatter
    return parser
