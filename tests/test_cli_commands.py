"""The one-job commands and the command line's words: ids, states, errors, help, start-up."""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, cast

import pytest

from runcomfy_async._cli._args import UsageError, parse_sets
from runcomfy_async._cli._commands import open_client
from runcomfy_async._cli._main import main
from runcomfy_async._cli._parser import build_parser
from runcomfy_async._states import FINAL_PHASES
from runcomfy_async.testing import FakeRunComfy

from .conftest import TOKEN

T2I = "google/nano-banana-2/text-to-image"
PHASES = {"queued", "running", "succeeded", "failed", "cancelled"}


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNCOMFY_")}
    env["RUNCOMFY_API_TOKEN"] = TOKEN
    return env


async def _cli(*args: str) -> tuple[int, str, str]:
    """Run ``python -m runcomfy_async ARGS`` with the test token; (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "runcomfy_async",
        *args,
        env=_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.anyio
async def test_submit_prints_the_bare_id_that_status_result_and_cancel_take() -> None:
    """ID=$(submit ...) then status/result/cancel $ID work, in the library's state words."""
    async with FakeRunComfy(token=TOKEN, duration_mean=0.2, duration_sigma=0.1) as fake:
        url = ("--base-url", fake.base_url)
        code, out, err = await _cli("submit", T2I, "--set", "prompt=a fox", *url)
        assert code == 0, err
        request_id = out.strip()
        assert request_id in fake.jobs and out == request_id + "\n"
        code, out, err = await _cli("submit", T2I, "--set", "prompt=a fox", "--json", *url)
        assert code == 0, err
        assert json.loads(out)["request_id"] in fake.jobs
        for _ in range(200):
            code, out, err = await _cli("status", request_id, *url)
            assert code == 0, err
            shown = json.loads(out)
            assert shown["status"] in PHASES, shown  # never the server's "completed"
            if shown["status"] in FINAL_PHASES:
                break
        assert shown == {"request_id": request_id, "status": "succeeded"}
        code, out, err = await _cli("result", request_id, *url)
        assert code == 0, err
        assert json.loads(out)["status"] == "succeeded"
        code, out, err = await _cli("cancel", request_id, *url)
        assert (code, out) == (0, "succeeded: already finished, nothing to cancel\n"), err


@pytest.mark.anyio
async def test_cancel_says_what_happened_to_queued_and_running_jobs() -> None:
    """cancel of a queued job cancels it (exit 0); of a running one, exit 1 and says so."""
    async with FakeRunComfy(token=TOKEN, duration_mean=60.0, concurrency=1) as fake:
        url = ("--base-url", fake.base_url)
        ids = []
        for prompt in ("first", "second"):
            code, out, err = await _cli("submit", T2I, "--set", f"prompt={prompt}", *url)
            assert code == 0, err
            ids.append(out.strip())
        running, queued = ids
        code, out, err = await _cli("status", queued, *url)
        assert json.loads(out)["status"] == "queued" and json.loads(out)["queue_position"] >= 0
        code, out, _ = await _cli("cancel", queued, *url)
        assert (code, out) == (0, "cancelled\n")
        code, out, _ = await _cli("cancel", running, *url)
        assert code == 1 and out.startswith("running: already started")
        assert fake.job_states()["cancelled"] == 1


