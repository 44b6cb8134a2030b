"""The gallery shows an edit job's input images beside its outputs, never a data URI inline."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from runcomfy_async._cli._gallery import write_gallery
from runcomfy_async._emulator._png import gradient_png
from runcomfy_async.testing import FakeRunComfy

from .conftest import TOKEN

EDIT = "google/nano-banana-2/edit"
PNG = gradient_png((0, 0, 0), (200, 40, 90))


def _edit_record(image_urls: list[str], **fields: Any) -> dict[str, Any]:
    """A succeeded edit record with the given input images and no downloaded files."""
    record: dict[str, Any] = {
        "index": 0,
        "model_id": EDIT,
        "input": {"prompt": "make it rain", "image_urls": image_urls},
        "status": "succeeded",
        "urls": ["https://cdn.example.com/out.png"],
        "files": [],
    }
    record.update(fields)
    return record


def test_inline_inputs_become_files_beside_the_page(tmp_path: Path) -> None:
    """A data: URI input is written once to inputs/ and linked; the page never holds it."""
    data_uri = "data:image/png;base64," + base64.b64encode(PNG).decode()
    records = [_edit_record([data_uri]), _edit_record([data_uri], index=1)]
    page = write_gallery(tmp_path, records).read_text(encoding="utf-8")
    assert "data:image/png;base64" not in page
    (saved,) = (tmp_path / "inputs").iterdir()
    assert saved.read_bytes() == PNG and saved.suffix == ".png"
    assert page.count(f'src="inputs/{saved.name}"') == 2


def test_hosted_and_local_inputs_are_linked_as_they_are(tmp_path: Path) -> None:
    """An https input shows from its URL, a local file from its file:// URI, both as thumbnails."""
    local = tmp_path / "my cat.png"
    local.write_bytes(PNG)
    record = _edit_record(["https://img.example.com/cat.png", local.as_uri()])
    page = write_gallery(tmp_path, [record]).read_text(encoding="utf-8")
    assert 'class="inputs"' in page
    assert 'src="https://img.example.com/cat.png"' in page
    assert f'src="{local.as_uri()}"' in page
    assert not (tmp_path / "inputs").exists()


@pytest.mark.parametrize(
    "value",
    [
        "javascript:alert(1)",
        "file://evil.example.com/share/x.png",
        "data:text/html;base64,PHNjcmlwdD4=",
        "data:image/png;base64,not base64!",
        "cat.png",
    ],
)
def test_unusable_inputs_are_not_drawn(tmp_path: Path, value: str) -> None:
    """Scripts, remote file shares, non-image or broken data URIs and bare names draw nothing."""
    page = write_gallery(tmp_path, [_edit_record([value])]).read_text(encoding="utf-8")
    assert 'class="inputs"' not in page
    assert "javascript:" not in page and "PHNjcmlwdD4" not in page


def test_text_to_image_cards_have_no_input_strip(tmp_path: Path) -> None:
    """Only the schema's media fields are drawn: a prompt that looks like a URL is not."""
    record = _edit_record([], model_id="google/nano-banana-2/text-to-image")
    record["input"] = {"prompt": "https://img.example.com/cat.png"}
    page = write_gallery(tmp_path, [record]).read_text(encoding="utf-8")
    assert 'class="inputs"' not in page


@pytest.mark.anyio
async def test_an_edit_batch_shows_its_local_input_beside_the_output(tmp_path: Path) -> None:
    """A real edit batch from a local image: the card shows the input file and the output."""
    (tmp_path / "cat.png").write_bytes(PNG)
    lines = tmp_path / "edits.jsonl"
    lines.write_text(json.dumps({"prompt": "rain", "image_urls": ["cat.png"]}) + "\n")
    out = tmp_path / "out"
    env = {**os.environ, "RUNCOMFY_API_TOKEN": TOKEN, "RUNCOMFY_CACHE": "off"}
    async with FakeRunComfy(token=TOKEN, duration_mean=0.02, seed=3) as fake:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "runcomfy_async", "batch", str(lines), "--model", EDIT,
            "--out", str(out), "--base-url", fake.base_url, "--progress", "none",
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await asyncio.wait_for(proc.communicate(), 90)
        assert proc.returncode == 0, err.decode()
    page = (out / "index.html").read_text(encoding="utf-8")
    assert f'src="{(tmp_path / "cat.png").as_uri()}"' in page
    assert "data:image/png;base64" not in page
    assert any(path.suffix == ".png" for path in out.iterdir())
