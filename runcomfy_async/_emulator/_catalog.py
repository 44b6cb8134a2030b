"""The emulator's model catalog: ``GET /v1/models``, ``GET /v1/models/{id}``, prices and cost.

Entries follow PROTOCOL.md §6: ``model_id, display_name, description, categories, kind,
base_price_usd, price_unit, model_url, inputs, required_inputs`` and, with
``include_schema=true`` (always, for one model), ``input_schema``: a JSON schema whose media
fields carry a ``format`` marker (``image_uris`` on an array of images). The bundled typed
models (:data:`runcomfy_async.models.MODELS`) are listed first, then any ``extra_models``.

The bundled prices are the emulator's own round figures, not RunComfy's: they exist so cost
reporting and estimates can be tested end to end.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Iterable, Mapping
from typing import Any

import msgspec
from aiohttp import web

from ._http import error_response, json_response
from ._jobs import SUCCEEDED, FakeJob

__all__ = ["BUNDLED_PRICES", "DEFAULT_LIMIT", "MAX_LIMIT", "Catalog", "unknown_model"]

BUNDLED_PRICES: Mapping[str, float] = {
    "google/nano-banana-2/text-to-image": 0.08,
    "google/nano-banana-2/edit": 0.08,
    "google/nano-banana/pro/text-to-image": 0.15,
    "google/nano-banana-2-lite/text-to-image": 0.04,
}
"""USD per output image of the bundled models, in the emulator (invented, not RunComfy's)."""

_CATEGORIES = {"text-to-image": "text-to-image", "edit": "image-to-image"}
_KINDS = ("model", "workflow", "inference")
_MEDIA_BY_NAME = {"image_urls": "image_uris"}  # for bundled fields that carry no format yet
MAX_LIMIT = 500
"""The largest ``limit`` ``GET /v1/models`` accepts (PROTOCOL.md §6)."""
DEFAULT_LIMIT = 50
"""The ``limit`` of ``GET /v1/models`` when none is given."""


def _field_schema(info: Any) -> dict[str, Any]:
    """JSON schema of one bundled field, from its :class:`FieldInfo`."""
    schema: dict[str, Any] = {"title": info.name.replace("_", " ").capitalize()}
    if info.description:
        schema["description"] = info.description
    fmt = getattr(info, "format", None) or _MEDIA_BY_NAME.get(info.name)
    if info.type.startswith("list["):
        items: dict[str, Any] = {"type": info.type[5:-1]}
        if info.pattern:
            items["pattern"] = info.pattern
        schema.update(type="array", items=items)
        if info.min_items is not None:
            schema["minItems"] = info.min_items
        if info.max_items is not None:
            schema["maxItems"] = info.max_items
    else:
        schema["type"] = info.type
        for key, value in (
            ("pattern", info.pattern),
            ("minLength", info.min_length),
            ("maxLength", info.max_length),
            ("minimum", info.minimum),
            ("maximum", info.maximum),
        ):
            if value is not None:
                schema[key] = value
    if fmt:
        schema["format"] = fmt
    if info.choices is not None:
        schema["enum"] = list(info.choices)
    if not info.required and info.default is not None:
        schema["default"] = info.default
    validations = getattr(info, "validations", None)
    if validations:
        schema["validations"] = msgspec.to_builtins(validations)
    return schema


def _bundled() -> list[dict[str, Any]]:
    """Catalog entries of the bundled typed models (none when the package is missing)."""
    try:  # imported lazily and by name: the emulator runs without the models package
        models = importlib.import_module("runcomfy_async.models")
    except ImportError:  # pragma: no cover - the package ships with the emulator
        return []
    entries = []
    for model_id, cls in models.MODELS.items():
        infos = models.describe(cls)
        doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        summary = doc.split(": ", 1)[-1].rstrip(".")
        entries.append(
            {
                "model_id": model_id,
                "display_name": " ".join(p.replace("-", " ").title() for p in model_id.split("/")),
                "description": summary[:1].upper() + summary[1:],
                "categories": [_CATEGORIES.get(model_id.rsplit("/", 1)[-1], "other")],
                "kind": "model",
                "base_price_usd": getattr(cls, "base_price_usd", BUNDLED_PRICES.get(model_id)),
                "price_unit": getattr(cls, "price_unit", "output"),
                "input_schema": {
                    "type": "object",
                    "title": "Input",
                    "required": [i.name for i in infos if i.required],
                    "properties": {i.name: _field_schema(i) for i in infos},
                },
            }
        )
    return entries


def _complete(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Fill an ``extra_models`` entry's missing fields; check the few that must be right."""
    model_id = raw.get("model_id")
    if not isinstance(model_id, str) or not model_id:
        raise ValueError(f"every extra_models entry needs a model_id string, got {raw!r}")
    schema = raw.get("input_schema", {"type": "object", "properties": {}})
    if not isinstance(schema, Mapping):
        raise ValueError(f"{model_id}: input_schema must be a JSON object")
    entry = {
        "model_id": model_id,
        "display_name": model_id,
        "description": "",
        "categories": [],
        "kind": "model",
        "price_unit": "output",
        **raw,
        "input_schema": dict(schema),
    }
    return entry


def _finite_price(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) and value >= 0 else None


class Catalog:
    """The models the emulator knows, their prices and the catalog endpoints.

    Args:
        extra: more catalog entries (``model_id`` required; ``input_schema``,
            ``base_price_usd``, ``price_unit``, ``display_name``, ``description``,
            ``categories``, ``kind`` optional); an entry for a bundled id replaces it.

    Raises:
        ValueError: an extra entry has no ``model_id`` or a non-object ``input_schema``.
    """

    def __init__(self, extra: Iterable[Mapping[str, Any]] = ()):
        entries = {e["model_id"]: e for e in _bundled()}
        for raw in extra:
            entry = _complete(raw)
            entries[entry["model_id"]] = entry
        for entry in entries.values():
            schema = entry["input_schema"]
            entry.setdefault("model_url", f"https://www.runcomfy.com/models/{entry['model_id']}")
            entry.setdefault("inputs", list(schema.get("properties", {})))
            entry.setdefault("required_inputs", list(schema.get("required", [])))
        self._entries = entries

    def knows(self, model_id: str) -> bool:
        """Whether ``model_id`` is in the catalog."""
        return model_id in self._entries

    def missing_inputs(self, model_id: str, inputs: Mapping[str, Any]) -> list[str]:
        """Required inputs of an extra (schema-only) model that ``inputs`` lacks."""
        entry = self._entries.get(model_id)
        if entry is None:
            return []
        return [name for name in entry["required_inputs"] if name not in inputs]

    def cost(self, job: FakeJob, state: str) -> float | None:
        """The USD cost of a finished job: price times units if it succeeded, else 0.

        Args:
            job: the job.
            state: its detailed state (terminal).

        Returns:
            The cost, or ``None`` when the model has no valid price (the answer then has no
            ``cost``).
        """
        entry = self._entries.get(job.model_id)
        price = None if entry is None else _finite_price(entry.get("base_price_usd"))
        if entry is None or price is None:
            return None
        if state != SUCCEEDED:
            return 0.0
        unit = entry.get("price_unit")
        units: float = 1.0
        if unit == "output":
            units = job.num_images
        elif unit == "second":
            default = entry["input_schema"].get("properties", {}).get("duration", {})
            units = _seconds(job.inputs.get("duration", default.get("default")))
        return round(price * units, 6)

    # ---------------------------------------------------------------------------- endpoints

    async def list_models(self, request: web.Request) -> web.Response:
        """``GET /v1/models``: ``search``, ``category``, ``kind``, ``limit``, ``offset``.

        Args:
            request: the HTTP request.

        Returns:
            200 ``{models, total, limit, offset}`` (``input_schema`` only with
            ``include_schema=true``), or 422/422001 for a bad ``limit``/``offset``/``kind``.
        """
        query = request.query
        limit = _int_param(query, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        offset = _int_param(query, "offset", 0, 0, None)
        kind = query.get("kind")
        for name, value in (("limit", limit), ("offset", offset)):
            if value is None:
                return _bad_query(name, f"{name} must be an integer in range")
        if kind is not None and kind not in _KINDS:
            return _bad_query("kind", f"kind must be one of {', '.join(_KINDS)}")
        assert limit is not None and offset is not None
        words = query.get("search", "").lower().split()
        category = query.get("category", "").lower()
        with_schema = query.get("include_schema", "").lower() in ("true", "1", "yes")
        found = []
        for entry in self._entries.values():
            text = " ".join(
                [entry["model_id"], str(entry["display_name"]), str(entry["description"])]
                + [str(c) for c in entry["categories"]]
            ).lower()
            if any(w not in text for w in words):
                continue
            if category and category not in (str(c).lower() for c in entry["categories"]):
                continue
            if kind is not None and entry.get("kind") != kind:
                continue
            found.append(entry if with_schema else _without_schema(entry))
        return json_response(
            200,
            {
                "models": found[offset : offset + limit],
                "total": len(found),
                "limit": limit,
                "offset": offset,
            },
        )

    async def get_model(self, request: web.Request) -> web.Response:
        """``GET /v1/models/{model_id}``: one entry with its ``input_schema``.

        Args:
            request: the HTTP request.

        Returns:
            200 with the entry, or 400/400001 for a model the catalog does not know.
        """
        model_id = request.match_info["model_id"]
        entry = self._entries.get(model_id)
        if entry is None:
            return unknown_model(model_id)
        return json_response(200, entry)

    async def categories(self, request: web.Request) -> web.Response:
        """``GET /v1/models/categories``: ``{"categories": [...]}``, sorted."""
        found = {str(c) for e in self._entries.values() for c in e["categories"]}
        return json_response(200, {"categories": sorted(found)})


def unknown_model(model_id: str) -> web.Response:
    """The 400/400001 answer for a well-formed model id the catalog does not know."""
    return error_response(400, 400001, f"InvalidResourceIdentifier: unknown model id {model_id!r}")


def _without_schema(entry: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if k != "input_schema"}


def _int_param(
    query: Mapping[str, str], name: str, default: int, low: int, high: int | None
) -> int | None:
    raw = query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        return None
    if value < low or (high is not None and value > high):
        return None
    return value


def _bad_query(name: str, message: str) -> web.Response:
    detail = [{"loc": ["query", name], "msg": message, "type": "value_error"}]
    return error_response(422, 422001, "Validation Error", detail=detail)


def _seconds(value: object) -> float:
    """A duration input as seconds: a number or a numeric string; 1 otherwise."""
    if isinstance(value, bool):
        return 1.0
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 1.0
    return seconds if math.isfinite(seconds) and seconds > 0 else 1.0
