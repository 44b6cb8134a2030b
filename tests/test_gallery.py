"""The HTML gallery: escaping, hostile paths, failures, streaming, atomic write, real browser."""

from __future__ import annotations

import os
import pathlib
import shutil
import signal
import struct
import subprocess
import tempfile
import time
import tracemalloc
import zlib
from collections.abc import Iterator
from typing import Any

import pytest

from runcomfy_async._cli._gallery import safe_relative_path, write_gallery
from runcomfy_async._emulator._png import gradient_png
from runcomfy_async._states import BATCH_STATUSES, PROBLEM_STATUSES

MAGENTA = (255, 0, 255)
GREEN = (0, 255, 0)
CYAN = (0, 255, 255)
BLUE = (0, 0, 255)
YELLOW = (255, 255, 0)
"""Pure colours the gallery's CSS never uses, so each one found on screen comes from an image."""


def _record(index: int, **fields: Any) -> dict[str, Any]:
    """A succeeded record with one downloaded PNG, overridden by ``fields``."""
    record: dict[str, Any] = {
        "index": index,
        "key": f"k{index}",
        "model_id": "google/nano-banana-2/text-to-image",
        "input": {"prompt": f"prompt {index}"},
        "request_id": f"req-{index:06d}",
        "status": "succeeded",
        "urls": [f"https://cdn.example.com/{index}.png"],
        "files": [
            {
                "url": f"https://cdn.example.com/{index}.png",
                "path": f"{index:05d}_0.png",
                "bytes": 200,
                "sha256": "0" * 64,
                "content_type": "image/png",
            }
        ],
        "error": None,
        "error_kind": None,
        "submitted_at": "2025-01-01T00:00:00Z",
        "finished_at": "2025-01-01T00:00:04Z",
        "duration_s": 3.25,
        "wait_s": 4.5,
    }
    record.update(fields)
    return record


def _failed(index: int, error: str, **fields: Any) -> dict[str, Any]:
    """A failed record with a reason and no files."""
    base = {"status": "failed", "error": error, "error_kind": "JobFailedError", "files": []}
    base.update(fields)
    return _record(index, **base)


def _page(out: pathlib.Path, records: Any, **kwargs: Any) -> str:
    """Write the gallery and return its HTML."""
    path = write_gallery(out, records, **kwargs)
    assert path == out / "index.html"
    return path.read_text(encoding="utf-8")


def test_record_text_is_escaped(tmp_path: pathlib.Path) -> None:
    """Prompts, keys, errors and the title are HTML-escaped, so no markup from a record survives."""
    records = [
        _record(0, input={"prompt": "<script>alert(1)</script>"}, key='"><img src=x onerror=a()>'),
        _failed(1, "<b>bad</b> & <script>x</script>", error_kind="<i>Kind</i>"),
    ]
    page = _page(tmp_path, records, title="<script>t</script>")
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<img src=x" not in page
    assert "&quot;&gt;&lt;img src=x onerror=a()&gt;" in page
    assert "&lt;b&gt;bad&lt;/b&gt; &amp; &lt;script&gt;x&lt;/script&gt;" in page
    assert "<i>" not in page


def test_page_is_self_contained(tmp_path: pathlib.Path) -> None:
    """The page loads nothing from the network: no scripts, stylesheets, fonts or imports."""
    page = _page(tmp_path, [_record(0)])
    for needle in ("<script", "<link", "@import", "url(", "<iframe", "@font-face"):
        assert needle not in page.lower()
    assert "<style>" in page
    assert "Content-Security-Policy" in page
    assert "https://cdn.example.com" not in page  # the file was downloaded: no remote URL used


@pytest.mark.parametrize(
    "path",
    [
        "../../etc/passwd",
        "/etc/passwd",
        "a/../../etc/passwd",
        "..",
        "",
        ".",
        "C:/Windows/win.ini",
        "C:\\Windows\\win.ini",
        "\\\\server\\share\\x.png",
        None,
        42,
    ],
)
def test_hostile_paths_are_refused(path: object) -> None:
    """Absolute paths, parent segments, drive and UNC paths and non-strings are refused."""
    assert safe_relative_path(path) is None


def test_safe_paths_are_url_quoted() -> None:
    """Relative paths are kept, normalised and URL-quoted (spaces, #, ?, %, non-ASCII)."""
    assert safe_relative_path("00001_0.png") == "00001_0.png"
    assert safe_relative_path("./sub/a b#1?.png") == "sub/a%20b%231%3F.png"
    assert safe_relative_path("100%/é.png") == "100%25/%C3%A9.png"
    assert safe_relative_path("javascript:alert(1)") == "javascript%3Aalert%281%29"