def test_errors_name_flags_and_variables(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """No token names --token, RUNCOMFY_API_TOKEN and --sandbox; http:// names --allow-insecure."""
    for name in ("RUNCOMFY_API_TOKEN", "RUNCOMFY_TOKEN", "RUNCOMFY_API_KEY", "RUNCOMFY_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    assert main(["status", "abc"]) == 3
    err = capsys.readouterr().err
    assert "--token" in err and "RUNCOMFY_API_TOKEN" in err and "--sandbox" in err, err
    assert "api_token" not in err
    assert main(["status", "abc", "--token", "t", "--base-url", "http://api.example.test"]) == 3
    err = capsys.readouterr().err
    assert "--allow-insecure" in err and "allow_insecure" not in err, err
    assert main(["status", "abc", "--token", "t", "--base-url", "https://u:p@x.test"]) == 3
    err = capsys.readouterr().err
    assert "--token" in err and "api_token" not in err, err
    with pytest.raises(SystemExit) as info:
        main(["status", "abc", "--token", "t", "--rate", "-1"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--rate: must be a number above 0" in err and "max_" not in err, err


@pytest.mark.anyio
async def test_allow_insecure_reaches_the_client() -> None:
    """--allow-insecure lets the client accept an http:// origin that is not loopback."""
    insecure = "http://api.example.test:9"
    argv = ["status", "x", "--token", "t", "--base-url", insecure, "--allow-insecure"]
    args = build_parser().parse_args(argv)
    async with open_client(args) as client:
        assert client.base_url == insecure


@pytest.mark.anyio
async def test_mistyped_model_is_named_before_any_submit() -> None:
    """A near-miss model id gets a warning naming the catalog's nearest model, first thing."""
    async with FakeRunComfy(token=TOKEN, duration_mean=0.05) as fake:
        typo = "google/nano-bananna-2/text-to-image"
        url = ("--base-url", fake.base_url)
        _, _, err = await _cli("submit", typo, "--set", "prompt=x", *url)
        first = err.splitlines()[0]
        assert first == f"warning: unknown model {typo!r}; did you mean {T2I!r}?", err
        code, _, err = await _cli("submit", T2I, "--set", "prompt=x", *url)
        assert code == 0 and "warning" not in err


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def test_every_command_and_option_explains_itself() -> None:
    """Each command has a description, each option and positional a help line; no prefixes."""
    top = build_parser()
    assert top.epilog is not None and top.epilog.count("runcomfy-async ") >= 2
    assert "--sandbox" in top.epilog and not top.allow_abbrev
    commands = _subparsers(top)
    assert {"run", "submit", "status", "result", "cancel", "models", "batch"} <= set(commands)
    for name, parser in commands.items():
        assert parser.description, name
        assert not parser.allow_abbrev, name
        for action in parser._actions:
            assert action.help, f"{name} {action.option_strings or action.dest}"
    help_text = commands["batch"].format_help()
    assert "(default: 64)" in help_text and "(default: fail)" in help_text


def test_abbreviated_options_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    """--tok X is not taken for --token (it would leak into hints and logs)."""
    with pytest.raises(SystemExit) as info:
        main(["status", "abc", "--tok", "secret-value"])
    assert info.value.code == 2
    assert "unrecognized arguments" in capsys.readouterr().err


def test_set_values_typed_by_schema_leniently() -> None:
    """--set reads integers, numbers and booleans as the schema says; a bad value is named."""
    got = parse_sets(T2I, ["num_images=2", "enable_web_search=yes", "limit_generations=0"])
    assert got == {"num_images": 2, "enable_web_search": True, "limit_generations": False}
    assert parse_sets("some/untyped/model", ["cfg=7.5", "steps=20", "x=hi"]) == {
        "cfg": 7.5,
        "steps": 20,
        "x": "hi",
    }
    with pytest.raises(UsageError, match=r"--set num_images=two: expected an integer"):
        parse_sets(T2I, ["num_images=two"])
    with pytest.raises(UsageError, match="expected true or false"):
        parse_sets(T2I, ["enable_web_search=maybe"])


def test_sandbox_run_saves_outputs_instead_of_dead_urls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """run --sandbox downloads the outputs (its URLs die with it) and prints the files."""
    monkeypatch.chdir(tmp_path)
    assert main(["run", T2I, "--set", "prompt=a fox", "--sandbox"]) == 0
    captured = capsys.readouterr()
    shown = json.loads(captured.out)
    assert "urls" not in shown and shown["status"] == "succeeded"
    assert "runcomfy-sandbox" in captured.err
    for f in shown["files"]:
        assert (tmp_path / "runcomfy-sandbox" / f["path"]).read_bytes()[:4] == b"\x89PNG"
    assert not re.search(r"https?://", captured.out)


def test_sandbox_learns_nothing_into_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sandbox's emulator lives on a random port for one run: nothing of it is cached."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("RUNCOMFY_CACHE_DIR", str(cache))
    monkeypatch.chdir(tmp_path)
    assert main(["run", T2I, "--set", "prompt=a fox", "--sandbox"]) == 0
    assert not (cache / "learned.json").exists()


@pytest.mark.anyio
@pytest.mark.parametrize("no_cache", [False, True])
async def test_no_cache_flag_keeps_the_cache_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_cache: bool
) -> None:
    """--no-cache: what a run learns is not saved (without it, it is)."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("RUNCOMFY_CACHE_DIR", str(cache))
    async with FakeRunComfy(token=TOKEN, duration_mean=0.05) as fake:
        argv = ["run", T2I, "--set", "prompt=a fox", "--token", TOKEN, "--base-url"]
        argv += [fake.base_url, "--no-cache"] if no_cache else [fake.base_url]
        args = build_parser().parse_args(argv)
        async with open_client(args) as client:
            await client.run(T2I, {"prompt": "a fox"})
    assert (cache / "learned.json").exists() is not no_cache


def test_help_and_bundled_models_import_no_client() -> None:
    """--help and 'models' import neither aiohttp nor the batch machinery."""
    probe = (
        "import sys\n"
        "from runcomfy_async._cli._main import main\n"
        "try:\n"
        "    main(sys.argv[1:])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = [m for m in ('aiohttp', 'anyio', 'runcomfy_async._batch',"
        " 'runcomfy_async._client', 'runcomfy_async._cli._batch') if m in sys.modules]\n"
        "print('HEAVY', heavy, file=sys.stderr)\n"
    )
    for argv in (["--help"], ["models"], ["batch", "--help"]):
        proc = subprocess.run(
            [sys.executable, "-c", probe, *argv], capture_output=True, text=True, timeout=60
        )
        assert "HEAVY []" in proc.stderr, (argv, proc.stderr)
        assert ("usage:" if "--help" in argv else T2I) in proc.stdout, proc.stdout


def test_progress_shows_server_states_and_not_checked_yet() -> None:
    """The progress line counts jobs by the server's last answer; no answer is 'not checked yet'."""
    from types import SimpleNamespace

    from runcomfy_async._cli._progress import Progress

    phases = [None, None, "queued", "queued", "queued", "running", "succeeded"]
    live = {
        str(i): SimpleNamespace(job=None if i == 0 else SimpleNamespace(phase=phase))
        for i, phase in enumerate(phases)
    }
    runner: Any = SimpleNamespace(_live=live, counts=collections.Counter())
    progress = Progress("none", total=20, runner=runner, client=cast(Any, None))
    assert progress.live() == {
        "not checked yet": 2,
        "queued": 3,
        "running": 1,
        "finishing": 1,
    }
    line = progress.line()
    assert line.startswith("not checked yet 2  queued 3  running 1  finishing 1  done 0  failed 0")
    assert "invalid" not in line  # shown only once there are some
