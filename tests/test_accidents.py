"""The accidents of real use: a batch pays once for each input and loses none, whatever happens.

Each test runs the ``batch`` command against the emulator, makes one accident happen, and checks
the emulator's own counts: jobs created equal the distinct inputs, results.jsonl holds exactly
one line per input, and after the fix and ``--resume`` every input has succeeded.

The emulator runs on its own event loop in a thread, so the command keeps its own loop (and its
signal handlers) in the test's thread; accidents are scheduled on the emulator's loop.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ._accidents import (
    T2I,
    Api,
    api_servers,
    assert_all_done,
    batch,
    finish_now,
    prompts,
    results,
    submitted,
    token_env,
    when,
)
from .conftest import TOKEN


@pytest.fixture
def api_factory() -> Iterator[Callable[..., Api]]:
    yield from api_servers()


@pytest.fixture(autouse=True)
def _token_env(monkeypatch: pytest.MonkeyPatch) -> None:
    token_env(monkeypatch)


# -- 1. duplicate keys ------------------------------------------------------------------------


def test_duplicate_keys_refused_before_anything_is_sent(
    api_factory: Callable[..., Api], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two inputs with one _key: exit 2 naming both lines, no job; unique keys then all run."""
    api = api_factory()
    inp = tmp_path / "in.jsonl"
    lines = ['{"_key": "cat", "prompt": "a"}', '{"_key": "dog", "prompt": "b"}',
             '{"_key": "cat", "prompt": "c"}']  # fmt: skip
    inp.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    assert batch(api, inp, out, "--on-invalid", "skip") == 2
    err = capsys.readouterr().err
    assert f'{inp}:3: duplicate key "cat", first at line 1' in err
    assert api.fake.jobs_created == 0
    inp.write_text("\n".join(lines).replace('"cat", "prompt": "c"', '"cow", "prompt": "c"') + "\n")
    assert batch(api, inp, out) == 0
    assert_all_done(out, 3, api)
    assert sorted(p.name for p in out.glob("*.png")) == ["cat-0.png", "cow-0.png", "dog-0.png"]


# -- 2. one run per --out ---------------------------------------------------------------------


