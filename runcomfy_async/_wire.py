"""msgspec Structs for every body of the Model API, and the decoders, built once at import.

Unknown fields are ignored everywhere (the API grows). Field names follow the wire exactly.
State names differ between endpoints: ``/status`` says ``completed`` where ``/result`` says
``succeeded`` or ``failed``; :func:`classify` maps both onto one small vocabulary.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from typing import Any

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
    "classify",
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
    if isinstance(value, str):
        if value.startswith(("https://", "http://")):
            found.append(value)
    elif isinstance(value, list):
        for item in value:
            _collect_urls(item, found)
    elif isinstance(value, dict):
        for item in value.values():
            _collect_urls(item, found)


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
        cost: the job's cost in USD when the server reports it.
        model_id: the model that ran, when the server reports it.
    """

    status: str
    request_id: str = ""
    output: Output | None = None
    error: Any = None
    created_at_raw: str | None = msgspec.field(default=None, name="created_at")
    finished_at_raw: str | None = msgspec.field(default=None, name="finished_at")
    cost: float | None = None
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


_TIME_DECODER = msgspec.json.Decoder(datetime)
SUBMIT_DECODER = msgspec.json.Decoder(SubmitResponse)
STATUS_DECODER = msgspec.json.Decoder(StatusResponse)
RESULT_DECODER = msgspec.json.Decoder(Result, dec_hook=_dec_hook)
CANCEL_DECODER = msgspec.json.Decoder(CancelResponse)
ERROR_DECODER = msgspec.json.Decoder(ErrorBody)
