"""msgspec Structs for every body of the Model API, and the decoders, built once at import.

Unknown fields are ignored everywhere (the API grows). Field names follow the wire exactly.
What matters (a job's status, its outputs and its error, a submit's request id) is decoded
strictly; every other field leniently: a value of an unexpected type (a string ``cost``, an
integer ``created_at``) is dropped, logged once per field, and never makes a body undecodable
(see :class:`TolerantDecoder`).
State names differ between endpoints: ``/status`` says ``completed`` where ``/result`` says
``succeeded`` or ``failed``; :func:`classify` maps both onto one small vocabulary.
"""

from __future__ import annotations

import logging
import typing
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from typing import Annotated, Any, Generic, TypeVar

import msgspec

from ._states import Phase

__all__ = [
    "CancelResponse",
    "ErrorBody",
    "Output",
    "Phase",
    "Result",
    "StatusResponse",
    "SubmitResponse",
    "TolerantDecoder",
    "classify",
    "error_envelope",
]

logger = logging.getLogger("runcomfy_async")

_PHASES: dict[str, Phase] = {
    "in_queue": "queued",
    "queued": "queued",
    "pending": "queued",
    "waiting": "queued",
    "starting": "queued",
    "in_progress": "running",
    "processing": "running",
    "running": "running",
    "completed": "succeeded",
    "succeeded": "succeeded",
    "success": "succeeded",
    "failed": "failed",
    "error": "failed",
    "cancelled": "cancelled",
    "canceled": "cancelled",
}
_unknown_seen: set[str] = set()


def classify(status: str) -> Phase | None:
    """Map a wire status onto a :data:`Phase`; ``None`` for a value we do not know.

    Unknown values are treated by callers as "still in flight" and logged once per value,
    so a new server state never ends a job early nor floods the log.
    """
    phase = _PHASES.get(status.lower())
    if phase is None and status not in _unknown_seen:
        _unknown_seen.add(status)
        logger.warning("unknown job status %r from the API; treating it as still in flight", status)
    return phase


