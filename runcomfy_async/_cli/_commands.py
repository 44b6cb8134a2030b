"""The one-job commands: ``run``, ``submit``, ``status``, ``result`` and ``cancel``.

Imported only when one of them runs (it brings in the client and aiohttp). States are printed
in the library's vocabulary (:data:`runcomfy_async._states.Phase`), never the server's words.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec

from .._client import AsyncClient
from .._exceptions import JobCancelledError, JobError, JobFailedError
from .._states import FINAL_PHASES
from .._wire import Result, classify
from ._args import EXIT_FAILED, EXIT_OK, UsageError, parse_sets

__all__ = [
    "SANDBOX_EMULATOR",
    "SANDBOX_OUT",
    "SANDBOX_STATE",
    "SANDBOX_TOKEN",
    "one_job_command",
    "open_client",
]

SANDBOX_TOKEN = "sandbox-token"
"""The token the in-process emulator accepts in ``--sandbox`` mode (it is not a secret)."""

SANDBOX_EMULATOR: dict[str, Any] = {"duration_mean": 1.5, "duration_sigma": 0.4, "concurrency": 16}
"""How the ``--sandbox`` emulator behaves: jobs of about 1.5 s, 16 at a time, the rest queued."""

SANDBOX_STATE = "sandbox-emulator.jsonl"
"""The file in a ``batch --sandbox`` output folder that holds the emulator's jobs."""

SANDBOX_OUT = "runcomfy-sandbox"
"""Where ``run --sandbox`` saves outputs when no ``--out`` is given: its URLs end with it."""


@contextlib.asynccontextmanager
async def open_client(args: argparse.Namespace) -> AsyncIterator[AsyncClient]:
    """An AsyncClient for the command line's connection options (an emulator if --sandbox)."""
    if getattr(args, "sandbox", False):
        from ..testing import FakeRunComfy

        # A batch keeps the emulator's jobs in its --out folder, so that the printed
        # '--sandbox --resume' finds the jobs it paid (pretend-paid) for.
        state = Path(args.out) / SANDBOX_STATE if args.command == "batch" else None
        async with (
            FakeRunComfy(token=SANDBOX_TOKEN, state_path=state, **SANDBOX_EMULATOR) as fake,
            AsyncClient(
                SANDBOX_TOKEN,
                fake.base_url,
                max_requests_per_second=args.rate,
                poll=getattr(args, "poll", None),
                cache=False,  # a throwaway emulator on a random port: nothing worth keeping
            ) as client,
        ):
            yield client
        return
    async with AsyncClient(
        args.token,
        args.base_url,
        max_requests_per_second=args.rate,
        allow_insecure=args.allow_insecure,
        poll=getattr(args, "poll", None),  # the batch's own (see _batch.py)
        cache=not getattr(args, "no_cache", False),
    ) as client:
        yield client


_JOB_ERROR_STATES: dict[type[JobError], str] = {
    JobFailedError: "failed",
    JobCancelledError: "cancelled",
}


def _inputs(model: str, sets: list[str], raw_json: str | None) -> dict[str, Any]:
    inputs: dict[str, Any] = {}
    if raw_json:
        try:
            decoded = msgspec.json.decode(raw_json.encode())
        except msgspec.DecodeError as exc:
            raise UsageError(f"--inputs is not valid JSON: {exc}") from None
        if not isinstance(decoded, dict):
            raise UsageError("--inputs must be a JSON object")
        inputs.update(decoded)
    inputs.update(parse_sets(model, sets))
    return inputs


def _print_json(obj: Any) -> None:
    sys.stdout.write(msgspec.json.format(msgspec.json.encode(obj), indent=2).decode() + "\n")


def _state(raw: str | None) -> str | None:
    """The library's word for a server state (an unknown word is shown as it came)."""
    if raw is None:
        return None
    return classify(raw) or raw


def _result_dict(res: Result) -> dict[str, Any]:
    return {
        "request_id": res.request_id,
        "status": _state(res.status),
        "urls": list(res.urls),
        "output": res.output.to_dict() if res.output is not None else None,
        "error": res.error,
        "created_at": res.created_at_raw,
        "finished_at": res.finished_at_raw,
    }


async def _run(args: argparse.Namespace) -> int:
    inputs = _inputs(args.model, args.set, args.inputs)
    out = args.out or (SANDBOX_OUT if args.sandbox else None)
    async with open_client(args) as client:
        job = await client.submit(args.model, inputs)
        print(f"submitted {job.request_id}", file=sys.stderr)
        try:
            res = await job.wait(args.timeout, cancel_on_timeout=True)
        except JobError as exc:
            status = _JOB_ERROR_STATES.get(type(exc), job.phase or "queued")
            _print_json({"request_id": job.request_id, "status": status, "error": str(exc)})
            return EXIT_FAILED
        shown = _result_dict(res)
        if out and res.urls:
            from .._download import Downloader

            async with Downloader(out) as downloader:
                files = await downloader.fetch_all(list(res.urls), stem=job.request_id[:8])
            shown["files"] = [msgspec.to_builtins(f) for f in files]
            if args.sandbox:
                # The emulator that serves these URLs stops with this command.
                del shown["urls"], shown["output"]
                for entry in shown["files"]:
                    entry.pop("url", None)
                print(f"sandbox: outputs saved in {Path(out)}/", file=sys.stderr)
        _print_json(shown)
    return EXIT_OK


async def _submit(args: argparse.Namespace) -> int:
    async with open_client(args) as client:
        job = await client.submit(args.model, _inputs(args.model, args.set, args.inputs))
        client.cancel_on_error = False
        if args.json:
            _print_json({"request_id": job.request_id, "model_id": job.model_id})
        else:
            print(job.request_id)
        if args.sandbox:
            print(
                "sandbox: this job lives only as long as this command; "
                "use 'run --sandbox' to see a result",
                file=sys.stderr,
            )
    return EXIT_OK


async def _status(client: AsyncClient, request_id: str) -> int:
    answer = await client.status(request_id)
    shown: dict[str, Any] = {"request_id": answer.request_id or request_id}
    shown["status"] = _state(answer.status)
    if answer.queue_position is not None:
        shown["queue_position"] = answer.queue_position
    _print_json(shown)
    return EXIT_OK


async def _cancel(client: AsyncClient, request_id: str) -> int:
    answer = await client.cancel(request_id)
    if answer.cancelled:
        print("cancelled")
        return EXIT_OK
    # The cancel answer's own status is unreliable (see PROTOCOL.md): ask where the job is.
    phase = _state((await client.status(request_id)).status)
    if phase in FINAL_PHASES:
        print(f"{phase}: already finished, nothing to cancel")
        return EXIT_OK
    print(f"{phase}: already started, it will run to the end (only queued jobs can be cancelled)")
    return EXIT_FAILED


async def one_job_command(args: argparse.Namespace) -> int:
    """Run ``run``, ``submit``, ``status``, ``result`` or ``cancel``; return the exit code."""
    if args.command == "run":
        return await _run(args)
    if args.command == "submit":
        return await _submit(args)
    async with open_client(args) as client:
        if args.command == "status":
            return await _status(client, args.request_id)
        if args.command == "result":
            _print_json(_result_dict(await client.result(args.request_id)))
            return EXIT_OK
        return await _cancel(client, args.request_id)
