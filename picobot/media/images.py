"""Images for the model: decode (Pillow), pixel size, and a data URL no larger than needed."""

from __future__ import annotations

import base64
import io
import warnings
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from picobot.media.errors import NotAnImage

VISION_LONG_SIDE = 1568  # downscaled above this; the issue asks for >= 768
SENT_AS_IS = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})


def inspect(path: Path) -> tuple[int, int]:
    """The pixel size of a decodable image (blocking: run it in a thread).

    :raises NotAnImage: when the bytes do not decode as an image (truncated, corrupt, a bomb).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                size = img.size
                # JPEGs decode at a reduced scale (cheap, bounded memory); every format is
                # decoded: a truncated file fails here, not in the model.
                img.draft(img.mode, (VISION_LONG_SIDE, VISION_LONG_SIDE))
                img.load()
                return size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise NotAnImage(f"not a valid image ({type(exc).__name__})") from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise NotAnImage("not a valid image (too many pixels)") from None


def data_url(path: Path, mime: str, long_side: int = VISION_LONG_SIDE) -> str:
    """A ``data:`` URL for an ``image_url`` part; re-encoded as JPEG/PNG and downscaled so the
    long side is at most `long_side` (never below the image's own size). Blocking."""
    with Image.open(path) as img:
        if max(img.size) <= long_side and mime in SENT_AS_IS:
            return _url(mime, path.read_bytes())
        img.thumbnail((long_side, long_side))
        keep_alpha = img.mode in ("RGBA", "LA", "P")
        out = io.BytesIO()
        if keep_alpha:
            img.save(out, "PNG")
        else:
            img.convert("RGB").save(out, "JPEG", quality=88)
        return _url("image/png" if keep_alpha else "image/jpeg", out.getvalue())


def _url(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