class Output(Mapping[str, Any]):
    """A result's ``output`` object: a read-only mapping with every output URL at hand.

    Keys follow the model's output schema (``image``, ``images``, ``video``, ``videos``, ...);
    each value is a URL string or a list of them.

    Example:
        >>> out = Output({"image": "https://x/a.png", "videos": ["https://x/b.mp4"]})
        >>> out.urls
        ('https://x/a.png', 'https://x/b.mp4')
    """

    __slots__ = ("_data",)
    _ORDER = ("image", "images", "video", "videos", "audio", "audios", "url", "urls")

    def __init__(self, data: Mapping[str, Any]):
        self._data = dict(data)

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"Output({self._data!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Output):
            return self._data == other._data
        if isinstance(other, Mapping):
            return self._data == dict(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    @property
    def urls(self) -> tuple[str, ...]:
        """Every output URL in order: image, images, video, videos, audio, then any other key.

        Nested lists and objects are searched too; only ``http(s)://`` strings count.
        """
        keys = [k for k in self._ORDER if k in self._data]
        keys += [k for k in self._data if k not in self._ORDER]
        found: list[str] = []
        for key in keys:
            _collect_urls(self._data[key], found)
        return tuple(dict.fromkeys(found))

    def to_dict(self) -> dict[str, Any]:
        """Return a plain ``dict`` copy, e.g. for JSON output."""
        return dict(self._data)


def _collect_urls(value: Any, found: list[str]) -> None:
    # A stack, not recursion: the decoder may accept nesting deeper than Python's
    # recursion limit (from 3.12 msgspec's limit follows the larger C stack budget).
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if item.startswith(("https://", "http://")):
                found.append(item)
        elif isinstance(item, list):
            stack.extend(reversed(item))
        elif isinstance(item, dict):
            stack.extend(reversed(item.values()))


class SubmitResponse(msgspec.Struct, frozen=True):
    """The answer to a submit: the job's id and the absolute URLs to follow it."""

    request_id: str
    status_url: str | None = None
    result_url: str | None = None
    cancel_url: str | None = None
    status: str | None = None


class StatusResponse(msgspec.Struct, frozen=True):
    """The answer of ``GET /v1/requests/{id}/status``.

    Attributes:
        request_id: the job's id.
        status: ``in_queue``, ``in_progress``, ``completed`` or ``cancelled`` (others tolerated).
        queue_position: jobs ahead of this one, only while ``in_queue``.
    """

    status: str
    request_id: str = ""
    queue_position: int | None = None
    status_url: str | None = None
    result_url: str | None = None
    error: Any = None

    @property
    def phase(self) -> Phase | None:
        """The status in the shared vocabulary (``None`` if unknown: still in flight)."""
        return classify(self.status)


def _parse_time(raw: str | None) -> datetime | None:
    """Decode an ISO-8601 timestamp leniently into an aware datetime (UTC if no offset)."""
    if not raw:
        return None
    try:
        value = _TIME_DECODER.decode(msgspec.json.encode(raw))
    except msgspec.ValidationError:
        try:
            value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            logger.debug("unparseable timestamp %r ignored", raw)
            return None
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


class Result(msgspec.Struct, frozen=True):
    """The answer of ``GET /v1/requests/{id}/result``: outputs once the job is done.

    While a job is pending the API answers with its current state and no ``output``.

    Attributes:
        request_id: the job's id.
        status: ``succeeded``, ``failed``, ``cancelled``, ``in_queue`` or ``in_progress``.
        output: the outputs (:class:`Output`), present when the job succeeded.
        error: on failure, the server's error exactly as sent (string, object or list).
        created_at: when the job was created (aware datetime), if the server said.
        finished_at: when the job finished (aware datetime), if the server said.
        cost: the job's cost in USD when the server reports it (a finite number >= 0;
            anything else the server sends there is ignored).
        model_id: the model that ran, when the server reports it.
    """

    status: str
    request_id: str = ""
    output: Output | None = None
    error: Any = None
    created_at_raw: str | None = msgspec.field(default=None, name="created_at")
    finished_at_raw: str | None = msgspec.field(default=None, name="finished_at")
    cost: Annotated[float, msgspec.Meta(ge=0)] | None = None
    model_id: str | None = None

    @property
    def created_at(self) -> datetime | None:
        """When the job was created, as an aware datetime."""
        return _parse_time(self.created_at_raw)

    @property
    def finished_at(self) -> datetime | None:
        """When the job finished, as an aware datetime."""
        return _parse_time(self.finished_at_raw)

    @property
    def phase(self) -> Phase | None:
        """The status in the shared vocabulary (``None`` if unknown: still in flight)."""
        return classify(self.status)

    @property
    def urls(self) -> tuple[str, ...]:
        """Every output URL in order (empty when there is no output)."""
        return self.output.urls if self.output is not None else ()


class CancelResponse(msgspec.Struct, frozen=True):
    """The answer of ``POST /v1/requests/{id}/cancel`` (HTTP 202).

    Attributes:
        outcome: ``cancelled`` if the cancel was accepted, ``not_cancellable`` if the job had
            already started or finished.
        status: the job's status as the server reported it alongside.
    """

    request_id: str = ""
    status: str | None = None
    outcome: str | None = None

    @property
    def cancelled(self) -> bool:
        """Whether the server accepted the cancel."""
        return self.outcome == "cancelled" or (self.outcome is None and self.status == "cancelled")


class ErrorBody(msgspec.Struct, frozen=True):
    """Any of the API's error envelopes.

    Seen shapes: ``{error_code, error_message, detail}``, ``{code, error}``, ``{message}``.
    """

    error_code: int | str | None = None
    error_message: str | None = None
    detail: Any = None
    code: int | str | None = None
    error: Any = None
    message: str | None = None

    @property
    def numeric_code(self) -> int | None:
        """The error code as an int, from ``error_code`` or ``code``."""
        for raw in (self.error_code, self.code):
            if isinstance(raw, int) and not isinstance(raw, bool):
                return raw
            if isinstance(raw, str) and raw.isascii() and raw.isdigit():
                return int(raw)
        return None

    @property
    def text(self) -> str:
        """The most human message the body holds."""
        for candidate in (self.error_message, self.message, self.error, self.detail):
            if isinstance(candidate, str) and candidate:
                return candidate
        if isinstance(self.error, (dict, list)):
            return str(self.error)
        if self.detail:
            return _detail_text(self.detail)
        return ""


def _detail_text(detail: Any) -> str:
    """Render a FastAPI-style ``detail`` list as ``field: message; ...``."""
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, dict):
                loc = item.get("loc")
                where = (
                    ".".join(str(p) for p in loc if p != "body") if isinstance(loc, list) else ""
                )
                msg = item.get("msg", "")
                parts.append(f"{where}: {msg}" if where else str(msg))
            else:
                parts.append(str(item))
        return "; ".join(parts)
    return str(detail)


def _dec_hook(type_: type, obj: Any) -> Any:
    if type_ is Output:
        if not isinstance(obj, dict):
            raise msgspec.ValidationError("output must be an object")
        return Output(obj)
    raise NotImplementedError(f"no decoder for {type_!r}")


S = TypeVar("S", bound=msgspec.Struct)

# (struct name, field name) pairs already logged as dropped: one warning per field, not per body.
_dropped_seen: set[tuple[str, str]] = set()


