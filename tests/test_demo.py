from __future__ import annotations

import json
from pathlib import Path

import pytest

from clipaudit.demo.images import run_demo

FIXTURE = Path(__file__).parent / "fixtures" / "demo200_stats.json"


def same_stats(got: object, want: object, where: str = "stats") -> list[str]:
    """Where ``got`` differs from ``want``: everything exactly, except that floats may
    differ in the last bits (another CPU's vector unit sums in another order)."""
    if isinstance(want, dict) and isinstance(got, dict):
        out = [f"{where}: keys {sorted(set(got) ^ set(want))}"] if set(got) != set(want) else []
        for k in sorted(set(got) & set(want)):
            out += same_stats(got[k], want[k], f"{where}.{k}")
        return out
    if isinstance(want, list) and isinstance(got, list) and len(got) == len(want):
        pairs = enumerate(zip(got, want, strict=True))
        return [d for i, (g, w) in pairs for d in same_stats(g, w, f"{where}[{i}]")]
    if isinstance(want, float) and isinstance(got, float):
        return (
            [] if got == pytest.approx(want, rel=1e-6, abs=1e-9) else [f"{where}: {got} != {want}"]
        )
    return [] if got == want and type(got) is type(want) else [f"{where}: {got!r} != {want!r}"]


def test_demo_scores_a_small_pool_against_its_truths(tmp_path: Path) -> None:
    report = run_demo(tmp_path / "demo", n=200, log=lambda m: None)
    stats = json.loads((tmp_path / "demo" / "run" / "stats.json").read_text())
    # Refactors keep behaviour: the run's stats are those recorded before the layout moved.
    assert same_stats(stats, json.loads(FIXTURE.read_text())) == []
    assert stats["input"] == 200 and stats["adds_up"]
    assert stats["kept"] + stats["dropped"] + stats["errored"] == 200
    assert "timings" not in stats  # run files do not depend on machine speed
    truth = stats["truth_scores"]
    assert truth == report["truth"]
    assert truth["misaligned_caption"]["f1"] >= 0.85
    assert truth["near_duplicate_by_transform"]["exact"]["recall"] == 1.0
    assert truth["near_duplicate_pair_precision"] >= 0.95
    drops = truth["near_duplicate_drops"]
    assert drops["dropped"] == stats["by_reason"]["near_duplicate"]
    assert drops["precision"] >= 0.95
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


def test_the_stats_comparison_sees_a_changed_count() -> None:
    want = json.loads(FIXTURE.read_text())
    assert same_stats(want, want) == []
    changed = json.loads(FIXTURE.read_text())
    changed["kept"] += 1
    assert same_stats(changed, want) == [f"stats.kept: {want['kept'] + 1} != {want['kept']}"]
    changed = json.loads(FIXTURE.read_text())
    changed["duplicate_search"]["crop_checks"] = 1.0  # an int is not a float
    assert len(same_stats(changed, want)) == 1


def test_a_demo_folder_made_with_other_settings_is_refused_not_reused(tmp_path: Path) -> None:
    """`demo --out d --n 20` over a `--n 10` folder printed the 10-sample pool's figures."""
    from clipaudit.demo.loop import world_pool
    from clipaudit.errors import ClipauditError

    writes: list[Path] = []

    def write(pool: Path) -> None:
        pool.mkdir(parents=True)
        (pool / "world.json").write_text("{}")
        writes.append(pool)

    world_pool(tmp_path, write, "a pool", lambda m: None, {"n": 10, "seed": 0})
    world_pool(tmp_path, write, "a pool", lambda m: None, {"n": 10, "seed": 0})
    assert len(writes) == 1  # the same settings: reused
    for other in ({"n": 20, "seed": 0}, {"n": 10, "seed": 5}):
        with pytest.raises(ClipauditError, match="holds a demo made with"):
            world_pool(tmp_path, write, "a pool", lambda m: None, other)
    assert len(writes) == 1
