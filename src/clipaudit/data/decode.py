"""Decode image bytes into an RGB picture, or a reason code saying why not.

Web data is full of bad bytes, so decoding never raises for content: it returns a
``Decoded`` with either an image or an error code from :data:`DECODE_ERRORS`.
"""

from __future__ import annotations

import functools
import hashlib
import io
import threading
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageCms, ImageOps, PngImagePlugin, UnidentifiedImageError

from clipaudit.data.sample import Sample, sniff_image_ext

if TYPE_CHECKING:
    from clipaudit.data.video import SamplingPolicy

# Pillow's own bomb guard warns at MAX_IMAGE_PIXELS and raises at twice that; we refuse
# anything over this many pixels outright, before the pixels are decoded.
MAX_PIXELS = 89_478_485

# Pillow refuses a PNG whose one compressed text chunk inflates past 1 MiB, and the image with
# it: a 5 KB PNG carrying Photoshop's 2.4 MB XMP history was a decode_error, its PLUS opt-out
# unread. The rights stage reads XMP packets up to 8 MiB (rights/xmp.py); so does decoding.
# Pillow's total cap on text (64 MiB) stays.
PngImagePlugin.MAX_TEXT_CHUNK = max(PngImagePlugin.MAX_TEXT_CHUNK, 8 << 20)

DECODE_ERRORS: dict[str, str] = {
    "missing_image": "the sample has no image bytes",
    "empty_image": "the image file is zero bytes long",
    "decode_error": "the bytes are not a decodable image (corrupt, truncated or unsupported)",
    "image_too_large": "the image declares more pixels than the decompression-bomb limit",
    # Video samples (data/video.py).
    "video_decode_error": "the bytes are not a decodable video (corrupt or truncated container)",
    "no_video_stream": "the file holds no video stream (audio only, or no streams)",
    "video_too_large": "the video's frames exceed the frame-size cap (4096 x 3072 pixels)",
    "video_timeout": "decoding the video did not finish within the time limit",
}

# How transparency and odd modes are flattened; recorded with every score so that
# embeddings can be reproduced (a bare .convert("RGB") would expose hidden pixels).
DECODE_CHAIN = (
    "PIL decode; EXIF orientation applied; first frame of animations (up to 8 frames sampled "
    "for the NSFW and alignment stages); embedded ICC profile "
    "converted to sRGB (perceptual intent; sRGB-named profiles taken as is); 16-bit scaled to "
    "8-bit; alpha composited on white; CMYK/palette/grayscale converted to RGB"
)


def _register_heif() -> bool:
    """Let Pillow open HEIC/HEIF (phone photos) where the optional ``pillow-heif`` is
    installed (``pip install 'clipaudit[heif]'``); without it they are a ``decode_error``
    whose detail says so."""
    try:
        import pillow_heif  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return False
    pillow_heif.register_heif_opener()
    return True


HEIF_DECODER = _register_heif()
NO_HEIF = "HEIF/HEIC image and no decoder for it: pip install 'clipaudit[heif]' (pillow-heif)"

# The image kinds untrusted bytes are read as. Pillow would otherwise try every plugin it has:
# EPS and PostScript it renders by running Ghostscript where that is installed, and a dozen
# rare formats (FLI, PCX, SGI, FITS, ...) whose decoders web images never need.
READ_FORMATS = (
    "JPEG",
    "MPO",  # phone JPEGs with a second picture (depth map, preview)
    "PNG",
    "WEBP",
    "GIF",
    "BMP",
    "DIB",
    "TIFF",
    "AVIF",
    "JPEG2000",
    "HEIF",  # where pillow-heif registered it
    "ICO",
    "PPM",
)


NOT_READ = "not an image of a kind read here (" + ", ".join(READ_FORMATS) + ")"


@functools.cache
def read_formats() -> tuple[str, ...]:
    """The READ_FORMATS this Pillow has a reader for (an unknown name is an error to it)."""
    Image.init()
    return tuple(f for f in READ_FORMATS if f in Image.OPEN)


def open_untrusted(data: bytes) -> Image.Image:
    """``Image.open`` of untrusted bytes, as one of the kinds read here only."""
    return Image.open(io.BytesIO(data), formats=read_formats())


@dataclass
class Decoded:
    image: Image.Image | None
    error: str | None = None
    detail: str | None = None
    # Size as stored, before EXIF rotation (width, height).
    stored_size: tuple[int, int] | None = None
    mode: str | None = None
    format: str | None = None
    # A video sample: its sampled frames (``image`` is the middle one, so every image stage
    # scores a representative frame) and what the container and the frames say.
    frames: list[Image.Image] | None = None
    video: dict[str, Any] | None = None
    # The embedded colour profile's description where the pixels were converted from it to
    # sRGB; "unread: ..." where a profile was there but could not be used (pixels as stored).
    color_profile: str | None = None
    # An animated image (data/animation.py), where frames were asked for: how many frames it
    # has and how many were sampled into ``frames`` (``image`` stays its first frame).
    animation: dict[str, int] | None = None


