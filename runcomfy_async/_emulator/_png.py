"""Small real PNG images for the emulator's output listener.

Each output gets a vertical gradient between two colours taken from a hash of its request id
and index, so a gallery of emulated results looks varied while every image stays a few hundred
bytes and costs tens of microseconds to build.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from functools import lru_cache

__all__ = ["PNG_SIGNATURE", "gradient_png", "output_png"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
"""The eight bytes every PNG file starts with."""

_SIZE = 64


def _chunk(kind: bytes, data: bytes) -> bytes:
    """Frame one PNG chunk: length, type, data, CRC of type and data."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def gradient_png(
    top: tuple[int, int, int],
    bottom: tuple[int, int, int],
    *,
    width: int = _SIZE,
    height: int = _SIZE,
) -> bytes:
    """Encode an RGB image that fades from ``top`` to ``bottom``, row by row.

    Args:
        top: the colour of the first row, as ``(r, g, b)`` bytes.
        bottom: the colour of the last row.
        width: image width in pixels.
        height: image height in pixels.

    Returns:
        The complete PNG file.
    """
    rows = bytearray()
    span = max(height - 1, 1)
    for y in range(height):
        pixel = bytes(t + (b - t) * y // span for t, b in zip(top, bottom, strict=True))
        rows += b"\x00" + pixel * width  # filter type 0 (None) on every row
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit truecolour
    return b"".join(
        (
            PNG_SIGNATURE,
            _chunk(b"IHDR", header),
            _chunk(b"IDAT", zlib.compress(bytes(rows), 6)),
            _chunk(b"IEND", b""),
        )
    )


@lru_cache(maxsize=2048)
def output_png(request_id: str, index: int) -> bytes:
    """Return the 64x64 PNG served for output ``index`` of job ``request_id``.

    The colours derive from a hash of both values, so the same output always has the same bytes.

    Args:
        request_id: the job's request id.
        index: the 0-based output index.

    Returns:
        The complete PNG file.
    """
    digest = hashlib.blake2b(f"{request_id}/{index}".encode(), digest_size=6).digest()
    return gradient_png((digest[0], digest[1], digest[2]), (digest[3], digest[4], digest[5]))
