"""Thumbnails of images (≤ 320 px), decoded with Pillow inside a decompression-bomb limit.

Call from a worker thread: decoding is CPU work. An image Pillow cannot read, or one that
declares more than `MAX_PIXELS` pixels, is refused with the file's name (422): the upload is
then not stored at all.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from states.attachments.sniff import refuse

THUMB_SIZE = 320
#: Largest image decoded (40 megapixels: any phone photo; a bomb declares far more).
MAX_PIXELS = 40_000_000
Image.MAX_IMAGE_PIXELS = MAX_PIXELS


def thumbnail(path: Path, filename: str) -> tuple[bytes, str]:
    """Return a thumbnail of the image at `path` (PNG when it has transparency, else JPEG)
    and its MIME type; InvalidInput naming `filename` when it cannot be decoded safely."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                if img.width * img.height > MAX_PIXELS:
                    raise Image.DecompressionBombError("too many pixels")
                img.draft("RGB", (THUMB_SIZE, THUMB_SIZE))  # JPEG: decode at a reduced scale
                small = ImageOps.exif_transpose(img)
                small.thumbnail((THUMB_SIZE, THUMB_SIZE))
                return _encode(small)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise refuse(filename, "的像素过多（超过 4000 万像素）") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError):
        raise refuse(filename, "的图片内容无法读取（文件可能已损坏）") from None


def _encode(img: Image.Image) -> tuple[bytes, str]:
    out = io.BytesIO()
    if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
        img.convert("RGBA").save(out, "PNG", optimize=True)
        return out.getvalue(), "image/png"
    img.convert("RGB").save(out, "JPEG", quality=80)
    return out.getvalue(), "image/jpeg"
