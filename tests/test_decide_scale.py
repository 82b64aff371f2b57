"""The sharded, columnar decide gives the old decide's answers, in bounded pieces.

``tests/legacy_decide.py`` is the decide that loaded every signal into one table and walked
rows in Python (frozen as it was before the rewrite): it is the reference here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from clipaudit.curate.decide import decide_run
from clipaudit.curate.keeper import Compact, resolve
from clipaudit.curate.rundir import RunDir
from clipaudit.errors import ClipauditError
from clipaudit.rules.schema import load_pack
from clipaudit.world.scale import write_signal_run
from tests import legacy_decide

SCALE_PACK = "name: scale\nextends: default\nquality:\n  min_side: 32\n"
PCT_PACK = SCALE_PACK + "alignment:\n  min: null\n  min_percentile: 20\n"
COLS = ["id", "decision", "reasons", "duplicate_of"]


def _legacy(run: Path, rules: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    record = json.loads((run / "run.json").read_text())
    sig = legacy_decide.load_signals(RunDir(run))
    table, stats = legacy_decide.decide_signals(
        sig, load_pack(rules), record.get("settings", {}).get("model")
    )
    return table.select(COLS).to_pylist(), stats


def _assert_same(run: Path, rules: str, stats: dict[str, Any]) -> None:
    want, want_stats = _legacy(run, rules)
    got = pq.read_table(run / "decisions.parquet", columns=COLS).to_pylist()
    assert got == want
    for key in ("input", "kept", "flagged", "dropped", "errored", "by_reason", "signals"):
        assert stats[key] == want_stats[key], key
    assert stats["duplicate_groups"] == want_stats["duplicate_groups"]
    assert stats["thresholds"] == want_stats["thresholds"]


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sim")
    write_signal_run(out, n=6_000, shard_size=1_000, seed=3, exact=0.03, near=0.05)
    (out / "scale.yaml").write_text(SCALE_PACK)
    (out / "pct.yaml").write_text(PCT_PACK)
    return out


@pytest.mark.parametrize("pack", ["scale.yaml", "pct.yaml"])
def test_sharded_decide_in_worker_processes_equals_the_old_decide(sim: Path, pack: str) -> None:
    run = sim / "run"
    stats = decide_run(run, str(sim / pack), workers=2, write_kept=False, gates=False)
    _assert_same(run, str(sim / pack), stats)
    # Every planted copy lands in its original's duplicate group (one keeper for both).
    planted = pq.read_table(sim / "planted.parquet").to_pylist()
    dec = {r["id"]: r for r in pq.read_table(run / "decisions.parquet", columns=COLS).to_pylist()}

    def root(i: str) -> str:
        return dec[i]["duplicate_of"] or i

    checked = 0
    for p in planted:
        pair = (dec[p["id"]], dec[p["original"]])
        if any("low_alignment" in r["reasons"] for r in pair):
            continue  # cut by the percentile before the duplicate search
        assert root(p["id"]) == root(p["original"]), p
        assert any(r["duplicate_of"] for r in pair), p
        checked += 1
    assert checked >= (0.5 if pack == "pct.yaml" else 1.0) * len(planted)
    phases = json.loads((run / "phases.json").read_text())
    assert set(phases["phases"]) >= {"map_rules", "reduce_duplicates", "map_decisions"}
    assert all(p["peak_rss_mib"] > 0 for p in phases["phases"].values())
    assert not (run / ".decide").exists()


def test_sharded_decide_equals_the_old_decide_on_the_demo_pool(tmp_path: Path) -> None:
    from clipaudit.curate.demo import run_demo

    run_demo(tmp_path / "demo", n=200, log=lambda m: None)
    run = tmp_path / "demo" / "run"
    stats = decide_run(run, "default", workers=2)
    _assert_same(run, "default", stats)
    assert stats["by_reason"].get("near_duplicate", 0) > 0


def test_a_hub_of_identical_hashes_is_searched_as_a_star() -> None:
    n = 3_000
    rng = np.random.default_rng(0)
    thumbs = rng.integers(0, 256, (n, 32 * 32 * 3), np.uint8)
    thumbs[1:10] = thumbs[0]  # nine true copies of the hub's best member
    hashes = {h: np.full(n, 12345, np.uint64) for h in ("phash", "dhash", "phash_mirror")}
    c = Compact(
        ids=pa.array([f"x{i:05d}" for i in range(n)]),
        alignment=np.linspace(1.0, 0.5, n),
        area=np.full(n, 100.0),
        pixel_hash=np.arange(n, dtype=np.int64),
        pixel_valid=np.ones(n, np.bool_),
        hashes=hashes,
        hash_valid=np.ones(n, np.bool_),
    )
    out = resolve(c, load_pack("default").dedup, lambda pos: [thumbs[p].tobytes() for p in pos])
    assert out.stats["hub_keys"] == 1 and out.stats["hub_members"] == n
    assert out.stats["candidate_pairs"] <= 2 * n  # a star, not 4.5 million pairs
    assert sorted(np.flatnonzero(out.keeper >= 0).tolist()) == list(range(1, 10))
    assert set(out.keeper[1:10].tolist()) == {0}


def test_a_damaged_or_missing_signal_shard_is_one_line_naming_it(sim: Path, tmp_path: Path) -> None:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(sim / "run", run)
    shard = run / "signals" / "shard-00002.parquet"
    shard.write_bytes(shard.read_bytes()[:500])
    with pytest.raises(ClipauditError, match=r"shard-00002\.parquet.*damaged.*clipaudit curate"):
        decide_run(run, str(sim / "scale.yaml"), write_kept=False)
    r = subprocess.run(
        [sys.executable, "-m", "clipaudit", "decide", str(run), "--rules", str(sim / "scale.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "shard-00002.parquet" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    shard.unlink()
    with pytest.raises(ClipauditError, match=r"shard-00002\.parquet.*missing.*markers"):
        decide_run(run, str(sim / "scale.yaml"), write_kept=False)
