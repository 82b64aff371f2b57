from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from clipaudit.curate.decide import decide_run, dedup
from clipaudit.curate.decide.semdedup import TARGET_CLUSTER, semantic_pairs, spherical_kmeans
from clipaudit.errors import ClipauditError
from clipaudit.rules.schema import load_pack
from tests.conftest import WorldRun, WorldRuns


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _planted(n: int, pairs: int, noise: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 32))
    x[n - pairs :] = x[:pairs] + noise * rng.normal(size=(pairs, 32))
    return _unit(x)


def _brute(x: np.ndarray, eps: float) -> set[tuple[int, int]]:
    s = x @ x.T
    i, j = np.nonzero(np.triu(s > 1 - eps, 1))
    return set(zip(i.tolist(), j.tolist(), strict=True))


def test_one_cluster_equals_all_pairs() -> None:
    x = _planted(300, 30, 0.05)
    found = semantic_pairs(x, np.arange(300), eps=0.01)
    assert {(a, b) for a, b, _ in found} == _brute(x, 0.01)
    assert len(found) == 30
    assert all(c > 0.99 for _, _, c in found)


def test_clusters_keep_tight_pairs_and_report_none_below_the_cut() -> None:
    n = 6 * TARGET_CLUSTER
    x = _planted(n, 200, 0.02)
    found = semantic_pairs(x, np.arange(n), eps=0.01)
    pairs = {(a, b) for a, b, _ in found}
    truth = _brute(x, 0.01)
    assert pairs <= truth  # nothing reported that is not above the cut
    assert len(pairs) >= 0.99 * len(truth) and len(truth) >= 200
    assert len(np.unique(spherical_kmeans(x, 6))) == 6


def test_rows_without_an_embedding_are_never_duplicates() -> None:
    x = np.zeros((4, 8), np.float32)
    x[0, 0] = x[1, 0] = 1.0
    found = semantic_pairs(x, np.arange(4), eps=0.01)
    assert [(a, b) for a, b, _ in found] == [(0, 1)]


def test_keeper_policy_applies_to_semantic_pairs(tmp_path: Path) -> None:
    x = _unit(np.array([[1.0, 0, 0], [1.0, 0.01, 0], [0, 1.0, 0]]))
    sig = {
        "id": np.array(["a", "b", "c"], dtype=object),
        "alignment": np.array([0.2, 0.3, 0.1], dtype=object),
        "width": np.array([64, 64, 64], dtype=object),
        "height": np.array([64, 64, 64], dtype=object),
    }
    pack_file = tmp_path / "sem.yaml"
    pack_file.write_text("name: sem\nextends: default\ndedup:\n  semantic_eps: 0.01\n")
    dropped, groups = dedup(sig, np.ones(3, bool), load_pack(str(pack_file)), x)
    # "b" aligns better, so it is the keeper and "a" names it.
    assert dropped == {0: (1, "semantic_duplicate")} and groups == 1
    assert dedup(sig, np.ones(3, bool), load_pack("default"), x) == ({}, 0)


@pytest.fixture(scope="module")
def pool(world_runs: WorldRuns) -> WorldRun:
    pool = world_runs("sem", n=40, shard_size=20, model="random:clipaudit-tiny")
    (pool.root / "sem.yaml").write_text(
        "name: sem\nextends: default\nalignment:\n  min: null\ndedup:\n  semantic_eps: 0.05\n"
    )
    return pool


def test_redecide_with_semantic_dedup(pool: WorldRun) -> None:
    stats = decide_run(pool.run, str(pool.root / "sem.yaml"), gates=False)
    assert stats["adds_up"] and stats["input"] == 40
    dec = pq.read_table(pool.run / "decisions.parquet").to_pylist()
    emb = np.concatenate([np.load(pool.run / "img_emb" / f"img_emb_{k}.npy") for k in (0, 1)])
    row = {d["id"]: i for i, d in enumerate(dec)}
    sem = [d for d in dec if "semantic_duplicate" in d["reasons"]]
    for d in sem:
        cos = float(emb[row[d["id"]]] @ emb[row[d["duplicate_of"]]])
        assert cos > 0.95, (d["id"], cos)
    assert sem and stats["by_reason"]["semantic_duplicate"] == len(sem)


def test_semantic_dedup_without_embeddings_is_one_clear_error(
    pool: WorldRun, tmp_path: Path
) -> None:
    broken = tmp_path / "run"
    shutil.copytree(pool.run, broken)
    (broken / "img_emb" / "img_emb_1.npy").unlink()
    with pytest.raises(ClipauditError, match="semantic dedup needs the image embeddings"):
        decide_run(broken, str(pool.root / "sem.yaml"), gates=False)
