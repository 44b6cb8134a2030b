"""The CSV batch input reader: a header row of field names, then one item a row.

Cells are typed by the model's schema like ``--set`` values; a header without commas but with
tabs or semicolons selects that delimiter. Unreadable lines and malformed records become items
with an error, never exceptions.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

from .._exceptions import _one_line
from ..models import describe, get_model
from ._args import UsageError, _coerce, _guess
from ._inputs_common import _KEY, _check, _decode, _Lines, _too_long

_Item = TypeVar("_Item")
_Make = Callable[[int, int, str | None, dict[str, Any], str | None, str], _Item]
"""The item type's constructor: ``(index, line, key, inputs, error, source)``."""


class _Feeder:
    """Decoded lines for ``csv.reader``, noting per record which lines could not be read.

    A line that is not valid UTF-8 is passed on decoded with replacement characters (so the
    record's structure survives) and a line over the size limit as an empty line; either way
    the problem is noted, and the record that contains it is reported as an error.
    """

    def __init__(self, lines: _Lines, max_bytes: int):
        self._lines = lines
        self._max_bytes = max_bytes
        self._pending: str | None = None
        self.number = 0  # the physical line number of the last line handed out or peeked
        self.problems: list[tuple[int, str]] = []

    def __iter__(self) -> _Feeder:
        return self

    def __next__(self) -> str:
        if self._pending is not None:
            text, self._pending = self._pending, None
            return text
        return self._next_line()

    def _next_line(self) -> str:
        raw = next(self._lines)
        self.number += 1
        if raw is None:
            self.problems.append((self.number, _too_long(self._max_bytes)))
            return "\n"
        text, error = _decode(raw)
        if text is None:
            self.problems.append((self.number, error or "invalid UTF-8"))
            text = raw.decode("utf-8", errors="replace")
        return text + "\n"

    @property
    def next_number(self) -> int:
        """The physical line number the next record starts on."""
        return self.number if self._pending is not None else self.number + 1

    def peek_first(self) -> str:
        """Skip blank lines and return the first other line, which is handed out again next."""
        while True:
            try:
                text = self._next_line()
            except StopIteration:
                return ""
            if text.strip() or self.problems:
                self._pending = text
                return text

    def take_problems(self, start: int) -> str | None:
        """The problems noted since the last call, as one reason for the record at ``start``."""
        if not self.problems:
            return None
        reasons = [r if n == start else f"line {n}: {r}" for n, r in self.problems]
        self.problems = []
        return "; ".join(reasons)


def _delimiter(first: str) -> str:
    """Comma, unless the header line has none but has tabs or semicolons."""
    if "," not in first:
        for candidate in ("\t", ";"):
            if candidate in first:
                return candidate
    return ","


def _read_csv(
    lines: _Lines,
    source: str,
    model_id: str,
    shared: dict[str, Any],
    max_bytes: int,
    make: _Make[_Item],
) -> Iterator[_Item]:
    """A header row of field names, then one item a row; blank rows take no index.

    Items are built with ``make`` (the reader's :class:`~runcomfy_async._inputs.InputLine`),
    which keeps this module free of an import back into the reader.
    """
    feeder = _Feeder(lines, max_bytes)
    # strict: a stray quote is an error for its row rather than a silently odd value
    reader = csv.reader(feeder, delimiter=_delimiter(feeder.peek_first()), strict=True)
    cls = get_model(model_id)
    kinds = {f.name: f.type for f in describe(cls)} if cls is not None else {}
    header: list[str] | None = None
    header_error: str | None = None
    index = 0
    while True:
        start = feeder.next_number
        error: str | None = None
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            row, error = [], _csv_problem(str(exc), start, feeder.number)
        problem = feeder.take_problems(start)
        error = problem or error
        if header is None:
            if error is None and not any(cell.strip() for cell in row):
                continue  # blank lines before the header
            header = [cell.strip() for cell in row]
            header_error = error or _header_problem(header)
            continue
        if error is None and not any(cell.strip() for cell in row):
            continue
        key: str | None = None
        inputs = dict(shared)
        if error is None and header_error is not None:
            error = f"the header row is unusable: {header_error}"
        if error is None:
            key, fields, error = _row_fields(header, row, kinds)
            inputs.update(fields)
        if error is None:
            error = _check(model_id, inputs, fields, source)
        yield make(index, start, key, inputs, error, f"{source}:{start}")
        index += 1


def _csv_problem(message: str, start: int, end: int) -> str:
    """Phrase the csv module's error for a user, with the lines the record spanned."""
    if message.startswith("new-line character seen in unquoted field"):
        message = "a carriage return inside an unquoted cell (quote the cell)"
    elif message.startswith("field larger than field limit"):
        message = f"a cell longer than {csv.field_size_limit():,} characters"
    if end > start:
        message += f" (in a record from line {start} to line {end}: is a quote left open?)"
    return _one_line(f"not valid CSV: {message}")


def _header_problem(header: list[str]) -> str | None:
    """Why a header row cannot name fields (duplicate names), or ``None``."""
    seen: set[str] = set()
    for name in header:
        if name and name in seen:
            return f"column {name!r} appears more than once"
        seen.add(name)
    return None


def _row_fields(
    header: list[str], row: list[str], kinds: Mapping[str, str]
) -> tuple[str | None, dict[str, Any], str | None]:
    """Turn one CSV row into ``(key, fields, error)``, typing cells by the model's schema."""
    if len(row) > len(header) and any(cell.strip() for cell in row[len(header) :]):
        return None, {}, f"the row has {len(row)} cells but the header names {len(header)}"
    key: str | None = None
    fields: dict[str, Any] = {}
    for column, (name, cell) in enumerate(zip(header, row, strict=False), 1):
        if not cell.strip():
            continue
        if not name:
            return None, fields, f"column {column} has a value but no name in the header"
        if name == _KEY:
            key = cell
            continue
        fields[name] = _typed(kinds.get(name), cell, name)
    return key, fields, None


def _typed(kind: str | None, cell: str, name: str) -> Any:
    """Type one CSV cell as ``--set`` does: by the field's schema type, else by its look."""
    if kind == "string":
        return cell
    try:
        return _guess(cell) if kind is None else _coerce(kind, cell.strip(), name)
    except (UsageError, RecursionError):
        # Keep the text: the schema check then says what the field accepts.
        return cell
