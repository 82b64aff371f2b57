"""Near-duplicate detection on real photographs (the ones that ship inside installed
packages), not only on the synthetic world: copies made by resizing, re-encoding and
brightening must be found, distinct photos must not pair up.

Bases: three photographs (matplotlib's Grace Hopper, scikit-learn's China and flower) and
a smooth colour gradient (the C2PA fixture C.jpg, where pHash is unstable), each whole and
as four quadrants: 20 distinct images. Each gets five copies.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import matplotlib
import pyarrow.parquet as pq
import pytest
import sklearn
from PIL import Image, ImageEnhance

from clipaudit.curate.pipeline import CurateConfig, curate
from tests.hostile.shards import TarBuilder

PHOTOS = [
    Path(matplotlib.__file__).parent / "mpl-data" / "sample_data" / "grace_hopper.jpg",
    Path(sklearn.__file__).parent / "datasets" / "images" / "china.jpg",
    Path(sklearn.__file__).parent / "datasets" / "images" / "flower.jpg",
]
GRADIENT = Path(__file__).resolve().parents[1] / ".." / "shared" / "fixtures" / "c2pa" / "C.jpg"


def _jpeg(im: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


COPIES: dict[str, Callable[[Image.Image], Image.Image]] = {
    "resize": lambda im: im.resize((im.width * 6 // 10, im.height * 6 // 10), Image.BICUBIC),
    "reencode": lambda im: Image.open(io.BytesIO(_jpeg(im, 40))).convert("RGB"),
    "brightness": lambda im: ImageEnhance.Brightness(im).enhance(1.15),
    "crop": lambda im: im.crop(
        (im.width // 20, im.height // 20, im.width * 19 // 20, im.height * 19 // 20)
    ),
    "flip": lambda im: im.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
}


@pytest.fixture(scope="module")
def decided(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    sources = PHOTOS + ([GRADIENT] if GRADIENT.is_file() else [])
    bases: list[Image.Image] = []
    for path in sources:
        im = Image.open(path).convert("RGB")
        w, h = im.size
        bases.append(im)
        for x, y in ((0, 0), (w // 2, 0), (0, h // 2), (w // 2, h // 2)):
            bases.append(im.crop((x, y, x + w // 2, y + h // 2)))
    tmp = tmp_path_factory.mktemp("photos")
    (tmp / "data").mkdir()
    tar = TarBuilder(tmp / "data" / "photos-000.tar")
    for i, base in enumerate(bases):
        items = [(f"p{i:02d}", _jpeg(base))]
        items += [(f"p{i:02d}_{k}", _jpeg(f(base))) for k, f in COPIES.items()]
        for key, data in items:
            tar.file(f"{key}.jpg", data).file(f"{key}.txt", b"a photograph")
    tar.close()
    curate(
        CurateConfig(
            dataset=str(tmp / "data"), out=str(tmp / "run"), stages=["quality", "hashes"],
            gates=False,
        )
    )  # fmt: skip
    return {r["id"]: r for r in pq.read_table(tmp / "run" / "decisions.parquet").to_pylist()}


def _found(rows: dict[str, dict]) -> Counter[str]:
    hits: Counter[str] = Counter()
    for key, row in rows.items():
        if "_" not in key:
            continue
        base, kind = key.split("_")
        # Either the copy names its base's group, or the copy was kept and the base names it.
        if (row["duplicate_of"] or "").split("_")[0] == base or rows[base]["duplicate_of"] == key:
            hits[kind] += 1
    return hits


def test_resized_reencoded_and_brightened_copies_are_found(decided: dict[str, dict]) -> None:
    n_bases = sum(1 for k in decided if "_" not in k)
    hits = _found(decided)
    main = hits["resize"] + hits["reencode"] + hits["brightness"]
    # Measured: resize 20/20, re-encode 20/20, brightness 19/20 (a near-flat quadrant of the
    # gradient, whose thumbnail has almost no variance left to correlate).
    assert main >= 0.95 * 3 * n_bases, hits
    assert hits["resize"] == hits["reencode"] == n_bases, hits


def test_mirrored_copies_are_found(decided: dict[str, dict]) -> None:
    """The default pack pairs an image with the mirror of another (pHash against the mirror
    pHash, the mirrored thumbnail confirms), and finds crops by the learned copy hash,
    confirmed by the shifted check (measured: 20/20; pHash and dHash alone found 7/20)."""
    n_bases = sum(1 for k in decided if "_" not in k)
    hits = _found(decided)
    assert hits["flip"] == n_bases, hits
    assert hits["crop"] == n_bases, hits


def test_distinct_photos_never_pair_up(decided: dict[str, dict]) -> None:
    wrong = [
        (k, r["duplicate_of"])
        for k, r in decided.items()
        if r["duplicate_of"] and k.split("_")[0] != r["duplicate_of"].split("_")[0]
    ]
    assert wrong == []
    assert sum(r["decision"] == "keep" for r in decided.values()) >= sum(
        "_" not in k for k in decided
    )


# Two pairs of different garments laid on one cloth each (the clothing part of
# ../shared/photos): their 32x32 thumbnails correlate at 0.950 and 0.954 in values, past the
# 0.95 cut, because the silhouettes fill them alike; their edges correlate at 0.46.
GARMENTS = Path(__file__).resolve().parents[1] / ".." / "shared" / "photos" / "clothing"
LOOKALIKES = [
    ("a9fe576c-a408-4b3f-80de-d9cb04d36360", "8cc58313-b02b-459c-a280-682bc9711b91"),
    ("ba5bc47d-9651-4164-9310-b9d2108f9f6e", "a1bfb2ab-f92a-45a8-a57d-5406d119b180"),
]


@pytest.mark.skipif(not GARMENTS.is_dir(), reason="needs ../shared/photos")
def test_different_garments_on_one_cloth_are_not_copies(tmp_path: Path) -> None:
    """Values alone joined them; the edge check (dedup.min_edge_corr) parts them, while each
    garment's resized, re-encoded and brightened copies are still found."""
    tar = TarBuilder(tmp_path / "data.tar")
    for g, name in enumerate(n for pair in LOOKALIKES for n in pair):
        im = Image.open(GARMENTS / f"{name}.jpg").convert("RGB")
        items = [(f"g{g}", _jpeg(im))]
        items += [(f"g{g}_{k}", _jpeg(COPIES[k](im))) for k in ("resize", "reencode", "brightness")]
        for key, data in items:
            tar.file(f"{key}.jpg", data).file(f"{key}.txt", b"a shirt")
    tar.close()
    rows = _curated_rows(tmp_path)
    group = {k: (r["duplicate_of"] or k).split("_")[0] for k, r in rows.items()}
    assert {k: group[k] for k in ("g0", "g1", "g2", "g3")} == {f"g{i}": f"g{i}" for i in range(4)}
    assert all(group[k] == k.split("_")[0] for k in rows), group  # every copy with its own
    stats = json.loads((tmp_path / "run" / "stats.json").read_text())
    assert stats["duplicate_search"]["edge_rejected"] >= 2, stats["duplicate_search"]


