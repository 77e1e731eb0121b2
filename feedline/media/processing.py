"""Inspect one uploaded file and render it: bytes in, a verdict and renditions out (pure).

Checks, in order, each refusal a ``reason`` of the form ``code: what was found``:

* ``empty``: zero bytes;
* ``wrong_type``: the magic bytes are not those of the announced type (random bytes, a PNG
  announced as JPEG, an MP4 announced as a photo);
* ``unsupported_type``: a type the worker cannot decode here (HEIC);
* ``too_many_pixels`` (a decompression bomb: the header promises more than
  ``media.max_pixels`` pixels; read from the header, before any pixel is decoded) and
  ``too_large`` (a side over ``media.max_side``);
* ``truncated`` / ``undecodable``: Pillow cannot decode the whole file.

A photo that passes is decoded fully, turned upright (its EXIF orientation applied) and
re-encoded from its pixels alone: EXIF (GPS location included), XMP, IPTC and comments are
not carried over; only the ICC colour profile is, so colours stay right. Each rendition is
``media.rendition_widths`` wide (never wider than the photo), JPEG, or PNG when the photo has
transparency. The placeholder is the photo's dominant colour (``#rrggbb``), computed with
Pillow's median-cut quantizer on a 64 px thumbnail.

Videos (MP4, QuickTime) are checked and rendered by ``feedline.media.video``.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field
from typing import Literal

from PIL import Image, ImageOps, UnidentifiedImageError

from feedline.settings import MediaSettings

Status = Literal["ready", "rejected"]

#: Pillow's format name of each photo type it decodes here.
PIL_FORMATS = {"image/jpeg": "JPEG", "image/png": "PNG", "image/webp": "WEBP"}
#: What a type is called in reasons.
KIND = {"image/jpeg": "a JPEG image", "image/png": "a PNG image", "image/webp": "a WebP image",
        "image/heic": "a HEIC image", "image/gif": "a GIF image", "video/mp4": "an MP4 video",
        "video/quicktime": "a QuickTime video"}
_HEIC_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"}


@dataclass(frozen=True, slots=True)
class RenderedImage:
    """One encoded rendition: an image, or a video's playable file."""

    width: int
    height: int
    content_type: str
    data: bytes

    @property
    def suffix(self) -> str:
        """The file name extension of its type."""
        return {"image/png": "png", "video/mp4": "mp4"}.get(self.content_type, "jpg")


@dataclass(frozen=True, slots=True)
class Verdict:
    """What processing found: ready with renditions, or rejected with a reason."""

    status: Status
    reason: str | None = None
    width: int | None = None
    height: int | None = None
    duration_ms: int | None = None
    renditions: tuple[RenderedImage, ...] = field(default=())
    placeholder: str | None = None


class MachineError(OSError):
    """Processing failed for want of the machine (a full disk), not for the file: retried."""


def rejected(code: str, detail: str) -> Verdict:
    """A refusal with its reason."""
    return Verdict("rejected", f"{code}: {detail}")


def sniff(data: bytes) -> str | None:
    """The media type the file's magic bytes say it is, or None when unrecognised."""
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[4:8] == b"ftyp":
        brand = data[8:12]
        if brand in _HEIC_BRANDS:
            return "image/heic"
        return "video/quicktime" if brand == b"qt  " else "video/mp4"
    return None


def _kind(content_type: str | None) -> str:
    if content_type is None:
        return "not a recognised photo or video format"
    return KIND.get(content_type, content_type)


def process(data: bytes, claimed: str, settings: MediaSettings) -> Verdict:
    """Check ``data`` against the announced type ``claimed``; render it when it passes."""
    if not data:
        return rejected("empty", "the uploaded file has zero bytes")
    found = sniff(data)
    same_family = (found in ("video/mp4", "video/quicktime")
                   and claimed in ("video/mp4", "video/quicktime"))
    if found != claimed and not same_family:
        return rejected("wrong_type", f"the file is {_kind(found)}, announced as {claimed}")
    if claimed in ("video/mp4", "video/quicktime"):
        from feedline.media.video import process_video  # it builds on this module

        return process_video(data, claimed, settings)
    if claimed not in PIL_FORMATS:
        return rejected("unsupported_type", f"{_kind(claimed)} cannot be processed yet; "
                                            "upload a JPEG, PNG or WebP photo, or an MP4 "
                                            "or QuickTime video")
    return _photo(data, claimed, settings)


