"""Decide: turn stored signals into keep / flag / drop / error with reason codes.

No model is loaded: re-deciding with another pack reads the signal tables, recomputes the
duplicate groups from the stored hashes and rewrites decisions, stats and the kept dataset.
Order matters and is fixed: reading errors, then quality and alignment, then every signal
rule, then deduplication among the samples still standing, so a duplicate group never
loses its keeper to another rule.

A run is decided as map → reduce → map over its shards (``decide_run``), never over the
whole run's rows at once:

1. *percentile*: the alignment value behind ``min_percentile``, exact, from one column;
2. *map*: per shard, every per-sample rule (``decide_rules``), writing the shard's reason
   codes and the compact columns the reduce needs (in parallel processes);
3. *reduce*: exact groups, near and semantic pairs, the keeper policy (``keeper``) on the
   compact columns of the standing samples; thumbnails are read shard by shard for the rows
   a candidate pair touches;
4. *map*: per shard, the reduce's outcome applied and the shard's decision rows written,
   then streamed into ``decisions.parquet``; the kept dataset is written shard by shard.

``decide_signals`` is the same decide on one in-memory table (used by ablation and tests),
without policy routes or a judge's verdicts: only ``decide_run`` applies those.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from clipaudit.curate.decide import against
from clipaudit.curate.decide.keeper import DUPLICATE_KINDS, Compact, resolve
from clipaudit.curate.decide.keeper import near_duplicate_pairs as _compact_pairs
from clipaudit.curate.decide.model_fit import alignment_skip, without_model_scores
from clipaudit.curate.decide.rules import (
    ERROR_CODES,
    add_tallies,
    alignment_percentile,
    compact_columns,
    decision_of,
    flag_counts,
    sample_reasons,
    standing,
    tally,
)
from clipaudit.curate.decide.semdedup import load_image_embeddings
from clipaudit.curate.memory import release_memory, use_system_arrow_pool
from clipaudit.curate.orphans import exit_with_parent
from clipaudit.curate.rundir import (
    RunDir,
    open_run_dataset,
    run_lock,
    table_bytes,
)
from clipaudit.curate.signal_shards import SignalShards, floats, table_signals
from clipaudit.curate.stages.hashes import THUMB
from clipaudit.curate.stages.reasons import SIGNAL_STATS
from clipaudit.data.formats import (
    Dataset,
    atomic_write_bytes,
    output_errors,
)
from clipaudit.errors import ClipauditError
from clipaudit.judge.verdicts import apply_verdicts, load_verdicts
from clipaudit.rules.schema import Pack, load_pack
from clipaudit.search.routes import SCORE_PREFIX, RouteTable, route_table, shard_embeddings

THUMB_BYTES = THUMB * THUMB * 3
# Below this many samples the map runs in this process: starting workers costs more.
PARALLEL_MIN_ROWS = 50_000
WORK = ".decide"
REFERENCE = 3  # the kind code of a copy of a reference sample (--against)
# Signals too large to repeat in every decision row: the 3 KiB thumbnail stays in signals/
# (at 10^7 samples it would be 30 GB written a second time).
NOT_IN_DECISIONS = frozenset({"thumb", "frame_thumbs"})


def load_signals(run: RunDir) -> dict[str, np.ndarray]:
    """Every signal of every shard in one table (small runs, ablation and tests only)."""
    shards = SignalShards(run)
    shards.check_unique_ids()
    tables = [
        shards.read(k).append_column("shard", pa.array([k] * shards.rows[k], pa.int64()))
        for k in shards
    ]
    return table_signals(pa.concat_tables(tables, promote_options="default"))


# ---- the reduce on an in-memory table ------------------------------------------------


def _as_compact(table: pa.Table) -> Compact:
    def hash_col(name: str) -> np.ndarray:
        return pc.fill_null(table.column(name), 0).to_numpy().astype(np.int64).view(np.uint64)

    names = [h for h in ("phash", "dhash", "phash_mirror", "chash") if h in table.column_names]
    valid = None
    if "phash" in table.column_names:
        valid = table.column("phash").is_valid().to_numpy(zero_copy_only=False)
    px_valid = (
        table.column("pixel_hash").is_valid().to_numpy(zero_copy_only=False)
        if "pixel_hash" in table.column_names
        else np.zeros(table.num_rows, np.bool_)
    )
    inner = None
    if "phash_inner" in table.column_names and "phash" in table.column_names:
        # The pHash inside a black or white border where one was trimmed, else the pHash:
        # a framed copy then meets its original in one search.
        inner = table.column("phash_inner").is_valid().to_numpy(zero_copy_only=False)
        eff = pc.coalesce(table.column("phash_inner").cast(pa.int64()), table.column("phash"))
        inner_codes = pc.fill_null(eff, 0).to_numpy().astype(np.int64).view(np.uint64)
    hashes = {h: hash_col(h) for h in names} if "phash" in table.column_names else {}
    if inner is not None and inner.any():
        hashes["phash_inner"] = inner_codes
    else:
        inner = None
    frames = frames_valid = None
    if "frame_phash" in table.column_names:
        frames, frames_valid = _frame_matrix(table.column("frame_phash"))
    flags = None
    if "flags" in table.column_names:
        flags = pc.fill_null(table.column("flags"), 0).to_numpy().astype(np.int16)
    return Compact(
        flags=flags,
        frames=frames,
        frames_valid=frames_valid,
        inner=inner,
        ids=table.column("id").combine_chunks(),
        alignment=floats(table.column("alignment").to_numpy(zero_copy_only=False)),
        area=floats(table.column("area").to_numpy(zero_copy_only=False)),
        bytes=floats(table.column("bytes").to_numpy(zero_copy_only=False)).astype(np.float32)
        if "bytes" in table.column_names
        else None,
        pixel_hash=hash_col("pixel_hash").view(np.int64)
        if "pixel_hash" in table.column_names
        else np.zeros(table.num_rows, np.int64),
        pixel_valid=px_valid,
        hashes=hashes,
        hash_valid=valid,
    )


def _frame_matrix(col: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray] | tuple[None, None]:
    """A list<int64> column of frame pHashes as a (rows, widest) uint64 matrix and its
    validity mask; (None, None) when no row has frames (an image-only run)."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    lengths = pc.fill_null(pc.list_value_length(arr), 0).to_numpy().astype(np.int64)
    if not len(lengths) or lengths.max() == 0:
        return None, None
    width = int(lengths.max())
    out = np.zeros((len(arr), width), np.uint64)
    valid = np.arange(width)[None, :] < lengths[:, None]
    flat = pc.list_flatten(arr).to_numpy(zero_copy_only=False)
    out[valid] = flat.astype(np.int64).view(np.uint64)
    return out, valid


