"""Images of the samples, read only from the scanned dataset's root folder."""

from __future__ import annotations

import io
import os
import threading
from collections import OrderedDict
from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, Response
from PIL import Image

from labelaudit.export import UnsafePath, resolve_image

from .. import queries
from ..deps import Db, SettingsDep

router = APIRouter(prefix="/api/samples", tags=["samples"])

#: Formats every browser shows; anything else (TIFF, PPM, ...) is converted to PNG.
BROWSER_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
                 ".webp": "image/webp", ".bmp": "image/bmp", ".avif": "image/avif"}
THUMB_SIZE = 256
CACHE_HEADERS = {"Cache-Control": "private, max-age=86400"}  # URLs carry a version of the path


class _LRU:
    def __init__(self, max_bytes: int = 64 << 20) -> None:
        self._data: OrderedDict[tuple, tuple[bytes, str]] = OrderedDict()
        self._bytes = 0
        self._max = max_bytes
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key, value) -> None:
        with self._lock:
            if key in self._data:
                return
            self._data[key] = value
            self._bytes += len(value[0])
            while self._bytes > self._max and self._data:
                _, (old, _) = self._data.popitem(last=False)
                self._bytes -= len(old)


_converted = _LRU()


def _image_file(db, settings, sample_id: int) -> Path:
    item = queries.get_sample(db, sample_id)
    try:
        return resolve_image(settings.dataset_root, item["path"])
    except UnsafePath:
        raise HTTPException(403, "image path outside the dataset root") from None
    except FileNotFoundError:
        raise HTTPException(404, "image file missing") from None


def _encode(path: Path, max_side: int | None) -> tuple[bytes, str]:
    st = path.stat()
    key = (str(path), st.st_mtime_ns, st.st_size, max_side)
    cached = _converted.get(key)
    if cached is not None:
        return cached
    try:
        with Image.open(path) as im:
            im.load()
            if max_side is not None:
                im.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
            has_alpha = im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info)
            buf = io.BytesIO()
            if has_alpha or max_side is None:
                im = im.convert("RGBA" if has_alpha else "RGB")
                im.save(buf, "PNG")
                value = (buf.getvalue(), "image/png")
            else:
                im.convert("RGB").save(buf, "JPEG", quality=88)
                value = (buf.getvalue(), "image/jpeg")
    except (OSError, ValueError, Image.DecompressionBombError):
        raise HTTPException(415, "cannot decode image") from None
    _converted.put(key, value)
    return value


@router.get("/{sample_id}/image", summary="The sample's image file", response_class=Response,
            responses={200: {"content": {"image/*": {}}}})
def image(sample_id: int, db: Db, settings: SettingsDep):
    """The original file (converted to PNG when browsers cannot show its format)."""
    path = _image_file(db, settings, sample_id)
    media = BROWSER_TYPES.get(path.suffix.lower())
    if media is None:
        data, media = _encode(path, None)
        return Response(data, media_type=media, headers=CACHE_HEADERS)
    return FileResponse(path, media_type=media, headers=CACHE_HEADERS, content_disposition_type="inline")


@router.get("/{sample_id}/thumbnail", summary="The sample's image, at most 256 px", response_class=Response,
            responses={200: {"content": {"image/*": {}}}})
def thumbnail(sample_id: int, db: Db, settings: SettingsDep):
    """Small images are served as they are; larger ones are scaled down (cached in memory)."""
    path = _image_file(db, settings, sample_id)
    media = BROWSER_TYPES.get(path.suffix.lower())
    if media is not None and os.path.getsize(path) < 64 << 10:
        try:
            with Image.open(path) as im:
                small = max(im.size) <= THUMB_SIZE
        except (OSError, ValueError):
            raise HTTPException(415, "cannot decode image") from None
        if small:
            return FileResponse(path, media_type=media, headers=CACHE_HEADERS, content_disposition_type="inline")
    data, media = _encode(path, THUMB_SIZE)
    return Response(data, media_type=media, headers=CACHE_HEADERS)