class TolerantDecoder(Generic[S]):
    """Decode a body into ``cls``: the ``strict`` fields must fit, the others are optional extras.

    The fast path is one strict msgspec decode. Only when it fails is the body decoded again
    with every extra typed ``Any``; each extra that does not fit its declared type is then
    dropped (it takes its default) and logged once per field. A strict field that does not
    fit still raises :class:`msgspec.ValidationError`.

    Args:
        cls: the Struct to build.
        strict: the fields that must decode as declared.
        dec_hook: msgspec's hook for custom types (e.g. :class:`Output`).
    """

    def __init__(
        self,
        cls: type[S],
        strict: tuple[str, ...],
        dec_hook: Any = None,
    ):
        self._cls = cls
        self._strict = msgspec.json.Decoder(cls, dec_hook=dec_hook)
        self._dec_hook = dec_hook
        hints = typing.get_type_hints(cls, include_extras=True)
        info = msgspec.structs.fields(cls)
        self._extras = tuple(
            (f.name, f.encode_name, hints[f.name], f.default) for f in info if f.name not in strict
        )
        loose: list[tuple[str, Any] | tuple[str, Any, Any]] = [
            (f.name, hints[f.name] if f.name in strict else Any)
            if f.required
            else (f.name, hints[f.name] if f.name in strict else Any, f.default)
            for f in info
        ]
        rename = {f.name: f.encode_name for f in info}
        loose_cls = msgspec.defstruct(f"_Loose{cls.__name__}", loose, rename=rename, frozen=True)
        self._loose = msgspec.json.Decoder(loose_cls, dec_hook=dec_hook)

    def decode(self, body: bytes) -> S:
        """Decode ``body``, dropping extras of an unexpected type.

        Raises:
            msgspec.DecodeError: the body is not JSON.
            msgspec.ValidationError: a strict field is missing or of the wrong type.
        """
        try:
            return self._strict.decode(body)
        except msgspec.ValidationError:
            loose = self._loose.decode(body)
        values = {name: getattr(loose, name) for name in self._cls.__struct_fields__}
        for name, wire_name, hint, default in self._extras:
            value = values[name]
            if value is default:
                continue
            try:
                values[name] = msgspec.convert(value, hint, dec_hook=self._dec_hook)
            except msgspec.ValidationError as exc:
                values[name] = default
                key = (self._cls.__name__, wire_name)
                if key not in _dropped_seen:
                    _dropped_seen.add(key)
                    logger.warning(
                        "ignoring the field %r of a %s from the API: %s (logged once per field)",
                        wire_name,
                        self._cls.__name__,
                        exc,
                    )
        return self._cls(**values)


class _ResultDecoder(TolerantDecoder[Result]):
    """Results, where a failed job's error may come as ``error_code``/``error_message``."""

    def decode(self, body: bytes) -> Result:
        """Decode a result; a failure's ``error_code``/``error_message`` become its ``error``."""
        result = super().decode(body)
        if result.error is None and result.phase == "failed" and b'"error_' in body:
            envelope = _decode_error_body(body)
            if envelope is not None:
                error = {
                    k: v
                    for k, v in (
                        ("error_code", envelope.error_code),
                        ("error_message", envelope.error_message),
                    )
                    if v is not None
                }
                if error:
                    result = msgspec.structs.replace(result, error=error)
        return result


def _decode_error_body(body: bytes) -> ErrorBody | None:
    try:
        return ERROR_DECODER.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return None


_JOB_STATUS = msgspec.json.Decoder(msgspec.defstruct("_JobStatus", [("status", Any, None)]))


def error_envelope(body: bytes, *, job_read: bool = False) -> ErrorBody | None:
    """The API error an HTTP 200 body carries, or ``None`` when it is not an error envelope.

    Some RunComfy APIs answer HTTP 200 with a non-null ``error_code``: that is the call's
    failure. But a job's own body (``job_read``: a status or result read) whose ``status``
    says the job failed is the *job's* failure, reported by the job, not an API error.

    Args:
        body: the raw 2xx body.
        job_read: the body answers a status or result read of a job.
    """
    if b'"error_code"' not in body and b'"code"' not in body:
        return None
    envelope = _decode_error_body(body)
    if (
        envelope is None
        or envelope.numeric_code is None
        or (envelope.error_code is None and envelope.error is None)
    ):
        return None
    if job_read:
        try:
            status = _JOB_STATUS.decode(body).status  # type: ignore[attr-defined]
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
            status = None
        if isinstance(status, str) and _PHASES.get(status.lower()) == "failed":
            return None
    return envelope


_TIME_DECODER = msgspec.json.Decoder(datetime)
SUBMIT_DECODER = TolerantDecoder(SubmitResponse, strict=("request_id",))
STATUS_DECODER = TolerantDecoder(StatusResponse, strict=("status", "error"))
RESULT_DECODER: TolerantDecoder[Result] = _ResultDecoder(
    Result, strict=("status", "output", "error"), dec_hook=_dec_hook
)
CANCEL_DECODER = TolerantDecoder(CancelResponse, strict=())
ERROR_DECODER = msgspec.json.Decoder(ErrorBody)
