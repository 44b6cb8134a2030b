"""Local media from the command line: paths relative to the input file (or the cwd for --set)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
from pathlib import Path

import pytest

from runcomfy_async._cli._inputs import read_inputs
from runcomfy_async.testing import FakeRunComfy

from .conftest import TOKEN

pytestmark = pytest.mark.anyio

EDIT = "google/nano-banana-2/edit"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR" + bytes(30)


async def _run_cli(cwd: Path, *args: str) -> tuple[int, str]:
    env = {**os.environ, "RUNCOMFY_API_TOKEN": TOKEN, "RUNCOMFY_CACHE": "off"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "runcomfy_async", *args, cwd=cwd, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode is not None
    return proc.returncode, err.decode("utf-8", "replace")


def test_paths_in_lines_are_relative_to_the_input_file(tmp_path: Path) -> None:
    """A JSONL or CSV line's image path is taken from the input file's folder."""
    (tmp_path / "in" / "imgs").mkdir(parents=True)
    cat = tmp_path / "in" / "imgs" / "cat.png"
    cat.write_bytes(PNG)
    jsonl = tmp_path / "in" / "edits.jsonl"
    jsonl.write_text(
        json.dumps({"prompt": "rain", "image_urls": ["imgs/cat.png", "https://x.test/a.png"]})
        + "\n"
        + json.dumps({"prompt": "snow", "image_urls": ["imgs/dog.png"]})
        + "\n"
    )
    first, second = read_inputs(jsonl, model_id=EDIT)
    assert first.error is None
    assert first.inputs["image_urls"] == [cat.as_uri(), "https://x.test/a.png"]
    assert second.error == "image_urls[0]: no such file imgs/dog.png"
    csv = tmp_path / "in" / "edits.csv"
    csv.write_text('prompt,image_urls\nrain,"[""imgs/cat.png""]"\n')
    (row,) = read_inputs(csv, model_id=EDIT)
    assert row.error is None and row.inputs["image_urls"] == [cat.as_uri()]


async def test_batch_sends_local_images_inline(tmp_path: Path) -> None:
    """A batch whose lines name local images submits each as a data: URI; a missing one stops it."""
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "cat.png").write_bytes(PNG)
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps({"prompt": "rain", "image_urls": ["imgs/cat.png"]}) + "\n")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "rain", "image_urls": ["cat.png"]}) + "\n")
    async with FakeRunComfy(token=TOKEN, duration_mean=0.02, seed=5) as fake:
        code, err = await _run_cli(
            tmp_path, "batch", str(bad), "--model", EDIT, "--out", str(tmp_path / "o1"),
            "--base-url", fake.base_url, "--progress", "none", "--no-download",
        )  # fmt: skip
        assert code == 2, err
        assert f"{bad}:1: image_urls[0]: no such file cat.png" in err
        assert fake.requests["submit"] == 0
        code, err = await _run_cli(
            tmp_path, "batch", str(good), "--model", EDIT, "--out", str(tmp_path / "o2"),
            "--base-url", fake.base_url, "--progress", "none", "--no-download",
        )  # fmt: skip
        assert code == 0, err
        (job,) = fake.jobs.values()
    (sent,) = job.inputs["image_urls"]
    assert sent == "data:image/png;base64," + base64.b64encode(PNG).decode()


async def test_set_paths_are_relative_to_the_current_folder(tmp_path: Path) -> None:
    """--set image_urls=... takes paths from the current folder; a missing one is a usage error."""
    (tmp_path / "cat.png").write_bytes(PNG)
    async with FakeRunComfy(token=TOKEN, duration_mean=0.02, seed=6) as fake:
        code, err = await _run_cli(
            tmp_path, "submit", EDIT, "--set", "prompt=rain", "--set", 'image_urls=["cat.png"]',
            "--base-url", fake.base_url,
        )  # fmt: skip
        assert code == 0, err
        code, err = await _run_cli(
            tmp_path, "submit", EDIT, "--set", "prompt=rain", "--set", 'image_urls=["nope.png"]',
            "--base-url", fake.base_url,
        )  # fmt: skip
        assert code == 2 and "--set image_urls[0]: no such file nope.png" in err, err
        (job,) = fake.jobs.values()
    assert job.inputs["image_urls"][0].startswith("data:image/png;base64,")
