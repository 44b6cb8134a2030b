"""The command line: exit codes, the sandbox batch, bad input files, and kill-then-resume."""

from __future__ import annotations

import asyncio
import collections
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from runcomfy_async._cli._commands import SANDBOX_EMULATOR, SANDBOX_STATE
from runcomfy_async._cli._main import main
from runcomfy_async._journal import Done, Journal, Released
from runcomfy_async.testing import FakeRunComfy

from .conftest import TOKEN

T2I = "google/nano-banana-2/text-to-image"
EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "prompts.txt"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNCOMFY_")}
    env["RUNCOMFY_API_TOKEN"] = TOKEN
    return env


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "runcomfy_async", *args]


def test_sandbox_batch_writes_results_and_gallery(tmp_path: Path) -> None:
    """The README's first command: a sandbox batch writes results, files and a gallery."""
    out = tmp_path / "out"
    proc = subprocess.run(
        _cli("batch", str(EXAMPLES), "--model", T2I, "--out", str(out), "--sandbox"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    lines = (out / "results.jsonl").read_text().splitlines()
    prompts = [p for p in EXAMPLES.read_text().splitlines() if p.strip()]
    assert len(lines) == len(prompts)
    records = [json.loads(line) for line in lines]
    assert all(r["status"] == "succeeded" and r["files"] for r in records)
    assert all((out / r["files"][0]["path"]).exists() for r in records)
    html = (out / "index.html").read_text()
    assert "index.html" not in proc.stderr or "gallery" in proc.stderr
    assert html.count("<img") >= len(prompts)


def test_usage_and_config_exit_codes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bad usage exits 2; a missing token exits 3 and names the variables."""
    for name in ("RUNCOMFY_API_TOKEN", "RUNCOMFY_TOKEN", "RUNCOMFY_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(SystemExit) as info:
        main(["batch"])
    assert info.value.code == 2
    assert main(["status", "abc", "--base-url", "http://127.0.0.1:9"]) == 3
    assert main(["run", T2I, "--set", "prompt=x", "--set", "num_images=9", "--sandbox"]) == 2
    assert main(["models", "no/such/model"]) == 2


def test_bad_lines_refused_before_any_submit(tmp_path: Path) -> None:
    """Invalid lines are reported with file:line and nothing is submitted (default: fail)."""
    bad = tmp_path / "in.jsonl"
    bad.write_text(
        '{"prompt": "fine"}\n{"prompt": "x", "num_images": 9}\nnot json\n{"prompt": ""}\n'
    )
    out = tmp_path / "out"
    proc = subprocess.run(
        _cli("batch", str(bad), "--model", T2I, "--out", str(out), "--sandbox"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert f"{bad}:2" in proc.stderr and "num_images" in proc.stderr
    assert f"{bad}:3" in proc.stderr and f"{bad}:4" in proc.stderr
    assert not (out / "journal.jsonl").exists()


def test_skip_invalid_exits_0_and_counts_them_apart(tmp_path: Path) -> None:
    """--on-invalid skip: exit 0 if the valid lines succeed; invalid counted apart, said once."""
    bad = tmp_path / "in.jsonl"
    bad.write_text(
        '{"prompt": "one"}\n\n{"prompt": "x", "num_images": 9}\nnot json\n'
        '{"prompt": "two"}\n{"prompt": ""}\n{"prompt": "three"}\n'
    )
    out = tmp_path / "out"
    argv = ["batch", str(bad), "--model", T2I, "--out", str(out), "--sandbox"]
    proc = subprocess.run(
        _cli(*argv, "--on-invalid", "skip", "--progress", "plain"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    err = proc.stderr
    assert proc.returncode == 0, err
    for line, reason in ((3, "num_images"), (4, "JSON"), (6, "prompt")):
        assert err.count(f"{bad}:{line}: ") == 1, err  # each reason once, at its file line
        assert reason in err
    final = [x for x in err.splitlines() if x.startswith("[")][-1]
    assert "done 3" in final and "failed 0" in final and "invalid 3" in final, final
    assert re.search(r"invalid lines skipped\W+3", err), err
    records = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert [r["index"] for r in records] == list(range(6))  # input order
    assert [r["line"] for r in records] == [1, 3, 4, 5, 6, 7]  # 1-based, as editors count
    assert [r["status"] for r in records].count("invalid") == 3
    page = (out / "index.html").read_text()
    for line in (3, 4, 6):
        assert f">line {line}</a>" in page  # the gallery's failures list: the same numbers


def test_scan_errors_cut_with_a_count_of_the_rest(tmp_path: Path) -> None:
    """Past the listed errors the pre-scan says '+N more' instead of going quiet."""
    lines = ['{"prompt": "ok"}'] + [f'{{"prompt": "x", "num_images": {9 + i}}}' for i in range(56)]
    bad = tmp_path / "in.jsonl"
    bad.write_text("\n".join(lines) + "\n")
    proc = subprocess.run(
        _cli("batch", str(bad), "--model", T2I, "--out", str(tmp_path / "o"), "--sandbox"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    listed = [x for x in proc.stderr.splitlines() if x.startswith(f"{bad}:")]
    assert f"+{56 - len(listed)} more" in proc.stderr, proc.stderr


@pytest.mark.anyio
async def test_summary_lists_top_reasons_and_counts_the_rest(tmp_path: Path) -> None:
    """The summary lists the top failure reasons and says how many more there are."""
    inp = tmp_path / "p.txt"
    inp.write_text("".join(f"prompt {i}\n" for i in range(8)))
    out = tmp_path / "out"
    async with FakeRunComfy(token=TOKEN, duration_mean=0.05, failure_rate=1.0, seed=3) as fake:
        proc = await asyncio.create_subprocess_exec(
            *_cli("batch", str(inp), "--model", T2I, "--out", str(out), "--progress", "none"),
            "--base-url", fake.base_url, env=_env(), stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, raw = await asyncio.wait_for(proc.communicate(), 120)
    err = raw.decode()
    assert proc.returncode == 1, err
    records = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert "failed: emulated generation failure" in err  # grouped: no job id in it
    distinct = {f"{r['status']}: {r['error'].split(': ', 1)[-1][:100]}" for r in records}
    more = re.search(r"\+(\d+) more reasons?", err)
    if len(distinct) > 5:
        assert more is not None and int(more.group(1)) == len(distinct) - 5, err
    else:
        assert more is None, err


def test_existing_journal_needs_resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A folder holding a journal asks for --resume; a sandbox run starts afresh instead."""
    monkeypatch.setenv("RUNCOMFY_API_TOKEN", TOKEN)
    out = tmp_path / "out"
    out.mkdir()
    (out / "journal.jsonl").write_text("")
    inp = tmp_path / "p.txt"
    inp.write_text("a fox\n")
    base = ["batch", str(inp), "--model", T2I, "--out", str(out), "--progress", "none"]
    assert main([*base, "--base-url", "http://127.0.0.1:9"]) == 2
    assert main([*base, "--sandbox"]) == 0
    assert main([*base, "--sandbox"]) == 0  # the README's command can be run twice
    assert (out / "journal.prev.jsonl").exists()


def test_sandbox_resume_without_kept_jobs_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--sandbox --resume on a folder whose emulator jobs were not kept says so, and what works."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "journal.jsonl").write_text("")
    inp = tmp_path / "p.txt"
    inp.write_text("a fox\n")
    base = ["batch", str(inp), "--model", T2I, "--out", str(out), "--progress", "none"]
    assert main([*base, "--sandbox", "--resume"]) == 2
    err = capsys.readouterr().err
    assert "cannot be resumed" in err and SANDBOX_STATE in err, err
    fresh = err.split("afresh (nothing is paid in the sandbox): ", 1)[1].split()
    assert fresh[:2] == ["runcomfy-async", "batch"] and "--resume" not in fresh
    assert main(fresh[1:]) == 0  # the command it gives works


@pytest.mark.anyio
async def test_sandbox_resume_hint_finishes_every_input(tmp_path: Path) -> None:
    """Ctrl-C a sandbox batch, run the printed resume command: every input succeeds, once."""
    n = 48
    inp = tmp_path / "p.txt"
    inp.write_text("".join(f"prompt {i}\n" for i in range(n)))
    out = tmp_path / "out"
    argv = ["batch", str(inp), "--model", T2I, "--out", str(out), "--sandbox"]
    proc = await asyncio.create_subprocess_exec(
        *_cli(*argv, "--progress", "plain", "--max-in-flight", "32"),
        env=_env(), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    journal = out / "journal.jsonl"
    for _ in range(3000):  # interrupt once jobs are paid for and running in the emulator
        if journal.exists() and journal.read_text().count('"e":"submitted"') >= 20:
            break
        await asyncio.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, raw = await asyncio.wait_for(proc.communicate(), 60)
    err = raw.decode()
    assert proc.returncode == 130, err
    hint = err.split("Resume with:\n", 1)[1].split("\n", 1)[0].split()
    assert hint[:2] == ["runcomfy-async", "batch"] and "--sandbox" in hint and "--resume" in hint
    first = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert any(r["status"] == "submitted" for r in first)  # paid jobs left to follow
    proc = await asyncio.create_subprocess_exec(
        *_cli(*hint[1:]), env=_env(), stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, raw = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, raw.decode()
    records = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert [r["status"] for r in records] == ["succeeded"] * n
    followed = {r["request_id"] for r in first if r["status"] == "submitted"}
    assert followed <= {r["request_id"] for r in records}  # the paid jobs were finished
    # The same emulator settings replay the same schedule: who ran, who was cancelled queued.
    async with FakeRunComfy(state_path=out / SANDBOX_STATE, **SANDBOX_EMULATOR) as fake:
        kept = collections.Counter(
            job.inputs["prompt"] for job in fake.jobs.values() if job.cancelled_at is None
        )
    assert kept == {f"prompt {i}": 1 for i in range(n)}  # one job each; cancelled ones unbilled


@pytest.mark.anyio
@pytest.mark.slow
async def test_sigkill_then_resume_no_duplicates(tmp_path: Path) -> None:
    """SIGKILL mid-batch, then --resume: one job per input, one terminal line per input."""
    n = 120
    inp = tmp_path / "prompts.txt"
    inp.write_text("".join(f"prompt {i}\n" for i in range(n)))
    out = tmp_path / "out"
    journal = out / "journal.jsonl"
    async with FakeRunComfy(
        token=TOKEN, duration_mean=0.4, duration_sigma=0.3, concurrency=16, seed=5
    ) as fake:
        args = _cli(
            "batch", str(inp), "--model", T2I, "--out", str(out), "--base-url", fake.base_url,
            "--max-in-flight", "32", "--progress", "none",
        )  # fmt: skip
        proc = await asyncio.create_subprocess_exec(
            *args, env=_env(), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
        )
        # Kill once some inputs are done and others are in flight (observed in the journal).
        for _ in range(3000):
            done = sum(1 for r in Journal.records(journal) if isinstance(r, Done))
            if done >= 20:
                break
            await asyncio.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        assert proc.returncode == -signal.SIGKILL
        created_at_kill = fake.jobs_created
        assert 20 <= created_at_kill < n
        proc = await asyncio.create_subprocess_exec(
            *args, "--resume", env=_env(), stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await asyncio.wait_for(proc.communicate(), 120)
        records = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
        statuses = {r["status"] for r in records}
        # A kill between sending a submit and journaling its answer leaves that input
        # 'uncertain': reported, never resubmitted (exit 1). Everything else succeeds.
        assert statuses <= {"succeeded", "uncertain"}, err.decode()
        assert proc.returncode == (0 if statuses == {"succeeded"} else 1), err.decode()
        per_prompt: dict[str, int] = {}
        for job in fake.jobs.values():
            per_prompt[job.inputs["prompt"]] = per_prompt.get(job.inputs["prompt"], 0) + 1
    assert max(per_prompt.values()) == 1  # no input ever got two jobs
    assert len(records) == n  # one terminal line per input
    assert [r["index"] for r in records] == list(range(n))  # input order, not completion
    for r in records:
        expected = 1 if r["status"] == "succeeded" else per_prompt.get(r["input"]["prompt"], 0)
        assert per_prompt.get(r["input"]["prompt"], 0) == expected
    assert TOKEN not in (out / "results.jsonl").read_text() + journal.read_text()


def test_run_downloads_with_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """'run --out DIR' prints the result and saves its outputs with their sha256."""
    out = tmp_path / "one"
    args = ["--set", "prompt=a fox", "--set", "num_images=2", "--out", str(out), "--sandbox"]
    code = main(["run", T2I, *args])
    assert code == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["status"] == "succeeded" and len(shown["files"]) == 2
    for f in shown["files"]:
        assert (out / f["path"]).read_bytes()[:4] == b"\x89PNG"


def test_emulator_command_serves(tmp_path: Path) -> None:
    """'runcomfy-async emulator --port 0' prints its URL and answers the Model API."""
    import urllib.request

    proc = subprocess.Popen(_cli("emulator", "--port", "0"), stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("emulator: API http://127.0.0.1:")
        base = line.split()[2]
        req = urllib.request.Request(
            f"{base}/v1/models/{T2I}",
            data=b'{"prompt": "x"}',
            method="POST",
            headers={"Authorization": "Bearer any-token"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert "request_id" in json.loads(resp.read())
        with urllib.request.urlopen(f"{base}/_emulator/stats", timeout=10) as resp:
            assert json.loads(resp.read())["jobs_created"] == 1
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.mark.anyio
async def test_ctrl_c_cancels_queued_and_prints_resume(tmp_path: Path) -> None:
    """SIGINT stops submitting, cancels queued jobs, exits 130 with the resume command."""
    inp = tmp_path / "prompts.txt"
    inp.write_text("".join(f"prompt {i}\n" for i in range(20)))
    out = tmp_path / "out"
    async with FakeRunComfy(token=TOKEN, duration_mean=30.0, concurrency=2) as fake:
        args = _cli(
            "batch", str(inp), "--model", T2I, "--out", str(out), "--base-url", fake.base_url,
            "--max-in-flight", "8", "--progress", "plain",
        )  # fmt: skip
        proc = await asyncio.create_subprocess_exec(
            *args, env=_env(), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
        )
        journal = out / "journal.jsonl"
        for _ in range(3000):  # every submit answered (journaled), not only created: a loaded
            # machine can still have the last answer on the wire, which Ctrl-C leaves uncertain
            if journal.exists() and journal.read_bytes().count(b'"e":"submitted"') >= 8:
                break
            await asyncio.sleep(0.01)
        proc.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 130, err.decode()
        assert "--resume" in err.decode()
        assert fake.jobs_created == 8  # nothing submitted after the interrupt
        assert fake.job_states()["cancelled"] == 6  # the queued ones; 2 were running
    released = [r for r in Journal.records(out / "journal.jsonl") if isinstance(r, Released)]
    assert len(released) == 6
