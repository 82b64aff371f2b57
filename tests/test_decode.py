from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clipaudit.data import decode_image
from clipaudit.data.decode import decode_sample
from clipaudit.data.sample import Sample, sniff_image_ext

GOOD = ("jpeg", "progressive", "cmyk", "png_alpha", "palette", "png16", "gray", "webp")


@pytest.mark.parametrize("name", GOOD)
def test_every_kind_decodes_to_rgb_of_the_stored_size(zoo: dict, name: str) -> None:
    dec = decode_image(zoo[name][0])
    assert dec.error is None, dec.detail
    assert dec.image is not None and dec.image.mode == "RGB"
    assert dec.image.size == (120, 80)


def test_exif_orientation_is_applied(zoo: dict) -> None:
    dec = decode_image(zoo["exif_rotated"][0])
    assert dec.stored_size == (120, 80)
    assert dec.image is not None and dec.image.size == (80, 120)


def test_alpha_is_composited_on_white(zoo: dict) -> None:
    dec = decode_image(zoo["png_alpha"][0])
    assert dec.image is not None
    assert dec.image.getpixel((5, 5)) == (255, 255, 255)  # the transparent corner
    assert dec.image.getpixel((100, 70)) != (255, 255, 255)


def test_16_bit_keeps_its_tones(zoo: dict) -> None:
    dec = decode_image(zoo["png16"][0])
    gray8 = np.asarray(Image.open(io.BytesIO(zoo["gray"][0])))
    got = np.asarray(dec.image)[..., 0]
    # value*257 >> 8 == value for 8-bit data scaled to 16 bits
    assert np.array_equal(got, gray8)
    assert got.std() > 20  # not clipped to white, which a bare convert("RGB") would give


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (None, "missing_image"),
        (b"", "empty_image"),
        (b"not an image at all", "decode_error"),
    ],
)
def test_bad_bytes_give_reason_codes(data: bytes | None, code: str) -> None:
    dec = decode_image(data)
    assert dec.image is None and dec.error == code


def test_truncated_and_corrupt_are_decode_errors(zoo: dict) -> None:
    for name in ("truncated", "corrupt"):
        dec = decode_image(zoo[name][0])
        assert dec.image is None and dec.error == "decode_error", name
        assert dec.detail


def test_decompression_bomb_is_refused_before_decoding() -> None:
    buf = io.BytesIO()
    Image.new("L", (3000, 3000)).save(buf, format="PNG")
    dec = decode_image(buf.getvalue(), max_pixels=1_000_000)
    assert dec.error == "image_too_large" and dec.detail == "3000x3000"
    # Past Pillow's own guard the refusal comes from Pillow, with the same reason code.
    buf = io.BytesIO()
    Image.new("1", (12000, 12000)).save(buf, format="PNG")
    dec = decode_image(buf.getvalue())
    assert dec.error == "image_too_large" and "144000000 pixels" in (dec.detail or "")


def _saved(fmt: str) -> bytes:
    im = Image.new("RGB", (64, 48), (20, 180, 40))
    im.paste((200, 30, 30), (0, 0, 32, 48))
    buf = io.BytesIO()
    im.save(buf, format=fmt)
    return buf.getvalue()


# An HEIF still image's first box as a phone writes it (ftyp, major brand heic), then bytes
# no decoder here can read.
HEIC_HEAD = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(200)


@pytest.mark.parametrize(("fmt", "ext"), [("AVIF", "avif"), ("JPEG2000", "jp2")])
def test_avif_and_jpeg2000_are_images_not_videos(fmt: str, ext: str) -> None:
    from PIL import features

    if fmt == "AVIF" and not features.check("avif"):
        pytest.skip("this Pillow has no AVIF codec")
    data = _saved(fmt)
    # An AVIF is an ISO media file like an mp4: the ftyp brands, not the box name, decide.
    assert sniff_image_ext(data) == ext
    assert Sample("a", data).media == "image"
    dec = decode_sample(Sample("a", data))
    assert dec.error is None and dec.frames is None and dec.image is not None
    assert dec.image.size == (64, 48)
    left, right = dec.image.getpixel((8, 24)), dec.image.getpixel((56, 24))
    assert left[0] > 150 > left[1] and right[1] > 130 > right[0], (left, right)


