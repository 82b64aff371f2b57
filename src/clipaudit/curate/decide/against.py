"""Deduplicating against a reference set (``--against PATH``): an earlier run, its kept set,
or any dataset (the images of the benchmarks a model will be tested on, last month's data).

A sample that copies a reference sample, exactly (same pixels) or nearly (hashes within the
radius, thumbnails confirming), gets the reason ``duplicate_of_reference`` and names the
reference id; it then plays no part in the run's own duplicate groups. This is how DataComp
decontaminates a pool against its evaluation sets.

A reference that is a run is read as it stands (its kept rows when it has been decided).
A dataset is hashed once (``quality`` and ``hashes`` stages, no model) into a cache folder
keyed by its fingerprint, so the next ``--against`` of the same data reads the cache.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from clipaudit.curate.decide.keeper import (
    MIRRORED,
    PLAIN,
    Compact,
    ThumbReader,
    hashes_agree,
    search_radius,
)
from clipaudit.curate.decide.neardup import near_pairs, popcount64
from clipaudit.curate.rundir import RunDir, release_run_lock
from clipaudit.curate.signal_shards import SignalShards
from clipaudit.curate.stages.hashes import ThumbCorrelation
from clipaudit.errors import ClipauditError

REASON = "duplicate_of_reference"
HASHES = ("pixel_hash", "phash", "dhash", "phash_mirror")


def default_cache() -> Path:
    base = os.environ.get("CLIPAUDIT_CACHE_DIR")
    root = (
        Path(base)
        if base
        else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "clipaudit"
    )
    return root / "against"


@dataclass
class Reference:
    """A reference set's compact hashes, row by row, and where its thumbnails are."""

    label: str
    kind: str  # "run" or "dataset"
    ids: pa.Array
    hashes: dict[str, np.ndarray]
    pixel_hash: np.ndarray
    pixel_valid: np.ndarray
    hash_valid: np.ndarray
    shard_of: np.ndarray
    row_of: np.ndarray
    shards: SignalShards
    hashed_now: int

    def __len__(self) -> int:
        return len(self.ids)


def _is_run(path: Path) -> bool:
    return (path / "run.json").is_file() and (path / "signals").is_dir()


def _hash_dataset(path: Path, cache_root: Path) -> tuple[RunDir, int]:
    """Hash a dataset into the cache (once); returns the cache run and samples hashed now."""
    from clipaudit.curate.config import CurateConfig
    from clipaudit.curate.scoring import input_fingerprint, score
    from clipaudit.data.formats import open_dataset

    try:
        ds = open_dataset(str(path))
    except ClipauditError as err:
        raise ClipauditError(
            f"--against {str(path)!r} is neither a clipaudit run nor a dataset clipaudit can "
            f"read ({err}); give a run folder, a run's kept/ folder or a dataset."
        ) from None
    key = hashlib.sha256(f"against-v1|{input_fingerprint(ds)}".encode()).hexdigest()[:24]
    out = cache_root / key
    done = score(
        CurateConfig(
            dataset=str(path), out=str(out), stages=["quality", "hashes"], decide=False, gates=False
        )
    )
    release_run_lock(done.run.path)  # scored: the cache is only read from here on
    return done.run, done.scored


