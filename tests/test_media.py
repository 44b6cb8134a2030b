"""Local media: files, bytes and data: URIs are checked, then sent inline or through an uploader."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import pytest

from runcomfy_async import AsyncClient, InputValidationError
from runcomfy_async._media import (
    MAX_FILE_BYTES,
    MediaField,
    media_fields,
    prepare_media,
    resolve_media,
    resolve_media_fields,
)
from runcomfy_async._prepare import check_inputs
from runcomfy_async._sniff import image_size, sniff_mime
from runcomfy_async.models import NanoBanana2Edit
from runcomfy_async.testing import FakeRunComfy

from .conftest import TOKEN

pytestmark = pytest.mark.anyio

EDIT = "google/nano-banana-2/edit"
IMAGES = {"image_urls": MediaField("image", True)}


def png(width: int = 64, height: int = 32, pad: int = 100) -> bytes:
    """A PNG signature and IHDR chunk (enough for sniffing and the header size), padded."""
    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + b"\x08\x06\x00\x00\x00"
    return b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\x0dIHDR" + ihdr + b"\x00" * (4 + pad)


def jpeg(width: int = 640, height: int = 480) -> bytes:
    """A JPEG start: SOI, an APP0 segment, then a SOF0 frame header with the size."""
    app0 = b"\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sof = b"\xff\xc0\x00\x11\x08" + height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return b"\xff\xd8" + app0 + sof + b"\x03" + b"\x00" * 60


def webp_vp8x(width: int, height: int) -> bytes:
    """A WebP VP8X header with the canvas size."""
    body = b"VP8X" + (10).to_bytes(4, "little") + b"\x00" * 4
    body += (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    return b"RIFF" + (len(body) + 4).to_bytes(4, "little") + b"WEBP" + body + b"\x00" * 20


MP3 = b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"\x00" * 50
MP4 = b"\x00\x00\x00\x18ftypisom" + b"\x00" * 50


def data_uri(raw: bytes, mime: str = "image/png") -> str:
    """``raw`` as a base64 data: URI."""
    return f"data:{mime};base64,{base64.b64encode(raw).decode()}"


@pytest.mark.parametrize(
    ("head", "mime"),
    [
        (png(), "image/png"),
        (jpeg(), "image/jpeg"),
        (webp_vp8x(3, 2), "image/webp"),
        (b"GIF89a\x10\x00\x20\x00" + bytes(20), "image/gif"),
        (MP4, "video/mp4"),
        (b"\x00\x00\x00\x14ftypqt  " + bytes(20), "video/quicktime"),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x82\x84webm" + bytes(20), "video/webm"),
        (MP3, "audio/mpeg"),
        (b"RIFF\x00\x00\x00\x00WAVEfmt " + bytes(20), "audio/wav"),
        (b"OggS" + bytes(30), "audio/ogg"),
        (b"%PDF-1.7" + bytes(30), None),
        (b"hello world" * 5, None),
    ],
)
def test_mime_from_magic_bytes(head: bytes, mime: str | None) -> None:
    """The type comes from the magic bytes; unknown content has none."""
    assert sniff_mime(head[:64]) == mime


@pytest.mark.parametrize(
    ("data", "mime", "size"),
    [
        (png(1920, 1080), "image/png", (1920, 1080)),
        (jpeg(800, 600), "image/jpeg", (800, 600)),
        (webp_vp8x(4000, 3), "image/webp", (4000, 3)),
        (b"GIF89a\x10\x00\x20\x00" + bytes(20), "image/gif", (16, 32)),
    ],
)
def test_image_size_from_the_header(data: bytes, mime: str, size: tuple[int, int]) -> None:
    """Width and height are read from the header, without decoding the image."""
    assert image_size(data, mime) == size


def test_media_fields_from_schema_formats() -> None:
    """Media fields come from format on the field or on its items, with their validations."""
    rule = {"validation_rule": "file_size_mb<", "validation_value": 30, "validation_error": "x"}
    schema = {
        "properties": {
            "image": {"type": "string", "format": "image_uri", "validations": [rule]},
            "image_urls": {"type": "array", "format": "image_uris"},
            "frames": {"type": "array", "items": {"type": "string", "format": "image_uri"}},
            "clip": {"type": "string", "format": "video_uri"},
            "sound": {"type": "array", "format": "audio_uris"},
            "prompt": {"type": "string"},
            "link": {"type": "string", "format": "uri"},
        }
    }
    found = media_fields(schema)
    assert found == {
        "image": MediaField("image", False, (rule,)),
        "image_urls": MediaField("image", True),
        "frames": MediaField("image", True),
        "clip": MediaField("video", False),
        "sound": MediaField("audio", True),
    }


async def test_path_bytes_and_file_object_are_sent_inline(
    fake: FakeRunComfy, client: AsyncClient, tmp_path: Path
) -> None:
    """A Path, bytes and a binary file object arrive at the API as data: URIs of their bytes."""
    cat = tmp_path / "cat.png"
    cat.write_bytes(png())
    photo = jpeg()
    inputs = {"prompt": "rain", "image_urls": [cat, photo, io.BytesIO(webp_vp8x(8, 8))]}
    job = await client.submit(EDIT, inputs)
    sent = fake.jobs[job.request_id].inputs["image_urls"]
    assert [u.split(";")[0] for u in sent] == [
        "data:image/png",
        "data:image/jpeg",
        "data:image/webp",
    ]
    assert base64.b64decode(sent[0].split(",", 1)[1]) == png()
    assert base64.b64decode(sent[1].split(",", 1)[1]) == photo


async def test_typed_struct_with_a_path(
    fake: FakeRunComfy, client: AsyncClient, tmp_path: Path
) -> None:
    """A typed Struct may hold a Path in its media field; it is read and sent inline."""
    cat = tmp_path / "cat.png"
    cat.write_bytes(png())
    inputs = NanoBanana2Edit(prompt="rain", image_urls=[cat])  # type: ignore[list-item]
    job = await client.submit(inputs)
    assert fake.jobs[job.request_id].inputs == {"prompt": "rain", "image_urls": [data_uri(png())]}


async def test_file_uri_and_data_uri_strings(
    fake: FakeRunComfy, client: AsyncClient, tmp_path: Path
) -> None:
    """A file:// URI is read at submit; a data: URI string is checked and sent unchanged."""
    cat = tmp_path / "a cat.png"
    cat.write_bytes(png())
    given = data_uri(jpeg(), "image/jpeg")
    job = await client.submit(EDIT, {"prompt": "p", "image_urls": [cat.as_uri(), given]})
    assert fake.jobs[job.request_id].inputs["image_urls"] == [data_uri(png()), given]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (MP3, "is audio/mpeg, but this field takes a PNG, JPEG, WebP or GIF image"),
        (b"%PDF-1.7 not an image" * 3, "is not a PNG, JPEG, WebP or GIF image"),
        (Path("/nonexistent/cat.png"), "no such file /nonexistent/cat.png"),
        ("data:image/png;base64,@@@@", "malformed base64"),
        ("data:image/png," + "x" * 10, "must look like data:<type>;base64,<data>"),
        (data_uri(MP3, "image/png"), "is audio/mpeg, but this field takes"),
        (data_uri(jpeg(), "image/png"), None),
        (io.StringIO("text"), "open in text mode"),
    ],
)
async def test_bad_media_is_refused_before_sending(
    fake: FakeRunComfy, client: AsyncClient, value: Any, reason: str | None
) -> None:
    """Wrong kinds, unknown content, missing files and malformed data: URIs are refused."""
    inputs = {"prompt": "p", "image_urls": ["https://x.test/a.png", value]}
    if reason is None:  # a declared image type that differs from the content: still an image
        await client.submit(EDIT, inputs)
        return
    with pytest.raises(InputValidationError) as info:
        await client.submit(EDIT, inputs)
    assert info.value.field == "image_urls[1]"
    assert reason in info.value.reason
    assert fake.requests["submit"] == 0


