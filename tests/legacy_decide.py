"""Decide: turn stored signals into keep / flag / drop / error with reason codes.

No model is loaded: re-deciding with another pack reads the signal tables, recomputes the
duplicate groups from the stored hashes (seconds) and rewrites decisions, stats and the kept
dataset. Order matters and is fixed: reading errors, then quality and alignment, then
deduplication among the samples still standing, so a duplicate group never loses its
keeper to another rule.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from clipaudit.curate.decide.neardup import near_pairs, popcount64
from clipaudit.curate.decide.semdedup import load_image_embeddings, semantic_pairs
from clipaudit.curate.rundir import RunDir, table_bytes
from clipaudit.curate.stages import load_stage_modules
from clipaudit.curate.stages.hashes import ThumbCorrelation, as_uint64
from clipaudit.curate.stages.reasons import RULES, SIGNAL_STATS
from clipaudit.data.decode import DECODE_ERRORS
from clipaudit.data.formats import (
    Dataset,
    atomic_write_bytes,
    open_dataset,
    output_errors,
    write_dataset,
)
from clipaudit.data.sample import SOFT_READ_ERRORS
from clipaudit.errors import ClipauditError, DuplicateIdError
from clipaudit.rules.schema import Pack, load_pack

load_stage_modules()  # every signal registers its rules

# Reader and decoder codes: the sample could not be scored at all.
ERROR_CODES = set(DECODE_ERRORS) | {"unsafe_path", "truncated_shard", "remote_path"}


def load_signals(run: RunDir) -> dict[str, np.ndarray]:
    files = sorted((run.path / "signals").glob("shard-*.parquet"))
    if not files:
        raise ClipauditError(f"{str(run.path)!r} has no scored shards; run curate first.")
    tables = []
    for f in files:
        t = pq.read_table(f)
        k = int(f.stem.split("-")[1])
        tables.append(t.append_column("shard", pa.array([k] * t.num_rows, pa.int64())))
    table = pa.concat_tables(tables, promote_options="default")
    counts = pc.value_counts(table.column("id")).to_pylist() if table.num_rows else []
    repeated = sorted(c["values"] for c in counts if c["counts"] > 1)
    if repeated:  # each shard checks its own ids; a repeat across shards shows up here
        raise DuplicateIdError(repeated, f"the input of {str(run.path)!r}")
    return {name: _values(table.column(name)) for name in table.column_names}


def _values(col: pa.ChunkedArray) -> np.ndarray:
    # numpy would turn an integer column with nulls into float64 with NaN: 64-bit hashes
    # would lose their low bits and nulls would slip past ``is None``. Keep ints and None.
    if pa.types.is_integer(col.type) and col.null_count:
        return np.array(col.to_pylist(), dtype=object)
    return col.to_numpy(zero_copy_only=False)


def _col(sig: dict[str, np.ndarray], name: str, n: int) -> np.ndarray:
    return sig[name] if name in sig else np.full(n, None, dtype=object)


def _floats(values: np.ndarray) -> np.ndarray:
    return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)


def quality_reasons(
    sig: dict[str, np.ndarray],
    pack: Pack,
    model_spec: str | None,
) -> tuple[list[list[str]], dict[str, Any]]:
    n = len(sig["id"])
    reasons: list[list[str]] = [[] for _ in range(n)]
    q = pack.quality
    err = _col(sig, "error", n)
    min_side = _floats(_col(sig, "min_side", n))
    aspect = _floats(_col(sig, "aspect", n))
    fbytes = _floats(_col(sig, "file_bytes", n))
    flat = _floats(_col(sig, "pixel_std", n))  # NaN in runs scored before the signal existed
    words = _floats(_col(sig, "caption_words", n))
    chars = _floats(_col(sig, "caption_chars", n))
    align = _floats(_col(sig, "alignment", n))
    if q.languages is not None and "caption_lang" not in sig:
        raise ClipauditError(
            f"pack {pack.name!r} sets quality.languages but the run has no caption_lang "
            "signal; curate it again with the quality stage of this version."
        )
    lang, lang_score = _col(sig, "caption_lang", n), _floats(_col(sig, "caption_lang_score", n))
    allowed = set(q.languages or [])
    thr = pack.alignment_for(model_spec)
    cut = thr.min
    pct_value = None
    if thr.min_percentile is not None:
        scored = align[~np.isnan(align)]
        if len(scored):
            pct_value = float(np.percentile(scored, thr.min_percentile))
    for i in range(n):
        r = reasons[i]
        if err[i] is not None:
            r.append(str(err[i]))
            if err[i] not in SOFT_READ_ERRORS:
                continue  # nothing else was measured
        if q.min_side and min_side[i] < q.min_side:
            r.append("too_small")
        if q.max_aspect is not None and aspect[i] > q.max_aspect:
            r.append("bad_aspect")
        if q.min_file_bytes and fbytes[i] < q.min_file_bytes:
            r.append("file_too_small")
        if q.min_pixel_std is not None and flat[i] < q.min_pixel_std:
            r.append("blank_image")
        if chars[i] == 0:
            r.append("no_caption")
        elif words[i] < q.min_caption_words or chars[i] < q.min_caption_chars:
            r.append("caption_too_short")
        if q.max_caption_chars is not None and chars[i] > q.max_caption_chars:
            r.append("caption_too_long")
        if (
            q.languages is not None
            and lang[i] is not None
            and lang[i] not in allowed
            and lang_score[i] >= q.min_language_score
        ):
            r.append("wrong_language")
        a = align[i]
        if not np.isnan(a) and (
            (cut is not None and a < cut) or (pct_value is not None and a < pct_value)
        ):
            r.append("low_alignment")
    used = {
        "alignment_min": cut,
        "alignment_min_percentile": thr.min_percentile,
        "alignment_percentile_value": pct_value,
        "alignment_source": "model" if model_spec in pack.models else "pack",
        "blank_check": "pixel_std" in sig if q.min_pixel_std is not None else None,
    }
    return reasons, used


def _standing(reasons: list[list[str]], pack: Pack) -> np.ndarray:
    return np.array(
        [all(pack.action(c) != "drop" for c in r) and not (set(r) & ERROR_CODES) for r in reasons]
    )


def _mirror_pairs(
    phash: np.ndarray, mirror: np.ndarray, radius: int
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (i < j) where one image's pHash is within the radius of the other's mirror
    pHash: pHashes searched against mirror pHashes, only pairs across the two kept."""
    n = len(phash)
    a, b, _ = near_pairs(np.concatenate([phash, mirror]), radius, split=n)
    cross = a != b - n  # a symmetric image is its own mirror
    lo, hi = np.minimum(a[cross], b[cross] - n), np.maximum(a[cross], b[cross] - n)
    code = np.unique(lo * n + hi)
    return code // n, code % n