def test_heic_without_a_decoder_names_what_to_install() -> None:
    from clipaudit.data.decode import HEIF_DECODER, NO_HEIF

    assert sniff_image_ext(HEIC_HEAD) == "heic"
    assert Sample("h", HEIC_HEAD).media == "image"
    assert sniff_image_ext(b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00isommp42") == "mp4"
    if HEIF_DECODER:
        pytest.skip("pillow-heif is installed here")
    dec = decode_image(HEIC_HEAD)
    assert dec.error == "decode_error" and dec.detail == NO_HEIF


def test_an_image_folder_lists_avif_and_heic_files(tmp_path: Path) -> None:
    """Files of an image kind the folder reader did not know were passed over in silence."""
    from clipaudit.data.formats import open_dataset

    (tmp_path / "a.jpg").write_bytes(_saved("JPEG"))
    (tmp_path / "b.avif").write_bytes(b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf")
    (tmp_path / "c.heic").write_bytes(HEIC_HEAD)
    (tmp_path / "notes.txt").write_text("not a sample")
    ds = open_dataset(tmp_path, format="imagefolder")
    got = {s.image_ext: s for shard in ds.shards() for s in ds.read_shard(shard)}
    assert sorted(got) == ["avif", "heic", "jpg"]
    assert all(s.image and s.error is None and s.media == "image" for s in got.values())


def test_postscript_is_not_rendered_and_rare_kinds_are_not_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Pillow renders EPS by running Ghostscript; untrusted bytes never get that far."""
    from PIL import EpsImagePlugin

    from clipaudit.data.decode import NOT_READ

    ran: list[object] = []
    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", lambda *a, **k: ran.append(a))
    monkeypatch.setattr(EpsImagePlugin, "gs_binary", "gs", raising=False)
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n%%EOF\n"
    assert Image.open(io.BytesIO(eps)).format == "EPS"  # what Pillow alone would do
    dec = decode_image(eps)
    assert dec.error == "decode_error" and dec.detail == NOT_READ and not ran
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="PCX")  # a kind Pillow reads, datasets do not hold
    assert decode_image(buf.getvalue()).detail == NOT_READ


def test_a_phone_jpeg_with_a_second_picture_decodes() -> None:
    buf = io.BytesIO()
    first, depth = Image.new("RGB", (40, 30), (200, 10, 10)), Image.new("RGB", (40, 30))
    first.save(buf, format="MPO", save_all=True, append_images=[depth])
    dec = decode_image(buf.getvalue())
    assert dec.error is None and dec.format == "MPO" and dec.image is not None
    assert dec.image.getpixel((20, 15))[0] > 150  # the first picture, not the second


def _encoded(im: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


# Patches of 32 px, so JPEG's chroma subsampling does not mix them.
SRGB_PATCHES = np.array([[0, 200, 0], [200, 30, 30], [30, 30, 200], [250, 220, 10]], np.uint8)


def _patches(colours: np.ndarray) -> Image.Image:
    return Image.fromarray(np.repeat(colours[None], 32, 0).repeat(32, 1))


def _centres(im: Image.Image) -> np.ndarray:
    return np.asarray(im, dtype=int)[16, 16::32]


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "TIFF"])
def test_a_wide_gamut_photo_is_shown_in_srgb(fmt: str) -> None:
    from PIL import ImageCms

    from tests.icc_support import rgb_profile

    adobe = ImageCms.ImageCmsProfile(io.BytesIO(rgb_profile()))
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
    stored = ImageCms.profileToProfile(_patches(SRGB_PATCHES), srgb, adobe, outputMode="RGB")
    assert stored is not None
    lossy = {"quality": 100} if fmt in ("JPEG", "WEBP") else {}
    dec = decode_image(_encoded(stored, fmt, icc_profile=rgb_profile(), **lossy))
    assert dec.error is None and dec.image is not None
    assert dec.color_profile == "Adobe RGB (1998)"
    # The Adobe RGB numbers read as sRGB are far off (green 112 in red); converted, within a
    # few levels of the colours the photo shows (JPEG and WebP lose a few on pure green).
    assert np.abs(_centres(stored) - SRGB_PATCHES).max() > 30
    assert np.abs(_centres(dec.image) - SRGB_PATCHES).max() <= 10


def test_a_cmyk_print_file_takes_its_profiles_inks() -> None:
    from tests.icc_support import PRESS_INKS, cmyk_profile

    pixels = np.array([[255, 0, 0, 0], [0, 255, 0, 0], [0, 0, 255, 0], [0, 0, 0, 255]], np.uint8)
    cmyk = Image.fromarray(np.repeat(pixels[None], 32, 0).repeat(32, 1), mode="CMYK")
    with_profile = decode_image(_encoded(cmyk, "JPEG", quality=100, icc_profile=cmyk_profile()))
    plain = decode_image(_encoded(cmyk, "JPEG", quality=100))
    assert with_profile.image is not None and plain.image is not None
    assert with_profile.color_profile == "Coated press test CMYK"
    assert plain.color_profile is None
    inks = np.array([PRESS_INKS[k] for k in "CMYK"])
    assert np.abs(_centres(with_profile.image) - inks).max() <= 8
    # Without a profile: Pillow's plain formula, pure cyan as (0, 255, 255).
    assert _centres(plain.image)[0].tolist() == [0, 255, 255]


@pytest.mark.parametrize(
    ("mode", "icc", "expect"),
    [
        ("RGB", b"not a profile" * 8, "unread: OSError"),
        ("L", "rgb", "unread: ValueError: a RGB profile on a L image"),
        ("RGB", "srgb", None),
    ],
)
def test_an_unusable_or_srgb_profile_leaves_the_pixels_as_stored(
    mode: str, icc: bytes | str, expect: str | None
) -> None:
    from PIL import ImageCms

    from tests.icc_support import rgb_profile

    if icc == "rgb":
        icc = rgb_profile()
    elif icc == "srgb":
        icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    im = Image.new(mode, (16, 16), 90 if mode == "L" else (90, 140, 200))
    dec = decode_image(_encoded(im, "PNG", icc_profile=icc))
    assert dec.error is None and dec.image is not None
    assert dec.image.getpixel((3, 3)) == ((90, 90, 90) if mode == "L" else (90, 140, 200))
    if expect is None:
        assert dec.color_profile is None
    else:
        assert dec.color_profile is not None and dec.color_profile.startswith(expect)


def test_an_rgba_image_keeps_its_alpha_through_the_profile() -> None:
    from tests.icc_support import rgb_profile

    arr = np.zeros((16, 16, 4), np.uint8)
    arr[..., :3] = (112, 199, 47)  # sRGB (0, 200, 0) in Adobe RGB numbers
    arr[:, 8:, 3] = 255  # left half transparent
    dec = decode_image(_encoded(Image.fromarray(arr, "RGBA"), "PNG", icc_profile=rgb_profile()))
    assert dec.image is not None
    assert dec.image.getpixel((2, 2)) == (255, 255, 255)
    assert np.abs(np.array(dec.image.getpixel((12, 2))) - (0, 200, 0)).max() <= 4


def test_an_oversized_profile_is_refused_before_it_is_parsed() -> None:
    im = Image.new("RGB", (16, 16), (90, 140, 200))
    dec = decode_image(_encoded(im, "JPEG", quality=100, icc_profile=bytes(5 << 20)))
    assert dec.error is None and dec.image is not None
    assert dec.color_profile == "unread: ValueError: profile of 5242880 bytes, over 4194304"
    assert np.abs(np.array(dec.image.getpixel((3, 3))) - (90, 140, 200)).max() <= 2


def _animation(fmt: str, n: int = 20, size: tuple[int, int] = (120, 90)) -> bytes:
    """An animation that opens on dark frames and turns red on its last three."""
    frames = [
        Image.new("RGB", size, (30, 30, 30) if i < n - 3 else (200, 40, 40)) for i in range(n)
    ]
    for i, f in enumerate(frames):  # a moving dot: identical frames would be merged on saving
        f.paste((255, 255, 255), (i, 0, i + 2, 2))
    buf = io.BytesIO()
    frames[0].save(buf, fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "PNG"])
def test_an_animation_is_sampled_over_its_frames_not_just_the_first(fmt: str) -> None:
    dec = decode_sample(Sample("a", _animation(fmt)))
    assert dec.error is None and dec.image is not None and dec.frames is not None
    assert dec.animation == {"frames": 20, "sampled": 8, "last_index": 19}
    centres = [np.asarray(f, dtype=int)[45, 60] for f in dec.frames]
    assert np.abs(centres[0] - (30, 30, 30)).max() <= 2  # first frame ...
    assert np.abs(centres[-1] - (200, 40, 40)).max() <= 2  # ... and last are both seen
    # The sample's own picture stays the first frame; a plain decode samples nothing.
    assert np.abs(np.asarray(dec.image, dtype=int)[45, 60] - (30, 30, 30)).max() <= 2
    assert decode_image(_animation(fmt)).frames is None


def test_still_pictures_and_multi_picture_files_are_not_sampled() -> None:
    still = io.BytesIO()
    Image.new("RGB", (40, 30), (9, 9, 9)).save(still, "GIF")
    pages = io.BytesIO()
    Image.new("RGB", (40, 30)).save(
        pages, "TIFF", save_all=True, append_images=[Image.new("RGB", (40, 30), (255, 0, 0))]
    )
    for data in (still.getvalue(), pages.getvalue()):
        dec = decode_sample(Sample("s", data))
        assert dec.error is None and dec.frames is None and dec.animation is None


def test_animation_frames_are_bounded_in_decoded_pixels() -> None:
    from clipaudit.data.animation import ANIMATION_PIXELS, frame_indices

    assert frame_indices(20, 120, 90) == [0, 3, 5, 8, 11, 14, 16, 19]
    # 400 frames of 1000x800: only the first 125 are within reach of the budget.
    far = frame_indices(400, 1000, 800)
    assert far[0] == 0 and far[-1] == ANIMATION_PIXELS // (1000 * 800) - 1 == 124
    assert frame_indices(3, 10_000, 10_000) == [0]  # one frame over the budget: the first
    assert frame_indices(2, 10, 10) == [0, 1]


def test_nsfw_sees_an_animations_worst_frame() -> None:
    import json

    from clipaudit.curate.stages.nsfw import _detect

    class Fake:
        def scores(self, image: Image.Image) -> dict[str, float]:
            return {"RED": round(float(np.asarray(image)[..., 0].mean()) / 255, 2)}

    dec = decode_sample(Sample("a", _animation("GIF")))
    assert json.loads(_detect(Fake(), dec) or "{}") == {"RED": 0.78}  # the red ending
    first = decode_image(_animation("GIF"))
    assert json.loads(_detect(Fake(), first) or "{}") == {"RED": 0.12}  # blind to it


def test_a_cut_or_lying_animation_keeps_its_first_frame_and_what_could_be_read() -> None:
    from tests.hostile.images import lying_apng

    # A frame count that lies (1,000 claimed, 3 there): the sample is its first frame, not
    # an error; the second sampled index (143) is past the end, so nothing else is sampled.
    dec = decode_sample(Sample("a", lying_apng(1000)))
    assert dec.error is None and dec.image is not None
    assert dec.image.getpixel((5, 5)) == (0, 0, 0) and dec.animation is None
    # Claimed 5: frames 0, 1 and 2 are read, then the count runs out.
    dec = decode_sample(Sample("a", lying_apng(5)))
    assert dec.error is None and dec.animation is not None
    assert (dec.animation["sampled"], dec.animation["unreadable_from"]) == (3, 3)
    # A GIF cut short in its later frames decodes as it did before frames were sampled.
    gif = _animation("GIF", n=10)
    cut = gif[: len(gif) * 2 // 3]
    whole = decode_image(cut)
    assert whole.error is None and whole.image is not None
    dec = decode_sample(Sample("g", cut))
    assert dec.error is None and dec.image is not None
    assert np.array_equal(np.asarray(dec.image), np.asarray(whole.image))


def test_the_stage_columns_carry_the_profile_the_frames_and_the_clips_picture() -> None:
    """What users read in the run: quality's color_profile and image_frames, the video
    stage's video_hdr, video_interlaced and the width as shown."""
    from fractions import Fraction

    from clipaudit.curate.stages import Batch
    from clipaudit.curate.stages.quality import QualityStage
    from clipaudit.curate.stages.video import VideoStage
    from tests.icc_support import rgb_profile
    from tests.video_clips import anamorphic_clip, hdr10_clip, interlaced_clip

    photo = _encoded(Image.new("RGB", (32, 24), (90, 140, 200)), "PNG", icc_profile=rgb_profile())
    samples = [
        Sample("icc", photo),
        Sample("gif", _animation("GIF")),
        Sample("plain", _encoded(Image.new("RGB", (32, 24)), "PNG")),
    ]
    out = QualityStage().process(Batch(samples, [decode_sample(s) for s in samples]))
    assert out["color_profile"] == ["Adobe RGB (1998)", None, None]
    assert out["image_frames"] == [None, 20, None]
    clips = [
        Sample("hdr", hdr10_clip(np.full((64, 96, 3), 128, np.uint8)), image_ext="mp4"),
        Sample("int", interlaced_clip(n=4), image_ext="mp4"),
        Sample(
            "wide",
            anamorphic_clip([np.zeros((576, 720, 3), np.uint8)] * 3, Fraction(64, 45)),
            image_ext="mp4",
        ),
    ]
    stage = VideoStage()
    rows = [stage.prepare(s, decode_sample(s)) for s in clips]
    col = {c: [r[k] for r in rows] for k, c in enumerate(stage.columns)}
    assert col["video_hdr"] == ["pq", None, None]
    assert col["video_interlaced"] == [0.0, 1.0, 0.0]
    assert col["video_width"] == [96, 720, 1024]


def test_a_runs_error_rows_say_what_the_decoder_said(tmp_path: Path) -> None:
    """Only the code (decode_error, image_too_large) reached the run: which file to fix,
    and how, was lost. `error_detail` carries the decoder's message."""
    import struct
    import zlib

    import pyarrow.parquet as pq

    from clipaudit.curate.pipeline import CurateConfig, curate
    from clipaudit.data import Sample, write_dataset

    def png_header(w: int, h: int) -> bytes:
        ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
        out = b"\x89PNG\r\n\x1a\n"
        for kind, body in ((b"IHDR", ihdr), (b"IDAT", zlib.compress(b"\x00" * 64)), (b"IEND", b"")):
            out += struct.pack(">I", len(body)) + kind + body
            out += struct.pack(">I", zlib.crc32(kind + body))
        return out

    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 10, 10)).save(buf, format="PNG")
    samples = [
        Sample(id="good", image=buf.getvalue(), caption="a red square"),
        Sample(id="text", image=b"just some text, not an image", caption="a note"),
        Sample(id="bomb", image=png_header(40_000, 40_000), caption="a huge picture"),
    ]
    write_dataset(samples, tmp_path / "ds", "parquet")
    curate(CurateConfig(str(tmp_path / "ds"), str(tmp_path / "run"), stages=["quality"]))
    rows = {
        r["id"]: r
        for r in pq.read_table(
            tmp_path / "run" / "decisions.parquet", columns=["id", "error", "error_detail"]
        ).to_pylist()
    }
    assert rows["good"]["error"] is None and rows["good"]["error_detail"] is None
    assert rows["text"]["error"] == "decode_error"
    assert rows["text"]["error_detail"].startswith("not an image of a kind read here (JPEG")
    assert rows["bomb"]["error"] == "image_too_large"
    assert rows["bomb"]["error_detail"].startswith("Image size (1600000000 pixels) exceeds")


def test_the_bytes_not_the_name_say_image_or_video() -> None:
    """A JPEG named .mp4 was decoded as a one-frame MJPEG clip, an mp4 named .jpg was a
    decode_error; in Parquet (no name) the magic bytes already told them apart."""
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (3, 4, 5)).save(buf, format="JPEG")
    jpeg = buf.getvalue()
    mp4 = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + b"\x00" * 64
    webm = b"\x1a\x45\xdf\xa3" + b"\x00" * 8 + b"webm" + b"\x00" * 64
    assert Sample("a", jpeg, image_ext="mp4").media == "image"
    assert Sample("b", mp4, image_ext="jpg").media == "video"
    assert Sample("c", webm, image_ext="png").media == "video"
    assert Sample("d", mp4, image_ext=None).media == "video"
    # Bytes no reader knows keep the name's word: a damaged clip still reads as a clip.
    assert Sample("e", b"\x00garbage", image_ext="mp4").media == "video"
    assert Sample("f", b"\x00garbage", image_ext="jpg").media == "image"
