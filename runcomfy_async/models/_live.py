"""The live model catalog's answers: :class:`ModelInfo` and :class:`ModelPage`.

``GET /v1/models`` lists models (search, category, paging) and ``GET /v1/models/{id}`` gives
one with its ``input_schema``. Every field but ``model_id`` is decoded leniently: the catalog
is informative, so an odd value is dropped (and logged once), never an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import msgspec

from .._media import MediaField, media_fields
from .._wire import TolerantDecoder

__all__ = ["MODEL_DECODER", "PAGE_DECODER", "ModelInfo", "ModelPage"]


class ModelInfo(msgspec.Struct, frozen=True, kw_only=True):
    """One model of the live catalog.

    Attributes:
        model_id: the id to submit to, e.g. ``"google/nano-banana-2/edit"``.
        display_name: a human name.
        description: what the model does.
        categories: e.g. ``["text-to-image"]``.
        base_price_usd: the price of one unit in USD (a finite number >= 0), if known.
        price_unit: what one unit is: ``output`` (one output, e.g. an image) or ``second``
            (of the ``duration`` input).
        pricing_note: free text about the price, if any.
        model_url: the model's page.
        inputs: the input field names.
        required_inputs: the input fields that must be given.
        input_schema: the JSON schema of the inputs (from ``get_model``, or a listing with
            ``include_schema=True``); ``None`` when not fetched.
    """

    model_id: str
    display_name: str = ""
    description: str = ""
    categories: tuple[str, ...] = ()
    base_price_usd: Annotated[float, msgspec.Meta(ge=0)] | None = None
    price_unit: str | None = None
    pricing_note: str | None = None
    model_url: str | None = None
    inputs: tuple[str, ...] = ()
    required_inputs: tuple[str, ...] = ()
    input_schema: dict[str, Any] | None = None

    @property
    def media_fields(self) -> Mapping[str, MediaField]:
        """The schema's media fields (marked by ``format``), e.g. ``{"image_urls": ...}``."""
        return media_fields(self.input_schema or {})

    def estimate_cost(self, inputs: Mapping[str, Any] | None = None) -> float | None:
        """The expected cost in USD of one job with ``inputs``, from the catalog's price.

        ``output`` prices count ``num_images`` (default 1); ``second`` prices count the
        ``duration`` input (or the schema's default). ``None`` when the price or unit is
        unknown, never a guess.
        """
        price = self.base_price_usd
        if price is None:
            return None
        inputs = inputs or {}
        props = (self.input_schema or {}).get("properties") or {}
        if self.price_unit == "output":
            units = _number(inputs.get("num_images", _default(props, "num_images", 1)))
        elif self.price_unit == "second":
            units = _number(inputs.get("duration", _default(props, "duration", None)))
        else:
            return None
        return None if units is None else round(price * units, 6)


def _default(props: Mapping[str, Any], name: str, fallback: Any) -> Any:
    prop = props.get(name)
    return prop.get("default", fallback) if isinstance(prop, Mapping) else fallback


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if value >= 0 else None
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
        return number if number >= 0 else None
    return None


class ModelPage(msgspec.Struct, frozen=True, kw_only=True):
    """One page of ``GET /v1/models``.

    Attributes:
        models: the models on this page.
        total: how many models match in all.
        limit: the page size asked for.
        offset: where this page starts.
    """

    models: tuple[ModelInfo, ...] = ()
    total: int | None = None
    limit: int | None = None
    offset: int | None = None


MODEL_DECODER = TolerantDecoder(ModelInfo, strict=("model_id",))


class _PageDecoder:
    """Pages whose models decode one by one: an entry without a ``model_id`` drops only itself."""

    def decode(self, body: bytes) -> ModelPage:
        """Decode a ``GET /v1/models`` body.

        Raises:
            msgspec.DecodeError: not JSON.
            msgspec.ValidationError: not a JSON object.
        """
        data = msgspec.json.decode(body)
        if not isinstance(data, dict):
            raise msgspec.ValidationError("a model list must be a JSON object")
        models = []
        items = data.get("models")
        for item in items if isinstance(items, list) else ():
            try:
                models.append(MODEL_DECODER.decode(msgspec.json.encode(item)))
            except msgspec.ValidationError:
                continue

        def count(name: str) -> int | None:
            value = data.get(name)
            return value if isinstance(value, int) and not isinstance(value, bool) else None

        return ModelPage(
            models=tuple(models), total=count("total"), limit=count("limit"), offset=count("offset")
        )


PAGE_DECODER = _PageDecoder()
