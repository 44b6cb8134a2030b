"""Streaming readers of batch input files: ``.txt``, ``.jsonl`` and ``.csv``, one item at a time.

A batch input can hold hundreds of thousands of lines, so it is never read whole. Files are read
in binary mode, line by line with a bounded ``readline``, and every line is decoded on its own:
invalid UTF-8, malformed JSON, a line longer than :data:`MAX_LINE_BYTES` or inputs that break
the model's schema become an :class:`InputLine` with ``error`` set, never an exception. Items
with an error keep their ``index``, so indexes stay stable when the user fixes a line and runs
again.

Formats:

* ``.txt``: each non-blank line is a prompt, stripped of surrounding whitespace.
* ``.jsonl`` (or ``.ndjson``): each non-blank line is a JSON object of inputs; the reserved
  field ``"_key"`` (a string or an integer) names the item.
* ``.csv``: the header row names the fields (``_key`` names the item); empty cells are omitted
  and values are typed by the model's schema like ``--set`` values. A header without commas
  but with tabs or semicolons selects that delimiter instead.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import Any, BinaryIO, Literal

import msgspec

from .._exceptions import _one_line
from ..models._schema import show_value
from ._inputs_common import _KEY, InputError, _check, _decode, _Lines, _too_long
from ._inputs_csv import _read_csv

__all__ = [
    "MAX_LINE_BYTES",
    "InputError",
    "InputFormat",
    "InputLine",
    "ScanReport",
    "detect_format",
    "read_inputs",
    "scan",
]

InputFormat = Literal["txt", "jsonl", "csv"]
"""The input formats :func:`read_inputs` understands."""

MAX_LINE_BYTES = 16 * 1024 * 1024
"""Longest accepted line, in bytes without its line break (16 MiB). Longer lines become errors
and are skipped without ever being held whole in memory. Typed models reject much shorter
prompts (100,000 characters) through their schema."""

_FORMATS: dict[str, InputFormat] = {
    "txt": "txt",
    "jsonl": "jsonl",
    "ndjson": "jsonl",
    "csv": "csv",
}
_CHUNK = 64 * 1024  # readline step: whole ordinary lines in one call, long ones in pieces
_BOM = b"\xef\xbb\xbf"
_MAX_SCAN_ERRORS = 50


class InputLine(msgspec.Struct, frozen=True):
    """One item of a batch input file, valid or not.

    Attributes:
        index: 0-based position among the file's items (blank lines and the CSV header are
            not items); stable across runs, and kept by items with an error.
        line: 1-based physical line number where the item starts, for messages.
        key: the user's name for the item (``"_key"`` in JSONL and CSV), or ``None``.
        inputs: the model inputs: the shared fields overlaid with the line's own (the line
            wins), without ``"_key"``. For an item with an error, whatever could be read.
        error: ``None`` when the item is valid; else a one-line reason, such as
            ``"num_images must be an integer from 1 to 4 (default 1); got the integer 9"``.
        source: where the item is, as ``"path/to/file.jsonl:17"`` or ``"<stdin>:17"``.
    """

    index: int
    line: int
    key: str | None
    inputs: dict[str, Any]
    error: str | None
    source: str

    @property
    def ok(self) -> bool:
        """Whether the item is valid (``error`` is ``None``)."""
        return self.error is None


class ScanReport(msgspec.Struct, frozen=True):
    """What one pass over an input file found: see :func:`scan`.

    Attributes:
        total: the number of items (``0`` for a file without any).
        valid: the items without an error.
        invalid: the items with an error.
        errors: the first errors (at most 50) as ``(source, reason)`` pairs, in file order.
        duplicate_keys: items whose ``_key`` an earlier item already has (counted in
            ``invalid`` too). Keys name an input's outputs and its record in the journal, so
            a batch with duplicates is refused whatever ``--on-invalid`` says.
    """

    total: int
    valid: int
    invalid: int
    errors: list[tuple[str, str]]
    duplicate_keys: int = 0


def detect_format(path: str | os.PathLike[str], explicit: str | None = None) -> InputFormat:
    """Tell the format of an input file from its extension, or from an explicit name.

    Args:
        path: the input file, or ``"-"`` for stdin (read as ``txt`` unless ``explicit``).
        explicit: a format name that overrides the extension: ``"txt"``, ``"jsonl"``,
            ``"ndjson"`` (same as ``jsonl``) or ``"csv"``; ``None`` to go by the extension.

    Returns:
        ``"txt"``, ``"jsonl"`` or ``"csv"``.

    Raises:
        InputError: the explicit name or the extension is not one of the known ones.

    Example:
        >>> detect_format("prompts/cats.JSONL")
        'jsonl'
    """
    if explicit is not None:
        fmt = _FORMATS.get(explicit.strip().lower())
        if fmt is None:
            raise InputError(f"unknown input format {explicit!r}; use txt, jsonl or csv")
        return fmt
    name = os.fspath(path)
    if name == "-":
        return "txt"
    ext = os.path.splitext(name)[1].lower()
    fmt = _FORMATS.get(ext[1:])
    if fmt is None:
        hint = " (write a .json file as one JSON object a line)" if ext == ".json" else ""
        raise InputError(
            f"cannot tell the format of {name!r} from its extension{hint}; "
            "use .txt (one prompt a line), .jsonl or .ndjson (one JSON object a line) "
            "or .csv (a header row of field names), or name the format explicitly"
        )
    return fmt


def read_inputs(
    path: str | os.PathLike[str],
    *,
    model_id: str,
    shared: Mapping[str, Any] | None = None,
    fmt: str | None = None,
    stdin: BinaryIO | None = None,
    max_line_bytes: int = MAX_LINE_BYTES,
    source_name: str | None = None,
) -> Iterator[InputLine]:
    """Read a batch input file item by item, checking each against the model's schema.

    The file is streamed: memory use is bounded by the longest accepted line, whatever the
    file's size. Every problem with an item (invalid UTF-8, bad JSON, a line over
    ``max_line_bytes``, a schema violation) is reported in its :attr:`InputLine.error`;
    nothing about the content raises.

    Args:
        path: the input file, or ``"-"`` for stdin.
        model_id: the model the inputs are for; models with typed inputs have every item
            checked (:func:`~runcomfy_async.models.validate_inputs`), others only parsed.
        shared: fields given to every item (``--set``); an item's own fields win.
        fmt: the format (``"txt"``, ``"jsonl"``, ``"csv"``), or ``None`` to go by the
            extension (see :func:`detect_format`).
        stdin: the binary stream read for ``"-"``; ``None`` means ``sys.stdin.buffer``.
        max_line_bytes: the longest accepted line in bytes (default :data:`MAX_LINE_BYTES`).
        source_name: the name used in :attr:`InputLine.source` instead of the path (e.g.
            ``"<stdin>"`` for stdin spooled to a file); ``None`` for the path itself.

    Returns:
        An iterator of :class:`InputLine`, in file order. The file is opened on the first
        ``next()`` and closed when the iterator is exhausted or closed.

    Raises:
        InputError: an unknown format, a shared ``_key``, or (on the first ``next()``) a file
            that cannot be opened.

    Example:
        >>> for item in read_inputs("prompts.txt", model_id="google/nano-banana-2/text-to-image"):
        ...     print(item.source, item.error or item.inputs)  # doctest: +SKIP
    """
    kind = detect_format(path, fmt)
    base = dict(shared or {})
    if _KEY in base:
        raise InputError(f"{_KEY} names one item; it cannot be set for all of them")
    if max_line_bytes < 1:
        raise InputError(f"max_line_bytes must be at least 1, got {max_line_bytes}")
    return _read(os.fspath(path), kind, model_id, base, stdin, max_line_bytes, source_name)


def scan(
    path: str | os.PathLike[str],
    *,
    model_id: str,
    shared: Mapping[str, Any] | None = None,
    fmt: str | None = None,
    stdin: BinaryIO | None = None,
    max_line_bytes: int = MAX_LINE_BYTES,
    source_name: str | None = None,
) -> ScanReport:
    """Check a whole input file in one streaming pass, before anything is submitted.

    Args:
        path: the input file, or ``"-"`` for stdin (which is consumed).
        model_id: the model the inputs are for.
        shared: fields given to every item (``--set``).
        fmt: the format, or ``None`` to go by the extension.
        stdin: the binary stream read for ``"-"``; ``None`` means ``sys.stdin.buffer``.
        max_line_bytes: the longest accepted line in bytes (default :data:`MAX_LINE_BYTES`).
        source_name: the name used in the error sources instead of the path.

    Returns:
        The counts and the first 50 errors. ``total == 0`` means the file has no items.

    Raises:
        InputError: as :func:`read_inputs`.

    Example:
        >>> report = scan("cats.jsonl", model_id="google/nano-banana-2/edit")  # doctest: +SKIP
        >>> (report.total, report.invalid)  # doctest: +SKIP
        (1200, 0)
    """
    total = invalid = duplicates = 0
    errors: list[tuple[str, str]] = []
    first_line: dict[str, int] = {}
    items = read_inputs(
        path,
        model_id=model_id,
        shared=shared,
        fmt=fmt,
        stdin=stdin,
        max_line_bytes=max_line_bytes,
        source_name=source_name,
    )
    for item in items:
        total += 1
        error = item.error
        if item.key is not None:
            first = first_line.setdefault(item.key, item.line)
            if first != item.line:
                duplicates += 1
                error = f'duplicate key "{item.key}", first at line {first}'
        if error is not None:
            invalid += 1
            if len(errors) < _MAX_SCAN_ERRORS:
                errors.append((item.source, error))
    return ScanReport(
        total=total,
        valid=total - invalid,
        invalid=invalid,
        errors=errors,
        duplicate_keys=duplicates,
    )


# -- reading ----------------------------------------------------------------------------------


def _read(
    path: str,
    kind: InputFormat,
    model_id: str,
    shared: dict[str, Any],
    stdin: BinaryIO | None,
    max_bytes: int,
    name: str | None,
) -> Iterator[InputLine]:
    """Open the input and dispatch to the format's reader (the generator behind read_inputs)."""
    readers: dict[str, _Reader] = {
        "txt": _read_lines(_parse_prompt),
        "jsonl": _read_lines(_parse_object),
        "csv": functools.partial(_read_csv, make=InputLine),
    }
    reader = readers[kind]
    if path == "-":
        stream = stdin if stdin is not None else sys.stdin.buffer
        source = name if name is not None else "<stdin>"
        yield from reader(_lines(stream, max_bytes), source, model_id, shared, max_bytes)
        return
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed by the with below, kept out of try
    except OSError as exc:
        raise InputError(f"cannot read {path!r}: {exc.strerror or exc}") from exc
    with handle:
        source = name if name is not None else path
        yield from reader(_lines(handle, max_bytes), source, model_id, shared, max_bytes)