def _sig_thumbs(
    sig: dict[str, np.ndarray], rows: np.ndarray, inner: bool = False
) -> Callable[[np.ndarray], list[Any]] | None:
    if "thumb" not in sig or (inner and "thumb_inner" not in sig):
        return None
    if inner:  # inside a trimmed border where there is one
        framed, plain = sig["thumb_inner"], sig["thumb"]
        return lambda pos: [
            plain[rows[p]] if framed[rows[p]] is None else framed[rows[p]] for p in pos
        ]
    return lambda pos: [sig["thumb"][rows[p]] for p in pos]


def _inner_aspect(
    width: np.ndarray,
    height: np.ndarray,
    framed: np.ndarray,
    content: np.ndarray | None,
    area: np.ndarray | None,
) -> np.ndarray:
    """(rows, 3) for keeper.AspectReader: width over height of what each inner thumbnail
    shows (inside the border where one was trimmed, ``content``; else the whole image), and
    the shares of the width and height inside the border (from ``area``, the box's pixels;
    NaN without a border). NaN where a run before content_aspect kept none."""
    n = len(width)
    with np.errstate(invalid="ignore", divide="ignore"):
        whole = width / np.where(height > 0, height, np.nan)
        inside = np.full(n, np.nan) if content is None else content
        box = np.full(n, np.nan) if area is None else area
        share_w = np.sqrt(box * inside) / width
        share_h = np.sqrt(box / inside) / height
    out = np.full((n, 3), np.nan)
    out[:, 0] = np.where(framed, inside, whole)
    out[:, 1] = np.where(framed, share_w, np.nan)
    out[:, 2] = np.where(framed, share_h, np.nan)
    return out


def _sig_aspects(
    sig: dict[str, np.ndarray], rows: np.ndarray
) -> Callable[[np.ndarray], np.ndarray] | None:
    if "width" not in sig or "height" not in sig or "phash_inner" not in sig:
        return None

    def read(pos: np.ndarray) -> np.ndarray:
        r = rows[pos]
        framed = np.array([v is not None for v in sig["phash_inner"][r]], np.bool_)
        content = floats(sig["content_aspect"][r]) if "content_aspect" in sig else None
        area = floats(sig["content_area"][r]) if "content_area" in sig else None
        w, h = floats(sig["width"][r]), floats(sig["height"][r])
        return _inner_aspect(w, h, framed, content, area)

    return read


def _sig_frame_thumbs(
    sig: dict[str, np.ndarray], rows: np.ndarray
) -> Callable[[np.ndarray], list[Any]] | None:
    if "frame_thumbs" not in sig:
        return None
    return lambda pos: [sig["frame_thumbs"][rows[p]] for p in pos]


def near_duplicate_pairs(
    sig: dict[str, np.ndarray], rows: np.ndarray, d: Any
) -> list[tuple[int, int]]:
    """Confirmed near-duplicate row pairs among ``rows`` of an in-memory signal table."""
    rows = np.asarray(rows, np.int64)
    c = _as_compact(compact_columns(sig, rows))
    a, b = _compact_pairs(
        c,
        np.arange(len(rows)),
        d,
        _sig_thumbs(sig, rows),
        inner_thumbs=_sig_thumbs(sig, rows, True),
        inner_aspects=_sig_aspects(sig, rows),
    )
    return sorted((int(rows[x]), int(rows[y])) for x, y in zip(a, b, strict=True))


def kept_duplicate_kinds(pack: Pack) -> tuple[int, ...]:
    """Duplicate kinds (keeper.NEAR, keeper.SEMANTIC) this pack keeps or only flags."""
    return tuple(
        i for i, code in enumerate(DUPLICATE_KINDS) if i > 0 and pack.action(code) != "drop"
    )


def dedup(
    sig: dict[str, np.ndarray],
    candidates: np.ndarray,
    pack: Pack,
    image_emb: np.ndarray | None = None,
    flags: np.ndarray | None = None,
) -> tuple[dict[int, tuple[int, str]], int]:
    """The keeper policy over the ``candidates`` rows: row → (keeper row, kind). ``flags``
    (per row, ``flag_counts``) feeds the pack's ``flags`` keeper key."""
    rows = np.flatnonzero(candidates)
    c = _as_compact(compact_columns(sig, rows, flags))
    if "phash" not in sig:
        c.hashes = {}
    emb = image_emb[rows] if image_emb is not None else None
    out = resolve(
        c,
        pack.dedup,
        _sig_thumbs(sig, rows),
        emb,
        inner_thumbs=_sig_thumbs(sig, rows, True),
        frame_thumbs=_sig_frame_thumbs(sig, rows),
        kept_kinds=kept_duplicate_kinds(pack),
        inner_aspects=_sig_aspects(sig, rows),
    )
    dropped = {
        int(rows[p]): (int(rows[out.keeper[p]]), DUPLICATE_KINDS[out.kind[p]])
        for p in np.flatnonzero(out.keeper >= 0)
    }
    return dropped, out.groups


# ---- pieces shared by the in-memory and the sharded decide ----------------------------


def _finish(
    sig: dict[str, np.ndarray],
    reasons: list[list[str]],
    dup_rows: np.ndarray,
    dup_ids: list[str],
    dup_kinds: np.ndarray,
    pack: Pack,
    ref_of: list[str | None] | None = None,
) -> tuple[list[str], list[str | None]]:
    """Append each duplicate's kind; the decisions and ``duplicate_of`` column. A copy of a
    reference sample (kind REFERENCE) gets its id in ``ref_of`` instead."""
    n = len(reasons)
    dup_of: list[str | None] = [None] * n
    for r, i, k in zip(dup_rows.tolist(), dup_ids, dup_kinds.tolist(), strict=True):
        if k == REFERENCE:
            reasons[r].append(against.REASON)
            if ref_of is not None:
                ref_of[r] = i
            continue
        reasons[r].append(DUPLICATE_KINDS[k])
        dup_of[r] = i
    return [decision_of(r, pack) for r in reasons], dup_of