def size_refused(width: int, height: int, settings: MediaSettings,
                 per: str = "") -> Verdict | None:
    """The refusal of a picture (``per``: " per frame" for a video) too big or empty."""
    if width * height > settings.max_pixels:
        return rejected("too_many_pixels",
                        f"{width}x{height} is {width * height} pixels{per}, more than the "
                        f"{settings.max_pixels} allowed (a decompression bomb)")
    if max(width, height) > settings.max_side:
        return rejected("too_large", f"{width}x{height} has a side over "
                                     f"{settings.max_side} px")
    if width < 1 or height < 1:
        return rejected("undecodable", f"{width}x{height} has no pixels")
    return None


def _photo(data: bytes, claimed: str, settings: MediaSettings) -> Verdict:
    with warnings.catch_warnings():
        # Past Pillow's own limit it warns (twice past, it raises): a bomb either way.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data), formats=[PIL_FORMATS[claimed]])
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
            return rejected("too_many_pixels", f"decompression bomb refused: {error}")
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
            return rejected("undecodable", f"not a decodable {PIL_FORMATS[claimed]} "
                                           f"image ({type(error).__name__})")
        refused = size_refused(*image.size, settings)
        if refused is not None:
            return refused
        try:
            image.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
            return rejected("too_many_pixels", f"decompression bomb refused: {error}")
        except (OSError, SyntaxError, ValueError, EOFError) as error:
            if "truncated" in str(error) or isinstance(error, EOFError):
                return rejected("truncated", f"the {PIL_FORMATS[claimed]} data ends early "
                                             "(an incomplete upload?)")
            return rejected("undecodable", f"the {PIL_FORMATS[claimed]} data is broken "
                                           f"({type(error).__name__}: {error})")
    icc_profile = image.info.get("icc_profile")
    upright = ImageOps.exif_transpose(image) or image
    return render_photo(upright, icc_profile, settings)


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA") or (
        image.mode == "P" and "transparency" in image.info)


def render_photo(image: Image.Image, icc_profile: bytes | None,
                 settings: MediaSettings) -> Verdict:
    """Renditions of an upright picture (``rendition_widths``) and its placeholder."""
    alpha = _has_alpha(image)
    base = image.convert("RGBA" if alpha else "RGB")
    width, height = base.size
    renditions: list[RenderedImage] = []
    source = base
    for target in sorted({min(w, width) for w in settings.rendition_widths}, reverse=True):
        scaled_height = max(1, round(height * target / width))
        if (target, scaled_height) == source.size:
            scaled = source.copy()
        else:
            scaled = source.resize((target, scaled_height), Image.Resampling.LANCZOS)
        renditions.append(_encode(scaled, alpha, icc_profile, settings))
        source = scaled  # the next, smaller one is scaled from this one
    return Verdict("ready", None, width, height, None, tuple(renditions),
                   dominant_colour(base))


def _encode(image: Image.Image, alpha: bool, icc_profile: bytes | None,
            settings: MediaSettings) -> RenderedImage:
    """Pixels (and the colour profile) only: nothing of the upload's metadata."""
    image.info = {}
    extra = {"icc_profile": icc_profile} if icc_profile else {}
    buffer = io.BytesIO()
    if alpha:
        image.save(buffer, "PNG", optimize=True, **extra)
        content_type = "image/png"
    else:
        image.save(buffer, "JPEG", quality=settings.jpeg_quality, optimize=True,
                   progressive=True, **extra)
        content_type = "image/jpeg"
    return RenderedImage(image.width, image.height, content_type, buffer.getvalue())


def dominant_colour(image: Image.Image) -> str:
    """The most common colour of a small copy, ``#rrggbb`` (transparency over white)."""
    small = image.copy()
    small.thumbnail((64, 64))
    if small.mode == "RGBA":
        white = Image.new("RGBA", small.size, (255, 255, 255, 255))
        small = Image.alpha_composite(white, small)
    quantized = small.convert("RGB").quantize(colors=8, method=Image.Quantize.MEDIANCUT)
    counts = quantized.getcolors() or [(1, 0)]
    index = max(counts)[1]
    assert isinstance(index, int)  # a P-mode image: colours are palette indexes
    palette = quantized.getpalette() or [0, 0, 0]
    red, green, blue = palette[index * 3:index * 3 + 3]
    return f"#{red:02x}{green:02x}{blue:02x}"