def _lines(stream: BinaryIO, max_bytes: int) -> Iterator[bytes | bytearray | None]:
    r"""Yield each physical line without its line break, or ``None`` for one over ``max_bytes``.

    Lines are read in bounded pieces; once a line is known to be too long the rest of it is
    read and dropped, so memory never holds more than ``max_bytes`` plus one piece. A UTF-8
    byte order mark at the start of the stream is dropped. A stream whose first piece holds
    ``\r`` but no ``\n`` is read with ``\r`` alone as the line break (old Mac files).
    """
    limit = max_bytes + 2  # room for the "\r\n" that is not part of the line
    step = min(_CHUNK, limit + 1)
    head: bytes | None = stream.readline(step)
    source: BinaryIO | _CarriageReturns = stream
    if head and b"\r" in head and b"\n" not in head:
        source, head = _CarriageReturns(stream, head), None
    first = True
    while True:
        chunk: bytes | bytearray = source.readline(step) if head is None else head
        head = None
        if not chunk:
            return
        if first:
            first = False
            if chunk.startswith(_BOM):
                chunk = chunk[len(_BOM) :]
        if chunk.endswith(b"\n") and len(chunk) <= limit:
            yield _trim(chunk, max_bytes)
            continue
        buf: bytearray | None = bytearray(chunk) if len(chunk) <= limit else None
        piece = chunk
        while not piece.endswith(b"\n"):
            piece = source.readline(step)
            if not piece:
                break
            if buf is not None:
                buf += piece
                if len(buf) > limit:
                    buf = None  # too long: drop what we hold, skip the rest of the line
        yield None if buf is None else _trim(buf, max_bytes)


