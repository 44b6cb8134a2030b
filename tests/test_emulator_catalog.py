"""Tests of the emulator's catalog, unknown model ids, and cost in results."""

from __future__ import annotations

import re
from typing import Any

import aiohttp
import pytest

from runcomfy_async._emulator._catalog import BUNDLED_PRICES
from runcomfy_async.models import MODELS
from runcomfy_async.testing import FakeRunComfy
from tests.test_emulator import MODEL, call, http, submit

__all__ = ["http"]  # the fixture, re-exported so pytest finds it here

EDIT = "google/nano-banana-2/edit"
UPSCALE: dict[str, Any] = {
    "model_id": "acme/upscale/v2",
    "display_name": "Acme Upscale",
    "description": "Sharper, bigger images",
    "categories": ["upscale"],
    "base_price_usd": 0.25,
    "price_unit": "second",
    "input_schema": {
        "type": "object",
        "required": ["image_url", "duration"],
        "properties": {
            "image_url": {"type": "string", "format": "image_uri"},
            "duration": {"type": "string", "enum": ["5", "10"], "default": "5"},
        },
    },
}


@pytest.mark.anyio
async def test_unknown_model_ids_get_400001_unless_any_model_is_accepted(
    http: aiohttp.ClientSession,
) -> None:
    """A well-formed unknown model id gets 400/400001 and no job; accept_any_model takes it."""
    async with FakeRunComfy() as fake:
        url = f"{fake.base_url}/v1/models/google/nano-bananna-2/text-to-image"
        status, body, _ = await call(http, "POST", url, json={"prompt": "x"})
        assert (status, body["error_code"]) == (400, 400001)
        assert "nano-bananna-2" in body["error_message"] and fake.jobs_created == 0
        status, body, _ = await call(http, "GET", url)
        assert (status, body["error_code"]) == (400, 400001)
        await submit(http, fake, {"prompt": "x"}, model=MODEL)
    async with FakeRunComfy(accept_any_model=True) as fake:
        await submit(http, fake, {"anything": [1, 2]}, model="someone/new-model/v2")
        assert fake.jobs_created == 1


@pytest.mark.anyio
async def test_catalog_lists_bundled_models_with_prices_and_schemas(
    http: aiohttp.ClientSession,
) -> None:
    """GET /v1/models lists every bundled model with price and inputs; schemas on request."""
    async with FakeRunComfy() as fake:
        status, body, _ = await call(http, "GET", f"{fake.base_url}/v1/models")
        assert status == 200
        assert (body["total"], body["limit"], body["offset"]) == (len(MODELS), 50, 0)
        by_id = {m["model_id"]: m for m in body["models"]}
        assert set(by_id) == set(MODELS)
        t2i = by_id[MODEL]
        assert "input_schema" not in t2i
        assert (t2i["base_price_usd"], t2i["price_unit"]) == (BUNDLED_PRICES[MODEL], "output")
        assert t2i["required_inputs"] == ["prompt"] and "num_images" in t2i["inputs"]
        assert t2i["model_url"].startswith("https://") and t2i["categories"] == ["text-to-image"]
        assert t2i["display_name"] and t2i["description"] and t2i["kind"] == "model"

        url = f"{fake.base_url}/v1/models?include_schema=true&search=EDIT"
        status, body, _ = await call(http, "GET", url)
        assert [m["model_id"] for m in body["models"]] == [EDIT]
        schema = body["models"][0]["input_schema"]
        assert schema["type"] == "object" and set(schema["required"]) == {"prompt", "image_urls"}
        images = schema["properties"]["image_urls"]
        assert (images["type"], images["format"]) == ("array", "image_uris")
        assert (images["minItems"], images["maxItems"]) == (1, 20)
        count = schema["properties"]["num_images"]
        assert (count["type"], count["minimum"], count["maximum"], count["default"]) == (
            "integer",
            1,
            4,
            1,
        )
        ratio = schema["properties"]["aspect_ratio"]
        assert ratio["enum"][:2] == ["auto", "21:9"] and ratio["default"] == "auto"

        status, body, _ = await call(http, "GET", f"{fake.base_url}/v1/models/{EDIT}")
        assert status == 200 and body["input_schema"] == schema
        status, body, _ = await call(http, "GET", f"{fake.base_url}/v1/models/categories")
        assert status == 200 and "text-to-image" in body["categories"]
        assert fake.requests["models"] == 4


@pytest.mark.anyio
async def test_catalog_filters_pages_and_checks_its_query(http: aiohttp.ClientSession) -> None:
    """search words, category, kind, limit and offset filter and page; bad values get 422."""
    async with FakeRunComfy(extra_models=[UPSCALE]) as fake:
        base = f"{fake.base_url}/v1/models"

        async def ids(query: str) -> tuple[list[str], int]:
            status, body, _ = await call(http, "GET", f"{base}?{query}")
            assert status == 200, body
            return [m["model_id"] for m in body["models"]], body["total"]

        assert await ids("category=upscale") == (["acme/upscale/v2"], 1)
        assert await ids("search=sharper+acme") == (["acme/upscale/v2"], 1)
        assert await ids("search=sharper+google") == ([], 0)
        assert await ids("kind=workflow") == ([], 0)
        everything, total = await ids("limit=500")
        assert total == len(MODELS) + 1 and everything[-1] == "acme/upscale/v2"
        assert await ids("limit=2&offset=1") == (everything[1:3], total)
        assert await ids(f"offset={total}") == ([], total)
        for query in ("limit=0", "limit=501", "limit=x", "offset=-1", "kind=robot"):
            status, body, _ = await call(http, "GET", f"{base}?{query}")
            assert (status, body["error_code"]) == (422, 422001), query
            assert body["detail"][0]["loc"][0] == "query"
        status, body, _ = await call(http, "GET", f"{base}/acme/upscale/v2")
        assert body["input_schema"] == UPSCALE["input_schema"]
        assert body["required_inputs"] == ["image_url", "duration"]