def _head(
    decisions: list[str], reasons: list[list[str]], dup_of: list[str | None], ids: Any
) -> dict[str, Any]:
    return {
        "id": pa.array(ids, pa.string()),
        "decision": pa.array(decisions, pa.string()),
        "reasons": pa.array(reasons, pa.list_(pa.string())),
        "duplicate_of": pa.array(dup_of, pa.string()),
    }


def _stats(
    totals: dict[str, Any],
    n: int,
    groups: int,
    used: dict[str, Any],
    pack: Pack,
    sig: Any,
    reasons: Any,
) -> dict[str, Any]:
    counts = totals["counts"]
    return {
        "input": n,
        "kept": counts["keep"] + counts["flag"],
        "flagged": counts["flag"],
        "dropped": counts["drop"],
        "errored": counts["error"],
        "adds_up": sum(counts.values()) == n,
        "by_reason": dict(sorted(totals["by_reason"].items())),
        "by_reason_dropping": dict(sorted(totals["by_reason_dropping"].items())),
        "duplicate_groups": groups,
        "signals": {name: SIGNAL_STATS[name](sig, pack, reasons) for name in sorted(SIGNAL_STATS)},
        "thresholds": used,
        "pack": {"name": pack.name, "version": pack.version, "extends": pack.extends},
    }


def decide_signals(
    sig: dict[str, np.ndarray],
    pack: Pack,
    model_spec: str | None,
    image_emb: np.ndarray | None = None,
) -> tuple[pa.Table, dict[str, Any]]:
    """Decide one in-memory signal table (every row of a small run). Policy routes and a
    multimodal judge's verdicts are not applied here (``decide_run`` applies them)."""
    reasons, used = sample_reasons(sig, pack, model_spec)
    dropped, groups = dedup(
        sig, standing(reasons, pack), pack, image_emb, flag_counts(reasons, pack)
    )
    rows = np.array(sorted(dropped), np.int64)
    ids = [str(sig["id"][dropped[r][0]]) for r in rows.tolist()]
    kinds = np.array([DUPLICATE_KINDS.index(dropped[r][1]) for r in rows.tolist()], np.int8)
    decisions, dup_of = _finish(sig, reasons, rows, ids, kinds, pack)
    cols = _head(decisions, reasons, dup_of, sig["id"])
    for name, v in sig.items():
        if name not in cols and name not in NOT_IN_DECISIONS:
            cols[name] = pa.array(list(v))
    stats = _stats(tally(reasons, decisions, pack), len(reasons), groups, used, pack, sig, reasons)
    return pa.table(cols), stats


# ---- the sharded decide ----------------------------------------------------------------


@dataclass(frozen=True)
class MapJob:
    """One shard's work in either map step: picklable, so it runs in any process."""

    run: str
    k: int
    pack: Pack
    model_spec: str | None
    percentile_value: float | None
    against: bool = False
    routes: RouteTable | None = None
    verdicts: dict[str, dict[str, str]] | None = None  # a multimodal judge's, by id


def _fresh_work_folder(work: Path) -> None:
    """An empty scratch folder at ``work``. What a killed run left there is removed; where
    that fails (a worker of the killed process still writing into it: a resumed 5,000-shard
    curate stopped on "File exists"), the old folder is moved aside under a unique name
    and removed as far as it can be, so its late files never mix with this run's."""
    shutil.rmtree(work, ignore_errors=True)
    if work.exists():
        aside = work.with_name(f"{work.name}.stale-{os.getpid()}-{time.time_ns()}")
        work.rename(aside)
        shutil.rmtree(aside, ignore_errors=True)
    work.mkdir()


def _work(run: str | Path, name: str, k: int) -> Path:
    return Path(run) / WORK / f"{name}-{k:05d}.parquet"


def _write(path: Path, table: pa.Table) -> None:
    atomic_write_bytes(path, table_bytes(table))


def map_rules(job: MapJob) -> int:
    """Map 1: a shard's reason codes and the compact columns of its standing rows."""
    table = SignalShards.read_one(RunDir(job.run), job.k)
    sig = table_signals(table)
    reasons, _ = sample_reasons(sig, job.pack, job.model_spec, job.percentile_value)
    cols: dict[str, Any] = {}
    if job.verdicts:
        ids = table.column("id").cast(pa.string()).to_pylist()
        cols.update(apply_verdicts(ids, reasons, job.verdicts, job.pack))
    if job.routes is not None:
        emb = None
        if job.routes.needs_embeddings:
            emb = shard_embeddings(Path(job.run), job.k, table.num_rows)
        cols.update(_apply_routes(job.routes, emb, table, reasons))
    _write(
        _work(job.run, "reasons", job.k),
        pa.table({"reasons": pa.array(reasons, pa.list_(pa.string())), **cols}),
    )
    rows = np.flatnonzero(standing(reasons, job.pack))
    _write(
        _work(job.run, "compact", job.k),
        compact_columns(sig, rows, flag_counts(reasons, job.pack)),
    )
    return len(rows)


