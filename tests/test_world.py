from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from clipaudit.data import decode_image, open_dataset
from clipaudit.errors import ClipauditError
from clipaudit.world import PoolConfig, generate_pool, scenes, write_world
from clipaudit.world.pool import sdxl_bits_matched
from clipaudit.world.vocab import BIAS_RATE, BIASED_GROUP, BIASED_OCCUPATION, COLORS, SHAPES


def test_scenes_are_deterministic_and_splits_disjoint() -> None:
    a = [s.render(64).tobytes() for s in scenes("train", 5, seed=3)]
    b = [s.render(64).tobytes() for s in scenes("train", 5, seed=3)]
    c = [s.render(64).tobytes() for s in scenes("eval-retrieval", 5, seed=3)]
    assert a == b
    assert not set(a) & set(c)
    assert len(set(a)) == 5
    # Scene i does not depend on the scenes before it.
    assert [s.render(64).tobytes() for s in scenes("train", 2, seed=3, start=3)] == a[3:]


def test_world_vocabulary_floor() -> None:
    assert len(SHAPES) >= 6 and len(COLORS) >= 8


def test_eval_objects_cover_the_grid_once_per_cycle() -> None:
    truths = [s.truth()["objects"] for s in scenes("eval-objects", 96)]
    assert all(len(t) == 1 for t in truths)
    assert len({(t[0]["shape"], t[0]["color"], t[0]["size"]) for t in truths}) == 96


def test_training_split_carries_the_planted_bias() -> None:
    people = [s.truth() for s in scenes("train", 3000) if s.kind == "person"]
    doctors = [p["group"] for p in people if p["occupation"] == BIASED_OCCUPATION]
    others = [p["group"] for p in people if p["occupation"] != BIASED_OCCUPATION]
    share = doctors.count(BIASED_GROUP) / len(doctors)
    assert abs(share - BIAS_RATE) < 0.06, share
    assert abs(others.count(BIASED_GROUP) / len(others) - 0.5) < 0.05
    balanced = Counter(
        (s.truth()["group"], s.truth()["occupation"]) for s in scenes("eval-people", 100)
    )
    assert set(balanced.values()) == {10}


@pytest.fixture(scope="module")
def pool() -> list:
    return generate_pool(PoolConfig(n=300, seed=0))


def test_pool_labels_every_planted_issue(pool: list) -> None:
    by_id = {it.sample.id: it for it in pool}
    assert [it.sample.id for it in pool] == [f"{i:06d}" for i in range(300)]
    counts = Counter(i for it in pool for i in it.issues)
    assert counts["exact_duplicate"] == 15 and counts["near_duplicate"] == 15
    originals = Counter(i for it in pool if it.duplicate_of is None for i in it.issues)
    assert originals["misaligned"] == 26  # 10% of the 270 originals, in pairs
    for name in (
        "watermarked",
        "stock_url",
        "exif_copyright",
        "xmp_prohibited",
        "xrobots_noai",
        "sdxl_watermark",
        "caption_copyright",
        "license_nc",
    ):
        assert counts[name] > 0, name
    for it in pool:
        s = it.sample
        if "exact_duplicate" in it.issues:
            assert s.image == by_id[it.duplicate_of].sample.image
        if "near_duplicate" in it.issues:
            assert s.image != by_id[it.duplicate_of].sample.image and it.transform
            assert decode_image(s.image).image is not None
        if "misaligned" in it.issues:
            assert s.caption != it.truth["caption"]
        elif "caption_copyright" not in it.issues:
            assert s.caption == it.truth["caption"]
        if "caption_copyright" in it.issues:
            assert "©" in (s.caption or "")
        if "xrobots_noai" in it.issues:
            assert (
                "noai" in s.meta["headers"]["x-robots-tag"]
                or "noimageai" in s.meta["headers"]["x-robots-tag"]
            )
        if "stock_url" in it.issues:
            assert any(
                d in (s.url or "")
                for d in ("shutterstock", "gettyimages", "istockphoto", "alamy", "dreamstime")
            )
        im = Image.open(io.BytesIO(s.image))
        has_exif = "StockPix" in im.getexif().get(0x8298, "")
        assert has_exif == ("exif_copyright" in it.issues)
        has_xmp = b"DMI-PROHIBITED-AIMLTRAINING" in im.info.get("xmp", b"")
        assert has_xmp == ("xmp_prohibited" in it.issues)


def test_sdxl_bits_are_recoverable(pool: list) -> None:
    marked = [it for it in pool if "sdxl_watermark" in it.issues]
    attempted = [it for it in pool if "sdxl_bits_matched" in it.truth and it.duplicate_of is None]
    clean = [it for it in pool if not it.issues and "sdxl_bits_matched" not in it.truth][:8]
    assert len(marked) >= 3
    for it in marked:
        assert sdxl_bits_matched(Image.open(io.BytesIO(it.sample.image))) >= 36
    # An embed the decoder cannot read is not labelled, and its count is kept in the truth.
    for it in attempted:
        assert ("sdxl_watermark" in it.issues) == (it.truth["sdxl_bits_matched"] >= 36)
    for it in clean:
        assert sdxl_bits_matched(Image.open(io.BytesIO(it.sample.image))) <= 33


def test_write_world_pool_with_labels(tmp_path: Path) -> None:
    rec = write_world(tmp_path / "w", n=60, format="parquet", rates={"misaligned": 0.3})
    ds = open_dataset(tmp_path / "w" / "data")
    samples = list(ds)
    assert len(samples) == 60 and rec["samples"] == 60
    labels = [json.loads(x) for x in (tmp_path / "w" / "labels.jsonl").read_text().splitlines()]
    assert [x["id"] for x in labels] == [s.id for s in samples]
    planted = json.loads((tmp_path / "w" / "planted.json").read_text())
    assert planted["misaligned"] == sorted(x["id"] for x in labels if "misaligned" in x["issues"])
    assert len(planted["misaligned"]) == rec["planted_counts"]["misaligned"]
    # 30% of the 54 originals, in pairs; copies of a misaligned sample are misaligned too.
    assert sum("misaligned" in x["issues"] for x in labels if x["duplicate_of"] is None) == 16
    assert all(s.meta["world"] == "clipaudit-world" for s in samples)


def test_write_world_errors(tmp_path: Path) -> None:
    with pytest.raises(ClipauditError, match="Unknown world split 'nope'"):
        write_world(tmp_path / "a", split="nope", n=3)
    with pytest.raises(ClipauditError, match="must be between 0 and 1"):
        write_world(tmp_path / "b", n=3, rates={"misaligned": 2.0})
    with pytest.raises(ClipauditError, match="at least 256 px"):
        write_world(tmp_path / "c", n=3, size=128)
