"""Image bytes: format sniffing, validation before decode, conversion to 8 bits, resizing (PIL).

Resizing keeps the aspect ratio: the largest centred box of the target's aspect ratio is cut
out, then resized bilinearly (antialiased) to the target size (`RESIZE_METHOD`). Cropping, not
padding: a padded photo carries black bars whose width depends on its aspect ratio, a feature
a classifier can learn instead of the content (a class photographed mostly in portrait would
be "the one with bars"); a centred crop loses only the borders, where subjects rarely are.
Stretching (no crop) would distort shapes by up to the aspect-ratio difference.

Every decoded image becomes 8-bit grey (`L`) or RGB by `to_uint8`, which scales each Pillow mode
from its real bit depth (a 16-bit PNG's 0..65535 maps to 0..255; nothing is clipped), composites
transparency over black, and converts CMYK and palettes. A mode it cannot scale faithfully
(float pixels outside [0, 1], negative integers, an unknown mode) rejects the image.

Photos are stored upright: the EXIF Orientation tag (how phones and cameras record a photo
taken sideways without rotating its pixels) is applied at decode (`decode_upright`), and the
reader's decoders, which ignore EXIF, get pixels already turned.

An image too degenerate to resize to the target (`SizeRules`: enlarged more than
`max_upscale` times, or an aspect ratio more than `max_aspect_ratio` times the target's, so
that the centred crop would keep a sliver) is refused (`resize_problem`), not blurred up or
cut down to a few pixels.

The per-file checks are plain functions of bytes (`prepare_encoded`, `decode_upright`,
`resize_problem`) so every source that holds encoded images (folders, TFDS) applies the same
rules.
"""

from __future__ import annotations

import io
import os
import re
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from contrastive.data.errors import DataError

# Formats kept byte for byte when an image is 8-bit grey or RGB and needs no resize; anything
# else is converted to PNG (or JPEG for JPEG sources) so the reader's decoders see two formats.
KEPT_FORMATS = ("png", "jpeg")
# What a file named like this is expected to be: such a file that does not decode is skipped
# (or fails the ingest with on_error="fail"), never ignored silently.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".jpe", ".gif", ".bmp", ".tif", ".tiff", ".webp")
# Pillow modes `to_uint8` converts; the first group becomes grey, the rest RGB.
GREY_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F")
RGB_MODES = ("RGB", "RGBA", "RGBa", "RGBX", "P", "PA", "CMYK", "YCbCr", "LAB", "HSV")
_INFLATE_CHUNK = 1 << 20  # bytes of inflated PNG data held at once while checking a stream
_JPEG_QUALITY = 95  # re-encoding a JPEG (resize, CMYK) at 95 keeps a second generation close
RESIZE_METHOD = "centre crop to the target aspect ratio, then bilinear (antialiased) resize"
# Images with more pixels are refused from their header, before decoding (decompression bombs).
DEFAULT_MAX_PIXELS = 40_000_000
# EXIF Orientation (tag 274, as in TIFF): value -> the transpose that shows the stored pixel grid
# upright (the TIFF 6.0 / EXIF definition says where the grid's 0th row and 0th column are seen;
# the same table as Pillow's `ImageOps.exif_transpose`). 1 and values outside 1..8: as stored.
ORIENTATION_TAG = 0x0112
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# Default `SizeRules`: a crop box enlarged more than 4x (a 1x1 or 7x7 image among 32x32
# photos; a 50x50 thumbnail among 224x224 targets), or an aspect ratio more than 4x the
# target's (the crop would keep under a quarter of the image: a 1x65000 strip, a 6:1 banner).
DEFAULT_MAX_UPSCALE = 4.0
DEFAULT_MAX_ASPECT_RATIO = 4.0