# The profile modes a transform is built for, and the mode it gives (alpha carried through).
_ICC_MODES = {
    "RGB": ("RGB ", "RGB"),
    "RGBA": ("RGB ", "RGBA"),
    "CMYK": ("CMYK", "RGB"),
    "L": ("GRAY", "RGB"),
}
PROFILE_NAME_CHARS = 80


@functools.cache
def _srgb() -> ImageCms.ImageCmsProfile:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


# Real profiles are at most a few MB (printer profiles with large tables); a bigger one is
# refused before LittleCMS parses it.
MAX_PROFILE_BYTES = 4 << 20
_TRANSFORMS_KEPT = 32
_transforms: dict[tuple[bytes, str], tuple[ImageCms.ImageCmsTransform | None, str]] = {}
_transforms_lock = threading.Lock()


def _icc_transform(icc: bytes, mode: str) -> tuple[ImageCms.ImageCmsTransform | None, str]:
    """(transform to sRGB or None where none is needed, the profile's description).

    Kept by the profile's digest: a crawl holds a handful of distinct profiles (camera and
    editor defaults) and building a transform costs far more than applying it; the key is
    a digest so that a hostile stream of large distinct profiles cannot pin their bytes.
    Raises on an unreadable profile."""
    if len(icc) > MAX_PROFILE_BYTES:
        raise ValueError(f"profile of {len(icc)} bytes, over {MAX_PROFILE_BYTES}")
    key = (hashlib.blake2b(icc, digest_size=16).digest(), mode)
    with _transforms_lock:
        if key in _transforms:
            return _transforms[key]
    src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
    name = " ".join((ImageCms.getProfileDescription(src) or "").split())[:PROFILE_NAME_CHARS]
    space, out_mode = _ICC_MODES[mode]
    if src.profile.xcolor_space != space:
        raise ValueError(f"a {src.profile.xcolor_space.strip()} profile on a {mode} image")
    # Most web images carry an sRGB profile: converting would only cost time.
    if "srgb" in name.lower() and space == "RGB ":
        made: tuple[ImageCms.ImageCmsTransform | None, str] = (None, name)
    else:
        # NOCACHE: LittleCMS's one-pixel cache makes a shared transform unsafe on threads.
        made = (
            ImageCms.buildTransform(
                src,
                _srgb(),
                mode,
                out_mode,
                renderingIntent=ImageCms.Intent.PERCEPTUAL,
                flags=ImageCms.Flags.NOCACHE,
            ),
            name or "unnamed profile",
        )
    with _transforms_lock:
        if len(_transforms) >= _TRANSFORMS_KEPT:
            _transforms.pop(next(iter(_transforms)))
        _transforms[key] = made
    return made


def _to_srgb(im: Image.Image) -> tuple[Image.Image, str | None]:
    """``im`` converted from its embedded ICC profile to sRGB, as browsers show it: a
    CMYK print file or an Adobe RGB / Display P3 photo read as raw numbers has wrong,
    washed-out colours. A profile that cannot be used leaves the pixels as stored."""
    icc = im.info.get("icc_profile")
    if not icc or im.mode not in _ICC_MODES:
        return im, None
    try:
        transform, name = _icc_transform(bytes(icc), im.mode)
        if transform is None:
            return im, None
        return ImageCms.applyTransform(im, transform) or im, name
    except Exception as exc:  # a hostile or broken profile is the file's problem, not ours
        return im, f"unread: {type(exc).__name__}: {exc}"[:PROFILE_NAME_CHARS]


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im, dtype=np.uint32)
        # 16-bit data: keep the top 8 bits, the usual display mapping.
        shift = 8 if arr.max(initial=0) > 255 else 0
        im = Image.fromarray((arr >> shift).clip(0, 255).astype(np.uint8), mode="L")
    elif im.mode == "F":
        arr = np.asarray(im, dtype=np.float32)
        im = Image.fromarray(np.nan_to_num(arr).clip(0, 255).astype(np.uint8), mode="L")
    if im.mode == "P":
        im = im.convert("RGBA") if "transparency" in im.info else im.convert("RGB")
    if im.mode in ("LA", "La", "PA"):
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "RGBa"):
        bg = Image.new("RGB", im.size, (255, 255, 255))
        bg.paste(im, mask=im.getchannel("A"))
        return bg
    if im.mode != "RGB":
        return im.convert("RGB")
    return im


