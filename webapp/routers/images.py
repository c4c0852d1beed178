"""Images of the samples, read only from the scanned dataset's root folder.

A sample whose file is not an image (a scan from embeddings may list any file: text,
audio, ...) is shown as a text card instead: an SVG picture of its file name and, for a
text file, its first lines (:func:`text_card`), so every page works unchanged.
"""

from __future__ import annotations

import io
import os
from xml.sax.saxutils import escape
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import FileResponse, Response
from PIL import Image

from labelaudit.data.loading import has_image_suffix
from labelaudit.errors import UnsafePath
from labelaudit.fsutil import resolve_inside

from .. import queries
from ..deps import Db, SettingsDep

__all__ = ["router", "ImageCache", "thumbnail_image", "text_card", "is_image_file", "THUMB_SIZE", "MIN_THUMB_SIDE",
           "MAX_THUMB_ASPECT"]

router = APIRouter(prefix="/api/samples", tags=["samples"])

#: Formats every browser shows; anything else (TIFF, PPM, ...) is converted to PNG.
BROWSER_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
                 ".webp": "image/webp", ".bmp": "image/bmp", ".avif": "image/avif"}
THUMB_SIZE = 256
#: A thumbnail's long side is at most this many times its short side (longer images are
#: centre-cropped), and its short side at least MIN_THUMB_SIDE px (tiny ones are enlarged).
MAX_THUMB_ASPECT = 4
MIN_THUMB_SIDE = 32
CACHE_HEADERS = {"Cache-Control": "private, max-age=86400"}  # URLs carry a version of the path


class ImageCache:
    """Converted images and thumbnails, least recently used dropped first (one per app).

    Parameters
    ----------
    max_bytes : int
        Total size of the cached encodings.
    """

    def __init__(self, max_bytes: int = 64 << 20) -> None:
        self._data: OrderedDict[tuple, tuple[bytes, str]] = OrderedDict()
        self._bytes = 0
        self._max = max_bytes
        self._lock = threading.Lock()

    def get(self, key: tuple) -> tuple[bytes, str] | None:
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key: tuple, value: tuple[bytes, str]) -> None:
        with self._lock:
            if key in self._data:
                return
            self._data[key] = value
            self._bytes += len(value[0])
            while self._bytes > self._max and self._data:
                _, (old, _) = self._data.popitem(last=False)
                self._bytes -= len(old)


def get_image_cache(request: Request) -> ImageCache:
    return request.app.state.images


Images = Annotated[ImageCache, Depends(get_image_cache)]


def _image_file(db, settings, sample_id: int) -> Path:
    item = queries.get_sample(db, sample_id)
    try:
        return resolve_inside(settings.dataset_root, item["path"])
    except UnsafePath:
        raise HTTPException(403, "image path outside the dataset root") from None
    except FileNotFoundError:
        raise HTTPException(404, "image file missing") from None


def _thumb_ok(size: tuple[int, int]) -> bool:
    """A size a thumbnail may keep as it is: small enough and not too long or thin."""
    return max(size) <= THUMB_SIZE and max(size) <= MAX_THUMB_ASPECT * min(size)