def _curated_rows(tmp_path: Path, **options: object) -> dict[str, dict]:
    """``tmp_path/data.tar`` curated with the default pack (quality and hashes stages, no
    gates) into ``tmp_path/run``: its decision rows by id."""
    cfg = CurateConfig(
        dataset=str(tmp_path / "data.tar"), out=str(tmp_path / "run"),
        stages=["quality", "hashes"], gates=False, **options,  # type: ignore[arg-type]
    )  # fmt: skip
    curate(cfg)
    return {r["id"]: r for r in pq.read_table(tmp_path / "run" / "decisions.parquet").to_pylist()}


def _shirt(colour: tuple[int, int, int], seed: int = 3) -> Image.Image:
    """A product shot: one shirt-like outline filled with ``colour`` and a little shading
    and grain, on white."""
    import numpy as np
    from PIL import ImageDraw, ImageFilter

    im = Image.new("RGB", (240, 300), (255, 255, 255))
    outline = [(60, 40), (100, 30), (140, 30), (180, 40), (225, 95), (190, 120), (175, 100),
               (175, 270), (65, 270), (65, 100), (50, 120), (15, 95)]  # fmt: skip
    ImageDraw.Draw(im).polygon(outline, fill=colour)
    im = im.filter(ImageFilter.GaussianBlur(1))
    rng = np.random.default_rng(seed)
    x = np.asarray(im, np.float32)
    shade = np.linspace(0.85, 1.1, x.shape[0])[:, None, None]
    inside = x.min(axis=2, keepdims=True) < 250
    x = np.where(inside, x * shade + rng.normal(0, 4, x.shape), x)
    return Image.fromarray(np.clip(x, 0, 255).astype(np.uint8))


