"""Accidents, continued: interrupts, retries, exit paths, the token, request ids, small things."""

from __future__ import annotations

import errno
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from runcomfy_async._cli._main import main
from runcomfy_async.testing import FakeRunComfy

from ._accidents import (
    T2I,
    Api,
    api_servers,
    assert_all_done,
    batch,
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

    # Every submit answered and journaled, not only created: Ctrl-C with an answer still on the
    # wire rightly leaves that input uncertain, and a loaded machine decides how often.
    api.later(when(lambda: submitted(out) >= 8, interrupt))
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