def test_hostile_paths_are_skipped_in_the_page(tmp_path: pathlib.Path) -> None:
    """A record pointing outside the output directory gets no link to it, only a note."""
    files = [{"path": "../../etc/passwd"}, {"path": "/etc/passwd"}, {"path": "sub/../../x.png"}]
    page = _page(tmp_path, [_record(0, files=files, urls=[])])
    assert "passwd" not in page
    assert "x.png" not in page
    assert "3 unsafe file paths skipped" in page
    assert "<img" not in page


def test_remote_urls_only_when_http(tmp_path: pathlib.Path) -> None:
    """Without local files the remote URL is shown, marked not downloaded; other schemes never."""
    urls = [
        "javascript:alert(1)",
        "data:image/png;base64,AAAA",
        "https://cdn.example.com/a.png?x=1&y=2",
    ]
    page = _page(tmp_path, [_record(0, files=[], urls=urls)])
    assert "javascript:" not in page
    assert "data:image" not in page
    assert 'src="https://cdn.example.com/a.png?x=1&amp;y=2"' in page
    assert "not downloaded" in page


def test_failures_show_their_reason(tmp_path: pathlib.Path) -> None:
    """A failed job's card shows the reason instead of an image, and the failures list names it."""
    records = [
        _record(0),
        _failed(1, "NSFW content detected", files=[{"path": "00001_0.png"}]),
        _record(2, status="uncertain", error="submit may have reached the server", files=[]),
        _record(3, status="cancelled", error=None, files=[]),
    ]
    page = _page(tmp_path, records)
    head, _, grid = page.partition('<main class="grid">')
    assert '<section class="failures">' in head
    assert "Failures: 2" in head
    assert head.count("NSFW content detected") == 1
    assert "submit may have reached the server" in head
    assert 'href="#r-1"' in head
    assert 'href="#r-3"' not in head  # cancelled on purpose: not a failure
    failed_card = grid.split('id="r-1"', 1)[1].split("</article>", 1)[0]
    assert "NSFW content detected" in failed_card
    assert "JobFailedError" in failed_card
    assert "<img" not in failed_card
    assert "00001_0.png" not in page


def test_every_batch_status_has_its_colour_and_problems_are_listed(
    tmp_path: pathlib.Path,
) -> None:
    """Each BatchStatus gets its own badge class; download_failed is listed as a failure."""
    records = [
        _record(i, status=status, error=None if status == "succeeded" else f"why {status}")
        for i, status in enumerate(BATCH_STATUSES)
    ]
    page = _page(tmp_path, records)
    head, _, grid = page.partition('<main class="grid">')
    for status in BATCH_STATUSES:
        assert f".s-{status}{{" in page, status  # a colour in the CSS
        assert f'class="card s-{status}"' in grid, status
    assert "s-other" not in grid and "timeout" not in page
    for status in PROBLEM_STATUSES:
        assert f"why {status}" in head, status
    assert "why cancelled" not in head


def test_cards_name_input_lines_and_small_images_keep_their_size(tmp_path: pathlib.Path) -> None:
    """A card says 'line N' (1-based, from the record) and sets no fixed image size."""
    page = _page(tmp_path, [_record(0, line=3), _failed(1, "bad", line=5), _record(2)])
    assert ">line 3 \u00b7 k0<" in page and ">line 5 \u00b7 k1<" in page
    assert ">index 2 \u00b7 k2<" in page  # no line known: the 0-based index, named as such
    assert "#0" not in page and 'width="' not in page and 'height="' not in page
    assert "max-width:100%" in page


def test_no_failures_section_when_all_succeed(tmp_path: pathlib.Path) -> None:
    """A clean run has no failures section."""
    page = _page(tmp_path, [_record(0), _record(1)])
    assert '<section class="failures">' not in page


def test_missing_keys_and_wrong_types_are_tolerated(tmp_path: pathlib.Path) -> None:
    """Empty records, None values, wrong types and non-objects never break the page."""
    records: list[Any] = [
        {},
        {"status": None, "index": None, "input": None, "files": None, "urls": None},
        {"index": "7", "status": 3, "input": "text", "files": "nope", "urls": 5},
        {"index": True, "files": [None, 3, {"path": None}, {}], "duration_s": float("nan")},
        {"index": 2, "status": "weird<status>", "wait_s": -1, "duration_s": "3"},
        42,
        None,
        ["not", "a", "record"],
        {"index": 1, "status": "failed"},
    ]
    page = _page(tmp_path, records)
    assert page.count("<article ") == 6
    assert "no reason recorded" in page
    assert "weird&lt;status&gt;" in page
    assert "s-other" in page
    assert "nan s" not in page