def test_second_run_on_one_folder_fails_at_once_and_a_killed_holder_is_no_obstacle(
    api_factory: Callable[..., Api], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A second run names the holder and sends nothing; after SIGKILL, --resume finishes all."""
    api = api_factory(duration_mean=30.0)
    inp, out = prompts(tmp_path, 6), tmp_path / "out"
    env = {**os.environ, "RUNCOMFY_API_TOKEN": TOKEN}
    holder = subprocess.Popen(
        [sys.executable, "-m", "runcomfy_async", "batch", str(inp), "--model", T2I, "--out",
         str(out), "--base-url", api.fake.base_url, "--progress", "none"],
        env=env, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while submitted(out) < 6 and time.monotonic() < deadline:  # answers journaled
            time.sleep(0.02)
        assert api.fake.jobs_created == 6
        assert batch(api, inp, out, "--resume") == 2
        err = capsys.readouterr().err
        assert f"pid {holder.pid}" in err and "another run is using" in err
        assert api.fake.jobs_created == 6
    finally:
        holder.kill()
        holder.wait(10)
    finish_now(api)
    assert batch(api, inp, out, "--resume") == 0
    assert_all_done(out, 6, api)


# -- 3. resume with changed inputs ------------------------------------------------------------


def test_resume_with_changed_inputs_never_pays_twice_silently(
    api_factory: Callable[..., Api], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A line inserted on top runs alone; another --set is refused naming it unless accepted."""
    api = api_factory()
    inp, out = prompts(tmp_path, 8), tmp_path / "out"
    assert batch(api, inp, out, "--set", "resolution=1K") == 0
    inp.write_text("a new first line\n" + inp.read_text())
    assert batch(api, inp, out, "--set", "resolution=1K", "--resume") == 0
    assert_all_done(out, 9, api)  # one job for the new line, none again for the 8 others
    capsys.readouterr()
    assert batch(api, inp, out, "--set", "resolution=2K", "--resume") == 2
    err = capsys.readouterr().err
    assert "--set resolution: was resolution=1K, now resolution=2K" in err
    assert api.fake.jobs_created == 9
    code = batch(api, inp, out, "--set", "resolution=2K", "--resume", "--accept-changed-inputs")
    assert code == 0 and api.fake.jobs_created == 18  # asked for: each input once more
    assert [r["input"]["resolution"] for r in results(out)] == ["2K"] * 9


def test_jobs_whose_input_is_gone_are_followed_and_reported(
    api_factory: Callable[..., Api], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A paid job whose line was edited away is followed to its end and listed in orphans.jsonl."""
    api = api_factory(duration_mean=30.0)
    inp, out = prompts(tmp_path, 4), tmp_path / "out"
    env = {**os.environ, "RUNCOMFY_API_TOKEN": TOKEN}
    run = subprocess.Popen(
        [sys.executable, "-m", "runcomfy_async", "batch", str(inp), "--model", T2I, "--out",
         str(out), "--base-url", api.fake.base_url, "--progress", "none"],
        env=env, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while submitted(out) < 4 and time.monotonic() < deadline:  # answers journaled: all paid
        time.sleep(0.02)
    run.kill()
    run.wait(10)
    finish_now(api)
    lines = inp.read_text().splitlines()
    inp.write_text("\n".join([*lines[:3], "an edited last line"]) + "\n")
    assert batch(api, inp, out, "--resume") == 0
    assert [r["status"] for r in results(out)] == ["succeeded"] * 4
    assert api.fake.jobs_created == 5  # the 4 paid ones, and one for the edited line
    (orphan,) = [json.loads(x) for x in (out / "orphans.jsonl").read_text().splitlines()]
    assert orphan["status"] == "succeeded" and orphan["input"]["prompt"] == lines[3]
    assert orphan["files"]  # its outputs were saved too, beside the new line's
    names = {f["path"] for r in [*results(out), orphan] for f in r["files"]}
    assert len(names) == 5 and all((out / name).exists() for name in names)


# -- 4. account errors ------------------------------------------------------------------------


@pytest.mark.parametrize("balance_error", ["400002", "402"])
def test_empty_balance_stops_submits_and_a_top_up_finishes_the_rest(
    api_factory: Callable[..., Api],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    balance_error: str,
) -> None:
    """No balance: exit 3, the rest stays pending with a resume hint; a top-up then finishes."""
    api = api_factory(balance=4, balance_error=balance_error)
    inp, out = prompts(tmp_path, 10), tmp_path / "out"
    assert batch(api, inp, out, "--max-in-flight", "2") == 3
    err = capsys.readouterr().err
    assert "Resume with" in err and "--resume" in err and TOKEN not in err
    statuses = [r["status"] for r in results(out)]
    assert statuses.count("succeeded") == 4 and statuses.count("pending") == 6
    assert api.fake.jobs_created == 4 and api.fake.balance_refusals == 1
    assert (out / "index.html").exists()
    api.fake.top_up(6)
    assert batch(api, inp, out, "--resume") == 0
    assert_all_done(out, 10, api)


def test_revoked_token_leaves_paid_jobs_submitted_and_a_fixed_token_finishes(
    api_factory: Callable[..., Api], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Credentials refused mid-run: exit 3, no job failed or lost; once restored all succeed."""
    api = api_factory(duration_mean=0.5)
    inp, out = prompts(tmp_path, 10), tmp_path / "out"
    # Counted by the emulator as it authorizes (the first requests are submits), not watched
    # from another thread, which a loaded machine lets fall behind the whole run.
    api.fake.revoke_token(after=4)
    assert batch(api, inp, out, "--outage-tolerance", "1") == 3
    err = capsys.readouterr().err
    assert "Resume with" in err and "Traceback" not in err
    statuses = {r["status"] for r in results(out)}
    assert statuses <= {"succeeded", "submitted", "pending"} and "failed" not in statuses
    created = api.fake.jobs_created
    assert 0 < created <= 4
    api.fake.restore_token()
    assert batch(api, inp, out, "--resume") == 0
    assert_all_done(out, 10, api)


# -- 5. a paid job is never given up for the client's or the network's reasons ---------------


def test_outage_shorter_than_the_tolerance_is_ridden_out(
    api_factory: Callable[..., Api], tmp_path: Path
) -> None:
    """The API and output host go down mid-run and come back: every input succeeds once."""
    api = api_factory(duration_mean=1.0)
    inp, out = prompts(tmp_path, 12), tmp_path / "out"

    async def outage() -> None:
        async with api.fake.outage():
            await asyncio.sleep(2.0)

    api.later(when(lambda: submitted(out) >= 12, outage))
    assert batch(api, inp, out, "--outage-tolerance", "60") == 0
    assert_all_done(out, 12, api)


def test_outage_longer_than_the_tolerance_leaves_jobs_for_resume(
    api_factory: Callable[..., Api], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Beyond the tolerance: exit 1 with a hint, jobs stay submitted; --resume finishes them."""
    api = api_factory(duration_mean=1.0)
    inp, out = prompts(tmp_path, 8), tmp_path / "out"
    api.later(when(lambda: submitted(out) >= 4, api.fake.go_down))
    assert batch(api, inp, out, "--max-in-flight", "4", "--outage-tolerance", "0.5") == 1
    err = capsys.readouterr().err
    assert "Resume with" in err and "Traceback" not in err
    statuses = [r["status"] for r in results(out)]
    assert "failed" not in statuses and statuses.count("submitted") >= 1
    assert set(statuses) <= {"succeeded", "submitted", "pending", "download_failed"}
    api.run(api.fake.come_back())
    assert batch(api, inp, out, "--resume") == 0
    assert_all_done(out, 8, api)


def test_full_disk_stops_submits_and_resume_fetches_the_files(
    api_factory: Callable[..., Api],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ENOSPC while saving outputs: one line, no traceback, download_failed; resume refetches."""
    from runcomfy_async import _download_files

    def full(self: Any, data: bytearray) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    api = api_factory()
    inp, out = prompts(tmp_path, 6), tmp_path / "out"
    with monkeypatch.context() as patch:
        patch.setattr(_download_files.PartFile, "write", full)
        assert batch(api, inp, out, "--max-in-flight", "2") == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and "Traceback" not in err and "Resume with" in err
    statuses = [r["status"] for r in results(out)]
    assert "download_failed" in statuses and "failed" not in statuses
    created = api.fake.jobs_created
    assert created < 6  # submits stopped once the disk was full
    assert batch(api, inp, out, "--resume") == 0
    assert_all_done(out, 6, api)


def test_slow_drip_output_host_is_bounded_per_file(
    api_factory: Callable[..., Api], tmp_path: Path
) -> None:
    """A host sending a byte now and then fails its file at the deadline; resume fetches it."""
    api = api_factory(output_drip=1.0, output_drip_count=2)
    inp, out = prompts(tmp_path, 6), tmp_path / "out"
    started = time.monotonic()
    assert batch(api, inp, out, "--download-timeout", "1.5") == 1
    assert time.monotonic() - started < 30
    lines = results(out)
    slow = [r for r in lines if r["status"] == "download_failed"]
    assert len(slow) == 2 and all("1.5 s" in r["error"] for r in slow)
    assert sum(r["status"] == "succeeded" for r in lines) == 4  # not held up by the slow two
    assert batch(api, inp, out, "--resume") == 0
    assert_all_done(out, 6, api)


def test_resume_checks_saved_files_and_fetches_missing_or_altered_ones(
    api_factory: Callable[..., Api], tmp_path: Path
) -> None:
    """A deleted or altered output is downloaded again on resume, without a new job."""
    api = api_factory()
    inp, out = prompts(tmp_path, 3), tmp_path / "out"
    assert batch(api, inp, out) == 0
    (out / "000000-0.png").unlink()
    (out / "000001-0.png").write_bytes(b"not the image")
    requests = api.fake.output_requests
    assert batch(api, inp, out, "--resume") == 0
    assert api.fake.output_requests == requests + 2
    assert_all_done(out, 3, api)
    assert (out / "000001-0.png").read_bytes()[:4] == b"\x89PNG"
