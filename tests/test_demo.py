from __future__ import annotations

import json
from pathlib import Path

from clipaudit.curate.demo import run_demo


def test_demo_scores_a_small_pool_against_its_truths(tmp_path: Path) -> None:
    report = run_demo(tmp_path / "demo", n=200, log=lambda m: None)
    stats = json.loads((tmp_path / "demo" / "run" / "stats.json").read_text())
    assert stats["input"] == 200 and stats["adds_up"]
    assert stats["kept"] + stats["dropped"] + stats["errored"] == 200
    assert "timings" not in stats  # run files do not depend on machine speed
    truth = stats["truth_scores"]
    assert truth == report["truth"]
    assert truth["misaligned_caption"]["f1"] >= 0.85
    assert truth["near_duplicate_by_transform"]["exact"]["recall"] == 1.0
    assert truth["near_duplicate_pair_precision"] >= 0.95
    assert stats["thresholds"]["alignment_min"] == 0.48  # the calibrated world-clip cut
    assert stats["gates"]["success"]
    # Exact rights and watermark plants are found (issue 5): each planted issue's code fires
    # on at least 95% of its samples, and rarely elsewhere.
    sig = truth["signals_by_planted_issue"]
    exact = ("exif_copyright", "xmp_prohibited", "stock_url", "xrobots_noai", "license_nc")
    for issue in (*exact, "sdxl_watermark"):
        assert sig[issue]["planted"] > 0, issue
        assert sig[issue]["recall"] >= 0.95, (issue, sig[issue])
        assert sig[issue]["false_positive_rate"] <= 0.02, (issue, sig[issue])
    assert sig["watermarked"]["planted"] > 0 and sig["watermarked"]["recall"] is not None
