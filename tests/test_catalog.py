"""The live catalog: JSON-schema checks of untyped inputs, the schema cache, and the fallbacks."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import msgspec
import pytest

from runcomfy_async import APIStatusError, AsyncClient, InputValidationError
from runcomfy_async._media import MediaField
from runcomfy_async._schema_cache import SchemaCache, user_cache_dir
from runcomfy_async.models._jsonschema import check_against_schema
from runcomfy_async.models._live import MODEL_DECODER, PAGE_DECODER, ModelInfo
from runcomfy_async.testing import FakeRunComfy

from .conftest import FAST_RETRY, TOKEN

VIDEO = "acme/video-maker/image-to-video"
SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["prompt", "image_url"],
    "properties": {
        "prompt": {"type": "string", "default": "", "maxLength": 20},
        "image_url": {"type": "string", "format": "image_uri"},
        "end_images": {
            "type": "array",
            "items": {"type": "string", "format": "image_uri"},
            "maxItems": 2,
        },
        "duration": {"type": "string", "enum": ["auto", "5", "10"], "default": "auto"},
        "fps": {"type": "integer", "minimum": 8, "maximum": 60},
        "strength": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
        "seed": {"type": "integer", "minimum": 0, "maximum": 2147483647},
        "loop": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string", "pattern": "^[a-z]+$"}},
    },
}
GOOD = {"prompt": "a wave", "image_url": "https://x.test/a.png"}


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Keep every schema cache of these tests in a temporary folder."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("RUNCOMFY_CACHE_DIR", str(folder))
    monkeypatch.delenv("RUNCOMFY_CACHE", raising=False)
    return folder


@pytest.mark.parametrize(
    ("extra", "field", "reason"),
    [
        ({"prompt": 5}, "prompt", "must be a string; got the integer 5"),
        ({"prompt": "x" * 21}, "prompt", "must be a string (characters <= 20)"),
        ({"duration": 5}, "duration", "must be one of: 'auto', '5', '10'; got the integer 5"),
        ({"duration": "7"}, "duration", "must be one of: 'auto', '5', '10'"),
        ({"fps": 61}, "fps", "must be an integer (>= 8, <= 60); got the integer 61"),
        ({"fps": 24.5}, "fps", "must be an integer; got the number 24.5"),
        ({"fps": True}, "fps", "must be an integer; got true (a boolean)"),
        ({"strength": 0}, "strength", "must be a number (> 0, <= 1)"),
        ({"loop": "yes"}, "loop", "must be true or false"),
        ({"end_images": ["a", "b", "c"]}, "end_images", "must be a list (items <= 2)"),
        ({"tags": ["ok", "Not ok"]}, "tags", "must match '^[a-z]+$'; item 1 is the string"),
        ({"strenght": 0.5}, "strenght", "did you mean 'strength'?"),
    ],
)
def test_schema_rules_refuse_bad_values(extra: dict[str, Any], field: str, reason: str) -> None:
    """Type, enum, bounds, lengths, items and pattern are checked; a typo names the field."""
    with pytest.raises(InputValidationError) as info:
        check_against_schema(VIDEO, SCHEMA, {**GOOD, **extra})
    assert info.value.field == field
    assert reason in info.value.reason


def test_required_wins_over_default() -> None:
    """A required field with a default must still be given."""
    with pytest.raises(InputValidationError) as info:
        check_against_schema(VIDEO, SCHEMA, {"image_url": "https://x.test/a.png"})
    assert (info.value.field, info.value.reason) == (
        "prompt",
        "is required; it must be a string (characters <= 20)",
    )


def test_schema_accepts_good_values_local_media_and_new_fields(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Good values, local files in media fields and a field the schema lacks all pass."""
    caplog.set_level(logging.WARNING, logger="runcomfy_async")
    check_against_schema(
        VIDEO,
        SCHEMA,
        {
            **GOOD,
            "image_url": Path("cat.png"),
            "end_images": [b"\x89PNG", "data:image/png;base64,AAAA"],
            "duration": "5",
            "fps": 24,
            "strength": 0.5,
            "seed": 2147483647,
            "loop": False,
            "tags": ["sea"],
            "camera_motion": "pan",
        },
    )
    assert any("'camera_motion' is not in its schema" in r.message for r in caplog.records)