def map_finish(job: MapJob) -> dict[str, Any]:
    """Map 2: a shard's duplicates applied; its decision rows written; its tallies back."""
    run = RunDir(job.run)
    table = SignalShards.read_one(run, job.k)
    sig = table_signals(table)
    coded = pq.read_table(_work(job.run, "reasons", job.k))
    reasons = coded.column("reasons").to_pylist()
    dups = pq.read_table(_work(job.run, "dups", job.k))
    ref_of: list[str | None] = [None] * table.num_rows
    decisions, dup_of = _finish(
        sig,
        reasons,
        dups.column("row").to_numpy(),
        dups.column("duplicate_of").to_pylist(),
        dups.column("kind").to_numpy(),
        job.pack,
        ref_of,
    )
    cols = _head(decisions, reasons, dup_of, table.column("id").cast(pa.string()))
    if job.against:
        cols["duplicate_of_reference"] = pa.array(ref_of, pa.string())
    for name in coded.column_names[1:]:  # route, routes and the route scores
        cols[name] = coded.column(name)
    for name in table.column_names:
        if name not in cols and name not in NOT_IN_DECISIONS:
            cols[name] = table.column(name)
    cols["shard"] = pa.array(np.full(table.num_rows, job.k, np.int64))
    _write(_work(job.run, "decisions", job.k), pa.table(cols))
    out = tally(reasons, decisions, job.pack)
    if job.routes is not None:
        out["routes"] = route_tally(job.routes, cols["route"].to_pylist(), decisions)
    return out


def _apply_routes(
    routes: RouteTable, emb: np.ndarray | None, signals: pa.Table, reasons: list[list[str]]
) -> dict[str, Any]:
    """Score the routes, add their reason codes to ``reasons`` (not to errored rows); the
    columns the decision rows carry: ``route``, ``routes`` and one score per route."""
    scores = routes.scores(emb, signals.num_rows)
    route, matched = routes.assign(scores, routes.masks(signals))
    for r, extra in zip(reasons, routes.reasons(matched), strict=True):
        if not set(r) & ERROR_CODES:
            r.extend(c for c in extra if c not in r)
    cols: dict[str, Any] = {
        "route": pa.array(route, pa.string()),
        "routes": pa.array(matched, pa.list_(pa.string())),
    }
    for j, name in enumerate(routes.names):
        col = scores[:, j]
        cols[SCORE_PREFIX + name] = pa.array(col, pa.float32(), mask=np.isnan(col))
    return cols


def route_tally(
    routes: RouteTable, route: list[str | None], decisions: list[str]
) -> dict[str, Any]:
    """Per route: samples routed there (first match), and their decisions."""
    out: dict[str, Any] = {
        n: {"samples": 0, "keep": 0, "flag": 0, "drop": 0, "error": 0} for n in routes.names
    }
    for r, d in zip(route, decisions, strict=True):
        if r is not None:
            out[r]["samples"] += 1
            out[r][d] += 1
    return out


# (function, jobs, tick) -> results in job order; tick(k) after the k-th job finished.
Mapper = Callable[[Callable[[MapJob], Any], list[MapJob], Callable[[int], None]], list[Any]]
# (phase, done, total): a phase's progress, in shards (or 1 of 1 for a one-step phase).
Progress = Callable[[str, int, int], None]


def local_mapper(workers: int) -> Mapper:
    """Run map jobs in ``workers`` processes (in this one when 1), results in job order."""

    def run(
        fn: Callable[[MapJob], Any], jobs: list[MapJob], tick: Callable[[int], None]
    ) -> list[Any]:
        if workers <= 1 or len(jobs) <= 1:
            out = []
            for j in jobs:
                out.append(fn(j))
                tick(len(out))
            return out
        # spawn: a forked copy of a process that loaded torch or started threads can hang.
        with ProcessPoolExecutor(
            min(workers, len(jobs)),
            mp_context=get_context("spawn"),
            initializer=exit_with_parent,
            initargs=(os.getpid(),),
        ) as pool:
            futures = [pool.submit(fn, j) for j in jobs]
            for k, _ in enumerate(as_completed(futures), 1):
                tick(k)
            return [f.result() for f in futures]

    return run


class _Phases:
    """Each phase's wall time and the peak resident memory so far (this process and the
    finished workers), for ``phases.json``."""

    def __init__(self, progress: Progress | None) -> None:
        self.out: dict[str, dict[str, float]] = {}
        self.progress = progress
        self.t = time.perf_counter()

    def tick(self, name: str, total: int) -> Callable[[int], None]:
        return lambda k: self.progress(name, k, total) if self.progress else None

    def done(self, name: str) -> None:
        release_memory()  # the next phase starts from what is live, not the last high water
        now = time.perf_counter()
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        self.out[name] = {
            "wall_s": round(now - self.t, 3),
            "peak_rss_mib": round(own, 1),
            "peak_rss_workers_mib": round(kids, 1),
        }
        self.t = now
        if self.progress:
            self.progress(name, 1, 1)


