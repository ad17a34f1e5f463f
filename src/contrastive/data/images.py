"""Image bytes: format sniffing, validation before decode, conversion and resizing (PIL)."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

# Formats kept byte for byte when an image is 8-bit grey or RGB and needs no resize; anything
# else is converted to PNG (or JPEG for JPEG sources) so the reader's decoders see two formats.
KEPT_FORMATS = ("png", "jpeg")
_GREY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}
_JPEG_QUALITY = 95  # re-encoding a JPEG (resize, CMYK) at 95 keeps a second generation close


def sniff_format(head: bytes) -> str | None:
    """The image format from the leading bytes ('png', 'jpeg', 'gif', 'bmp'), else None."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if head.startswith(b"BM") and len(head) >= 18:
        return "bmp"
    return None


class ImageRejected(Exception):
    """One image that cannot go into the dataset; `reason` becomes `manifest.skipped[].reason`."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class EncodedImage:
    """An image ready to store: encoded bytes plus the shape they decode to."""

    data: bytes
    format: str  # "png" | "jpeg" | "raw"
    height: int
    width: int
    channels: int  # 1 or 3


def prepare_encoded(
    data: bytes,
    source_format: str,
    *,
    image_size: tuple[int, int] | None,
    max_pixels: int,
) -> EncodedImage:
    """Validate encoded image bytes and return what to store.

    The header is read first and images over `max_pixels` are refused before any pixel is
    decoded (decompression bombs). The full decode that follows proves the bytes are readable.
    PNG/JPEG in grey or RGB keep their original bytes unless `image_size` (height, width)
    differs from theirs; others are converted to grey or RGB and re-encoded.

    Raises:
        ImageRejected: too many pixels, or the bytes do not decode.
    """
    try:
        image = Image.open(io.BytesIO(data), formats=[source_format.upper()])
        width, height = image.size
    except Image.DecompressionBombError as error:
        raise ImageRejected(f"refused before decoding: {error}") from None
    except Exception as error:  # PIL raises many types for a bad header
        raise ImageRejected(f"undecodable {source_format}: {error}") from None
    if width * height > max_pixels:
        raise ImageRejected(
            f"refused before decoding: {width}x{height} = {width * height:,} pixels is over "
            f"max_pixels={max_pixels:,}"
        )
    try:
        image.load()
    except Exception as error:
        raise ImageRejected(f"undecodable {source_format}: {error}") from None

    target_mode = "L" if image.mode in _GREY_MODES else "RGB"
    channels = 1 if target_mode == "L" else 3
    size = (height, width) if image_size is None else tuple(image_size)
    if source_format in KEPT_FORMATS and image.mode == target_mode and size == (height, width):
        return EncodedImage(data, source_format, height, width, channels)

    if image.mode != target_mode:
        image = image.convert(target_mode)
    if size != (height, width):
        image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    output_format = "jpeg" if source_format == "jpeg" else "png"
    return EncodedImage(encode(np.asarray(image), output_format), output_format, *size, channels)


def encode(pixels: np.ndarray, image_format: str) -> bytes:
    """Encode uint8 pixels `[H, W]` or `[H, W, C]` (C 1 or 3) as 'png' or 'jpeg'."""
    if pixels.ndim == 3 and pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    buffer = io.BytesIO()
    if image_format == "png":
        Image.fromarray(pixels).save(buffer, format="PNG", compress_level=6)
    else:
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=_JPEG_QUALITY)
    return buffer.getvalue()


def resize_arrays(images: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """Bilinear (antialiased) resize of uint8 `[N, H, W, C]` to `[N, *image_size, C]`, uint8."""
    import tensorflow as tf

    resized = tf.image.resize(images, image_size, method="bilinear", antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8).numpy()