@pytest.mark.anyio
async def test_extra_models_are_accepted_and_checked_for_required_fields(
    http: aiohttp.ClientSession,
) -> None:
    """An extra model takes submits; a missing required field gets 422 naming it."""
    async with FakeRunComfy(extra_models=[UPSCALE]) as fake:
        url = f"{fake.base_url}/v1/models/acme/upscale/v2"
        status, body, _ = await call(http, "POST", url, json={"image_url": "https://x.test/a"})
        assert (status, body["error_code"]) == (422, 422001)
        assert body["detail"][0]["loc"] == ["body", "duration"]
        await submit(
            http, fake, {"image_url": "https://x.test/a", "duration": "10"}, UPSCALE["model_id"]
        )
        assert fake.jobs_created == 1
    with pytest.raises(ValueError, match="model_id"):
        FakeRunComfy(extra_models=[{"display_name": "no id"}])
    with pytest.raises(ValueError, match="input_schema"):
        FakeRunComfy(extra_models=[{"model_id": "a/b", "input_schema": [1]}])


@pytest.mark.anyio
async def test_results_carry_cost_when_asked(http: aiohttp.ClientSession) -> None:
    """include_cost=true adds cost: price x outputs, price x seconds, 0 when failed or cancelled."""
    free = {"model_id": "acme/free", "base_price_usd": "0.1"}  # malformed: no cost at all
    async with FakeRunComfy(duration_mean=0.0, extra_models=[UPSCALE, free]) as fake:

        async def cost_of(rid: str, query: str = "?include_cost=true") -> Any:
            url = f"{fake.base_url}/v1/requests/{rid}/result{query}"
            status, body, _ = await call(http, "GET", url)
            assert status == 200 and body["status"] in ("succeeded", "failed", "cancelled")
            return body.get("cost")

        two = (await submit(http, fake, {"prompt": "x", "num_images": 2}, MODEL))["request_id"]
        assert await cost_of(two) == pytest.approx(2 * BUNDLED_PRICES[MODEL])
        assert await cost_of(two, "") is None and await cost_of(two, "?include_cost=1") > 0
        inputs = {"image_url": "https://x.test/a", "duration": "10"}
        video = (await submit(http, fake, inputs, UPSCALE["model_id"]))["request_id"]
        assert await cost_of(video) == pytest.approx(2.5)
        other = (await submit(http, fake, {}, "acme/free"))["request_id"]
        assert await cost_of(other) is None
    async with FakeRunComfy(duration_mean=0.0, failure_rate=1.0) as fake:
        failed = (await submit(http, fake, {"prompt": "x"}, MODEL))["request_id"]
        assert await cost_of(failed) == 0.0
    async with FakeRunComfy(duration_mean=30.0) as fake:
        running = (await submit(http, fake, {"prompt": "x"}, MODEL))["request_id"]
        url = f"{fake.base_url}/v1/requests/{running}/result?include_cost=true"
        status, body, _ = await call(http, "GET", url)
        assert status == 200 and body["status"] == "in_progress" and "cost" not in body


def test_bundled_schemas_use_the_protocol_shapes() -> None:
    """Every bundled schema has a type per property and valid JSON-schema keywords only."""
    catalog_keys = {"title", "description", "type", "items", "minItems", "maxItems", "pattern"}
    catalog_keys |= {"minLength", "maxLength", "minimum", "maximum", "format", "enum"}
    catalog_keys |= {"default", "validations"}
    from runcomfy_async._emulator._catalog import Catalog

    catalog = Catalog()
    for model_id in MODELS:
        assert catalog.knows(model_id)
    assert not catalog.knows("acme/none")
    for entry in catalog._entries.values():
        for name, prop in entry["input_schema"]["properties"].items():
            assert re.fullmatch(r"[a-z_]+", name)
            assert prop["type"] in ("string", "integer", "number", "boolean", "array")
            assert set(prop) <= catalog_keys, set(prop) - catalog_keys


@pytest.mark.anyio
async def test_catalog_goes_through_auth_scripts_and_faults(http: aiohttp.ClientSession) -> None:
    """The catalog needs the token, takes canned answers and random faults as 'models'."""
    async with FakeRunComfy(token="s3cret", error_rate=1.0, fault_endpoints=["models"]) as fake:
        url = f"{fake.base_url}/v1/models"
        status, body, _ = await call(http, "GET", url)
        assert (status, body["error_code"]) == (401, 401001)
        good = {"Authorization": "Bearer s3cret"}
        fake.inject("models", status=200, body={"models": [], "total": 0})
        status, body, _ = await call(http, "GET", url, headers=good)
        assert (status, body) == (200, {"models": [], "total": 0})
        status, _, _ = await call(http, "GET", f"{url}/{MODEL}", headers=good)
        assert status in (502, 503)  # error_rate=1.0 on the catalog
        assert fake.requests["models"] == 3