def near_duplicate_pairs(
    sig: dict[str, np.ndarray], rows: np.ndarray, d: Any
) -> list[tuple[int, int]]:
    """Row pairs within ``d.near_radius`` on every listed hash (``match: all``) or on at
    least one (``match: any``); with ``mirrors``, also pairs where one image's pHash is within
    the radius of the other's mirror-image pHash. Each confirmed by thumbnails (a mirror
    pair against the mirrored thumbnail)."""
    rows = np.asarray([r for r in rows if sig[d.hashes[0]][r] is not None], dtype=np.int64)
    if len(rows) < 2:
        return []
    n = len(rows)
    codes = {name: as_uint64([sig[name][r] for r in rows]) for name in d.hashes}
    empty = np.zeros(0, np.int64)
    ma, mb = empty, empty
    if d.mirrors and "phash" in sig and "phash_mirror" in sig:
        phash = codes.get("phash")
        if phash is None:
            phash = as_uint64([sig["phash"][r] for r in rows])
        mirror = as_uint64([sig["phash_mirror"][r] for r in rows])
        ma, mb = _mirror_pairs(phash, mirror, d.near_radius)

    def pairs_on(name: str) -> tuple[np.ndarray, np.ndarray]:
        return near_pairs(codes[name], d.near_radius)[:2]

    if d.match == "any":
        code = np.unique(np.concatenate([a * n + b for a, b in map(pairs_on, d.hashes)]))
        pa_, pb_ = code // n, code % n
        ok: np.ndarray = np.ones(len(pa_), dtype=np.bool_)
    else:
        pa_, pb_ = pairs_on(d.hashes[0])
        ok = np.ones(len(pa_), dtype=np.bool_)
        for other in d.hashes[1:]:
            ho = codes[other]
            ok = ok & (popcount64(ho[pa_] ^ ho[pb_]) <= d.near_radius)
    mok: np.ndarray = np.ones(len(ma), dtype=np.bool_)
    if d.min_thumb_corr is not None and "thumb" in sig and (ok.any() or mok.any()):
        # Thumbnails only for the rows some candidate pair touches.
        need = np.unique(np.concatenate([pa_[ok], pb_[ok], ma, mb]))
        corr = ThumbCorrelation([sig["thumb"][rows[x]] for x in need])
        want = np.flatnonzero(ok)
        at_a, at_b = np.searchsorted(need, pa_[want]), np.searchsorted(need, pb_[want])
        ok[want] = corr(at_a, at_b) >= d.min_thumb_corr
        at_a, at_b = np.searchsorted(need, ma), np.searchsorted(need, mb)
        mok = corr(at_a, at_b, mirror_b=True) >= d.min_thumb_corr
    confirmed = {(int(x), int(y)) for x, y in zip(pa_[ok], pb_[ok], strict=True)}
    confirmed |= {(int(x), int(y)) for x, y in zip(ma[mok], mb[mok], strict=True)}
    return [(int(rows[x]), int(rows[y])) for x, y in sorted(confirmed)]