def test_video_and_other_files(tmp_path: pathlib.Path) -> None:
    """Videos get a player with metadata preload; unknown file types get a link."""
    files = [{"path": "0.mp4", "content_type": "video/mp4"}, {"path": "0.webm"}, {"path": "0.glb"}]
    page = _page(tmp_path, [_record(0, files=files)])
    assert page.count('<video controls preload="metadata"') == 2
    assert 'src="0.mp4"' in page
    assert '<a class="file" href="0.glb">0.glb</a>' in page


def test_generator_input_cards_in_index_order(tmp_path: pathlib.Path) -> None:
    """Records from a generator, out of order and with a repeat, come out once each, by index."""

    def records() -> Iterator[dict[str, Any]]:
        yield _record(2)
        yield _failed(0, "first try failed")
        yield _record(1)
        yield _record(0, input={"prompt": "second try"})  # a resumed run logged index 0 again

    page = _page(tmp_path, records())
    positions = [page.index(f'id="r-{i}"') for i in range(3)]
    assert positions == sorted(positions)
    assert page.count("<article ") == 3
    assert "first try failed" not in page
    assert "second try" in page
    assert "succeeded 3" in page


def test_header_shows_models_counts_and_summary(tmp_path: pathlib.Path) -> None:
    """The header names the model, counts statuses and formats the summary figures."""
    summary = {
        "total": 3,
        "wall_s": 125.0,
        "requests_per_job": 2.9166,
        "failures_by_reason": {"NSFW <x>": 2, "timeout": 1},
    }
    records = [_record(0), _record(1, wait_s=90.0), _failed(2, "NSFW <x>")]
    page = _page(tmp_path, records, title="My run", summary=summary)
    assert "<title>My run</title>" in page
    assert "google/nano-banana-2/text-to-image" in page
    assert "succeeded 2" in page
    assert "failed 1" in page
    assert "wall time" in page
    assert "2 m 05 s" in page
    assert "2.92" in page
    assert "2 \u00d7 NSFW &lt;x&gt;" in page
    assert "run 3.25 s \u00b7 wait 4.50 s" in page
    assert "wait 1 m 30 s" in page


def test_write_is_atomic_and_leaves_no_temp_file(tmp_path: pathlib.Path) -> None:
    """The page replaces the old one in one step; a failed write keeps the old page, no debris."""
    (tmp_path / "index.html").write_text("old page")
    write_gallery(tmp_path, [_record(0)])
    assert sorted(os.listdir(tmp_path)) == ["index.html"]
    assert "prompt 0" in (tmp_path / "index.html").read_text()
    assert (tmp_path / "index.html").stat().st_mode & 0o777 == 0o644

    def broken() -> Iterator[dict[str, Any]]:
        yield _record(1)
        raise RuntimeError("results file truncated")

    with pytest.raises(RuntimeError, match="truncated"):
        write_gallery(tmp_path, broken())
    assert sorted(os.listdir(tmp_path)) == ["index.html"]
    assert "prompt 0" in (tmp_path / "index.html").read_text()


@pytest.mark.timeout(600)  # tracemalloc slows it several fold; loaded, it can pass 2 min
@pytest.mark.slow
def test_hundred_thousand_records_stream(tmp_path: pathlib.Path) -> None:
    """100,000 records from a generator are written without holding their HTML in memory."""
    long_prompt = "a detailed prompt " * 40

    def records() -> Iterator[dict[str, Any]]:
        for i in range(100_000):
            if i % 50 == 0:
                yield _failed(i, "server said no " * 20)
            else:
                yield _record(i, input={"prompt": long_prompt})

    tracemalloc.start()
    try:
        path = write_gallery(tmp_path, records())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    size = path.stat().st_size
    assert size > 100_000 * 500
    print(f"peak {peak / 1e6:.1f} MB for a {size / 1e6:.0f} MB page")
    assert peak < 100_000 * 150  # under 150 bytes a record, while each card is over 1 kB
    with path.open(encoding="utf-8") as page:
        text = page.read()
    assert text.count("<article ") == 100_000
    assert "Failures: 2,000" in text
    assert "1,000 more not listed here" in text


# --- The browser test: Chromium renders the page from file:// and the images show up. ---

_CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
)