def test_one_product_in_several_colours_is_not_one_group(tmp_path: Path) -> None:
    """The thumbnail correlations are centred per channel: they see the outline, more than
    its colour, and one shirt shot alike in red and in brown was one group (its
    thumbnails correlate at 0.96). The hue check (dedup.min_hue_overlap) keeps both, while
    each colour's re-encoded, brightened and flipped copies still go with their own colour
    (and blue, which the correlation already told apart, stays apart)."""
    import yaml

    colours = {"red": (200, 30, 30), "brown": (120, 80, 40), "blue": (30, 60, 200)}
    tar = TarBuilder(tmp_path / "data.tar")
    for name, rgb in colours.items():
        im = _shirt(rgb)
        items = [(name, _jpeg(im))]
        items += [(f"{name}_{k}", _jpeg(COPIES[k](im))) for k in ("reencode", "brightness", "flip")]
        for key, data in items:
            tar.file(f"{key}.jpg", data).file(f"{key}.txt", f"a {name} shirt".encode())
    tar.close()
    rows = _curated_rows(tmp_path)
    group = {k: (r["duplicate_of"] or k).split("_")[0] for k, r in rows.items()}
    assert {k: group[k] for k in colours} == {k: k for k in colours}, group
    assert all(group[k] == k.split("_")[0] for k in rows), group
    stats = json.loads((tmp_path / "run" / "stats.json").read_text())
    assert stats["duplicate_search"]["hue_rejected"] >= 1, stats["duplicate_search"]

    # The control: the same run decided without the hue check joins red and brown.
    from clipaudit.curate.decide import decide_run
    from clipaudit.rules.schema import PACK_DIR

    pack = yaml.safe_load((PACK_DIR / "default.yaml").read_text())
    pack["dedup"]["min_hue_overlap"] = None
    (tmp_path / "nohue.yaml").write_text(yaml.safe_dump(pack))
    decide_run(tmp_path / "run", str(tmp_path / "nohue.yaml"), write_kept=False, gates=False)
    rows = {r["id"]: r for r in pq.read_table(tmp_path / "run" / "decisions.parquet").to_pylist()}
    joined = {k: (r["duplicate_of"] or k).split("_")[0] for k, r in rows.items()}
    assert joined["red"] == joined["brown"] and joined["blue"] == "blue", joined


def test_hue_histograms_are_blind_to_grey_and_mirrors() -> None:
    import numpy as np

    from clipaudit.curate.stages.hashes import THUMB, ThumbCorrelation, hue_histograms

    rng = np.random.default_rng(0)
    red = np.zeros((THUMB, THUMB, 3), np.uint8) + 255
    red[8:24, 4:20] = (200, 30, 30)
    blue = red.copy()
    blue[8:24, 4:20] = (30, 60, 200)
    grey = np.repeat(rng.integers(0, 255, (THUMB, THUMB, 1), dtype=np.uint8), 3, axis=2)
    px = np.stack([red, blue, grey, red[:, ::-1]]).reshape(4, -1)
    h = hue_histograms(px)
    assert np.allclose(h[[0, 1, 3]].sum(axis=1), 1.0) and np.isnan(h[2]).all()
    corr = ThumbCorrelation((px, np.ones(4, np.bool_)))
    overlap = corr.hue_overlap(np.array([0, 0, 0]), np.array([1, 2, 3]))
    assert overlap[0] < 0.01 and np.isnan(overlap[1]) and overlap[2] > 0.999


def test_a_reference_set_in_another_colour_is_not_a_copy(tmp_path: Path) -> None:
    """--against compares colours as the run's own search does: a brown shirt is not a copy
    of the reference set's red one, the red one's re-encoded copy is."""
    ref = TarBuilder(tmp_path / "ref.tar")
    ref.file("red.jpg", _jpeg(_shirt((200, 30, 30)))).file("red.txt", b"a red shirt")
    ref.close()
    tar = TarBuilder(tmp_path / "data.tar")
    tar.file("brown.jpg", _jpeg(_shirt((120, 80, 40)))).file("brown.txt", b"a brown shirt")
    copy = _jpeg(COPIES["reencode"](_shirt((200, 30, 30))))
    tar.file("red_copy.jpg", copy).file("red_copy.txt", b"a red shirt")
    tar.close()
    rows = _curated_rows(
        tmp_path, against=[str(tmp_path / "ref.tar")], against_cache=str(tmp_path / "cache")
    )
    assert rows["brown"]["decision"] == "keep" and rows["brown"]["duplicate_of_reference"] is None
    assert rows["red_copy"]["decision"] == "drop"
    assert rows["red_copy"]["duplicate_of_reference"] == "red"


def test_of_copies_of_one_size_the_least_compressed_is_kept(tmp_path: Path) -> None:
    """The resolution key tied on copies of one size and the id decided: a JPEG q30 copy
    named before its original was kept. More bytes (less compression) breaks the tie."""
    im = Image.open(PHOTOS[1]).convert("RGB")
    tar = TarBuilder(tmp_path / "data.tar")
    for key, quality in (("a_q30", 30), ("m_q60", 60), ("z_original", 95)):
        tar.file(f"{key}.jpg", _jpeg(im, quality)).file(f"{key}.txt", b"a temple in china")
    tar.close()
    rows = _curated_rows(tmp_path)
    assert rows["z_original"]["decision"] == "keep"
    assert rows["a_q30"]["duplicate_of"] == rows["m_q60"]["duplicate_of"] == "z_original"
