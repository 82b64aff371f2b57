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
from clipaudit.curate.decide.keeper import Compact, resolve
from clipaudit.curate.rundir import RunDir
from clipaudit.errors import ClipauditError
from clipaudit.rules.schema import load_pack
from clipaudit.world.scale import write_signal_run
from tests import legacy_decide
from tests.conftest import world_run

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
    # alignment_scored is newer than the old decide (whether the run has the scores at all).
    thresholds = dict(stats["thresholds"])
    assert isinstance(thresholds.pop("alignment_scored"), bool)
    assert thresholds == want_stats["thresholds"]


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
    from clipaudit.demo.images import run_demo

    run_demo(tmp_path / "demo", n=200, log=lambda m: None)
    run = tmp_path / "demo" / "run"
    # The old decide knew greedy stars and no crop search: the default pack with those two
    # deliberate changes (components, crops; issue 19) turned back gives the same rows.
    pack = tmp_path / "legacy.yaml"
    pack.write_text("name: legacy\nextends: default\ndedup:\n  crops: false\n  groups: star\n")
    stats = decide_run(run, str(pack), workers=2)
    _assert_same(run, str(pack), stats)
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
        timeout=600,  # a CLI start on a loaded 2-core machine; the decide itself is quick
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "shard-00002.parquet" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    shard.unlink()
    with pytest.raises(ClipauditError, match=r"shard-00002\.parquet.*missing.*markers"):
        decide_run(run, str(sim / "scale.yaml"), write_kept=False)


def test_a_full_disk_at_any_write_of_decide_is_clear_and_leaves_the_old_output(
    sim: Path, tmp_path: Path
) -> None:
    """Each of decide's writes (the map's per-shard parts, the decisions, the stats) fails in
    turn as a full disk would: one clear error, the previous decisions untouched, no scratch
    folder left, and the same command then finishes with the same rows."""
    import errno
    import shutil

    from clipaudit.data.formats import OutputError
    from tests.hostile.faults import failing_replace

    run = tmp_path / "run"
    shutil.copytree(sim / "run", run)
    pack = str(sim / "scale.yaml")
    decide_run(run, pack, write_kept=False, gates=False)
    before = (run / "decisions.parquet").read_bytes()
    with failing_replace(run, at=-1, code=errno.ENOSPC) as seen:
        decide_run(run, pack, write_kept=False, gates=False)
    writes = seen[0]
    assert writes >= 3 * 6  # reasons, compact, dups and decisions per shard, then the rest
    for at in sorted({1, 7, 13, writes - 2, writes - 1, writes}):
        with (
            failing_replace(run, at=at, code=errno.ENOSPC),
            pytest.raises(OutputError, match=r"No space left on device.*run the same command"),
        ):
            decide_run(run, pack, write_kept=False, gates=False)
        assert not (run / ".decide").exists()
        if at < writes - 2:  # failed before the decisions were replaced
            assert (run / "decisions.parquet").read_bytes() == before
    decide_run(run, pack, write_kept=False, gates=False)
    assert (run / "decisions.parquet").read_bytes() == before


