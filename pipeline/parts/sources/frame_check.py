"""Checks an encoded image before it is decoded and judged: complete, and not too large.

Owns reading the two facts a JPEG or PNG states about itself without decoding it: its
pixel size (the JPEG SOFn segment, the PNG IHDR chunk) and whether it ends where the
format says it ends (JPEG end-of-image marker FF D9, PNG IEND chunk). A file cut short
(a copy interrupted, a network stream dropped) still decodes with a grey or garbled
lower part and could PASS; an image declaring 20000x20000 pixels takes seconds and
gigabytes to decode. Both are refused here, from the bytes, before any decoder runs.
What crosses the boundary: encoded bytes in; `None` (fine) or a problem string out.
Other formats (BMP, TIFF) pass unchecked: their decoders do not guess missing data.
"""

from __future__ import annotations

import struct

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"
# Start-of-frame markers that carry the size (C0-CF without DHT C4, JPG C8, DAC CC).
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def image_format(data: bytes) -> str | None:
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if data[:8] == _PNG_SIGNATURE:
        return "PNG"
    return None


def declared_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) the header declares, or None if unknown."""
    kind = image_format(data)
    if kind == "PNG" and len(data) >= 24 and data[12:16] == b"IHDR":
        return struct.unpack(">II", data[16:24])
    if kind == "JPEG":
        return _jpeg_size(data)
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    i = 2
    while i + 9 <= len(data):
        if data[i] != 0xFF:
            return None  # not at a marker: a corrupt header
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        length = struct.unpack(">H", data[i + 2:i + 4])[0]
        if marker in _SOF:
            height, width = struct.unpack(">HH", data[i + 5:i + 9])
            return width, height
        i += 2 + length
    return None


def frame_problem(data: bytes, max_size: tuple[int, int] | None = None) -> str | None:
    """Why these bytes must not be decoded and judged, or None."""
    kind = image_format(data)
    if kind is None:
        return None
    size = declared_size(data)
    if size is None:
        return f"corrupt {kind}: no readable size in the header"
    if max_size is not None and (size[0] > max_size[0] or size[1] > max_size[1]):
        return (f"{kind} of {size[0]}x{size[1]} is larger than the camera's configured "
                f"{max_size[0]}x{max_size[1]}; not decoded")
    if kind == "JPEG" and not data.rstrip(b"\x00").endswith(b"\xff\xd9"):
        return "truncated JPEG: no end-of-image marker"
    if kind == "PNG" and not data.endswith(_PNG_IEND):
        return "truncated PNG: no IEND chunk"
    return None