# When a pair is a duplicate in several ways, the strongest evidence names it.
DUPLICATE_KINDS = ("exact_duplicate", "near_duplicate", "semantic_duplicate")


def dedup(
    sig: dict[str, np.ndarray],
    candidates: np.ndarray,
    pack: Pack,
    image_emb: np.ndarray | None = None,
    reasons: list[list[str]] | None = None,
) -> tuple[dict[int, tuple[int, str]], int]:
    """Greedy keeper policy: in priority order, a sample still in play is kept and every
    duplicate of it still in play is dropped naming it. Returns row → (keeper row, kind).

    ``image_emb`` (row-aligned) enables semantic dedup when the pack sets ``semantic_eps``.
    """
    n = len(sig["id"])
    idx = np.nonzero(candidates)[0]
    semantic = pack.dedup.semantic_eps is not None and image_emb is not None
    if len(idx) == 0 or ("phash" not in sig and not semantic):
        return {}, 0
    d = pack.dedup
    align = _floats(_col(sig, "alignment", n))
    area = _floats(_col(sig, "width", n)) * _floats(_col(sig, "height", n))
    ids = sig["id"]

    def priority(i: int) -> tuple[Any, ...]:
        key: list[Any] = []
        for k in d.keeper:
            if k == "flags":  # fewer codes the pack flags first
                flagged = {c for c in (reasons[i] if reasons else []) if pack.action(c) == "flag"}
                key.append(len(flagged))
            elif k == "alignment":
                key.append(-(align[i] if not np.isnan(align[i]) else -np.inf))
            elif k == "resolution":
                key.append(-(area[i] if not np.isnan(area[i]) else -1))
            else:
                key.append(str(ids[i]))
        return tuple(key)

    # Exact copies collapse onto one representative, the copy the keeper policy ranks first:
    # copies share every hash and thumbnail, so their near pairs are the representative's,
    # and a placeholder image repeated 100,000 times costs one row in the search instead of
    # 5·10^9 pairs.
    ranked = sorted((int(r) for r in idx), key=priority)
    px = sig.get("pixel_hash")
    copies: dict[int, list[int]] = {}
    rep_of: dict[Any, int] = {}
    for r in ranked:
        key = px[r] if px is not None else None
        if key is not None and key in rep_of:
            copies[rep_of[key]].append(r)
            continue
        if key is not None:
            rep_of[key] = r
        copies[r] = []
    reps = np.array(sorted(copies), dtype=np.int64)
    adj: dict[int, dict[int, str]] = {}

    def link(x: int, y: int, kind: str) -> None:
        for a, b in ((x, y), (y, x)):
            was = adj.setdefault(a, {}).get(b)
            if was is None or DUPLICATE_KINDS.index(kind) < DUPLICATE_KINDS.index(was):
                adj[a][b] = kind

    if "phash" in sig:
        for x, y in near_duplicate_pairs(sig, reps, d):
            link(x, y, "near_duplicate")
    if semantic:
        assert image_emb is not None and d.semantic_eps is not None
        for x, y, _ in semantic_pairs(image_emb, reps, d.semantic_eps):
            link(int(x), int(y), "semantic_duplicate")
    kept: set[int] = set()
    dropped: dict[int, tuple[int, str]] = {}
    for top in ranked:
        if top not in copies or top in dropped or (top not in adj and not copies[top]):
            continue  # a copy (handled with its representative), dropped, or unique
        kept.add(top)
        for m in copies[top]:
            dropped[m] = (top, "exact_duplicate")
        for j, kind in adj.get(top, {}).items():
            if j not in kept and j not in dropped:
                for m in (j, *copies[j]):
                    dropped[m] = (top, kind)
    groups_n = len({keeper for keeper, _ in dropped.values()})
    return dropped, groups_n