def load_reference(path: str | Path, cache_root: Path | None = None) -> Reference:
    p = Path(path)
    if not p.exists():
        raise ClipauditError(
            f"--against {str(p)!r} does not exist; give a run folder, a run's kept/ folder or "
            "a dataset."
        )
    hashed_now = 0
    if _is_run(p):
        run, kind = RunDir(p), "run"
    else:
        run, hashed_now = _hash_dataset(p, cache_root or default_cache())
        kind = "dataset"
    # A run stopped part-way would match against part of its samples; a decided one was
    # decided that way (--partial) and its kept set is what it is.
    shards = SignalShards.of_run(run, (p / "decisions.parquet").is_file(), reference=True)
    if not shards.has("phash") and not shards.has("pixel_hash"):
        raise ClipauditError(
            f"The reference run {str(p)!r} has no hashes; curate it with the hashes stage, or "
            "give its dataset instead."
        )
    kept: pa.Array | None = None  # built once, matched against every shard
    if kind == "run" and (p / "decisions.parquet").is_file():
        t = pq.read_table(p / "decisions.parquet", columns=["id", "decision"])
        mask = pc.is_in(t.column("decision"), pa.array(["keep", "flag"]))
        kept = t.column("id").filter(mask).combine_chunks()
    ids, shard_of, row_of = [], [], []
    cols: dict[str, list[np.ndarray]] = {h: [] for h in HASHES}
    valid: dict[str, list[np.ndarray]] = {h: [] for h in HASHES}
    for k in shards:
        t = shards.read(k, ["id", *HASHES])
        n = t.num_rows
        take = np.ones(n, np.bool_)
        if kept is not None:
            take = pc.is_in(t.column("id"), kept).to_numpy(zero_copy_only=False)
        idx = np.flatnonzero(take)
        ids.append(t.column("id").cast(pa.string()).combine_chunks().take(pa.array(idx)))
        shard_of.append(np.full(len(idx), k, np.int64))
        row_of.append(idx)
        for h in HASHES:
            if h in t.column_names:
                col = t.column(h).combine_chunks().take(pa.array(idx))
                valid[h].append(col.is_valid().to_numpy(zero_copy_only=False))
                cols[h].append(pc.fill_null(col, 0).to_numpy(zero_copy_only=False).astype(np.int64))
            else:
                valid[h].append(np.zeros(len(idx), np.bool_))
                cols[h].append(np.zeros(len(idx), np.int64))
    cat = {h: np.concatenate(cols[h]) for h in HASHES}
    ok = {h: np.concatenate(valid[h]) for h in HASHES}
    return Reference(
        label=str(path),
        kind=kind,
        ids=pa.concat_arrays(ids) if ids else pa.array([], pa.string()),
        hashes={
            h: cat[h].view(np.uint64) for h in ("phash", "dhash", "phash_mirror") if ok[h].any()
        },
        pixel_hash=cat["pixel_hash"],
        pixel_valid=ok["pixel_hash"],
        hash_valid=ok["phash"],
        shard_of=np.concatenate(shard_of),
        row_of=np.concatenate(row_of),
        shards=shards,
        hashed_now=hashed_now,
    )