def _chromium() -> str | None:
    """Find a Chromium binary."""
    for name in ("chromium", "chromium-browser", "/usr/bin/chromium"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _decode_png(data: bytes) -> tuple[int, int, int, bytes]:
    """Decode an 8-bit, non-interlaced RGB or RGBA PNG; return width, height, channels, pixels."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, bytearray()
    width = height = channels = 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and colour in (2, 6) and interlace == 0, (depth, colour, interlace)
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
    raw = zlib.decompress(bytes(idat))
    stride = width * channels
    out = bytearray(stride * height)
    prev = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind_byte, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        if kind_byte == 1:  # Sub
            for i in range(channels, stride):
                line[i] = (line[i] + line[i - channels]) & 0xFF
        elif kind_byte == 2:  # Up
            line = bytearray((a + b) & 0xFF for a, b in zip(line, prev, strict=True))
        elif kind_byte == 3:  # Average
            for i in range(stride):
                left = line[i - channels] if i >= channels else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 0xFF
        elif kind_byte == 4:  # Paeth
            for i in range(stride):
                a = line[i - channels] if i >= channels else 0
                b = prev[i]
                c = prev[i - channels] if i >= channels else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
                line[i] = (line[i] + pred) & 0xFF
        else:
            assert kind_byte == 0, f"bad PNG filter {kind_byte}"
        out[y * stride : (y + 1) * stride] = line
        prev = line
    return width, height, channels, bytes(out)


def _colour_counts(
    png: bytes, colours: list[tuple[int, int, int]], tolerance: int = 12
) -> dict[tuple[int, int, int], int]:
    """Count the screenshot's pixels within ``tolerance`` of each colour."""
    width, height, channels, pixels = _decode_png(png)
    counts = dict.fromkeys(colours, 0)
    for offset in range(0, width * height * channels, channels):
        r, g, b = pixels[offset], pixels[offset + 1], pixels[offset + 2]
        for colour in colours:
            if (
                abs(r - colour[0]) <= tolerance
                and abs(g - colour[1]) <= tolerance
                and abs(b - colour[2]) <= tolerance
            ):
                counts[colour] += 1
                break
    return counts


def _screenshot(chromium: str, page: pathlib.Path, shot: pathlib.Path) -> None:
    """Render ``page`` from file:// with headless Chromium into ``shot``."""
    with tempfile.TemporaryDirectory() as profile:
        command = [
            chromium,
            *_CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            f"--screenshot={shot}",
            "--window-size=1200,900",
            "--virtual-time-budget=3000",
            page.as_uri(),
        ]
        env = {**os.environ, "HOME": profile}
        proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,  # its own process group, so a hang is cleaned up whole
        )
        try:
            _, err = proc.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            _, err = proc.communicate()
            if not shot.exists():
                pytest.fail(f"chromium hung without a screenshot: {err.decode()[-2000:]}")
        # Give a lingering child process a moment to release the profile before it is removed.
        time.sleep(0.2)
        with_err = err.decode(errors="replace")[-2000:]
        assert shot.exists(), f"chromium exited {proc.returncode} without a screenshot: {with_err}"


@pytest.mark.slow
def test_gallery_renders_in_headless_chromium(tmp_path: pathlib.Path) -> None:
    """Chromium opens index.html from file:// and shows the downloaded images, and only those."""
    chromium = _chromium()
    if chromium is None:
        pytest.skip(
            "no chromium: install Debian's chromium (apt-get install chromium) "
            "to run the gallery browser test"
        )
    out = tmp_path / "out"
    out.mkdir()
    shown = [MAGENTA, GREEN, CYAN]
    # 128 px: shown at their own size (a gallery never enlarges a small image).
    for i, colour in enumerate(shown):
        (out / f"{i:05d}_0.png").write_bytes(gradient_png(colour, colour, width=128, height=128))
    (out / "00003_0.png").write_bytes(gradient_png(BLUE, BLUE, width=128, height=128))
    (tmp_path / "outside.png").write_bytes(gradient_png(YELLOW, YELLOW, width=128, height=128))
    records = [
        _record(0, input={"prompt": "a magenta square <script>alert(1)</script>"}),
        _record(1, input={"prompt": "a green square"}),
        _record(2, input={"prompt": "a cyan square"}),
        # A failed job must not show a picture even if a file sits under its name.
        _failed(3, "NSFW content detected", files=[{"path": "00003_0.png"}]),
        # A path escaping the output directory must not be followed.
        _record(4, files=[{"path": "../outside.png"}], urls=[]),
    ]
    write_gallery(out, records, summary={"total": 5, "succeeded": 4, "failed": 1})

    shot = tmp_path / "shot.png"
    _screenshot(chromium, out / "index.html", shot)
    counts = _colour_counts(shot.read_bytes(), [*shown, BLUE, YELLOW])
    for colour in shown:
        assert 5000 <= counts[colour] <= 2 * 128 * 128, f"image {colour} not at its size: {counts}"
    assert counts[BLUE] == 0, f"a failed job's file was shown: {counts}"
    assert counts[YELLOW] == 0, f"a file outside the output directory was shown: {counts}"