def decide_signals(
    sig: dict[str, np.ndarray],
    pack: Pack,
    model_spec: str | None,
    image_emb: np.ndarray | None = None,
) -> tuple[pa.Table, dict[str, Any]]:
    n = len(sig["id"])
    reasons, used = quality_reasons(sig, pack, model_spec)
    errored = [bool(set(r) & ERROR_CODES) for r in reasons]
    for name in sorted(RULES):
        for i, extra in enumerate(RULES[name](sig, pack)):
            if extra and not errored[i]:
                reasons[i].extend(c for c in extra if c not in reasons[i])
    standing = _standing(reasons, pack)
    dropped, n_groups = dedup(sig, standing, pack, image_emb, reasons)
    dup_of: list[str | None] = [None] * n
    for j, (i, kind) in dropped.items():
        reasons[j].append(kind)
        dup_of[j] = str(sig["id"][i])
    decisions = []
    for r in reasons:
        if set(r) & ERROR_CODES:
            decisions.append("error")
        elif any(pack.action(c) == "drop" for c in r):
            decisions.append("drop")
        elif any(pack.action(c) == "flag" for c in r):
            decisions.append("flag")
        else:
            decisions.append("keep")
    cols: dict[str, Any] = {
        "id": pa.array(sig["id"], pa.string()),
        "decision": pa.array(decisions, pa.string()),
        "reasons": pa.array(reasons, pa.list_(pa.string())),
        "duplicate_of": pa.array(dup_of, pa.string()),
    }
    for name, values in sig.items():
        if name not in cols:
            cols[name] = pa.array(list(values))
    table = pa.table(cols)
    counts = {d: decisions.count(d) for d in ("keep", "flag", "drop", "error")}
    by_reason: dict[str, int] = {}
    by_reason_dropping: dict[str, int] = {}
    for r, dec in zip(reasons, decisions, strict=True):
        for c in set(r):
            by_reason[c] = by_reason.get(c, 0) + 1
            if dec == "drop" and pack.action(c) == "drop":
                by_reason_dropping[c] = by_reason_dropping.get(c, 0) + 1
    stats = {
        "input": n,
        "kept": counts["keep"] + counts["flag"],
        "flagged": counts["flag"],
        "dropped": counts["drop"],
        "errored": counts["error"],
        "adds_up": counts["keep"] + counts["flag"] + counts["drop"] + counts["error"] == n,
        "by_reason": dict(sorted(by_reason.items())),
        "by_reason_dropping": dict(sorted(by_reason_dropping.items())),
        "duplicate_groups": n_groups,
        "signals": {name: SIGNAL_STATS[name](sig, pack, reasons) for name in sorted(SIGNAL_STATS)},
        "thresholds": used,
        "pack": {"name": pack.name, "version": pack.version, "extends": pack.extends},
    }
    return table, stats


def decide_run(
    run_path: str | Path,
    rules: str,
    dataset: Dataset | None = None,
    out_format: str | None = None,
    gates: bool = True,
) -> dict[str, Any]:
    """(Re)decide a scored run with ``rules``; writes decisions, stats and the kept dataset."""
    run = RunDir(run_path)
    record = run.read_json("run.json")
    pack = load_pack(rules)
    sig = load_signals(run)
    model_spec = record.get("settings", {}).get("model")
    image_emb = (
        load_image_embeddings(run.path, sig["shard"])
        if pack.dedup.semantic_eps is not None
        else None
    )
    table, stats = decide_signals(sig, pack, model_spec, image_emb)
    atomic_write_bytes(run.path / "decisions.parquet", table_bytes(table))
    if dataset is None:
        ds_rec = record["dataset"]
        dataset = open_dataset(ds_rec["source"], format=ds_rec["format"])
    fmt = out_format or record.get("out_format") or dataset.format
    kept_ids = {
        i
        for i, d in zip(sig["id"], table.column("decision").to_pylist(), strict=True)
        if d in ("keep", "flag")
    }
    with output_errors(run.path / "kept"):  # a full or read-only disk: one clear error
        _write_kept(dataset, kept_ids, run.path / "kept", fmt)
    stats["kept_dataset"] = {"format": fmt, "path": "kept"}
    stats["pack_dump"] = json.loads(pack.model_dump_json())
    if gates:
        from clipaudit.rules.gates import first_failure, run_gates

        frame = table.to_pandas()
        cut = stats["thresholds"]["alignment_min"]
        pct = stats["thresholds"]["alignment_percentile_value"]
        cuts = [c for c in (cut, pct) if c is not None]
        result = run_gates(frame, frame, pack, max(cuts) if cuts else None)
        run.write_json("gates.json", result)
        stats["gates"] = {"success": result["success"], "first_failure": first_failure(result)}
    run.write_json("stats.json", stats)
    return stats


def _write_kept(dataset: Dataset, kept: set[str], out: Path, fmt: str) -> None:
    import shutil
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix=".kept-", dir=out.parent))
    try:
        target = tmp / "data"
        samples = (
            s for shard in dataset.shards() for s in dataset.read_shard(shard) if s.id in kept
        )
        write_dataset(samples, target, fmt, shard_size=1000)
        if out.exists():
            shutil.rmtree(out)
        target.replace(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