def thumbnail_image(im: Image.Image, max_side: int = THUMB_SIZE) -> Image.Image:
    """``im`` as a thumbnail of at most ``max_side`` px.

    Images longer than :data:`MAX_THUMB_ASPECT` : 1 are centre-cropped to that aspect, then
    scaled down to ``max_side``; a short side still under :data:`MIN_THUMB_SIDE` px is
    enlarged by a whole factor (crisp pixels) as far as ``max_side`` allows.
    """
    w, h = im.size
    if max(w, h) > MAX_THUMB_ASPECT * min(w, h):
        cw, ch = min(w, MAX_THUMB_ASPECT * h), min(h, MAX_THUMB_ASPECT * w)
        left, top = (w - cw) // 2, (h - ch) // 2
        im = im.crop((left, top, left + cw, top + ch))
    if max(im.size) > max_side:
        im = im.copy()
        im.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    factor = min(-(-MIN_THUMB_SIDE // min(im.size)), max_side // max(im.size))
    if factor > 1:
        im = im.resize((im.width * factor, im.height * factor), Image.Resampling.NEAREST)
    return im


def _encode(cache: ImageCache, path: Path, max_side: int | None) -> tuple[bytes, str]:
    st = path.stat()
    key = (str(path), st.st_mtime_ns, st.st_size, max_side)
    cached = cache.get(key)
    if cached is not None:
        return cached
    try:
        with Image.open(path) as im:
            im.load()
            if max_side is not None:
                im = thumbnail_image(im, max_side)
            value = _to_bytes(im, lossless=max_side is None)
    except (OSError, ValueError, Image.DecompressionBombError):
        raise HTTPException(415, "cannot decode image") from None
    cache.put(key, value)
    return value


def _to_bytes(im: Image.Image, *, lossless: bool) -> tuple[bytes, str]:
    has_alpha = im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info)
    buf = io.BytesIO()
    if has_alpha or lossless:
        im.convert("RGBA" if has_alpha else "RGB").save(buf, "PNG")
        return buf.getvalue(), "image/png"
    im.convert("RGB").save(buf, "JPEG", quality=88)
    return buf.getvalue(), "image/jpeg"


def is_image_file(path: Path) -> bool:
    """Whether ``path``'s suffix is one Pillow opens as an image (else the app shows a text card)."""
    return has_image_suffix(path)


#: Text lines and characters per line a text card shows.
CARD_LINES, CARD_CHARS = 8, 34


def text_card(path: Path) -> bytes:
    """An SVG picture (256 x 256) of a file that is not an image: its name, its size and, when it
    reads as UTF-8 text, its first :data:`CARD_LINES` lines. Every text is XML-escaped."""
    with open(path, "rb") as fh:
        head = fh.read(4096)
    lines = [path.name, f"{os.path.getsize(path):,} bytes"]
    if b"\x00" not in head:
        text = head.decode("utf-8", errors="replace")
        lines += [""] + [line[:CARD_CHARS] for line in text.splitlines()[:CARD_LINES]]
    rows = "".join(f'<text x="12" y="{28 + 22 * i}" font-family="monospace" font-size="14" '
                   f'fill="{"#111" if i else "#035"}">{escape(line)}</text>' for i, line in enumerate(lines))
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{THUMB_SIZE}" height="{THUMB_SIZE}" '
            f'viewBox="0 0 {THUMB_SIZE} {THUMB_SIZE}"><rect width="100%" height="100%" fill="#f4f4f0" '
            f'stroke="#bbb"/>{rows}</svg>').encode("utf-8")


def _card_response(path: Path) -> Response:
    return Response(text_card(path), media_type="image/svg+xml", headers=CACHE_HEADERS)


@router.get("/{sample_id}/image", summary="The sample's image file", response_class=Response,
            responses={200: {"content": {"image/*": {}}}})
def image(sample_id: int, db: Db, settings: SettingsDep, cache: Images):
    """The original file (converted to PNG when browsers cannot show its format; a text card
    when it is not an image)."""
    path = _image_file(db, settings, sample_id)
    if not is_image_file(path):
        return _card_response(path)
    media = BROWSER_TYPES.get(path.suffix.lower())
    if media is None:
        data, media = _encode(cache, path, None)
        return Response(data, media_type=media, headers=CACHE_HEADERS)
    return FileResponse(path, media_type=media, headers=CACHE_HEADERS, content_disposition_type="inline")


@router.get("/{sample_id}/thumbnail", summary="The sample's image, at most 256 px", response_class=Response,
            responses={200: {"content": {"image/*": {}}}})
def thumbnail(sample_id: int, db: Db, settings: SettingsDep, cache: Images):
    """Small images of a usual shape are served as they are; others are scaled (long side at
    most 256 px, short side at least 32 px; longer than 4:1 centre-cropped), cached in memory.
    A file that is not an image gets a text card."""
    path = _image_file(db, settings, sample_id)
    if not is_image_file(path):
        return _card_response(path)
    media = BROWSER_TYPES.get(path.suffix.lower())
    if media is not None and os.path.getsize(path) < 64 << 10:
        try:
            with Image.open(path) as im:
                small = _thumb_ok(im.size)
        except (OSError, ValueError):
            raise HTTPException(415, "cannot decode image") from None
        if small:
            return FileResponse(path, media_type=media, headers=CACHE_HEADERS, content_disposition_type="inline")
    data, media = _encode(cache, path, THUMB_SIZE)
    return Response(data, media_type=media, headers=CACHE_HEADERS)
