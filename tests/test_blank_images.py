"""Blank images (one flat colour, noise at most) get the ``blank_image`` reason; smooth
gradients and photographs do not."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib
import numpy as np
import pyarrow.parquet as pq
from PIL import Image

from clipaudit.curate.pipeline import CurateConfig, curate
from clipaudit.curate.stages.hashes import THUMB, pixel_std
from clipaudit.rules.schema import load_pack
from tests.hostile.shards import TarBuilder

PHOTO = Path(matplotlib.__file__).parent / "mpl-data" / "sample_data" / "grace_hopper.jpg"


def _jpeg(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=75)
    return buf.getvalue()


def _images() -> dict[str, Image.Image]:
    rng = np.random.default_rng(0)
    noisy = np.clip(200 + rng.normal(0, 3, (200, 300, 3)), 0, 255).astype(np.uint8)
    ramp = np.linspace(90, 130, 300, dtype=np.float32)[None, :, None].repeat(200, 0)
    return {
        "white": Image.new("RGB", (300, 200), (250, 250, 250)),
        "black": Image.new("RGB", (128, 128), (0, 0, 0)),
        "noisy_grey": Image.fromarray(noisy),
        "gentle_ramp": Image.fromarray(ramp.repeat(3, 2).astype(np.uint8)),
        "photo": Image.open(PHOTO).convert("RGB"),
        "white_with_text_line": _with_line(Image.new("RGB", (300, 200), (250, 250, 250))),
        # A small orange square on lavender: nearly the same brightness (a grayscale spread
        # called six such world images blank), a different colour.
        "isoluminant_object": _with_square(Image.new("RGB", (256, 256), (150, 150, 200))),
    }


def _with_square(im: Image.Image) -> Image.Image:
    a = np.asarray(im).copy()
    a[150:190, 40:80] = (240, 130, 20)
    return Image.fromarray(a)


def _with_line(im: Image.Image) -> Image.Image:
    a = np.asarray(im).copy()
    a[95:105, 40:260] = 20  # a dark bar: a placeholder's one line of text
    return Image.fromarray(a)


def test_pixel_std_separates_flat_from_structured() -> None:
    def spread(im: Image.Image) -> float:
        decoded = Image.open(io.BytesIO(_jpeg(im))).convert("RGB")
        return pixel_std(decoded.resize((THUMB, THUMB), Image.Resampling.BOX))

    got = {k: spread(im) for k, im in _images().items()}
    assert got["white"] < 0.5 and got["black"] < 0.5 and got["noisy_grey"] < 1.0
    assert got["gentle_ramp"] > 5 and got["photo"] > 30 and got["white_with_text_line"] > 10
    # What a grayscale spread would miss: the square has the lavender's brightness.
    assert got["isoluminant_object"] > 10
    gray = Image.open(io.BytesIO(_jpeg(_images()["isoluminant_object"]))).convert("L")
    assert np.asarray(gray.resize((THUMB, THUMB), Image.Resampling.BOX), np.float32).std() < 3


def test_blank_images_are_flagged_by_default_and_dropped_by_strict(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    tar = TarBuilder(data / "s-000.tar")
    for key, im in _images().items():
        tar.file(f"{key}.jpg", _jpeg(im)).file(f"{key}.txt", b"a picture of something")
    tar.close()
    curate(CurateConfig(dataset=str(data), out=str(tmp_path / "run"), stages=["quality", "hashes"]))
    rows = {r["id"]: r for r in pq.read_table(tmp_path / "run" / "decisions.parquet").to_pylist()}
    blank = {k for k, r in rows.items() if "blank_image" in r["reasons"]}
    assert blank == {"white", "black", "noisy_grey"}
    assert all(rows[k]["decision"] == "flag" for k in blank)
    assert rows["photo"]["decision"] == "keep" and rows["gentle_ramp"]["decision"] == "keep"
    assert load_pack("strict").action("blank_image") == "drop"
    assert load_pack("keep-all").action("blank_image") == "keep"


def test_runs_scored_before_the_signal_existed_are_not_called_blank() -> None:
    from clipaudit.curate.decide import quality_reasons

    sig = {
        "id": np.array(["a"], dtype=object),
        "error": np.array([None], dtype=object),
        "width": np.array([300]),
        "height": np.array([200]),
        "min_side": np.array([200]),
        "aspect": np.array([1.5]),
        "file_bytes": np.array([5000]),
        "caption_words": np.array([4]),
        "caption_chars": np.array([20]),
    }
    reasons, used = quality_reasons(sig, load_pack("default"), None)
    assert reasons == [[]] and used["blank_check"] is False
