"""The base of every typed model input: :class:`ModelInput`, validation, and :func:`to_payload`.

Validation is ``msgspec.convert`` into the model's Struct (strict: no ``"4"`` -> ``4`` coercion),
with msgspec's terse error turned into an :class:`InputValidationError` that names the field and
what it accepts. The rule texts are built once per class (see ``_schema``), so explaining a
rejected input costs a regex and a dictionary lookup.
"""

import difflib
import re
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

import msgspec

from .._exceptions import InputValidationError
from ._schema import field_table, show_value

__all__ = ["ModelInput", "convert", "explain", "to_payload"]

_M = TypeVar("_M", bound="ModelInput")

# msgspec ends a field error with " - at `$.num_images`" or " - at `$.image_urls[3]`".
_AT_FIELD = re.compile(r" - at `\$\.([A-Za-z_][A-Za-z0-9_]*)(?:\[(\d+)\])?")
_MISSING = re.compile(r"^Object missing required field `(.*)`$", re.DOTALL)
_UNKNOWN = re.compile(r"^Object contains unknown field `(.*)`$", re.DOTALL)


class ModelInput(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    omit_defaults=True,
    forbid_unknown_fields=True,
):
    """Base class of the typed inputs of a known RunComfy model.

    Each subclass is a frozen msgspec Struct whose fields, defaults, enums and ranges are copied
    from the model's API page, and whose class variable ``model_id`` names the model (it is not
    a field and is never sent). Defaults are the page's defaults and are omitted from the
    payload, so the server applies its own.

    Building a Struct directly (``NanoBanana2TextToImage(prompt="a fox")``) checks nothing but
    the argument names: msgspec enforces types and constraints only when converting. Use
    :meth:`from_dict` to build a checked instance from JSON-like data, or :meth:`validated` to
    check one you built directly; the client calls :meth:`validated` before every submit.

    Example:
        >>> from runcomfy_async.models import NanoBanana2TextToImage, to_payload
        >>> inputs = NanoBanana2TextToImage(prompt="a fox", aspect_ratio="16:9").validated()
        >>> inputs.model_id
        'google/nano-banana-2/text-to-image'
        >>> to_payload(inputs)
        {'prompt': 'a fox', 'aspect_ratio': '16:9'}
    """

    model_id: ClassVar[str]
    """The RunComfy model id these inputs are for, e.g. ``"google/nano-banana-2/edit"``."""

    @classmethod
    def from_dict(cls: type[_M], data: Mapping[str, Any]) -> _M:
        """Check JSON-like ``data`` against this model's schema and build the inputs.

        Args:
            data: field names to values, as they would be sent on the wire.

        Returns:
            The checked inputs.

        Raises:
            InputValidationError: a field is unknown, missing, of the wrong type, or outside
                what the model accepts; ``field`` names it and the message lists what is allowed.
        """
        return convert(cls, data)

    def validated(self: _M) -> _M:
        """Check inputs built directly against the model's schema.

        The instance is round-tripped through its wire form, so values of the wrong type or
        outside the model's enums and ranges are caught before anything is sent.

        Returns:
            A checked copy (equal to ``self`` when ``self`` was already valid).

        Raises:
            InputValidationError: a field breaks the model's schema.
        """
        return convert(type(self), self)


def to_payload(obj: ModelInput) -> dict[str, Any]:
    """Render model inputs as the JSON-able dict sent on the wire, defaults omitted.

    Args:
        obj: the inputs, ideally checked with :meth:`ModelInput.validated`.

    Returns:
        A new dict of field names to JSON values.

    Raises:
        InputValidationError: a field holds a value JSON cannot carry (only possible for
            inputs built directly and not checked).

    Example:
        >>> from runcomfy_async.models import NanoBananaProTextToImage, to_payload
        >>> to_payload(NanoBananaProTextToImage(prompt="a fox", aspect_ratio="16:9"))
        {'prompt': 'a fox'}
    """
    payload: dict[str, Any] = _wire_form(obj)
    # msgspec omits a default only when the value *is* the default object; an equal string
    # built elsewhere (``"16:9"`` typed by the user) would be sent, so drop equal values too.
    defaults = field_table(type(obj)).defaults
    return {
        k: v
        for k, v in payload.items()
        if k not in defaults or type(v) is not type(defaults[k]) or v != defaults[k]
    }


def convert(cls: type[_M], data: Any) -> _M:
    """Convert ``data`` (a mapping or a :class:`ModelInput`) into checked ``cls`` inputs.

    Raises:
        InputValidationError: ``data`` breaks the schema of ``cls``.
    """
    if isinstance(data, ModelInput):
        data = _wire_form(data)
    elif isinstance(data, Mapping) and type(data) is not dict:
        data = dict(data)
    try:
        return msgspec.convert(data, cls)
    except msgspec.ValidationError as exc:
        raise explain(cls, data, exc) from exc


def _wire_form(obj: ModelInput) -> Any:
    """Render ``obj`` as builtins, naming the field that holds a value JSON cannot carry."""
    try:
        return msgspec.to_builtins(obj)
    except (TypeError, ValueError) as exc:
        model_id = getattr(obj, "model_id", None)
        for name in obj.__struct_fields__:
            value = getattr(obj, name)
            try:
                msgspec.to_builtins(value)
            except (TypeError, ValueError):
                reason = f"holds {show_value(value)}, which cannot be sent as JSON"
                raise InputValidationError(reason, field=name, model_id=model_id) from exc
        raise InputValidationError(str(exc), model_id=model_id) from exc


def explain(
    cls: type[msgspec.Struct], data: Any, exc: msgspec.ValidationError
) -> InputValidationError:
    """Translate msgspec's validation error into an :class:`InputValidationError`.

    The error's ``field`` is the offending top-level field and its reason says what the field
    accepts (choices with the default, integer range, list size) and what was given.
    """
    model_id: str | None = getattr(cls, "model_id", None)
    table = field_table(cls)
    message = str(exc)

    def error(reason: str, field: str | None = None) -> InputValidationError:
        return InputValidationError(reason, field=field, model_id=model_id)

    unknown = _UNKNOWN.match(message)
    if unknown:
        extra = [k for k in data if isinstance(k, str) and k not in table.by_name]
        name = extra[0] if extra else unknown.group(1)
        known = ", ".join(info.name for info in table.infos)
        reason = f"is not an input of {model_id or cls.__name__}; known fields: {known}"
        if len(name) <= 64:
            close = difflib.get_close_matches(name, list(table.by_name), n=1)
            if close:
                reason += f" (did you mean {close[0]!r}?)"
        return error(reason, name)

    missing = _MISSING.match(message)
    if missing:
        name = missing.group(1)
        info = table.by_name.get(name)
        return error("is required" + (f"; it {info.rule}" if info else ""), name)

    at = _AT_FIELD.search(message)
    if at and at.group(1) in table.by_name and isinstance(data, Mapping) and at.group(1) in data:
        name, index = at.group(1), at.group(2)
        value = data[name]
        got = f"got {show_value(value)}"
        if index is not None and isinstance(value, (list, tuple)) and int(index) < len(value):
            got = f"item {index} is {show_value(value[int(index)])}"
        return error(f"{table.by_name[name].rule}; {got}", name)

    if message.startswith("Expected `object`") and " - at " not in message:
        return error(
            f"inputs must be a JSON object of field names to values; got {show_value(data)}"
        )
    if message.endswith("at `key` in `$`") and isinstance(data, Mapping):
        bad = next((k for k in data if not isinstance(k, str)), None)
        return error(f"field names must be strings; got {show_value(bad)}")
    return error(message)