class _CarriageReturns:
    r"""A stream whose lines end in ``\r`` alone, read as if they ended in ``\n``."""

    def __init__(self, stream: BinaryIO, head: bytes):
        self._stream = stream
        self._buf = bytearray(head)

    def readline(self, limit: int) -> bytes:
        r"""Up to ``limit`` bytes: a whole line with ``\n`` for its ``\r``, or a piece."""
        while True:
            cut = self._buf.find(b"\r", 0, limit)
            if cut >= 0:
                line = bytes(self._buf[:cut]) + b"\n"
                del self._buf[: cut + 1]
                return line
            if len(self._buf) >= limit:
                piece = bytes(self._buf[:limit])
                del self._buf[:limit]
                return piece
            more = self._stream.read(_CHUNK)
            if not more:
                rest = bytes(self._buf)
                self._buf.clear()
                return rest
            self._buf += more


def _trim(raw: bytes | bytearray, max_bytes: int) -> bytes | bytearray | None:
    """Strip the line break from ``raw``; ``None`` if what is left exceeds ``max_bytes``."""
    if raw.endswith(b"\n"):
        cut = 2 if raw.endswith(b"\r\n") else 1
        if isinstance(raw, bytearray):
            del raw[-cut:]  # in place: a long line is not copied
        else:
            raw = raw[:-cut]
    return raw if len(raw) <= max_bytes else None


