"""Records spooled to an anonymous scratch file and read back in input order.

The gallery takes its records in any order (``write_gallery`` accepts any stream) and writes
its cards in the order of the input file, without holding the records in memory: each is
written once to a scratch file, and only where it lies (offset and length, a few bytes a
record) is kept until the cards are copied out in order.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable
from typing import IO

__all__ = ["NO_INDEX", "Spool", "index_order"]

NO_INDEX = -(2**63)
"""The index of a record that has none (it is placed after the indexed ones)."""


class Spool:
    """An anonymous scratch file holding byte records, addressed by offset."""

    def __init__(self, file: IO[bytes]) -> None:
        self._file = file
        self._end = 0

    def put(self, data: bytes) -> tuple[int, int]:
        """Append ``data``; return its offset and length in bytes."""
        start = self._end
        self._file.write(data)
        self._end += len(data)
        return start, len(data)

    def copy(self, spans: Iterable[tuple[int, int]], out: IO[bytes]) -> None:
        """Copy each ``(offset, length)`` span to ``out``, in the given order."""
        self._file.flush()
        for start, length in spans:
            if length:
                self._file.seek(start)
                out.write(self._file.read(length))


def index_order(index: array[int]) -> array[int]:
    """The rows of ``index`` in index order, the last row of a repeated index winning.

    Rows whose index is :data:`NO_INDEX` follow, in their own order.

    Example:
        >>> list(index_order(array("q", [2, 0, NO_INDEX, 0])))
        [3, 0, 2]
    """
    order = array("q")
    count, low, high = 0, 0, -1
    for value in index:
        if value != NO_INDEX:
            low, high = (value, value) if not count else (min(low, value), max(high, value))
            count += 1
    if count and low >= 0 and high < 4 * count + 1024:
        # Dense indexes (the usual 0..n-1): a position map sorts and de-duplicates in O(n).
        where = array("q", [-1]) * (high + 1)
        for row, value in enumerate(index):
            if value != NO_INDEX:
                where[value] = row
        order.extend(row for row in where if row >= 0)
    elif count:
        rows = sorted((r for r, v in enumerate(index) if v != NO_INDEX), key=index.__getitem__)
        for row in rows:
            if order and index[order[-1]] == index[row]:
                order[-1] = row  # a stable sort keeps repeats in arrival order: last wins
            else:
                order.append(row)
    order.extend(row for row, value in enumerate(index) if value == NO_INDEX)
    return order