def _thumb_reader(
    shards: SignalShards, shard_of: np.ndarray, row_of: np.ndarray, inner: bool = False
) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]] | None:
    """Thumbnails of the given positions, read a shard at a time straight into one matrix
    (never a Python bytes object per row). ``inner``: the thumbnail inside a trimmed black
    or white border where the row has one, else the thumbnail."""
    if not shards.has("thumb") or (inner and not shards.has("thumb_inner")):
        return None

    def read(pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        px = np.zeros((len(pos), THUMB_BYTES), np.uint8)
        valid = np.zeros(len(pos), np.bool_)
        for k in np.unique(shard_of[pos]).tolist():
            at = np.flatnonzero(shard_of[pos] == k)
            names = ["thumb", "thumb_inner"] if inner else ["thumb"]
            t = shards.read(k, names)
            if "thumb" not in t.column_names:
                continue
            idx = pa.array(row_of[pos[at]])
            col = t.column("thumb").combine_chunks().take(idx).cast(pa.binary())
            if inner and "thumb_inner" in t.column_names:
                framed = t.column("thumb_inner").combine_chunks().take(idx).cast(pa.binary())
                col = pc.coalesce(framed, col)
            del t
            good = pc.fill_null(pc.equal(pc.binary_length(col), THUMB_BYTES), False)
            good_np = good.to_numpy(zero_copy_only=False)
            if good_np.any():
                px[at[good_np]] = _rows_of(col.filter(good))
                valid[at[good_np]] = True
        return px, valid

    return read


def _aspect_reader(
    shards: SignalShards, shard_of: np.ndarray, row_of: np.ndarray
) -> Callable[[np.ndarray], np.ndarray] | None:
    """``_inner_aspect`` of the given positions, read a shard at a time (for the rows a
    pair checked inside borders touches: the compact columns leave the sizes out)."""
    if not all(shards.has(c) for c in ("width", "height", "phash_inner")):
        return None

    def read(pos: np.ndarray) -> np.ndarray:
        out = np.full((len(pos), 3), np.nan)
        for k in np.unique(shard_of[pos]).tolist():
            at = np.flatnonzero(shard_of[pos] == k)
            names = ["width", "height", "phash_inner", "content_aspect", "content_area"]
            t = shards.read(k, names)
            if not {"width", "height", "phash_inner"} <= set(t.column_names):
                continue
            t = t.take(pa.array(row_of[pos[at]]))
            cols = {
                name: floats(t.column(name).to_numpy(zero_copy_only=False))
                for name in ("width", "height", "content_aspect", "content_area")
                if name in t.column_names
            }
            framed = t.column("phash_inner").is_valid().to_numpy(zero_copy_only=False)
            out[at] = _inner_aspect(
                cols["width"],
                cols["height"],
                framed,
                cols.get("content_aspect"),
                cols.get("content_area"),
            )
        return out

    return read


def _frame_thumb_reader(
    shards: SignalShards, shard_of: np.ndarray, row_of: np.ndarray
) -> Callable[[np.ndarray], list[bytes | None]] | None:
    """Frame thumbnails of the given positions, read a shard at a time: decide's compact
    columns leave them out (768 bytes a sampled frame), and only videos in a candidate pair
    are read."""
    if not shards.has("frame_thumbs"):
        return None

    def read(pos: np.ndarray) -> list[bytes | None]:
        out: list[bytes | None] = [None] * len(pos)
        for k in np.unique(shard_of[pos]).tolist():
            at = np.flatnonzero(shard_of[pos] == k)
            t = shards.read(k, ["frame_thumbs"])
            if "frame_thumbs" not in t.column_names:
                continue
            col = t.column("frame_thumbs").combine_chunks().take(pa.array(row_of[pos[at]]))
            for j, v in zip(at.tolist(), col.to_pylist(), strict=True):
                out[j] = v
        return out

    return read


def _rows_of(col: pa.Array) -> np.ndarray:
    """Binary values all THUMB_BYTES long as a (rows, THUMB_BYTES) uint8 matrix, read from
    the array's buffers (no Python bytes object per row)."""
    offsets = np.frombuffer(col.buffers()[1], np.int32)[col.offset : col.offset + len(col) + 1]
    data = np.frombuffer(col.buffers()[2], np.uint8)
    return data[offsets[0] : offsets[-1]].reshape(len(col), THUMB_BYTES).copy()


class _Ids:
    """The id column for the signal stats: its length, an item or an iteration, from Arrow."""

    def __init__(self, col: pa.ChunkedArray) -> None:
        self.col = col

    def __len__(self) -> int:
        return len(self.col)

    def __getitem__(self, i: int) -> str:
        return str(self.col[int(i)].as_py())

    def __iter__(self) -> Iterator[str]:
        for chunk in self.col.chunks:
            yield from chunk.to_pylist()


class _StatsView:
    """The decided run's columns for the signal stats, read from the decision parts on first
    use: a stats function that reads three columns loads three columns, not the run."""

    def __init__(self, run: str, ks: list[int]) -> None:
        self.files = [_work(run, "decisions", k) for k in ks]
        self.names: set[str] = set()
        for f in self.files:
            self.names |= set(pq.read_schema(f).names)
        self.cache: dict[str, Any] = {}

    def __contains__(self, name: object) -> bool:
        return name in self.names

    def __getitem__(self, name: str) -> Any:
        if name not in self.names:
            raise KeyError(name)
        if name == "id":  # stats take its length or a few examples: no Python str per row
            if "id" not in self.cache:
                parts = [pq.read_table(f, columns=["id"]).column("id") for f in self.files]
                self.cache["id"] = _Ids(
                    pa.chunked_array([c for p in parts for c in p.chunks], pa.string())
                )
            return self.cache["id"]
        if name not in self.cache:
            parts = []
            for f in self.files:
                t = pq.read_table(f, columns=[name]) if name in pq.read_schema(f).names else None
                parts.append(t.column(name) if t is not None else None)
            typ = next((p.type for p in parts if p is not None and p.type != pa.null()), pa.null())
            n = [pq.read_metadata(f).num_rows for f in self.files]
            chunks = [
                p.cast(typ) if p is not None else pa.nulls(m, typ)
                for p, m in zip(parts, n, strict=True)
            ]
            self.cache[name] = table_signals(pa.table({name: pa.chunked_array(chunks, typ)}))[name]
        return self.cache[name]

    def get(self, name: str, default: Any = None) -> Any:
        if name not in self.names:
            return default
        return self[name]

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self.names))


def _reasons_tuples(files: list[Path]) -> list[tuple[str, ...]]:
    """Every row's codes as tuples of interned strings (an empty tuple is shared)."""
    out: list[tuple[str, ...]] = []
    for f in files:
        col = pq.read_table(f, columns=["reasons"]).column("reasons")
        names: dict[str, str] = {}
        out.extend(tuple(names.setdefault(c, c) for c in r) for r in col.to_pylist())
    return out


def _unified_schema(files: list[Path]) -> pa.Schema:
    schemas = [pq.read_schema(f) for f in files]
    return pa.unify_schemas(schemas, promote_options="permissive")


