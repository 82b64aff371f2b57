"""The matched-FPR comparison of ``bench/visible_matched_fpr.py``: rates read off the curve."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

spec = importlib.util.spec_from_file_location(
    "visible_matched_fpr", Path(__file__).parents[1] / "bench" / "visible_matched_fpr.py"
)
assert spec is not None and spec.loader is not None
mf = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mf)


def test_detection_is_read_at_the_clean_rate_asked_for() -> None:
    clean = np.arange(200) / 200.0  # 0.0 … 0.995
    marked = np.array([0.999, 0.996, 0.99, 0.9, 0.5])
    # 1% of 200 clean = 2 flagged: the threshold is the third-highest clean score, 0.985.
    assert mf.tpr_at(clean, marked, 0.01) == {"clean_flagged": 2, "detected": 0.6}
    # No clean photo may be flagged: only what beats the best clean score counts.
    assert mf.tpr_at(clean, marked, 0.0) == {"clean_flagged": 0, "detected": 0.4}
    assert mf.tpr_at(clean, marked, 1.0)["clean_flagged"] == 200


def test_partial_auc_is_one_for_separated_scores_and_lower_otherwise() -> None:
    clean = np.linspace(0, 0.5, 400)
    assert mf.pauc(clean, np.full(10, 0.9), 0.01) == 1.0
    mixed = np.r_[np.full(5, 0.9), np.full(5, 0.1)]
    assert mf.pauc(clean, mixed, 0.01) == 0.5


def test_the_paired_gap_sees_a_better_detector_and_not_a_copy() -> None:
    rng = np.random.default_rng(1)
    clean, marked = rng.normal(0, 1, 800), rng.normal(2, 1, 400)
    same = mf.paired_pauc_gap((clean, marked), (clean, marked), reps=50)
    assert same["gap"] == 0.0 and same["ci95"] == [0.0, 0.0]
    better = mf.paired_pauc_gap((clean, marked), (clean, marked + 1.5), reps=50)
    assert better["gap"] > 0.2 and better["ci95"][0] > 0  # the interval leaves 0 out


def test_earlier_detectors_are_carried_only_against_the_same_pool_and_first() -> None:
    def rec(sha: str) -> dict:
        return {"weights_sha256": sha, "auroc": 0.9}

    before = {"shipped": rec("aa"), "old-trial": rec("bb"), "t": rec("old")}
    earlier = {"clean": 10, "marked": 10, "detectors": before}
    now = {"clean": 10, "marked": 10, "detectors": {"shipped": rec("aa"), "t": rec("new")}}
    got = mf.carry_earlier(earlier, now)["detectors"]
    assert list(got) == ["shipped", "t", "old-trial"]
    assert got["t"]["weights_sha256"] == "new"  # measured now wins over the earlier record
    assert got["old-trial"]["carried_from_an_earlier_run"] is True
    assert "carried_from_an_earlier_run" not in got["shipped"]
    other_first = {"clean": 10, "marked": 10, "detectors": {"shipped": rec("cc")}}
    assert list(mf.carry_earlier(earlier, other_first)["detectors"]) == ["shipped"]
    other_pool = {"clean": 12, "marked": 10, "detectors": {"shipped": rec("aa")}}
    assert list(mf.carry_earlier(earlier, other_pool)["detectors"]) == ["shipped"]


def test_scores_are_kept_per_detector_and_image_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PIL import Image

    import clipaudit.safety.visible.detector as det

    bundled = Path(det.__file__).parents[2] / "models" / "bundled" / "watermark-detector"
    paths = []
    for i, colour in enumerate(("white", "navy")):
        paths.append(tmp_path / f"{i}.jpg")
        Image.new("RGB", (64, 48), colour).save(paths[-1])
    first = mf.scores(bundled, paths, tmp_path)
    (kept,) = tmp_path.glob("visible-scores-*.npy")
    assert first.shape == (2,) and np.array_equal(np.load(kept), first)

    def no_loading(_: Path) -> None:
        raise AssertionError("scored again")

    monkeypatch.setattr(det, "load_from", no_loading)
    assert np.array_equal(mf.scores(bundled, paths, tmp_path), first)  # from the cache
    with pytest.raises(AssertionError, match="scored again"):  # another image list: scored
        mf.scores(bundled, paths[:1], tmp_path)
    # The same names in another pool's folder are other images: scored, not read back.
    other = tmp_path / "another-pool"
    other.mkdir()
    moved = [other / p.name for p in paths]
    for p, q in zip(paths, moved, strict=True):
        q.write_bytes(p.read_bytes())
    with pytest.raises(AssertionError, match="scored again"):
        mf.scores(bundled, moved, tmp_path)


def test_detection_by_style_and_without_lone_logos() -> None:
    clean = np.linspace(0.0, 0.5, 200)  # 1% of 200: the third-highest clean score, about 0.495
    spots = (("single", "logo"), ("center", "logo"), ("corner", "logo"), ("single", "text"))
    truth = [{"layout": layout, "kind": kind} for layout, kind in spots]
    marked = np.array([0.1, 0.2, 0.9, 0.95])
    got = mf.by_style(clean, marked, truth)
    assert got["layout"]["single"] == {"detected": 0.5, "n": 2}
    assert got["kind"]["logo"] == {"detected": round(1 / 3, 3), "n": 3}
    assert got["layout_kind"]["corner/logo"] == {"detected": 1.0, "n": 1}
    # Without the two lone logos the rest is found and separates perfectly.
    assert got["without_lone_logos"] == {"n": 2, "auroc": 1.0, "detected": 1.0}