@dataclass(frozen=True)
class SizeRules:
    """When an image is too degenerate to be resized to the target size; it is then refused.

    Attributes:
        max_upscale: largest factor by which the image's centred crop may be enlarged, per side
            (`target / crop`); >= 1, `inf` for no limit.
        max_aspect_ratio: largest ratio between the image's aspect ratio (width / height) and
            the target's, either way round; >= 1, `inf` for no limit. At 4 the centred crop
            keeps at least a quarter of the image.
    """

    max_upscale: float = DEFAULT_MAX_UPSCALE
    max_aspect_ratio: float = DEFAULT_MAX_ASPECT_RATIO

    def __post_init__(self):
        for name in ("max_upscale", "max_aspect_ratio"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
                valid = False
            else:
                valid = value >= 1  # NaN fails this too
            if not valid:
                raise DataError(
                    f"{name} must be a number >= 1 (inf: no limit). Received: {name}={value!r}"
                )


def resize_problem(height: int, width: int, size: tuple[int, int], rules: SizeRules) -> str | None:
    """Why a `height x width` image must not be resized to `size` (height, width) by
    `RESIZE_METHOD`, naming the threshold it breaks; None when it may be (or needs no resize).

    Aspect first: the ratio of the image's width / height to the target's, either way round,
    over `rules.max_aspect_ratio` (the centred crop would keep less than 1 / ratio of it).
    Then size: the crop box enlarged by more than `rules.max_upscale` on either side.
    """
    if (height, width) == tuple(size):
        return None
    ratio = (width * size[0]) / (height * size[1])
    ratio = max(ratio, 1 / ratio)
    if ratio > rules.max_aspect_ratio:
        return (
            f"extreme aspect ratio: {height}x{width} (height x width) is {ratio:.3g}x as "
            f"{'wide' if width * size[0] > height * size[1] else 'tall'} as the target "
            f"{size[0]}x{size[1]}, over max_aspect_ratio={rules.max_aspect_ratio:g} (a centred "
            f"crop would keep {100 / ratio:.2g}% of it)"
        )
    _, _, crop_height, crop_width = crop_box(height, width, size)
    upscale = max(size[0] / crop_height, size[1] / crop_width)
    if upscale > rules.max_upscale:
        return (
            f"too small: {height}x{width} (height x width) would be enlarged {upscale:.3g}x to "
            f"{size[0]}x{size[1]}, over max_upscale={rules.max_upscale:g}"
        )
    return None


def parse_image_size(value: str | int | Sequence[int] | None) -> tuple[int, int] | None:
    """`"H,W"` / `"HxW"` / `N` / `(H, W)` -> `(H, W)`; None or `""` -> None."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        if isinstance(value, bool):
            parts = []
        elif isinstance(value, (int, np.integer)):
            parts = [value, value]
        elif isinstance(value, str):
            parts = value.lower().replace("x", ",").split(",")
        else:
            parts = list(value)
        size = tuple(int(str(part).strip()) for part in parts)
    except (TypeError, ValueError):
        size = ()
    if len(size) != 2 or min(size) < 1:
        raise DataError(
            f"image_size must be 'H,W' (or an int, or a (height, width) pair) of positive "
            f"integers. Received: image_size={value!r}"
        )
    return size


def sniff_format(head: bytes) -> str | None:
    """The image format from the leading bytes ('png', 'jpeg', 'gif', 'bmp', 'tiff', 'webp')."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if head.startswith(b"BM") and len(head) >= 18:
        return "bmp"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "tiff"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "webp"
    return None


def looks_like_image_name(name: str) -> bool:
    """True when the file name has an image extension (case-insensitive)."""
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


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
    resized_from: tuple[int, int] | None = None  # (height, width) before resizing, if resized
    orientation: int = 0  # EXIF orientation applied (1..8); 0: the source had none


@dataclass(frozen=True)
class DecodedImage:
    """Decoded, upright 8-bit pixels of one encoded image."""

    pixels: np.ndarray  # uint8 [H, W] (grey) or [H, W, 3], EXIF orientation applied
    orientation: int  # the EXIF orientation applied (1..8); 0: none in the file
    mode: str  # the Pillow mode the file decoded to (before `to_uint8`)


def prepare_encoded(
    data: bytes,
    source_format: str,
    *,
    image_size: tuple[int, int] | None,
    max_pixels: int,
    size_rules: SizeRules = SizeRules(),
) -> EncodedImage:
    """Validate encoded image bytes and return what to store.

    `decode_upright` reads the header first (images over `max_pixels` are refused before any
    pixel is decoded), decodes in full (proving the bytes readable) and applies the EXIF
    orientation. An image that `image_size` would resize and that breaks `size_rules` is
    refused. PNG/JPEG in grey or RGB that need neither a turn nor a resize keep their original
    bytes; others are converted to grey or RGB and re-encoded.

    Raises:
        ImageRejected: too many pixels, the bytes do not decode, or too degenerate to resize.
    """
    decoded = decode_checked(
        data, source_format, image_size=image_size, max_pixels=max_pixels, size_rules=size_rules
    )
    pixels = decoded.pixels
    height, width = pixels.shape[:2]
    channels = 1 if pixels.ndim == 2 else 3
    size = (height, width) if image_size is None else tuple(image_size)
    if (
        source_format in KEPT_FORMATS
        and decoded.mode in ("L", "RGB")
        and decoded.orientation <= 1
        and size == (height, width)
        and _reader_decodes(data, source_format)
    ):
        return EncodedImage(data, source_format, height, width, channels, None, decoded.orientation)
    resized_from = None
    if size != (height, width):
        pixels, resized_from = crop_resize(pixels, size), (height, width)
    output_format = "jpeg" if source_format == "jpeg" else "png"
    encoded = encode(pixels, output_format)
    return EncodedImage(encoded, output_format, *size, channels, resized_from, decoded.orientation)


def decode_checked(
    data: bytes,
    source_format: str,
    *,
    image_size: tuple[int, int] | None,
    max_pixels: int,
    size_rules: SizeRules,
) -> DecodedImage:
    """`decode_upright`, then refuse an image that `image_size` would resize and that breaks
    `size_rules` (the reason names the threshold). The pixels are not resized yet.

    Raises:
        ImageRejected: as `decode_upright`, or too degenerate to resize.
    """
    decoded = decode_upright(data, source_format, max_pixels=max_pixels)
    if image_size is not None:
        problem = resize_problem(*decoded.pixels.shape[:2], tuple(image_size), size_rules)
        if problem:
            raise ImageRejected(problem)
    return decoded


def decode_upright(data: bytes, source_format: str, *, max_pixels: int) -> DecodedImage:
    """Decode encoded image bytes to upright uint8 pixels (`to_uint8`, then the EXIF
    orientation), refusing images over `max_pixels` from their header, before decoding.

    Raises:
        ImageRejected: too many pixels, the bytes do not decode, or pixel values that cannot
            be scaled to 8 bits.
    """
    try:
        image = Image.open(io.BytesIO(data), formats=[source_format.upper()])
        width, height = image.size
        orientation = exif_orientation(image, header_only=True)
    except Image.DecompressionBombError as error:
        raise ImageRejected(f"refused before decoding: {error}") from None
    except Exception as error:  # PIL raises many types for a bad header
        raise ImageRejected(f"undecodable {source_format}: {_message(error)}") from None
    if width * height > max_pixels:
        raise ImageRejected(
            f"refused before decoding: {width}x{height} = {width * height:,} pixels is over "
            f"max_pixels={max_pixels:,}"
        )
    try:
        image.load()
    except Exception as error:
        raise ImageRejected(f"undecodable {source_format}: {_message(error)}") from None

    try:
        pixels = to_uint8(image)
    except ImageRejected:
        raise
    except Exception as error:  # a decoder that fails only when the pixels are accessed
        raise ImageRejected(f"undecodable {source_format}: {_message(error)}") from None
    after_load = exif_orientation(image)
    if orientation == 0:  # a PNG's EXIF chunk after its pixel data: read by the full decode
        orientation = after_load
    # Pillow's TIFF reader (13.0, the version pinned here) turns the grid itself while loading
    # and drops the tag; its JPEG, PNG and WebP readers leave the tag and the turn to us. A tag
    # gone after loading means turned already: turning twice would be wrong.
    turned_on_load = orientation > 1 and after_load != orientation
    if not turned_on_load:
        pixels = upright(pixels, orientation)
    return DecodedImage(pixels, orientation, image.mode)


def _message(error: Exception) -> str:
    """A decoder's message without the repr of the in-memory file it read
    (`cannot identify image file <_io.BytesIO object at 0x7f...>`): a reason must read the
    same in every process, so that every engine's manifest lists the same skipped files."""
    return re.sub(r" ?<[^<>]* object at 0x[0-9a-fA-F]+>", "", str(error))


def exif_orientation(image: Image.Image, *, header_only: bool = False) -> int:
    """The image's EXIF Orientation, 1..8; 0 when it has none, or a value outside 1..8, or
    an EXIF block too damaged to read (the pixels are then stored as they are).

    `header_only`: never decode pixels to find it (Pillow reads a PNG's EXIF after its pixel
    data only on a full decode; such a late chunk is then missed, the header survey's loss).
    """
    if header_only and image.format == "PNG":
        if "exif" not in image.info and "Raw profile type exif" not in image.info:
            return 0
    try:
        value = image.getexif().get(ORIENTATION_TAG)
    except Exception:  # a malformed EXIF block: Pillow raises one of several types
        return 0
    return value if isinstance(value, int) and 1 <= value <= 8 else 0


def upright(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """uint8 `[H, W]` / `[H, W, 3]` pixels as stored -> as shown for EXIF `orientation`."""
    method = _UPRIGHT.get(orientation)
    if method is None:
        return pixels
    return np.asarray(Image.fromarray(pixels).transpose(method))


def oriented_size(height: int, width: int, orientation: int) -> tuple[int, int]:
    """`(height, width)` of the upright image: orientations 5..8 swap the sides."""
    return (width, height) if orientation >= 5 else (height, width)


def crop_box(height: int, width: int, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """`(top, left, crop_height, crop_width)`: the largest centred box of `size`'s aspect ratio
    inside a `height x width` image."""
    crop_height = min(height, max(1, (width * size[0] + size[1] // 2) // size[1]))
    crop_width = min(width, max(1, (height * size[1] + size[0] // 2) // size[0]))
    return (height - crop_height) // 2, (width - crop_width) // 2, crop_height, crop_width


def crop_resize(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 `[H, W]` or `[H, W, 3]` -> `[*size]` / `[*size, 3]` by `RESIZE_METHOD` (Pillow)."""
    top, left, crop_height, crop_width = crop_box(*pixels.shape[:2], size)
    image = Image.fromarray(pixels[top : top + crop_height, left : left + crop_width])
    return np.asarray(image.resize((size[1], size[0]), Image.Resampling.BILINEAR))


def header_size(data: bytes, source_format: str) -> tuple[int, int] | None:
    """`(height, width)` of the upright image from its header (no pixel decoded; EXIF
    orientations 5..8 swap the sides); None when unreadable."""
    try:
        with Image.open(io.BytesIO(data), formats=[source_format.upper()]) as image:
            width, height = image.size
            tags = getattr(image, "tag_v2", None)
            if image.format == "TIFF" and tags and 256 in tags and 257 in tags:
                # the stored grid: Pillow's TIFF reader reports the size already turned
                width, height = int(tags[256]), int(tags[257])  # ImageWidth, ImageLength
            orientation = exif_orientation(image, header_only=True)
    except Exception:  # the full read reports why; a survey of sizes just leaves it out
        return None
    return oriented_size(height, width, orientation)


def _reader_decodes(data: bytes, source_format: str) -> bool:
    """True when the reader's decoder (libpng/libjpeg in `tf.io.decode_image`) will read the
    kept bytes as PIL did.

    PIL stops reading a PNG once it has its pixels, so it accepts files that libpng refuses: a
    chunk with a bad CRC, no IEND, a zlib stream that fails after the last row. Kept as they
    are, those would make the dataset unreadable at training time, so they are stored
    re-encoded from the pixels PIL decoded instead. Checked in Python (CRCs and one streaming
    inflate, ~13 µs for a 28x28 PNG): asking TensorFlow to decode every image cost ~0.5 ms
    each, ten times the rest of the per-file work. A JPEG is kept when it ends
    with its EOI marker (libjpeg refuses a truncated one; other damage it decodes with a
    warning).
    """
    if source_format == "jpeg":
        return data.rstrip(b"\0").endswith(b"\xff\xd9")
    return _png_is_intact(data)


def _png_is_intact(data: bytes) -> bool:
    """Every chunk complete with a correct CRC, an IEND, and an IDAT stream that inflates
    cleanly to its end."""
    position = 8  # after the signature
    inflate = zlib.decompressobj()
    while position + 12 <= len(data):
        length, kind = struct.unpack(">I4s", data[position : position + 8])
        end = position + 12 + length
        if end > len(data):
            return False
        body = data[position + 8 : end - 4]
        if zlib.crc32(kind + body) != struct.unpack(">I", data[end - 4 : end])[0]:
            return False
        if kind == b"IDAT":
            try:
                chunk = inflate.decompress(body, _INFLATE_CHUNK)
                while chunk and inflate.unconsumed_tail:
                    chunk = inflate.decompress(inflate.unconsumed_tail, _INFLATE_CHUNK)
            except zlib.error:
                return False
        elif kind == b"IEND":
            return inflate.eof
        position = end
    return False


def to_uint8(image: Image.Image) -> np.ndarray:
    """The pixels of a decoded image as uint8 `[H, W]` (grey modes) or `[H, W, 3]`.

    Integer modes are scaled from their bit depth, `round(v * 255 / max)`: `I;16*` from
    65535, `I` from the file's declared bits per sample (32 when unknown; signed TIFF samples
    from 2**31 - 1). `F` must hold values in [0, 1] (scaled by 255). `1` maps to 0/255.
    Alpha (`LA`, `RGBA`, `PA`, `P` with transparency) is composited over black:
    `round(v * alpha / 255)`. `CMYK` becomes `round((255 - c) * (255 - k) / 255)` per channel.

    Raises:
        ImageRejected: a mode that cannot be scaled faithfully (negative or non-finite values,
            float values outside [0, 1], an unknown mode).
    """
    mode = image.mode
    if mode in ("L", "RGB"):
        return np.asarray(image)
    if mode == "1":
        return np.asarray(image, dtype=np.uint8) * np.uint8(255)
    if mode.startswith("I;16"):
        return _scale(np.asarray(image).astype(np.int64), 65535)
    if mode == "I":
        values = np.asarray(image).astype(np.int64)
        if values.size and values.min() < 0:
            raise ImageRejected(
                f"32-bit integer image with negative pixel values (min {values.min()}); "
                "cannot scale to 8 bits"
            )
        return _scale(values, _integer_maximum(image))
    if mode == "F":
        values = np.asarray(image, dtype=np.float64)
        if values.size and not np.isfinite(values).all():
            raise ImageRejected("float image holds NaN or infinite pixel values")
        if values.size and (values.min() < 0 or values.max() > 1):
            raise ImageRejected(
                f"float image values span [{values.min():g}, {values.max():g}]; only [0, 1] "
                "can be scaled to 8 bits"
            )
        return np.rint(values * 255).astype(np.uint8)
    if mode == "LA":
        grey, alpha = np.moveaxis(np.asarray(image).astype(np.int64), -1, 0)
        return _scale(grey * alpha, 255 * 255)
    if mode == "La":  # premultiplied alpha: the grey channel is already composited over black
        return np.asarray(image)[..., 0]
    if mode == "RGBA" or mode == "PA" or (mode == "P" and "transparency" in image.info):
        rgba = np.asarray(image.convert("RGBA")).astype(np.int64)
        return _scale(rgba[..., :3] * rgba[..., 3:], 255 * 255)
    if mode in ("RGBa", "RGBX"):  # premultiplied alpha / padding: the colour is as stored
        return np.ascontiguousarray(np.asarray(image)[..., :3])
    if mode == "CMYK":
        cmyk = np.asarray(image).astype(np.int64)
        return _scale((255 - cmyk[..., :3]) * (255 - cmyk[..., 3:]), 255 * 255)
    if mode in ("P", "YCbCr", "LAB", "HSV"):  # 8-bit colour spaces Pillow converts exactly
        return np.asarray(image.convert("RGB"))
    raise ImageRejected(f"unsupported image mode {mode!r}")


def _scale(values: np.ndarray, maximum: int) -> np.ndarray:
    """`round(values * 255 / maximum)` as uint8, exact integer arithmetic (half rounds up)."""
    return ((values * 255 + maximum // 2) // maximum).clip(0, 255).astype(np.uint8)


def _integer_maximum(image: Image.Image) -> int:
    """Largest value of a mode-`I` image's samples, from the file's declared bit depth."""
    tags = getattr(image, "tag_v2", None)
    bits, signed = 32, True  # Pillow's mode I itself is signed 32-bit
    if tags is not None:
        declared = tags.get(258)  # BitsPerSample
        if declared:
            bits = int(declared[0] if isinstance(declared, tuple) else declared)
        sample_format = tags.get(339)  # SampleFormat: 1 unsigned, 2 signed
        if sample_format:
            signed = (sample_format[0] if isinstance(sample_format, tuple) else sample_format) == 2
        else:
            signed = False
    return (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1


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
    """uint8 `[N, H, W, C]` -> `[N, *image_size, C]` uint8 by `RESIZE_METHOD` (TensorFlow)."""
    top, left, crop_height, crop_width = crop_box(*images.shape[1:3], image_size)
    images = images[:, top : top + crop_height, left : left + crop_width]
    return resize_tensor(images, image_size).numpy()


def resize_tensor(images, image_size: tuple[int, int]):
    """Bilinear (antialiased) resize of a uint8 image tensor, rounded back to uint8."""
    import tensorflow as tf

    resized = tf.image.resize(images, image_size, method="bilinear", antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)