_Parsed = tuple[str | None, dict[str, Any], str | None]
_Reader = Callable[[_Lines, str, str, dict[str, Any], int], Iterator[InputLine]]


def _read_lines(parse: Callable[[str], _Parsed | None]) -> _Reader:
    """Build a reader of one item a line; ``parse`` returns ``None`` for a blank line."""

    def read(
        lines: _Lines, source: str, model_id: str, shared: dict[str, Any], max_bytes: int
    ) -> Iterator[InputLine]:
        index = 0
        for number, raw in enumerate(lines, 1):
            key: str | None = None
            inputs = dict(shared)
            text, error = (None, _too_long(max_bytes)) if raw is None else _decode(raw)
            if text is not None:
                parsed = parse(text)
                if parsed is None:
                    continue  # blank lines take no index
                key, fields, error = parsed
                inputs.update(fields)
                if error is None:
                    error = _check(model_id, inputs, fields, source)
            yield InputLine(index, number, key, inputs, error, f"{source}:{number}")
            index += 1

    return read


def _parse_prompt(text: str) -> _Parsed | None:
    """A txt line: the prompt, stripped of surrounding whitespace."""
    prompt = text.strip()
    return (None, {"prompt": prompt}, None) if prompt else None


MAX_NESTING = 64
"""Deepest nesting of arrays and objects accepted in one input line."""


def _depth(text: str) -> int:
    """Nesting depth of brackets outside strings (a quick scan, no decoding)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > MAX_NESTING:
                    return deepest
        elif ch in "]}":
            depth -= 1
    return deepest


def _parse_object(text: str) -> _Parsed | None:
    """A jsonl line: ``(key, fields, error)`` from one JSON object."""
    if not text.strip():
        return None
    if text.count("[") + text.count("{") > MAX_NESTING and _depth(text) > MAX_NESTING:
        # A fixed limit, checked before decoding: msgspec's own limit is the interpreter's
        # stack, which depends on the caller and so would not give the same answer twice.
        return None, {}, f"not valid JSON for inputs: nested deeper than {MAX_NESTING} levels"
    try:
        value = msgspec.json.decode(text)
    except msgspec.DecodeError as exc:
        return None, {}, _one_line(f"not valid JSON: {exc}")
    except RecursionError:
        return None, {}, "not valid JSON: nested too deeply"
    if not isinstance(value, dict):
        return None, {}, f"not a JSON object of inputs: got {show_value(value)}"
    raw_key = value.pop(_KEY, None)
    if raw_key is None:
        return None, value, None
    if isinstance(raw_key, str) and raw_key:
        return raw_key, value, None
    if isinstance(raw_key, int) and not isinstance(raw_key, bool):
        return str(raw_key), value, None
    reason = f"{_KEY} must be a non-empty string or an integer; got {show_value(raw_key)}"
    return None, value, reason