def test_thumbnails_spilled_in_blocks_correlate_as_held_at_once(tmp_path: Path) -> None:
    from clipaudit.curate.decide.keeper import ThumbStore

    rng = np.random.default_rng(1)
    n = 700
    px = rng.integers(0, 256, (n, 32 * 32 * 3), np.uint8)
    px[1::7] = px[0::7][: len(px[1::7])]  # some copies, across blocks
    valid = np.ones(n, np.bool_)
    valid[5] = False
    need = np.arange(0, 2 * n, 2)  # positions need not be 0..n-1

    def reader(pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        at = np.searchsorted(need, pos)
        return px[at], valid[at]

    a = rng.choice(need, 5_000)
    b = rng.choice(need, 5_000)
    held = ThumbStore(need, reader, None)
    spilled = ThumbStore(need, reader, tmp_path, block_rows=64, hold_rows=100)
    assert held.path is None and spilled.path is not None and spilled.path.is_file()
    flags = rng.random(len(a)) < 0.5
    for mirror in (np.zeros(len(a), np.bool_), np.ones(len(a), np.bool_), flags):
        lift = rng.random(len(a)) < 0.5
        want = held.correlate(a, b, mirror, lift)
        got = spilled.correlate(a, b, mirror, lift)
        assert np.array_equal(np.isinf(want), np.isinf(got))
        assert np.allclose(want[np.isfinite(want)], got[np.isfinite(got)])
    copies = need[1::7]
    flags0 = np.zeros(len(copies), np.bool_)
    assert (held.correlate(copies, need[0::7][: len(copies)], flags0, flags0) > 0.999).all()
    spilled.close()
    assert not spilled.path.exists()


@pytest.mark.parametrize("fmt", ["webdataset", "parquet"])
def test_the_kept_set_written_in_parallel_is_byte_identical_to_a_serial_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    """Output shards straddle input shards (7 kept samples an output shard, 40 samples an
    input shard): two worker processes write what one process writes, byte for byte."""
    from clipaudit.curate.decide import writer as kept_writer

    monkeypatch.setattr(kept_writer, "KEPT_SHARD_SIZE", 7)
    run = world_run(
        tmp_path,
        n=120,
        format=fmt,
        shard_size=40,
        rates={"exact_duplicate": 0.1, "near_duplicate": 0.1},
        stages=["quality", "hashes"],
        gates=False,
    ).run
    serial = {p.name: p.read_bytes() for p in sorted((run / "kept").iterdir())}
    decide_run(run, "default", workers=2, gates=False)
    parallel = {p.name: p.read_bytes() for p in sorted((run / "kept").iterdir())}
    kept = sum(
        r["decision"] in ("keep", "flag")
        for r in pq.read_table(run / "decisions.parquet", columns=["decision"]).to_pylist()
    )
    assert len(serial) == -(-kept // 7) >= 10
    assert parallel == serial


def test_decide_lists_the_signal_shards_once_not_once_a_shard(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each map job listed and checked every signal shard (read_metadata of all of them), so
    decide grew with shards²: 2,000 shards of 5 rows ran past 10 minutes."""
    from clipaudit.curate import signal_shards

    write_signal_run(tmp_path, n=400, shard_size=10, seed=5)
    (tmp_path / "scale.yaml").write_text(SCALE_PACK)
    reads: list[int] = []
    real = signal_shards.pq.read_metadata

    def counted(*a: Any, **k: Any) -> Any:
        reads.append(1)
        return real(*a, **k)

    monkeypatch.setattr(signal_shards.pq, "read_metadata", counted)
    stats = decide_run(
        tmp_path / "run", str(tmp_path / "scale.yaml"), workers=1, write_kept=False, gates=False
    )
    assert stats["input"] == 400 and stats["adds_up"]
    assert len(reads) <= 2 * 40  # 40 shards: a listing or two, not one per map job (1,600+)


def test_a_scratch_folder_a_killed_run_still_writes_into_is_moved_aside(
    sim: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A resumed 5,000-shard curate stopped on "Cannot write RUN/.decide: File exists": a
    worker of the killed process wrote into the scratch folder while it was being removed.
    The old folder is moved aside; the decide runs in a fresh one and cleans up both."""
    import shutil

    from clipaudit.curate.decide import run as decide_module

    run = tmp_path / "run"
    shutil.copytree(sim / "run", run)
    late = run / decide_module.WORK / "reasons-00000.parquet"
    late.parent.mkdir()
    late.write_bytes(b"a late write of the killed run")
    real_rmtree = shutil.rmtree
    calls: list[Path] = []

    def writer_wins_once(path: Any, ignore_errors: bool = False, **kw: Any) -> None:
        calls.append(Path(path))
        if len(calls) > 1:  # the first removal loses the race; later ones work
            real_rmtree(path, ignore_errors=ignore_errors, **kw)

    monkeypatch.setattr(decide_module.shutil, "rmtree", writer_wins_once)
    stats = decide_run(run, str(sim / "scale.yaml"), write_kept=False, gates=False)
    assert stats["input"] == 6_000 and stats["adds_up"]
    assert calls[0] == run / decide_module.WORK
    assert calls[1].name.startswith(f"{decide_module.WORK}.stale-")  # moved aside, removed
    left = sorted(p.name for p in run.iterdir() if p.name.startswith(decide_module.WORK))
    assert left == []