def test_schema_cache_round_trip_expiry_and_junk(tmp_path: Path) -> None:
    """A saved schema loads while fresh, not once expired, and a corrupt file is ignored."""
    cache = SchemaCache("http://127.0.0.1:1", tmp_path, ttl=100)
    info = ModelInfo(model_id=VIDEO, base_price_usd=0.1, price_unit="second", input_schema=SCHEMA)
    cache.save(info, now=1000.0)
    assert cache.load(VIDEO, now=1050.0) == info
    assert cache.load(VIDEO, now=1101.0) is None
    assert cache.load("acme/other", now=1050.0) is None
    other_origin = SchemaCache("https://model-api.runcomfy.net", tmp_path, ttl=100)
    assert other_origin.load(VIDEO, now=1050.0) is None
    assert cache.folder is not None
    (cache.folder / (VIDEO.replace("/", "__") + ".json")).write_text("{not json")
    assert cache.load(VIDEO, now=1050.0) is None


def test_cache_folder_follows_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RUNCOMFY_CACHE_DIR names the folder; RUNCOMFY_CACHE=off keeps nothing."""
    monkeypatch.setenv("RUNCOMFY_CACHE_DIR", str(tmp_path / "c"))
    assert user_cache_dir() == tmp_path / "c"
    monkeypatch.setenv("RUNCOMFY_CACHE", "off")
    cache = SchemaCache("http://127.0.0.1:1")
    cache.save(ModelInfo(model_id=VIDEO, input_schema=SCHEMA))
    assert cache.folder is None and not (tmp_path / "c").exists()


def test_model_details_decode_leniently() -> None:
    """A catalog entry keeps its id when other fields are odd; an entry without an id is dropped."""
    page = PAGE_DECODER.decode(
        json.dumps(
            {
                "models": [
                    {"model_id": VIDEO, "base_price_usd": "cheap", "categories": ["video"]},
                    {"display_name": "no id"},
                ],
                "total": 2,
                "limit": 50,
                "offset": 0,
            }
        ).encode()
    )
    assert [m.model_id for m in page.models] == [VIDEO]
    assert page.models[0].base_price_usd is None and page.total == 2
    with pytest.raises(msgspec.ValidationError):
        MODEL_DECODER.decode(b'{"display_name": "x"}')


@pytest.mark.parametrize(
    ("unit", "inputs", "cost"),
    [
        ("output", {}, 0.08),
        ("output", {"num_images": 3}, 0.24),
        ("second", {"duration": "10"}, 0.8),
        ("second", {}, None),
        ("per-token", {}, None),
    ],
)
def test_estimated_cost_from_the_price(
    unit: str, inputs: dict[str, Any], cost: float | None
) -> None:
    """Output prices count num_images, second prices duration; other units estimate nothing."""
    info = ModelInfo(model_id=VIDEO, base_price_usd=0.08, price_unit=unit, input_schema={})
    assert info.estimate_cost(inputs) == (pytest.approx(cost) if cost is not None else None)


@pytest.mark.anyio
async def test_cached_schema_checks_an_untyped_submit(_cache_in_tmp: Path) -> None:
    """A schema in the disk cache checks an untyped model's inputs: nothing sent on a mistake."""
    async with (
        FakeRunComfy(token=TOKEN, extra_models=[{"model_id": VIDEO}]) as fake,
        AsyncClient(TOKEN, fake.base_url, retry=FAST_RETRY) as client,
    ):
        SchemaCache(client.base_url).save(ModelInfo(model_id=VIDEO, input_schema=SCHEMA))
        with pytest.raises(InputValidationError, match="'fps'"):
            await client.submit(VIDEO, {**GOOD, "fps": 100})
        cat = _cache_in_tmp.parent / "cat.png"
        cat.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(40))
        job = await client.submit(VIDEO, {**GOOD, "image_url": cat})
        assert client.requests["catalog"] == 0
    assert fake.requests["submit"] == 1
    sent = fake.jobs[job.request_id].inputs
    assert sent["image_url"].startswith("data:image/png;base64,")


@pytest.mark.anyio
async def test_catalog_without_the_model_never_blocks_a_submit() -> None:
    """When the catalog does not know a model (400001), inputs go unchecked, asked once."""
    async with (
        FakeRunComfy(token=TOKEN, accept_any_model=True) as fake,
        AsyncClient(TOKEN, fake.base_url, retry=FAST_RETRY) as client,
    ):
        for _ in range(3):
            await client.submit(VIDEO, {"anything": 1})
        assert client.requests["catalog"] == 1
        assert fake.requests["submit"] == 3