def decode_sample(sample: Sample, policy: SamplingPolicy | None = None) -> Decoded:
    """A sample's image decoded, or for a video its frames sampled by ``policy`` (the
    default ``uniform:8`` when None; data/video.py); either way a reason code instead of an
    exception."""
    data = sample.scorable_image()
    if sample.media != "video":
        return decode_image(data, frames=True)
    from clipaudit.data.video import DEFAULT_POLICY, decode_video, frame_stats

    v = decode_video(data, policy or DEFAULT_POLICY)
    if v.error is not None:
        return Decoded(None, v.error, v.detail, format="video", video=v.info or None)
    mid = v.frames[len(v.frames) // 2]
    info = {**v.info, "times": v.times, **frame_stats(v.frames)}
    return Decoded(mid, None, None, mid.size, "RGB", "video", frames=v.frames, video=info)


def held_pixels(sample: Sample, policy: SamplingPolicy | None = None) -> int:
    """About how many pixels decoding ``sample`` holds while its batch is scored: an image's
    size as its header declares it (nothing is decoded; 0 for bytes no reader opens or a
    size decode refuses), a video's sampled frames at their size cap. What the engines
    budget a batch by, so a batch of camera photos is not 64 of them at once."""
    data = sample.scorable_image()
    if not data:
        return 0
    if sample.media == "video":
        from clipaudit.data.video import DEFAULT_POLICY, MAX_FRAME_SIDE

        p = policy or DEFAULT_POLICY
        frames = int(p.value) if p.kind == "uniform" else p.max_frames
        return frames * MAX_FRAME_SIDE * MAX_FRAME_SIDE
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            w, h = open_untrusted(data).size
    except Exception:
        return 0
    return w * h if 0 < w * h <= MAX_PIXELS else 0


def _finish(im: Image.Image) -> Image.Image:
    """Orientation, colour profile and flattening to RGB, applied to a loaded frame."""
    ImageOps.exif_transpose(im, in_place=True)
    im, _ = _to_srgb(im)
    return _to_rgb(im)


def _animation(data: bytes) -> tuple[list[Image.Image], dict[str, int]] | None:
    from clipaudit.data.animation import sample_frames
    from clipaudit.data.video import MAX_FRAME_SIDE

    # A second reader: the first one's frame was turned in place, and later frames of a GIF
    # or APNG are drawn over the ones before.
    return sample_frames(open_untrusted(data), _finish, MAX_FRAME_SIDE)


def decode_image(
    data: bytes | None, *, max_pixels: int = MAX_PIXELS, frames: bool = False
) -> Decoded:
    """Decode ``data`` to an RGB image with EXIF orientation applied; with ``frames``, an
    animated GIF, WebP or PNG also gets its frames sampled (data/animation.py)."""
    if data is None:
        return Decoded(None, "missing_image")
    if len(data) == 0:
        return Decoded(None, "empty_image")
    try:
        with warnings.catch_warnings():
            # Pillow warns on damaged metadata ("Corrupt EXIF data"): a line with a source path
            # on the user's stderr per sample; the rights stage records it as a reason. Narrow
            # on purpose: catch_warnings is process-wide, and decode runs in threads.
            warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im: Image.Image = open_untrusted(data)
            stored = im.size
            fmt = getattr(im, "format", None)
            if stored[0] * stored[1] > max_pixels or stored[0] <= 0 or stored[1] <= 0:
                return Decoded(None, "image_too_large", f"{stored[0]}x{stored[1]}", stored)
            mode = im.mode
            im.seek(0)
            im.load()
            # In place: the default returns a full copy even when nothing is rotated.
            ImageOps.exif_transpose(im, in_place=True)
            im, profile = _to_srgb(im)
            rgb = _to_rgb(im)
            rgb.load()
            animated = _animation(data) if frames and getattr(im, "is_animated", False) else None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        return Decoded(None, "image_too_large", str(exc)[:200])
    except Exception as exc:
        if not HEIF_DECODER and sniff_image_ext(data) == "heic":
            return Decoded(None, "decode_error", NO_HEIF)
        if isinstance(exc, UnidentifiedImageError):
            return Decoded(None, "decode_error", NOT_READ)
        return Decoded(None, "decode_error", f"{type(exc).__name__}: {exc}"[:200])
    return Decoded(
        rgb,
        None,
        None,
        stored,
        mode,
        fmt,
        frames=animated[0] if animated else None,
        color_profile=profile,
        animation=animated[1] if animated else None,
    )