def _cross(a: np.ndarray, b: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (i in a, j in b) within the radius: one search over both, cross pairs only."""
    if not len(a) or not len(b):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    i, j, _ = near_pairs(np.concatenate([a, b]), radius, split=len(a))
    return i, j - len(a)


def matches(
    c: Compact,
    rows: np.ndarray,
    ref: Reference,
    d: Any,
    thumbs: ThumbReader | None,
    ref_thumbs: ThumbReader | None,
) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Positions among ``rows`` that copy a reference sample, and that sample's index
    (an exact copy first, else the lowest-index confirmed near copy)."""
    rows = np.asarray(rows, np.int64)
    best = np.full(len(c), -1, np.int64)
    counts = {"exact": 0, "near": 0}
    # Exact: the same decoded pixels.
    if ref.pixel_valid.any():
        order = np.argsort(ref.pixel_hash[ref.pixel_valid], kind="stable")
        ref_idx = np.flatnonzero(ref.pixel_valid)[order]
        sorted_px = ref.pixel_hash[ref_idx]
        r = rows[c.pixel_valid[rows]]
        at = np.searchsorted(sorted_px, c.pixel_hash[r])
        hit = (at < len(sorted_px)) & (
            sorted_px[np.minimum(at, len(sorted_px) - 1)] == c.pixel_hash[r]
        )
        best[r[hit]] = ref_idx[at[hit]]
        counts["exact"] = int(hit.sum())
    # Near: hash candidates between the run and the reference, confirmed on thumbnails.
    left = rows[best[rows] < 0]
    if c.hash_valid is not None:
        left = left[c.hash_valid[left]]
    rref = np.flatnonzero(ref.hash_valid)
    if (
        not len(left)
        or not len(rref)
        or d.hashes[0] not in c.hashes
        or d.hashes[0] not in ref.hashes
    ):
        return np.flatnonzero(best >= 0), best[best >= 0], counts
    h0 = d.hashes[0]
    radius = search_radius(len(left) + len(rref), d, c.hashes[h0][left], ref.hashes[h0][rref])
    empty = np.zeros(0, np.int64)
    plain: list[tuple[np.ndarray, np.ndarray]] = []
    if d.match == "any":
        plain = [_cross(c.hashes[h][left], ref.hashes[h][rref], radius) for h in d.hashes]
    else:
        i, j = _cross(c.hashes[d.hashes[0]][left], ref.hashes[d.hashes[0]][rref], radius)
        ok = np.ones(len(i), np.bool_)
        for h in d.hashes[1:]:
            ok &= popcount64(c.hashes[h][left[i]] ^ ref.hashes[h][rref[j]]) <= d.near_radius
        plain = [(i[ok], j[ok])]
    pi = np.concatenate([p[0] for p in plain]) if plain else empty
    pj = np.concatenate([p[1] for p in plain]) if plain else empty
    mi, mj = empty, empty
    if d.mirrors and "phash_mirror" in c.hashes and "phash_mirror" in ref.hashes:
        a = _cross(c.hashes["phash"][left], ref.hashes["phash_mirror"][rref], radius)
        b = _cross(c.hashes["phash_mirror"][left], ref.hashes["phash"][rref], radius)
        mi, mj = np.concatenate([a[0], b[0]]), np.concatenate([a[1], b[1]])
    pi, pj, mi, mj = left[pi], rref[pj], left[mi], rref[mj]
    ok_p = np.ones(len(pi), np.bool_)
    ok_m = np.ones(len(mi), np.bool_)
    if (
        d.min_thumb_corr is not None
        and thumbs is not None
        and ref_thumbs is not None
        and (len(pi) or len(mi))
    ):
        need_run = np.unique(np.concatenate([pi, mi]))
        need_ref = np.unique(np.concatenate([pj, mj]))
        px_run, v_run = _as_arrays(thumbs(need_run))
        px_ref, v_ref = _as_arrays(ref_thumbs(need_ref))
        corr = ThumbCorrelation((np.concatenate([px_run, px_ref]), np.concatenate([v_run, v_ref])))
        off = len(need_run)
        # Only pairs whose hashes agree may count their unclipped correlation (keeper).
        close_p = hashes_agree(c.hashes, ref.hashes, pi, pj, np.full(len(pi), PLAIN), d)
        close_m = hashes_agree(c.hashes, ref.hashes, mi, mj, np.full(len(mi), MIRRORED), d)
        at_p = np.searchsorted(need_run, pi), off + np.searchsorted(need_ref, pj)
        at_m = np.searchsorted(need_run, mi), off + np.searchsorted(need_ref, mj)
        ok_p = corr(*at_p, unclip=close_p) >= d.min_thumb_corr
        ok_m = corr(*at_m, mirror_b=True, unclip=close_m) >= d.min_thumb_corr
        if d.min_edge_corr is not None:  # their edges too, as within a run (keeper)
            for ok, (x, y), flip in ((ok_p, at_p, False), (ok_m, at_m, True)):
                judged = np.flatnonzero(ok)
                ok[judged] = corr.edge_corr(x[judged], y[judged], flip) >= d.min_edge_corr
        if d.min_hue_overlap is not None:  # and their colours (keeper._confirmed)
            for ok, (x, y) in ((ok_p, at_p), (ok_m, at_m)):
                judged = np.flatnonzero(ok)
                ok[judged] = ~(corr.hue_overlap(x[judged], y[judged]) < d.min_hue_overlap)
    cand_i = np.concatenate([pi[ok_p], mi[ok_m]])
    cand_j = np.concatenate([pj[ok_p], mj[ok_m]])
    o = np.lexsort((cand_j, cand_i))
    cand_i, cand_j = cand_i[o], cand_j[o]
    first = np.ones(len(cand_i), np.bool_)
    first[1:] = cand_i[1:] != cand_i[:-1]
    best[cand_i[first]] = cand_j[first]
    counts["near"] = int(first.sum())
    return np.flatnonzero(best >= 0), best[best >= 0], counts


def _as_arrays(v: Any) -> tuple[np.ndarray, np.ndarray]:
    from clipaudit.curate.stages.hashes import thumb_array

    return v if isinstance(v, tuple) else thumb_array(v)


RECORD = "against.json"


def record(run: Path, references: list[str], cache: Path | None) -> None:
    """Which reference sets this decide dropped copies of, as absolute paths: the next
    ``decide`` without ``--against`` uses them again (``recorded``)."""
    import json

    from clipaudit.data.formats import atomic_write_bytes

    doc = {
        "references": [str(Path(p).resolve()) for p in references],
        "cache": str(Path(cache).resolve()) if cache else None,
    }
    atomic_write_bytes(run / RECORD, (json.dumps(doc, indent=2) + "\n").encode())


def recorded(run: Path) -> dict[str, Any]:
    """The reference sets the run's last decide used (none for a run decided before this
    record existed, or never against anything)."""
    import json

    path = run / RECORD
    if not path.is_file():
        return {"references": [], "cache": None}
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        refs = [str(p) for p in doc["references"]]
    except (OSError, ValueError, KeyError, TypeError):
        raise ClipauditError(
            f"{str(path)!r} is unreadable; pass --against again (or --no-against) to rewrite it."
        ) from None
    return {"references": refs, "cache": doc.get("cache")}
