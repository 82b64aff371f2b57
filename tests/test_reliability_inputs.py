"""Hostile and odd inputs through the real ``curate``: every sample ends with a decision or
the reason code naming its problem, or the run stops with one clear error; never a crash, a
hang or a lost sample. The catalogue lives in ``tests/hostile/`` (``bench/reliability.py``
reruns all of it for the README table)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from clipaudit.data import Sample, open_dataset, write_dataset
from clipaudit.data.formats import json_loads_text
from tests.hostile import inputs, shards
from tests.hostile.images import IMAGE_CLASSES
from tests.hostile.runner import ClassResult


def assert_clean(res: ClassResult) -> None:
    assert res.failed == 0 and not res.unexpected, "\n".join(res.unexpected)


# Expected (cases, reason-code count) per image class, three formats each.
IMAGE_COUNTS = {
    "zero-byte files": (18, 18),
    "decompression bombs, absurd dimensions": (39, 24),
    "animated GIF, APNG, WebP": (21, 0),
    "ICC profiles (wide gamut, CMYK, broken, mismatched, oversized)": (18, 0),
    "CMYK, 16-bit, palette+transparency, float": (42, 0),
    "EXIF orientation (valid, bogus, broken)": (39, 0),
    "SVG and non-image bytes as images": (18, 18),
}


@pytest.mark.parametrize("name", sorted(IMAGE_CLASSES))
def test_image_class(name: str, tmp_path: Path) -> None:
    # One class in every format here (bench/reliability.py runs all of them in all three).
    formats = inputs.IMAGE_FORMATS if name.startswith("zero") else ("webdataset",)
    res = inputs.run_image_class(name, IMAGE_CLASSES[name], tmp_path, formats=formats)
    assert_clean(res)
    if name in IMAGE_COUNTS:
        cases, reasons = IMAGE_COUNTS[name]
        scale = len(formats) / 3
        assert (res.cases, res.counts["reason"]) == (cases * scale, reasons * scale)
    if name.startswith("truncated"):
        # Every cut but the last two bytes is a decode error in every format.
        assert res.counts["reason"] >= 35 * len(formats)


def test_tar_members_links_devices_and_unsafe_names(tmp_path: Path) -> None:
    case = shards.tar_members(tmp_path)
    res = inputs.run_dataset_cases("tar members", [case], tmp_path)
    assert_clean(res)
    got = {s.id: s.error for s in open_dataset(case.path)}
    for key in ("symlink", "hardlink", "fifo", "chardev", "../escape", "/abs/path"):
        assert got[key] == "unsafe_path", key
    assert got["svg_only"] == "missing_image" and got["zero"] is None
    assert "folder" not in got  # a directory member is not a sample


def test_member_names_that_are_not_utf8_become_escaped_text(tmp_path: Path) -> None:
    case = shards.tar_raw_names(tmp_path)
    ids = sorted(s.id for s in open_dataset(case.path))
    assert ids == sorted(["caf\\xe9", "ok", "\\xff\\xfe"])
    res = inputs.run_dataset_cases("raw names", [case], tmp_path)
    assert_clean(res)
    assert res.counts["ok"] == 1  # the count check: all three decided


def test_truncated_and_damaged_shards(tmp_path: Path) -> None:
    cases = shards.tar_truncated(tmp_path)
    res = inputs.run_dataset_cases("tars", cases, tmp_path)
    assert_clean(res)
    assert res.counts["clear_error"] >= 2


def test_a_header_damaged_mid_shard_is_one_clear_error(tmp_path: Path) -> None:
    case = next(c for c in shards.tar_truncated(tmp_path) if c.name.startswith("tar header"))
    with pytest.raises(Exception, match=r"is damaged at byte \d+: the members after it"):
        list(open_dataset(case.path))


def test_a_member_over_the_size_cap_is_not_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clipaudit.data import webdataset

    monkeypatch.setattr(webdataset, "MAX_MEMBER_BYTES", 1000)
    samples = [
        Sample("big", b"\xff\xd8" + bytes(5000), caption="c", image_ext="jpg"),
        Sample("small", b"\xff\xd8" + bytes(10), caption="c", image_ext="jpg"),
    ]
    write_dataset(samples, tmp_path / "d", "webdataset")
    got = {s.id: (s.error, s.image) for s in open_dataset(tmp_path / "d")}
    assert got["big"] == ("image_too_large", None)
    assert got["small"][0] is None and got["small"][1] is not None


def test_duplicate_keys_and_ids_name_the_repeated_id(tmp_path: Path) -> None:
    res = inputs.run_dataset_cases("dups", shards.duplicates(tmp_path), tmp_path)
    assert_clean(res)
    assert res.counts["clear_error"] == res.cases == 6


def test_captions_odd_bytes_and_megabytes(tmp_path: Path) -> None:
    cases = [shards.captions_tar(tmp_path), shards.captions_parquet(tmp_path)]
    res = inputs.run_dataset_cases("captions", cases, tmp_path)
    assert_clean(res)
    got = {s.id: s for s in open_dataset(cases[0].path)}
    # Not UTF-8: read as Windows-1252 (a superset of Latin-1), not four U+FFFD.
    assert got["latin1"].caption == "café crème brûlée"
    assert len(got["eight_megabytes"].caption or "") == 8 << 20
    assert got["json_lone_surrogate"].caption == "bad \ufffd half"
    assert got["json_lone_surrogate"].url == "https://x.org/\ufffd"
    assert got["json_deep"].error == "bad_metadata"


def test_json_loads_text_keeps_pairs_and_replaces_lone_halves() -> None:
    assert json_loads_text(b'"\\ud83d\\ude00 \\ud800 \\udfff"') == "\U0001f600 \ufffd \ufffd"
    with pytest.raises(ValueError, match="nested too deeply"):
        json_loads_text("[" * 100_000 + "]" * 100_000)


def test_parquet_nan_wrong_types_missing_columns_and_damage(tmp_path: Path) -> None:
    res = inputs.run_dataset_cases("pq", shards.parquet_columns(tmp_path), tmp_path)
    assert_clean(res)
    assert res.counts["clear_error"] == 5  # no image column, schema drift, 3 damaged files


def test_imagefolder_paths_links_and_fifos(tmp_path: Path) -> None:
    res = inputs.run_dataset_cases("if", shards.imagefolder_cases(tmp_path), tmp_path)
    assert_clean(res)


def test_hostile_xmp_is_refused_in_every_container(tmp_path: Path) -> None:
    res = inputs.run_xmp(tmp_path)
    assert_clean(res)
    assert res.cases == 48 and res.counts["reason"] >= 30


def test_damaged_c2pa_manifests_are_values(tmp_path: Path) -> None:
    res = inputs.run_c2pa(tmp_path)
    assert_clean(res)
    assert res.counts["reason"] >= 4


def test_absurd_aspect_ratio_costs_no_more_than_a_normal_image() -> None:
    from clipaudit.models import load_clip

    clip = load_clip("random:clipaudit-tiny")
    strip = Image.new("RGB", (1, 100_000), (9, 9, 9))
    t0 = time.perf_counter()
    x = clip.preprocess(strip)
    assert x.shape == (3, 64, 64) and time.perf_counter() - t0 < 2.0  # was 25 s and 2.8 GB
    # Up to 16:1 nothing changes; beyond, the cut keeps what the centre crop keeps.
    rng = np.random.default_rng(0)
    for w, h in ((300, 20), (20, 300), (640, 40)):
        im = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
        ours, theirs = clip.preprocess(im), clip.preprocess.inner(im)  # type: ignore[attr-defined]
        if max(w, h) <= 16 * min(w, h):
            assert (ours == theirs).all()
        else:
            assert float((ours - theirs).abs().mean()) < 0.05
    assert "centre cut to 16:1" in clip.provenance.preprocess


def test_null_hashes_keep_64_bits_at_decide_time(tmp_path: Path) -> None:
    """A run with one unreadable image used to round every pHash to 53 bits (float64)."""
    from clipaudit.curate.decide import load_signals
    from clipaudit.curate.rundir import RunDir, table_bytes

    big = -9217254032523853825
    run = RunDir(tmp_path)
    (tmp_path / "signals").mkdir()
    table = pa.table({"id": ["a", "b"], "row": [0, 1], "phash": pa.array([big, None], pa.int64())})
    (tmp_path / "signals" / "shard-00000.parquet").write_bytes(table_bytes(table))
    sig = load_signals(run)
    assert sig["phash"][0] == big and sig["phash"][1] is None


def test_ids_repeated_across_shards_are_one_clear_error(tmp_path: Path) -> None:
    from clipaudit.curate.decide import load_signals
    from clipaudit.curate.rundir import RunDir, table_bytes
    from clipaudit.errors import DuplicateIdError

    (tmp_path / "signals").mkdir()
    for k in range(2):
        t = pa.table({"id": ["x", f"only{k}"], "row": [0, 1]})
        (tmp_path / "signals" / f"shard-{k:05d}.parquet").write_bytes(table_bytes(t))
    with pytest.raises(DuplicateIdError, match="'x'"):
        load_signals(RunDir(tmp_path))
