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
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from runcomfy_async._cli._main import main
from runcomfy_async.testing import FakeRunComfy

from .conftest import TOKEN

T2I = "google/nano-banana-2/text-to-image"
T = TypeVar("T")


class Api:
    """A FakeRunComfy served by its own event loop in a background thread."""

    def __init__(self, **knobs: Any):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.fake: FakeRunComfy = self.run(self._start(knobs))

    @staticmethod
    async def _start(knobs: dict[str, Any]) -> FakeRunComfy:
        fake = FakeRunComfy(token=TOKEN, **knobs)
        await fake.start()
        return fake

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the emulator's loop and wait for it."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    def later(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Start a coroutine on the emulator's loop without waiting (an accident to come)."""
        asyncio.run_coroutine_threadsafe(coro, self.loop)

    def close(self) -> None:
        self.run(self.fake.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def api_factory() -> Iterator[Callable[..., Api]]:
    made: list[Api] = []

    def make(**knobs: Any) -> Api:
        knobs.setdefault("duration_mean", 0.05)
        made.append(Api(**knobs))
        return made[-1]

    yield make
    for api in made:
        api.close()


@pytest.fixture(autouse=True)
def _token_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RUNCOMFY_TOKEN", "RUNCOMFY_API_KEY", "RUNCOMFY_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RUNCOMFY_API_TOKEN", TOKEN)


def batch(api: Api, inp: Path, out: Path, *extra: str) -> int:
    """Run ``runcomfy-async batch`` in this process against ``api``; its exit code."""
    return main(
        ["batch", str(inp), "--model", T2I, "--out", str(out), "--base-url", api.fake.base_url,
         "--progress", "none", *extra]
    )  # fmt: skip


def results(out: Path) -> list[dict[str, Any]]:
    """The lines of results.jsonl."""
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def prompts(tmp_path: Path, n: int, name: str = "in.txt") -> Path:
    path = tmp_path / name
    path.write_text("".join(f"a watercolor fox number {i}\n" for i in range(n)))
    return path


def assert_all_done(out: Path, n: int, api: Api) -> None:
    """Exactly one line per input, in input order, all succeeded; one job per input."""
    lines = results(out)
    assert [r["index"] for r in lines] == list(range(n))
    assert {r["status"] for r in lines} == {"succeeded"}, [r["error"] for r in lines]
    assert api.fake.jobs_created == n
    assert len({r["request_id"] for r in lines}) == n
    assert (out / "index.html").exists()


def finish_now(api: Api) -> None:
    """End every running job now, and make later jobs quick."""
    now = time.monotonic()
    for job in api.fake.jobs.values():
        if job.ends is not None:
            job.ends = min(job.ends, now)
    api.fake._api._duration_mean = 0.05


def submitted(out: Path) -> int:
    """Submits whose answer the batch has journaled.

    An outage that begins after them cuts only checks and downloads, which are retried; one
    that cut a submit on the wire would rightly leave it uncertain, and how many submits are on
    the wire at a given count of jobs created is the machine's doing.
    """
    journal = out / "journal.jsonl"
    return journal.read_bytes().count(b'"e":"submitted"') if journal.exists() else 0


async def when(condition: Callable[[], bool], action: Callable[[], Awaitable[Any]]) -> None:
    """Wait (on the emulator's loop) until ``condition`` holds, then run ``action``."""
    while not condition():
        await asyncio.sleep(0.005)
    await action()


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
        while api.fake.jobs_created < 6 and time.monotonic() < deadline:
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
    while api.fake.jobs_created < 4 and time.monotonic() < deadline:
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
    from runcomfy_async import _download

    def full(self: Any, data: bytearray) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    api = api_factory()
    inp, out = prompts(tmp_path, 6), tmp_path / "out"
    with monkeypatch.context() as patch:
        patch.setattr(_download._PartFile, "write", full)
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


# -- 6. a fatal error cancels nothing behind the journal's back --------------------------------


def test_fatal_error_leaves_queued_jobs_to_run_and_resume_runs_the_rest(
    api_factory: Callable[..., Api], tmp_path: Path
) -> None:
    """Submits refused for the account: queued jobs are not cancelled unjournaled; all finish."""
    api = api_factory(concurrency=1, duration_mean=0.1, balance=5)
    inp, out = prompts(tmp_path, 8), tmp_path / "out"
    assert batch(api, inp, out, "--max-in-flight", "8") == 3
    assert api.fake.job_states()["cancelled"] == 0
    api.fake.top_up(3)
    assert batch(api, inp, out, "--resume") == 0
    assert_all_done(out, 8, api)


def test_interrupt_releases_queued_jobs_and_resume_runs_them_once(
    api_factory: Callable[..., Api], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ctrl-C cancels and releases queued jobs, writes results and hint; resume reruns them."""
    api = api_factory(concurrency=2, duration_mean=1.0)
    inp, out = prompts(tmp_path, 8), tmp_path / "out"

    async def interrupt() -> None:
        os.kill(os.getpid(), signal.SIGINT)

    api.later(when(lambda: api.fake.jobs_created >= 8, interrupt))
    assert batch(api, inp, out, "--max-in-flight", "8") == 130
    err = capsys.readouterr().err
    assert "Resume with" in err and (out / "index.html").exists()
    assert len(results(out)) == 8
    cancelled = api.fake.job_states()["cancelled"]
    assert cancelled >= 1
    assert batch(api, inp, out, "--resume") == 0
    lines = results(out)
    assert [r["status"] for r in lines] == ["succeeded"] * 8
    assert api.fake.jobs_created - cancelled == 8  # billed jobs: one per input


# -- 7. explicit retries ----------------------------------------------------------------------


def test_failed_jobs_are_resubmitted_only_when_asked(
    api_factory: Callable[..., Api], tmp_path: Path
) -> None:
    """A server-failed input stays failed on --resume; --retry-failed submits it once more."""
    api = api_factory(failure_rate=1.0)
    inp, out = prompts(tmp_path, 3), tmp_path / "out"
    assert batch(api, inp, out) == 1
    assert [r["status"] for r in results(out)] == ["failed"] * 3
    assert batch(api, inp, out, "--resume") == 1
    assert api.fake.jobs_created == 3
    api.fake._api._failure_rate = 0.0  # the model is fixed on the server
    assert batch(api, inp, out, "--resume", "--retry-failed") == 0
    assert [r["status"] for r in results(out)] == ["succeeded"] * 3
    assert api.fake.jobs_created == 6


def test_fixed_invalid_lines_run_on_resume_with_one_result_each(
    api_factory: Callable[..., Api], tmp_path: Path
) -> None:
    """An invalid line, keyed or not, runs once fixed; results keep one line per input."""
    api = api_factory()
    inp, out = tmp_path / "in.jsonl", tmp_path / "out"
    good = ['{"prompt": "a"}', '{"_key": "k", "prompt": "b"}']
    bad = [
        '{"prompt": "c", "aspect_ratio": "7:7"}',
        '{"_key": "j", "prompt": "d", "num_images": 9}',
    ]
    inp.write_text("\n".join(good + bad) + "\n")
    assert batch(api, inp, out, "--on-invalid", "skip") == 0  # every valid input succeeded
    assert [r["status"] for r in results(out)] == ["succeeded", "succeeded", "invalid", "invalid"]
    inp.write_text(
        "\n".join(good + [b.replace("7:7", "1:1").replace("9", "1") for b in bad]) + "\n"
    )
    assert batch(api, inp, out, "--resume") == 0
    assert_all_done(out, 4, api)


# -- 8. every exit path: results, gallery, one line, the hint ---------------------------------


def test_journal_on_a_full_disk_ends_with_one_line_and_resumes(
    api_factory: Callable[..., Api],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The journal cannot grow: submits stop before sending, one line, no traceback; resume ok."""
    from runcomfy_async import _journal

    write = _journal.Journal.write
    sent = [0]

    def full(self: _journal.Journal, record: _journal.Record) -> None:
        if isinstance(record, _journal.Submitting):
            sent[0] += 1
            if sent[0] > 3:
                raise OSError(errno.ENOSPC, "No space left on device", str(self.path))
        write(self, record)

    api = api_factory()
    inp, out = prompts(tmp_path, 6), tmp_path / "out"
    with monkeypatch.context() as patch:
        patch.setattr(_journal.Journal, "write", full)
        assert batch(api, inp, out, "--max-in-flight", "1") == 1
    err = capsys.readouterr().err
    assert "error: No space left on device" in err and "Traceback" not in err
    assert "Resume with" in err and api.fake.jobs_created == 3
    statuses = [r["status"] for r in results(out)]
    assert statuses == ["succeeded"] * 3 + ["pending"] * 3
    assert batch(api, inp, out, "--resume") == 0
    assert_all_done(out, 6, api)


# -- 9. the token stays secret ----------------------------------------------------------------


def test_token_never_in_hints_journal_or_results_and_warned_on_the_command_line(
    api_factory: Callable[..., Api],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """--token warns of ps; the hint, journal and results never hold it; --token-file works."""
    monkeypatch.delenv("RUNCOMFY_API_TOKEN")
    api = api_factory(balance=1)
    inp, out = prompts(tmp_path, 3), tmp_path / "out"
    echo = f"{api.fake.output_base_url}/outputs/none/0.png?sig={TOKEN}"
    api.fake.inject("result", body={"status": "completed", "output": {"image": echo}}, times=50)
    api.fake.inject("status", body={"status": "completed"}, times=50)
    assert batch(api, inp, out, "--token", TOKEN) == 3
    err = capsys.readouterr().err
    assert "--token on the command line can be read by other users" in err
    hint = err.split("Resume with:")[1]
    assert TOKEN not in hint and "--token" not in hint
    with pytest.raises(SystemExit) as refused:  # no abbreviation passes for --token
        main(["batch", str(inp), "--model", T2I, "--out", str(out), "--tok", TOKEN])
    assert refused.value.code == 2
    capsys.readouterr()
    for name in ("journal.jsonl", "results.jsonl", "index.html"):
        assert TOKEN not in (out / name).read_text(), name
    first = results(out)[0]
    assert first["status"] == "download_failed" and "<redacted>" in first["urls"][0]
    assert api.fake.output_requests == 0  # a URL holding the token is never fetched
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    api.fake.clear_injections()
    api.fake.top_up(2)
    code = batch(api, inp, out, "--resume", "--token-file", str(token_file), "--retry-failed")
    assert code == 1  # the echoed job stays download_failed: its URL is the server's word
    assert "can be read by other users" not in capsys.readouterr().err
    assert [r["status"] for r in results(out)][1:] == ["succeeded"] * 2
    assert api.fake.jobs_created == 3


# -- 10. request ids: one path-safe rule at submit and on resume ------------------------------


@pytest.mark.anyio
async def test_request_ids_follow_one_rule_at_submit_and_on_resume(tmp_path: Path) -> None:
    """'job:<uuid>' is accepted at submit and on resume; '../../x' is refused in both places."""
    from runcomfy_async import AsyncClient, ConfigError, PollSettings, SubmissionUncertainError
    from runcomfy_async._journal import FORMAT_VERSION, Journal, Run, Submitted, Submitting

    async with FakeRunComfy(token=TOKEN, duration_mean=0.02) as fake:
        async with AsyncClient(TOKEN, fake.base_url, poll=PollSettings(first_check=0.02)) as c:
            job = await c.submit(T2I, {"prompt": "a"})
            alias = f"job:{job.request_id}"
            fake.jobs[alias] = fake.jobs[job.request_id]  # the server's other spelling of it
            fake.inject("submit", body={"request_id": alias}, times=1)
            assert (await c.submit(T2I, {"prompt": "b"})).request_id == alias
            fake.inject("submit", body={"request_id": "../../x"}, times=1)
            with pytest.raises(SubmissionUncertainError, match="malformed request id"):
                await c.submit(T2I, {"prompt": "c"})
            with pytest.raises(ConfigError):
                c.job("../../x")
            journal = tmp_path / "journal.jsonl"
            with Journal(journal) as j:
                j.write(Run(version=FORMAT_VERSION, model=T2I))
                for ident, rid in (("k:good", alias), ("k:bad", "../../x")):
                    j.write(Submitting(id=ident, index=0, model=T2I, input={"prompt": "x"}))
                    j.write(Submitted(id=ident, request_id=rid))
            pairs = [("good", {"prompt": "x"})]
            async with c.map(T2I, pairs, journal=journal) as runner:
                got = [r async for r in runner]
    (good,) = [r for r in got if not r.orphan]
    assert good.status == "succeeded" and good.request_id == alias
    (bad,) = [r for r in got if r.orphan]  # refused on resume too: reported, never followed
    assert bad.status == "submitted" and "malformed request id" in (bad.error or "")
    assert fake.requests["other"] == 0  # nothing was sent to any other path


# -- 11. the smaller things -------------------------------------------------------------------


def test_cr_only_line_breaks_are_lines(api_factory: Callable[..., Api], tmp_path: Path) -> None:
    """A .txt with old Mac line breaks (CR alone) is one prompt a line, not one prompt."""
    api = api_factory()
    inp, out = tmp_path / "mac.txt", tmp_path / "out"
    inp.write_bytes(b"a red fox\ra blue owl\r\ra green frog\r")
    assert batch(api, inp, out) == 0
    assert [r["input"]["prompt"] for r in results(out)] == [
        "a red fox",
        "a blue owl",
        "a green frog",
    ]
    assert_all_done(out, 3, api)


def test_whitespace_only_prompt_fails_the_prescan(
    api_factory: Callable[..., Api], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A JSONL prompt of spaces is refused before anything is sent, naming its line."""
    api = api_factory()
    inp, out = tmp_path / "in.jsonl", tmp_path / "out"
    inp.write_text('{"prompt": "a fox"}\n{"prompt": "   \\t "}\n')
    assert batch(api, inp, out) == 2
    assert f"{inp}:2: prompt must be a non-empty string; got only whitespace" in (
        capsys.readouterr().err
    )
    assert api.fake.jobs_created == 0


def test_unsafe_output_urls_are_reported_not_silently_dropped(
    api_factory: Callable[..., Api], tmp_path: Path
) -> None:
    """A job whose outputs are file: or javascript: URLs is download_failed, never succeeded."""
    api = api_factory()
    inp, out = prompts(tmp_path, 2), tmp_path / "out"
    for url in ("file:///etc/passwd", "javascript:alert(1)"):
        body = {"status": "completed", "output": {"image": url}}
        api.fake.inject("result", body=body, times=1)
    api.fake.inject("status", body={"status": "completed"}, times=2)
    assert batch(api, inp, out) == 1
    lines = results(out)
    assert [r["status"] for r in lines] == ["download_failed"] * 2
    assert {r["error"].split(": ", 1)[1] for r in lines} == {
        "file:///etc/passwd",
        "javascript:alert(1)",
    }


@pytest.mark.anyio
async def test_identical_errors_group_in_the_failure_summary() -> None:
    """Failures that differ only by their job's id count as one reason."""
    from runcomfy_async import AsyncClient, PollSettings

    async with FakeRunComfy(token=TOKEN, duration_mean=0.02, failure_rate=1.0) as fake:
        async with AsyncClient(TOKEN, fake.base_url, poll=PollSettings(first_check=0.02)) as c:
            async with c.map(T2I, [{"prompt": f"p{i}"} for i in range(5)]) as runner:
                got = [r async for r in runner]
            assert {r.status for r in got} == {"failed"}
            assert len({r.error for r in got}) == 5  # each names its own job
            assert len(runner.failures) == 1 and sum(runner.failures.values()) == 5
    assert fake.jobs_created == 5
