"""What a media file is, from its first bytes: the MIME type, and an image's width and height.

Nothing here decodes an image: the type comes from magic bytes and the size from the header
(PNG ``IHDR``, GIF's screen descriptor, WebP's ``VP8``/``VP8L``/``VP8X`` chunk, JPEG's first
``SOF`` marker), so checking a 40 MB photo costs microseconds.
"""

from __future__ import annotations

from typing import Literal

__all__ = ["MIME_KINDS", "MediaKind", "image_size", "sniff_mime"]

MediaKind = Literal["image", "video", "audio"]
"""The three kinds of media a model input can take."""

MIME_KINDS: dict[str, MediaKind] = {
    "image/png": "image",
    "image/jpeg": "image",
    "image/webp": "image",
    "image/gif": "image",
    "video/mp4": "video",
    "video/webm": "video",
    "video/quicktime": "video",
    "audio/mpeg": "audio",
    "audio/wav": "audio",
    "audio/ogg": "audio",
}
"""Every MIME type sent inline, with its kind; anything else is refused."""

HEAD_BYTES = 64
"""Bytes :func:`sniff_mime` needs from the start of a file."""

# QuickTime files may open with any of these atoms instead of ``ftyp``.
_MOV_ATOMS = (b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot")


def sniff_mime(head: bytes) -> str | None:
    r"""The MIME type of a file from its first :data:`HEAD_BYTES` bytes, or ``None``.

    Recognised: PNG, JPEG, WebP, GIF; MP4, WebM, QuickTime; MP3, WAV, Ogg.

    Example:
        >>> sniff_mime(b"\x89PNG\r\n\x1a\n" + bytes(8))
        'image/png'
    """
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if head.startswith(b"RIFF") and len(head) >= 12:
        return {b"WEBP": "image/webp", b"WAVE": "audio/wav"}.get(head[8:12])
    if head[4:8] == b"ftyp":
        return "video/quicktime" if head[8:12] == b"qt  " else "video/mp4"
    if head[4:8] in _MOV_ATOMS:
        return "video/quicktime"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "video/webm" if b"webm" in head else None
    if head.startswith(b"OggS"):
        return "audio/ogg"
    if head.startswith(b"ID3") or (len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "audio/mpeg"
    return None


def image_size(data: bytes, mime: str) -> tuple[int, int] | None:
    """An image's ``(width, height)`` read from its header, or ``None`` if the header is odd.

    Args:
        data: the file's bytes (the header is enough: for JPEG, up to its first frame marker).
        mime: the type :func:`sniff_mime` found.
    """
    try:
        if mime == "image/png" and data[12:16] == b"IHDR":
            return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        if mime == "image/gif":
            return int.from_bytes(data[6:8], "little"), int.from_bytes(data[8:10], "little")
        if mime == "image/webp":
            return _webp_size(data)
        if mime == "image/jpeg":
            return _jpeg_size(data)
    except IndexError:
        return None
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8X":
        return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
    if chunk == b"VP8L" and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
        return (
            int.from_bytes(data[26:28], "little") & 0x3FFF,
            int.from_bytes(data[28:30], "little") & 0x3FFF,
        )
    return None


# Start-of-frame markers carry the size; C4 (DHT), C8 (JPG) and CC (DAC) share the range.
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    pos = 2
    end = len(data)
    while pos + 9 < end:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length
            pos += 2
            continue
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker in _SOF:
            height = int.from_bytes(data[pos + 5 : pos + 7], "big")
            width = int.from_bytes(data[pos + 7 : pos + 9], "big")
            return width, height
        pos += 2 + length
    return None
