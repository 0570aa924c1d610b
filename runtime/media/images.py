"""Still images from files and uploads, with their size checked from the header before anything is decoded.

A PNG of 875 KB can declare 30000 x 30000 pixels, 2.7 GB once decoded: the limit has to be applied before
OpenCV allocates the pixels, not after. `image_size` reads width and height from the header of the formats
the runtime takes (PNG, JPEG, BMP, GIF, WebP, TIFF, PNM); `decode_image` refuses an image whose header it
cannot read or whose size is over `MAX_PIXELS`, and only then decodes it. The CLI's
image sources and the HTTP API both read images through here.
"""
from __future__ import annotations

import os
import struct
from pathlib import Path

import cv2
import numpy as np

from fer_edge.runtime.core.errors import FerEdgeError

MAX_PIXELS = 40_000_000  # e.g. 8000 x 5000: 120 MB as BGR, already a lot for a 1 GB board
MIN_SIDE = 8  # an image with a shorter side holds no face: it is not given to a detector (see Pipeline.process)
FORMATS = "PNG, JPEG, BMP, GIF, WebP, TIFF or PNM"


class ImageError(FerEdgeError):
    """An image that is not one, cannot be decoded, or is too large or too small to process."""


def _png(b: bytes):
    if b[:8] == b"\x89PNG\r\n\x1a\n" and b[12:16] == b"IHDR" and len(b) >= 24:
        return struct.unpack(">II", b[16:24])
    return None


def _gif(b: bytes):
    if b[:6] in (b"GIF87a", b"GIF89a") and len(b) >= 10:
        return struct.unpack("<HH", b[6:10])
    return None


def _bmp(b: bytes):
    if b[:2] == b"BM" and len(b) >= 26:
        w, h = struct.unpack("<ii", b[18:26])
        return abs(w), abs(h)  # a negative height is a top-down bitmap
    return None


def _jpeg(b: bytes):
    if b[:2] != b"\xff\xd8":
        return None
    pos = 2
    while pos + 4 <= len(b):
        if b[pos] != 0xFF:
            return None
        marker = b[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            pos += 2
            continue
        length = struct.unpack(">H", b[pos + 2:pos + 4])[0]
        # SOF0..SOF15 carry the frame size; C4 (DHT), C8 (JPG) and CC (DAC) share the range but do not
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC) and pos + 9 <= len(b):
            h, w = struct.unpack(">HH", b[pos + 5:pos + 9])
            return w, h
        pos += 2 + length
    return None


def _webp(b: bytes):
    if b[:4] != b"RIFF" or b[8:12] != b"WEBP" or len(b) < 30:
        return None
    chunk = b[12:16]
    if chunk == b"VP8 ":
        w, h = struct.unpack("<HH", b[26:30])
        return w & 0x3FFF, h & 0x3FFF
    if chunk == b"VP8L":
        bits = struct.unpack("<I", b[21:25])[0]
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    if chunk == b"VP8X":
        return 1 + int.from_bytes(b[24:27], "little"), 1 + int.from_bytes(b[27:30], "little")
    return None


def _tiff(b: bytes):
    order = {b"II*\x00": "<", b"MM\x00*": ">"}.get(b[:4])
    if order is None or len(b) < 8:
        return None
    ifd = struct.unpack(order + "I", b[4:8])[0]
    if ifd + 2 > len(b):
        return None
    size = {}
    for i in range(struct.unpack(order + "H", b[ifd:ifd + 2])[0]):
        entry = b[ifd + 2 + 12 * i:ifd + 14 + 12 * i]
        if len(entry) < 12:
            break
        tag, kind = struct.unpack(order + "HH", entry[:4])
        if tag in (256, 257):  # ImageWidth, ImageLength: SHORT or LONG
            size[tag] = struct.unpack(order + ("H" if kind == 3 else "I"), entry[8:10] if kind == 3 else entry[8:12])[0]
    return (size[256], size[257]) if len(size) == 2 else None


def _pnm(b: bytes):
    if len(b) < 2 or b[0:1] != b"P" or b[1:2] not in b"123456":
        return None
    tokens, text = [], b[2:256].split(b"\n")
    for line in text:
        tokens += line.split(b"#", 1)[0].split()
        if len(tokens) >= 2:
            return (int(tokens[0]), int(tokens[1])) if tokens[0].isdigit() and tokens[1].isdigit() else None
    return None


READERS = (_png, _jpeg, _bmp, _gif, _webp, _tiff, _pnm)


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the header of a PNG, JPEG, BMP, GIF, WebP, TIFF or PNM file; None otherwise."""
    for reader in READERS:
        try:
            size = reader(data)
        except (struct.error, ValueError):
            size = None
        if size is not None:
            return int(size[0]), int(size[1])
    return None


def check_size(data: bytes, name: str, max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """The header's (width, height), or ImageError when it cannot be read or is out of bounds."""
    if not data:
        raise ImageError(f"{name} is empty: expected an image file")
    size = image_size(data)
    if size is None:
        raise ImageError(f"{name} is not a decodable image ({len(data)} bytes): no {FORMATS} header")
    w, h = size
    if w * h > max_pixels:
        raise ImageError(f"{name} is {w}x{h} pixels, over the limit of {max_pixels}: refused before decoding")
    if min(w, h) < 1:
        raise ImageError(f"{name} declares {w}x{h} pixels: an image has at least one pixel")
    return w, h


def decode_image(data: bytes, name: str = "the upload", flags: int = cv2.IMREAD_COLOR,
                 max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Image bytes -> uint8 array, after the header passed `check_size`; ImageError otherwise."""
    check_size(data, name, max_pixels)
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    except cv2.error:
        image = None
    if image is None or image.size == 0:
        raise ImageError(f"{name} is not a decodable image ({len(data)} bytes): a damaged {FORMATS} file")
    return image


def read_image(path: str | os.PathLike, flags: int = cv2.IMREAD_UNCHANGED, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """An image file -> uint8 array (grey, BGR or BGRA as stored with the default flags), checked like an upload."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageError(f"{path}: cannot read it ({exc.strerror})") from None
    return decode_image(data, str(path), flags, max_pixels)
