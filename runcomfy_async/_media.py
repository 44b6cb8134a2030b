"""Local media in model inputs: files, bytes and ``data:`` URIs, checked and sent inline.

Which fields hold media comes from the model's schema: ``format`` is ``image_uri`` on a
single string field and ``image_uris`` on an array (or on the array's ``items``), and likewise
``video_uri(s)`` and ``audio_uri(s)``. In such a field a :class:`pathlib.Path`, ``bytes``, a
binary file object or a ``file://`` URI is read when the input is submitted (never earlier,
so a long batch holds no file in memory) and sent as ``data:<mime>;base64,...``, or handed to
an ``uploader`` that hosts it and returns its URL. A ``data:`` URI given as a string is checked
the same way. Python file values in a field no schema describes are sent inline too: they could
not be sent as JSON otherwise.

Checks, all before anything is sent: the type from the file's magic bytes (see
:mod:`runcomfy_async._sniff`) must be of the field's kind; each file at most
:data:`MAX_FILE_BYTES` of its kind; the request at most :data:`MAX_REQUEST_BYTES`; and the
schema's ``validations`` where they are cheap (file size, and width and height from the image
header), failing with the schema's own ``validation_error`` text. Rules not known here are
left to the server.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import re
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

from ._exceptions import InputValidationError
from ._sniff import HEAD_BYTES, MIME_KINDS, MediaKind, image_size, sniff_mime
from ._validations import check_validations

__all__ = [
    "MAX_FILE_BYTES",
    "MAX_REQUEST_BYTES",
    "MEDIA_FORMATS",
    "MediaField",
    "Uploader",
    "media_fields",
    "prepare_media",
    "paths_as_uris",
    "resolve_media",
    "resolve_media_fields",
]

Uploader = Callable[[bytes, str], Awaitable[str]]
"""An async callable that hosts a file: ``(data, mime) -> https URL``."""

MAX_REQUEST_BYTES = 64 * 2**20
"""The largest submit body (RunComfy's request limit as its own tools assume it)."""

MAX_FILE_BYTES: Mapping[MediaKind, int] = {
    "image": 50 * 10**6,
    "video": 100 * 10**6,
    "audio": 100 * 10**6,
}
"""The largest file of each kind sent (the API pages' recommended limits)."""

MEDIA_FORMATS: Mapping[str, tuple[MediaKind, bool]] = {
    "image_uri": ("image", False),
    "image_uris": ("image", True),
    "video_uri": ("video", False),
    "video_uris": ("video", True),
    "audio_uri": ("audio", False),
    "audio_uris": ("audio", True),
}
"""Schema ``format`` values that mark media fields: the kind, and whether a list is expected."""

_NOUNS: Mapping[MediaKind | None, str] = {
    "image": "a PNG, JPEG, WebP or GIF image",
    "video": "an MP4, WebM or QuickTime video",
    "audio": "an MP3, WAV or Ogg audio file",
    None: "an image, video or audio file of a known type",
}
_PLURALS: Mapping[MediaKind, str] = {"image": "images", "video": "videos", "audio": "audio files"}
_DATA_URI = re.compile(r"data:([\w.+-]+/[\w.+-]+)((?:;[^;,]*)*),", re.ASCII)
_BASE64 = re.compile(rb"[A-Za-z0-9+/]*={0,2}")


class MediaField(NamedTuple):
    """A media field of a model's schema.

    Attributes:
        kind: ``image``, ``video`` or ``audio``; ``None`` when any kind is accepted.
        many: the field is a list of media.
        validations: the schema's ``validations`` rules for the field.
    """

    kind: MediaKind | None
    many: bool
    validations: tuple[Mapping[str, Any], ...] = ()


def media_fields(schema: Mapping[str, Any]) -> dict[str, MediaField]:
    """The media fields of a JSON input schema, from each property's (or item's) ``format``.

    Example:
        >>> media_fields({"properties": {"image_urls": {"type": "array",
        ...     "items": {"type": "string", "format": "image_uri"}}}})
        {'image_urls': MediaField(kind='image', many=True, validations=())}
    """
    found: dict[str, MediaField] = {}
    props = schema.get("properties")
    if not isinstance(props, Mapping):
        return found
    for name, prop in props.items():
        if not isinstance(prop, Mapping):
            continue
        items = prop.get("items")
        items = items if isinstance(items, Mapping) else {}
        fmt = prop.get("format")
        if fmt not in MEDIA_FORMATS:
            fmt = items.get("format")
        if not isinstance(fmt, str) or fmt not in MEDIA_FORMATS:
            continue
        kind, many = MEDIA_FORMATS[fmt]
        rules = prop.get("validations") or items.get("validations") or ()
        rules = tuple(r for r in rules if isinstance(r, Mapping)) if isinstance(rules, list) else ()
        found[name] = MediaField(kind, many or prop.get("type") == "array", rules)
    return found


def _is_local(value: Any) -> bool:
    """A Python value that stands for a file's content (never JSON as it is)."""
    return isinstance(value, (os.PathLike, bytes, bytearray, memoryview)) or (
        hasattr(value, "read") and not isinstance(value, (str, Mapping))
    )


def _needs_work(value: Any) -> bool:
    return _is_local(value) or (isinstance(value, str) and value.startswith(("data:", "file:")))


def _size_mb(size: int) -> str:
    return f"{size / 10**6:,.1f} MB" if size >= 10**5 else f"{size:,} bytes"


async def prepare_media(
    data: Mapping[str, Any],
    fields: Mapping[str, MediaField],
    *,
    uploader: Uploader | None = None,
    model_id: str | None = None,
    max_request_bytes: int = MAX_REQUEST_BYTES,
) -> Mapping[str, Any]:
    """Replace local media in ``data`` by ``data:`` URIs (or uploaded URLs), checking each.

    Files are read one at a time, when this runs (at submit). ``data`` itself is returned
    when it holds nothing to do, so plain inputs cost one scan of their values.

    Args:
        data: the inputs.
        fields: the model's media fields (see :func:`media_fields`).
        uploader: hosts each file and returns its URL, instead of inlining it.
        model_id: the model, for error messages.
        max_request_bytes: the most inline media one request may carry.

    Returns:
        The inputs with every media value a URL or a ``data:`` URI.

    Raises:
        InputValidationError: a file is missing, unreadable, of an unknown or wrong type, too
            large, or breaks one of the schema's validations (``field`` names it, with
            the item's index for a list, e.g. ``image_urls[2]``).
    """
    todo: list[tuple[str, int | None, Any, MediaField]] = []
    for key, value in data.items():
        spec = fields.get(key)
        if spec is None and not _is_local(value) and not isinstance(value, (list, tuple)):
            continue
        spec = spec or MediaField(None, isinstance(value, (list, tuple)))
        if isinstance(value, (list, tuple)):
            todo += [
                (key, i, item, spec)
                for i, item in enumerate(value)
                if _is_local(item) or (spec.kind is not None and _needs_work(item))
            ]
        elif _is_local(value) or (spec.kind is not None and _needs_work(value)):
            todo.append((key, None, value, spec))
    if not todo:
        return data
    planned = sum(_planned_size(value) for _, _, value, _ in todo)
    if planned * 4 // 3 > max_request_bytes:
        raise InputValidationError(
            f"the media in these inputs come to {_size_mb(planned)} "
            f"({_size_mb(planned * 4 // 3)} as base64), more than one request may carry "
            f"({_size_mb(max_request_bytes)}); host the files and pass their URLs, or give "
            "the client an uploader",
            model_id=model_id,
        )
    out = dict(data)
    for key, index, value, spec in todo:
        where = key if index is None else f"{key}[{index}]"
        try:
            sent = await _one(value, spec, uploader)
        except InputValidationError as exc:
            raise InputValidationError(exc.reason, field=where, model_id=model_id) from None
        if index is None:
            out[key] = [sent] if spec.many and spec.kind is not None else sent
        else:
            if out[key] is data[key]:
                out[key] = list(data[key])
            out[key][index] = sent
    return out


def _planned_size(value: Any) -> int:
    """What a value will weigh, known before reading it (0 when unknown)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return len(value)
    if isinstance(value, str):
        if value.startswith("data:"):
            return len(value) * 3 // 4
        path: Path | None = _file_uri_path(value)
    else:
        path = Path(os.fspath(value)) if isinstance(value, os.PathLike) else None
    if path is not None:
        try:
            return path.stat().st_size
        except OSError:
            return 0
    return 0


async def _one(value: Any, spec: MediaField, uploader: Uploader | None) -> str:
    """Check one media value and return what is sent in its place."""
    if isinstance(value, str) and value.startswith("data:"):
        return _check_data_uri(value, spec)
    name, raw = await _read(value)
    mime = _mime_of(raw[:HEAD_BYTES], spec, name)
    kind = MIME_KINDS[mime]
    limit = MAX_FILE_BYTES[kind]
    if len(raw) > limit:
        raise InputValidationError(
            f"{name} is {_size_mb(len(raw))}; {_PLURALS[kind]} may be at most {_size_mb(limit)}"
        )
    check_validations(spec.validations, len(raw), _dims(raw, mime))
    if uploader is not None:
        url = await uploader(bytes(raw), mime)
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise InputValidationError(f"the uploader returned {url!r} for {name}, not a URL")
        return url
    return f"data:{mime};base64,{base64.b64encode(raw).decode('ascii')}"


def _dims(raw: bytes, mime: str) -> tuple[int, int] | None:
    return image_size(raw[: 256 * 1024], mime) if mime.startswith("image/") else None


def _mime_of(head: bytes, spec: MediaField, name: str) -> str:
    mime = sniff_mime(head)
    if mime is None:
        raise InputValidationError(f"{name} is not {_NOUNS[spec.kind]} (unrecognised content)")
    if spec.kind is not None and MIME_KINDS[mime] != spec.kind:
        raise InputValidationError(f"{name} is {mime}, but this field takes {_NOUNS[spec.kind]}")
    return mime


async def _read(value: Any) -> tuple[str, bytes]:
    """Read a local media value: ``(a name for messages, its bytes)``."""
    import anyio.to_thread  # here: importing the models (which name media fields) stays light

    if isinstance(value, (bytes, bytearray, memoryview)):
        return "the data given", bytes(value)
    if isinstance(value, str):
        path = _file_uri_path(value)
        if path is None:
            raise InputValidationError(f"{value[:80]!r} is not a file:// URI of a local file")
    elif isinstance(value, os.PathLike):
        path = Path(os.fspath(value))
    else:
        name = str(getattr(value, "name", "the file object"))
        if isinstance(value, io.TextIOBase):
            raise InputValidationError(f"{name} is open in text mode; open it with 'rb'")
        data = await anyio.to_thread.run_sync(value.read)
        if not isinstance(data, (bytes, bytearray)):
            raise InputValidationError(f"{name} gave {type(data).__name__}, not bytes; use 'rb'")
        return name, bytes(data)
    try:
        return str(path), await anyio.to_thread.run_sync(path.read_bytes)
    except FileNotFoundError:
        raise InputValidationError(f"no such file {path}") from None
    except OSError as exc:
        raise InputValidationError(f"cannot read {path}: {exc.strerror or exc}") from None


def _file_uri_path(value: str) -> Path | None:
    parts = urlsplit(value)
    if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
        return None
    return Path(url2pathname(unquote(parts.path)))


def _check_data_uri(value: str, spec: MediaField) -> str:
    """Check a ``data:`` URI: base64, a known type of the field's kind, size and validations."""
    head = _DATA_URI.match(value)
    if head is None or ";base64" not in head.group(2):
        raise InputValidationError(
            "a data: URI must look like data:<type>;base64,<data>; got "
            f"{value[:40]!r}{'...' if len(value) > 40 else ''}"
        )
    declared = head.group(1).lower()
    payload = value[head.end() :].encode("ascii", "replace")
    if len(payload) % 4 or not _BASE64.fullmatch(payload):
        raise InputValidationError(f"the {declared} data: URI holds malformed base64")
    try:
        start = base64.b64decode(payload[: 4 * 65536], validate=True)
    except binascii.Error:
        raise InputValidationError(f"the {declared} data: URI holds malformed base64") from None
    name = f"the {declared} data: URI"
    mime = _mime_of(start[:HEAD_BYTES], spec, name)
    if declared not in MIME_KINDS or MIME_KINDS[declared] != MIME_KINDS[mime]:
        raise InputValidationError(f"{name} holds {mime}")
    size = len(payload) * 3 // 4 - payload[-2:].count(b"=")
    limit = MAX_FILE_BYTES[MIME_KINDS[mime]]
    if size > limit:
        raise InputValidationError(f"{name} is {_size_mb(size)}; at most {_size_mb(limit)}")
    check_validations(spec.validations, size, _dims(start, mime))
    return value


def resolve_media(value: Any, base_dir: Path | None = None) -> Any:
    """Resolve a media value read from a file or a flag: a local path becomes a ``file://`` URI.

    ``http(s)://`` and ``data:`` values, and anything that is not a string, are returned as
    they are. Any other string is a path, relative to ``base_dir`` (the input file's folder)
    or to the current directory; a ``file:`` URI written in an input file is not followed
    (it names no file), so an input file can only reach files by path.

    Args:
        value: the value as written.
        base_dir: the folder relative paths are taken from; ``None`` for the current one.

    Returns:
        The value to submit: the client reads a ``file://`` URI's file when it submits.

    Raises:
        InputValidationError: the path names no file (``no such file cat.png``).
    """
    if not isinstance(value, str) or value.startswith(("https://", "http://", "data:")):
        return value
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = (base_dir or Path.cwd()) / path
    if not path.is_file():
        raise InputValidationError(f"no such file {value}")
    return path.resolve().as_uri()


def resolve_media_fields(
    inputs: Mapping[str, Any], fields: Mapping[str, MediaField], base_dir: Path | None = None
) -> Mapping[str, Any]:
    """Apply :func:`resolve_media` to every media field of ``inputs`` (each item of a list).

    Returns:
        ``inputs`` itself when nothing changed, else a new dict.

    Raises:
        InputValidationError: a path names no file; ``field`` is e.g. ``image_urls[0]``.
    """
    out: dict[str, Any] | None = None
    for key in fields:
        value = inputs.get(key)
        if value is None:
            continue
        items = value if isinstance(value, list) else [value]
        resolved = []
        for i, item in enumerate(items):
            try:
                resolved.append(resolve_media(item, base_dir))
            except InputValidationError as exc:
                where = f"{key}[{i}]" if isinstance(value, list) else key
                raise InputValidationError(exc.reason, field=where) from None
        if resolved != items:
            out = dict(inputs) if out is None else out
            out[key] = resolved if isinstance(value, list) else resolved[0]
    return inputs if out is None else out


def paths_as_uris(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """``inputs`` with every path (top-level or in a list) as its absolute ``file://`` URI.

    The batch journals and hashes its inputs as JSON: a path becomes the URI the client reads
    at submit, so a resumed batch finds the same file (and the same identity) again.
    """

    def one(value: Any) -> Any:
        if isinstance(value, os.PathLike):
            return Path(os.fspath(value)).expanduser().resolve().as_uri()
        if isinstance(value, list):
            return [one(v) for v in value]
        return value

    return {k: one(v) for k, v in inputs.items()}