def _conform(t: pa.Table, schema: pa.Schema) -> pa.Table:
    cols = [
        t.column(f.name).cast(f.type) if f.name in t.column_names else pa.nulls(t.num_rows, f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(cols, schema=schema)


def _write_decisions(files: list[Path], out: Path) -> None:
    """Stream the shards' decision rows into one file (written aside, then renamed)."""
    schema = _unified_schema(files)
    tmp = out.with_name(f".{out.name}.tmp")
    with output_errors(out):
        try:
            with pq.ParquetWriter(tmp, schema, compression="zstd") as w:
                for f in files:
                    w.write_table(_conform(pq.read_table(f), schema))
            os.replace(tmp, out)
        finally:
            tmp.unlink(missing_ok=True)


def _check_out_format(given: str | None, record: dict[str, Any]) -> None:
    from clipaudit.data.formats import FORMATS, get_format

    if given is not None:
        get_format(given)
    elif (stored := record.get("out_format")) is not None and stored not in FORMATS:
        raise ClipauditError(
            f"The run records the kept format {stored!r}, which is not a dataset format; "
            f"pass --out-format (one of: {', '.join(sorted(FORMATS))})."
        )


def decide_run(
    run_path: str | Path,
    rules: str,
    dataset: Dataset | None = None,
    out_format: str | None = None,
    gates: bool = True,
    workers: int | None = None,
    mapper: Mapper | None = None,
    write_kept: bool = True,
    progress: Progress | None = None,
    against_paths: list[str] | None = None,
    against_cache: Path | None = None,
    split_by_route: bool = False,
    partial: bool = False,
) -> dict[str, Any]:
    """(Re)decide a scored run with ``rules``; writes decisions, stats and the kept dataset.
    ``partial``: decide a run whose curate stopped part-way on its scored shards (refused
    otherwise); stats["partial"] says how many of the input's shards that left out.
    ``against_paths``: reference sets whose copies are dropped (see ``curate/decide/against.py``);
    None: the ones the run's last decide used (``against.json``; [] decides without any).
    ``split_by_route``: also one kept dataset per route under ``kept_routes/NAME``."""
    run = RunDir(run_path)
    record = run.read_json("run.json")
    with run_lock(run.path):  # one curate or decide at a time on a run folder
        return _decide_locked(
            run, record, rules, dataset, out_format, gates, workers, mapper, write_kept,
            progress, against_paths, against_cache, split_by_route, partial,
        )  # fmt: skip


def _decide_locked(
    run: RunDir,
    record: dict[str, Any],
    rules: str,
    dataset: Dataset | None,
    out_format: str | None,
    gates: bool,
    workers: int | None,
    mapper: Mapper | None,
    write_kept: bool,
    progress: Progress | None,
    against_paths: list[str] | None,
    against_cache: Path | None,
    split_by_route: bool,
    partial: bool,
) -> dict[str, Any]:
    reused = against_paths is None
    if reused:
        # A re-decide with another pack silently undid the decontamination it did not repeat.
        recorded = against.recorded(run.path)
        against_paths = recorded["references"]
        if against_cache is None and recorded.get("cache"):
            against_cache = Path(recorded["cache"])
    with output_errors(run.path):  # a decide killed while writing kept/ left .kept-XXXX
        run.remove_leftovers()
    pack = load_pack(rules)
    if write_kept:  # a format nobody can write fails before deciding, not after
        _check_out_format(out_format, record)
    skip = alignment_skip(record)
    left_out: list[str] = []
    if skip:
        pack, left_out = without_model_scores(pack)
        if split_by_route and not pack.routes and any(k.startswith("routes.") for k in left_out):
            raise ClipauditError(
                f"--split-by-route has no route to split by: every route of pack {pack.name!r} "
                f"scores phrases with the run's model, whose scores are {skip}."
            )
    shards = SignalShards.of_run(run, partial)
    model_spec = record.get("settings", {}).get("model")
    phases = _Phases(progress)
    shards.check_unique_ids()
    n = shards.total
    if workers is None:
        workers = min(os.cpu_count() or 1, 8) if n >= PARALLEL_MIN_ROWS else 1
    local = mapper is None
    mapper = mapper or local_mapper(workers)
    with output_errors(run.path / WORK):
        _fresh_work_folder(run.path / WORK)
    arrow_pool = use_system_arrow_pool()
    for ref_path in against_paths or []:
        inside = Path(ref_path).resolve()
        if inside == run.path.resolve() or run.path.resolve() in inside.parents:
            # Its own kept set changes with every decide: kept 0, then 36, then 0 again.
            raise ClipauditError(
                f"--against {str(ref_path)!r} is this run or a folder inside it; give another "
                "run, its kept/ folder or a dataset."
            )
    try:
        try:
            refs = [against.load_reference(p, against_cache) for p in against_paths or []]
        except ClipauditError as err:
            if not reused:
                raise
            # The user typed no --against: say where the path came from and the ways on.
            raise ClipauditError(
                f"The reference set this run's last decide used ({run.path / against.RECORD}) "
                f"cannot be read: {err} Pass --against NEWPATH, or --no-against to decide "
                "without it."
            ) from None
        if refs:
            phases.done("against_load")
        against.record(run.path, against_paths or [], against_cache)
        stats = _decide_sharded(run, shards, pack, model_spec, mapper, phases, refs)
        if shards.unscored:
            stats["partial"] = {
                "input_shards": len(record["dataset"]["shards"]),
                "scored_shards": len(shards.rows),
                "unscored_shards": shards.unscored,
            }
        if reused and refs:
            stats["against_reused"] = [r.label for r in refs]
        if skip:
            stats["thresholds"]["alignment_skipped"] = skip
            # Every other rule resting on the model's cosines is left out too (pack keys).
            stats["model_scores_not_applied"] = left_out
        phases.done("decisions")
        if write_kept:
            if dataset is None:
                dataset = open_run_dataset(record)
            fmt = out_format or record.get("out_format") or dataset.format
            # Parallel only for the dataset the run records (a Dataset object handed in
            # otherwise, e.g. an in-memory one, is written here).
            parallel = (
                mapper if (workers > 1 or not local) and _same_input(dataset, record) else None
            )
            with output_errors(run.path / "kept"):  # a full or read-only disk: one clear error
                _write_kept(
                    dataset,
                    run,
                    list(shards),
                    run.path / "kept",
                    fmt,
                    parallel,
                    phases.tick("kept_dataset", len(list(shards))),
                )
            stats["kept_dataset"] = {"format": fmt, "path": "kept"}
            phases.done("kept_dataset")
            if split_by_route:
                stats["kept_routes"] = _write_routes(dataset, run, list(shards), fmt, pack)
                phases.done("kept_routes")
            else:
                # An earlier decide's route datasets contradict these decisions (people,
                # watermark routes of a pack no longer applied): kept/ is rewritten, so they go.
                with output_errors(run.path / "kept_routes"):
                    shutil.rmtree(run.path / "kept_routes", ignore_errors=True)
        elif split_by_route:
            raise ClipauditError("--split-by-route writes kept datasets; drop --no-kept.")
        stats["pack_dump"] = json.loads(pack.model_dump_json())
        if gates:
            from clipaudit.rules.gates import first_failure, marked_codes, run_gates

            wanted = [
                "id",
                "error",
                "caption_chars",
                "decision",
                "duplicate_of",
                "pixel_hash",
                "alignment",
                "min_side",
                "judge_faithful",
            ]
            names = pq.read_schema(run.path / "decisions.parquet").names
            frame = pq.read_table(
                run.path / "decisions.parquet", columns=[c for c in wanted if c in names]
            ).to_pandas()
            marks = marked_codes(
                pq.read_table(run.path / "decisions.parquet", columns=["reasons"])["reasons"]
            )
            frame = frame.assign(**marks)
            del marks
            cut = stats["thresholds"]["alignment_min"]
            pct = stats["thresholds"]["alignment_percentile_value"]
            cuts = [c for c in (cut, pct) if c is not None]
            result = run_gates(frame, frame, pack, max(cuts) if cuts else None)
            del frame
            run.write_json("gates.json", result)
            stats["gates"] = {"success": result["success"], "first_failure": first_failure(result)}
            phases.done("gates")
        stale = _remove_stale_documents(run.path)
        if stale:
            stats["stale_documents_removed"] = stale
        run.write_json("stats.json", stats)
        # Machine-dependent figures live beside the stats: the run's other files do not
        # depend on how fast the machine was (a local and a Ray run compare byte for byte).
        run.write_json("phases.json", {"workers": workers, "samples": n, "phases": phases.out})
    finally:
        pa.set_memory_pool(arrow_pool)
        for scratch in (run.path / WORK, *run.path.glob(f"{WORK}.stale-*")):
            shutil.rmtree(scratch, ignore_errors=True)
    return stats


# What `clipaudit report RUN` and `clipaudit card RUN` write inside the run by default.
STALE_DOCUMENTS = ("report.html", "report.json", "report.csv", "report_ids.csv", "cards")


def _remove_stale_documents(folder: Path) -> list[str]:
    """A report or cards inside the run describe the decisions this decide replaces: their
    figures and stats.json links then disagreed with the run (kept 222 against 164, the old
    pack's name). They are removed; the CLI says so, and they are made again on request."""
    gone = []
    for name in STALE_DOCUMENTS:
        path = folder / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        elif path.is_file() or path.is_symlink():
            path.unlink(missing_ok=True)
        else:
            continue
        gone.append(name)
    return gone


def _same_input(dataset: Dataset, record: dict[str, Any]) -> bool:
    rec = record.get("dataset") or {}
    return (
        bool(rec.get("source"))
        and dataset.format == rec.get("format")
        and (list(dataset.shards()) == list(rec.get("shards") or []))
    )


def _decide_sharded(
    run: RunDir,
    shards: SignalShards,
    pack: Pack,
    model_spec: str | None,
    mapper: Mapper,
    phases: _Phases,
    refs: list[against.Reference],
) -> dict[str, Any]:
    ks = list(shards)
    thr = pack.alignment_for(model_spec)
    pct = None
    if thr.min_percentile is not None and shards.has("alignment"):
        pct = alignment_percentile(shards.column("alignment", np.float64), pack, model_spec)
    phases.done("percentile")
    names = sorted({n for sch in shards.schemas.values() for n in sch.names})
    routes = route_table(run.path, pack, model_spec, names)
    verdicts = load_verdicts(run.path) or None
    jobs = [
        MapJob(str(run.path), k, pack, model_spec, pct, bool(refs), routes, verdicts) for k in ks
    ]
    mapper(map_rules, jobs, phases.tick("map_rules", len(jobs)))
    phases.done("map_rules")
    # The reduce: compact columns of every standing sample.
    parts = [pq.read_table(_work(run.path, "compact", k)) for k in ks]
    # Positions' shards and rows as int32: two int64 columns cost 160 MB at 10^7 samples.
    shard_of = (
        np.concatenate([np.full(p.num_rows, k, np.int32) for p, k in zip(parts, ks, strict=True)])
        if parts
        else np.zeros(0, np.int32)
    )
    table = pa.concat_tables(parts, promote_options="default") if parts else pa.table({})
    del parts
    row_of = table.column("row").to_numpy().astype(np.int32)
    c = _as_compact(table)
    del table
    image_emb = None
    if pack.dedup.semantic_eps is not None:
        all_shards = np.concatenate([np.full(shards.rows[k], k) for k in ks])
        emb = load_image_embeddings(run.path, all_shards)
        offsets = dict(
            zip(
                ks, np.concatenate(([0], np.cumsum([shards.rows[k] for k in ks])[:-1])), strict=True
            )
        )
        image_emb = (
            emb[np.array([offsets[k] for k in shard_of.tolist()], np.int64) + row_of]
            if len(row_of)
            else emb[:0]
        )
        del emb
    thumbs = _thumb_reader(shards, shard_of, row_of)
    inner_thumbs = _thumb_reader(shards, shard_of, row_of, inner=True)
    inner_aspects = _aspect_reader(shards, shard_of, row_of)
    frame_thumbs = _frame_thumb_reader(shards, shard_of, row_of)
    # Copies of a reference sample are dropped first and join no group of the run's own.
    in_play = np.arange(len(c))
    ref_pos: list[np.ndarray] = []
    ref_ids: list[pa.Array] = []
    against_stats = []
    for ref in refs:
        ref_thumbs = _thumb_reader(ref.shards, ref.shard_of, ref.row_of)
        pos, idx, counts = against.matches(c, in_play, ref, pack.dedup, thumbs, ref_thumbs)
        ref_pos.append(pos)
        ref_ids.append(ref.ids.take(pa.array(idx, pa.int64())))
        in_play = np.setdiff1d(in_play, pos, assume_unique=True)
        against_stats.append(
            {
                "reference": ref.label,
                "kind": ref.kind,
                "samples": len(ref),
                "hashed_now": ref.hashed_now,
                "matched": len(pos),
                "by_kind": counts,
            }
        )
    sub = c if len(in_play) == len(c) else c.take(in_play)
    sub_emb = image_emb if image_emb is None or len(in_play) == len(c) else image_emb[in_play]
    whole = len(in_play) == len(c)
    sub_thumbs = thumbs if thumbs is None or whole else (lambda p: thumbs(in_play[p]))
    sub_inner = (
        inner_thumbs if inner_thumbs is None or whole else (lambda p: inner_thumbs(in_play[p]))
    )
    sub_frames = (
        frame_thumbs if frame_thumbs is None or whole else (lambda p: frame_thumbs(in_play[p]))
    )
    sub_aspects = (
        inner_aspects if inner_aspects is None or whole else (lambda p: inner_aspects(in_play[p]))
    )
    with output_errors(run.path / WORK):  # a large thumbnail check spills to the scratch folder
        out = resolve(
            sub,
            pack.dedup,
            sub_thumbs,
            sub_emb,
            scratch=run.path / WORK,
            inner_thumbs=sub_inner,
            frame_thumbs=sub_frames,
            kept_kinds=kept_duplicate_kinds(pack),
            inner_aspects=sub_aspects,
        )
    sub_hit = np.flatnonzero(out.keeper >= 0)
    hit = np.concatenate([in_play[sub_hit], *ref_pos]).astype(np.int64)
    kind_all = np.concatenate(
        [out.kind[sub_hit].astype(np.int8), *(np.full(len(p), REFERENCE, np.int8) for p in ref_pos)]
    )
    dup_ids = pa.concat_arrays(
        [
            c.ids.take(pa.array(in_play[out.keeper[sub_hit]], pa.int64())).cast(pa.string()),
            *(r.cast(pa.string()) for r in ref_ids),
        ]
    )
    o = np.argsort(hit, kind="stable")
    hit, kind_all = hit[o], kind_all[o]
    dup_ids = dup_ids.take(pa.array(o, pa.int64()))
    for k in ks:
        at = hit[shard_of[hit] == k]
        sel = np.searchsorted(hit, at)
        _write(
            _work(run.path, "dups", k),
            pa.table(
                {
                    "row": pa.array(row_of[at], pa.int64()),
                    "duplicate_of": dup_ids.take(pa.array(sel, pa.int64())),
                    "kind": pa.array(kind_all[sel], pa.int8()),
                }
            ),
        )
    del c
    phases.done("reduce_duplicates")
    tallies = mapper(map_finish, jobs, phases.tick("map_decisions", len(jobs)))
    files = [_work(run.path, "decisions", k) for k in ks]
    _write_decisions(files, run.path / "decisions.parquet")
    phases.done("map_decisions")
    view = _StatsView(str(run.path), ks)
    used = _thresholds(pack, model_spec, pct, view)
    stats = _stats(
        add_tallies(tallies), shards.total, out.groups, used, pack, view, _reasons_tuples(files)
    )
    stats["duplicate_search"] = out.stats
    if routes is not None:
        stats["routes"] = _route_stats(pack, model_spec, [t["routes"] for t in tallies])
    if refs:
        stats["against"] = against_stats
    return stats


def _route_stats(pack: Pack, model_spec: str | None, parts: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, route in pack.routes.items():
        counts: dict[str, int] = {}
        for p in parts:
            for key, v in p[name].items():
                counts[key] = counts.get(key, 0) + v
        out[name] = {
            "action": route.action,
            "threshold": route.threshold_for(model_spec),
            "phrases": len(route.phrases),
            "counter_phrases": len(route.counter_phrases),
            **counts,
        }
    return out


def _thresholds(pack: Pack, model_spec: str | None, pct: float | None, view: Any) -> dict[str, Any]:
    """What quality_reasons reports as ``used``, without its rows."""
    thr = pack.alignment_for(model_spec)
    q = pack.quality
    return {
        "alignment_min": thr.min,
        "alignment_min_percentile": thr.min_percentile,
        "alignment_percentile_value": pct,
        "alignment_source": "model" if model_spec in pack.models else "pack",
        # False where the run has no alignment scores: a cut the pack sets then cuts nothing.
        "alignment_scored": "alignment" in view,
        "blank_check": "pixel_std" in view if q.min_pixel_std is not None else None,
    }


def _write_routes(
    dataset: Dataset, run: RunDir, ks: list[int], fmt: str, pack: Pack
) -> dict[str, Any]:
    """One kept dataset per route (``kept_routes/NAME``), each swapped in whole."""
    import tempfile

    from clipaudit.curate.decide import writer as kept_writer

    if not pack.routes:
        raise ClipauditError(
            f"--split-by-route needs routes, and pack {pack.name!r} has none; add a routes: "
            "section or use a pack that has one (e.g. web-routes)."
        )
    parts = {k: _work(run.path, "decisions", k) for k in ks}
    root = run.path / "kept_routes"
    out: dict[str, Any] = {}
    with output_errors(root):
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir()
        for name in pack.routes:
            tmp = Path(tempfile.mkdtemp(prefix=".route-", dir=root))
            try:
                n = kept_writer.write_route(dataset, parts, tmp / "data", fmt, name)
                (tmp / "data").replace(root / name)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            out[name] = {"samples": n, "path": f"kept_routes/{name}"}
    return out


def _write_kept(
    dataset: Dataset,
    run: RunDir,
    ks: list[int],
    out: Path,
    fmt: str,
    parallel: Mapper | None,
    tick: Callable[[int], None],
) -> None:
    """The kept samples in input order (``kept_writer``): per input shard in ``parallel``
    jobs where the format allows, else serially; swapped in whole when done."""
    import tempfile

    from clipaudit.curate.decide import writer as kept_writer
    from clipaudit.data.formats import get_format

    parts = {k: _work(run.path, "decisions", k) for k in ks}
    tmp = Path(tempfile.mkdtemp(prefix=".kept-", dir=out.parent))
    try:
        target = tmp / "data"
        if parallel is not None and get_format(fmt).shard_file is not None:
            record = run.read_json("run.json")
            kept_writer.write_parallel(record, parts, target, fmt, parallel, tick)
        else:
            kept_writer.write_serial(dataset, parts, target, fmt)
        if out.exists():
            shutil.rmtree(out)
        target.replace(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