async def test_file_too_large_names_both_sizes(monkeypatch: pytest.MonkeyPatch) -> None:
    """A file over its kind's limit is refused with its size and the limit."""
    monkeypatch.setitem(MAX_FILE_BYTES, "image", 1000)
    with pytest.raises(InputValidationError) as info:
        await prepare_media({"image_urls": [png(pad=5000)]}, IMAGES)
    assert "the data given is 5,033 bytes; images may be at most 1,000 bytes" in str(info.value)


async def test_request_too_large_is_refused_before_reading(tmp_path: Path) -> None:
    """Files whose base64 would pass the request limit are refused by size, before reading."""
    files = []
    for i in range(3):
        path = tmp_path / f"{i}.png"
        path.write_bytes(png(pad=400_000))
        files.append(path)
    with pytest.raises(InputValidationError, match=r"come to 1\.2 MB \(1\.6 MB as base64\)"):
        await prepare_media({"image_urls": files}, IMAGES, max_request_bytes=10**6)


@pytest.mark.parametrize(
    ("rule", "value", "data", "ok"),
    [
        ("file_size_mb<", 0.001, png(pad=2000), False),
        ("file_size_mb<", 30, png(pad=2000), True),
        ("width/height>", 0.0625, png(10, 200), False),
        ("width/height<", 16, png(170, 10), False),
        ("width/height<", 16, png(150, 10), True),
        ("width_pixels>", 14, png(14, 100), False),
        ("height_pixels>", 14, jpeg(100, 15), True),
        ("duration_seconds<", 5, png(), True),  # unknown rule: left to the server
        ("width_pixels>", "many", png(1, 1), True),  # not a number: left to the server
    ],
)
async def test_schema_validations_use_their_own_message(
    rule: str, value: Any, data: bytes, ok: bool
) -> None:
    """The schema's validations are checked from the size and header, failing with their text."""
    rules = ({"validation_rule": rule, "validation_value": value, "validation_error": "Bad!"},)
    fields = {"image": MediaField("image", False, rules)}
    if ok:
        out = await prepare_media({"image": data}, fields)
        assert isinstance(out["image"], str) and out["image"].startswith("data:image/")
        return
    with pytest.raises(InputValidationError) as info:
        await prepare_media({"image": data}, fields)
    assert info.value.field == "image" and info.value.reason.startswith("Bad! (")