@pytest.mark.anyio
async def test_unreachable_catalog_falls_back_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A catalog answering 500 never blocks a submit: one warning, the inputs sent unchecked."""
    caplog.set_level(logging.WARNING, logger="runcomfy_async")
    async with (
        FakeRunComfy(token=TOKEN, accept_any_model=True) as fake,
        AsyncClient(TOKEN, fake.base_url, retry=FAST_RETRY) as client,
    ):
        fake.inject("models", status=500, times=10)
        for _ in range(2):
            await client.submit(VIDEO, {"fps": "not checked"})
        assert fake.requests["submit"] == 2
    warnings = [r for r in caplog.records if "model catalog did not answer" in r.message]
    assert len(warnings) == 1


@pytest.mark.anyio
async def test_live_schema_checks_an_untyped_submit_and_is_cached(_cache_in_tmp: Path) -> None:
    """The schema fetched from the catalog refuses bad inputs, and is kept for later clients."""
    entry = {"model_id": VIDEO, "input_schema": SCHEMA, "base_price_usd": 0.1}
    async with FakeRunComfy(token=TOKEN, extra_models=[entry]) as fake:
        async with AsyncClient(TOKEN, fake.base_url, retry=FAST_RETRY) as client:
            with pytest.raises(InputValidationError, match="'duration'"):
                await client.submit(VIDEO, {**GOOD, "duration": 5})
            await client.submit(VIDEO, {**GOOD, "duration": "5"})
            assert client.requests["catalog"] == 1
        async with AsyncClient(TOKEN, fake.base_url, retry=FAST_RETRY) as client:
            with pytest.raises(InputValidationError, match="'prompt'"):
                await client.submit(VIDEO, {"image_url": "https://x.test/a.png"})
            assert client.requests["catalog"] == 0  # from the disk cache
        assert fake.requests["submit"] == 1


@pytest.mark.anyio
async def test_list_and_get_models(fake: FakeRunComfy) -> None:
    """list_models searches the catalog; get_model gives the schema with its media fields."""
    async with AsyncClient(TOKEN, fake.base_url, retry=FAST_RETRY) as client:
        page = await client.list_models("nano banana 2")
        ids = [m.model_id for m in page.models]
        assert "google/nano-banana-2/edit" in ids and page.total == len(ids)
        assert all(m.input_schema is None for m in page.models)
        one = await client.list_models(limit=1, offset=1, include_schema=True)
        assert len(one.models) == 1 and one.models[0].input_schema is not None
        edit = await client.get_model("google/nano-banana-2/edit")
        assert edit.media_fields == {"image_urls": MediaField("image", True)}
        assert edit.base_price_usd is not None and edit.estimate_cost({"num_images": 2})
        with pytest.raises(APIStatusError) as info:
            await client.get_model("acme/no-such-model")
        assert info.value.error_code == 400001


@pytest.mark.anyio
async def test_results_report_the_emulators_cost(fake: FakeRunComfy) -> None:
    """The emulator prices bundled models; a result read with include_cost carries it."""
    async with AsyncClient(TOKEN, fake.base_url, retry=FAST_RETRY) as client:
        info = await client.get_model("google/nano-banana-2/text-to-image")
        result = await client.run(info.model_id, {"prompt": "a fox", "num_images": 2}, timeout=30)
    assert result.cost == pytest.approx(info.estimate_cost({"num_images": 2}))


def test_models_command_searches_the_live_catalog(capsys: pytest.CaptureFixture[str]) -> None:
    """`models --search` lists matches with their price; --json prints the API's page."""
    from runcomfy_async._cli._main import main

    assert main(["models", "--search", "lite", "--sandbox"]) == 0
    out = capsys.readouterr().out
    assert "google/nano-banana-2-lite/text-to-image  $0.04 per output" in out
    assert "1 of 1 model(s)" in out
    assert main(["models", "--search", "edit", "--sandbox", "--json"]) == 0
    page = json.loads(capsys.readouterr().out)
    assert [m["model_id"] for m in page["models"]] == ["google/nano-banana-2/edit"]