async def test_data_uri_is_checked_against_validations() -> None:
    """A data: URI's size and image header face the same validations as a file."""
    rules = ({"validation_rule": "width_pixels>", "validation_value": 14, "validation_error": "w"},)
    fields = {"image": MediaField("image", False, rules)}
    with pytest.raises(InputValidationError, match="w \\(the image is 8x8\\)"):
        await prepare_media({"image": data_uri(png(8, 8))}, fields)


async def test_uploader_is_used_instead_of_inlining(fake: FakeRunComfy, tmp_path: Path) -> None:
    """With an uploader, each local file is handed to it and its URL is sent."""
    seen: list[tuple[int, str]] = []

    async def upload(data: bytes, mime: str) -> str:
        seen.append((len(data), mime))
        return f"https://files.example/{len(seen)}.png"

    async with AsyncClient(TOKEN, fake.base_url, uploader=upload) as client:
        job = await client.submit(EDIT, {"prompt": "p", "image_urls": [png(), jpeg()]})
    assert seen == [(len(png()), "image/png"), (len(jpeg()), "image/jpeg")]
    assert fake.jobs[job.request_id].inputs["image_urls"] == [
        "https://files.example/1.png",
        "https://files.example/2.png",
    ]


async def test_untyped_model_inlines_python_files(tmp_path: Path) -> None:
    """For a model with no media fields known, a file value in any field is still sent inline."""
    model = "someone/video-model"
    async with (
        FakeRunComfy(token=TOKEN, extra_models=[{"model_id": model}]) as fake,
        AsyncClient(TOKEN, fake.base_url) as client,
    ):
        job = await client.submit(model, {"clip": MP4, "frames": [png()], "n": 2})
        sent = fake.jobs[job.request_id].inputs
    assert sent["clip"].startswith("data:video/mp4;base64,")
    assert sent["frames"][0].startswith("data:image/png;base64,")
    assert sent["n"] == 2


def test_files_are_not_read_when_inputs_are_checked(tmp_path: Path) -> None:
    """Checking inputs reads no file: a file that does not exist yet passes the check."""
    later = tmp_path / "later.png"
    prepared = check_inputs(EDIT, {"prompt": "p", "image_urls": [later]})
    assert prepared.media == IMAGES


def test_resolve_media_relative_to_the_input_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A path is taken from the given folder (else the cwd); URLs and data: URIs pass as is."""
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "cat.png").write_bytes(png())
    assert resolve_media("imgs/cat.png", tmp_path) == (tmp_path / "imgs/cat.png").as_uri()
    monkeypatch.chdir(tmp_path / "imgs")
    assert resolve_media("cat.png") == (tmp_path / "imgs/cat.png").as_uri()
    for value in ("https://x/a.png", "http://x/a.png", "data:image/png;base64,AAAA"):
        assert resolve_media(value, tmp_path) == value
    with pytest.raises(InputValidationError, match="no such file file:///etc/passwd"):
        resolve_media("file:///etc/passwd", tmp_path)


def test_resolve_media_fields_names_the_item(tmp_path: Path) -> None:
    """A missing file in a list is reported as field[index]: no such file name."""
    (tmp_path / "a.png").write_bytes(png())
    inputs = {"prompt": "p", "image_urls": ["a.png", "https://x/b.png", "cat.png"]}
    with pytest.raises(InputValidationError) as info:
        resolve_media_fields(inputs, IMAGES, tmp_path)
    assert (info.value.field, info.value.reason) == ("image_urls[2]", "no such file cat.png")
    good = resolve_media_fields({"image_urls": ["a.png"]}, IMAGES, tmp_path)
    assert good == {"image_urls": [(tmp_path / "a.png").as_uri()]}


async def test_batch_journals_paths_as_file_uris(
    fake: FakeRunComfy, client: AsyncClient, tmp_path: Path
) -> None:
    """A batch input naming a Path runs, and its journal and result hold the file:// URI."""
    cat = tmp_path / "cat.png"
    cat.write_bytes(png())
    journal = tmp_path / "journal.jsonl"
    inputs = [{"prompt": "rain", "image_urls": [cat]}]
    async with client.map(EDIT, inputs, journal=journal) as batch:
        (res,) = [r async for r in batch]
    assert res.status == "succeeded", res.error
    assert res.input == {"prompt": "rain", "image_urls": [cat.as_uri()]}
    assert cat.as_uri() in journal.read_text()
    (job,) = fake.jobs.values()
    assert job.inputs["image_urls"] == [data_uri(png())]
