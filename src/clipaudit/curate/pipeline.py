"""``curate``: score every sample shard by shard (resumable), then decide with a rules pack.

The local engine streams one shard at a time (memory bounded by a shard), decodes each
batch once for all stages on a thread pool while the model runs, and marks each finished
shard so that a killed run resumes where it stopped and ends with the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from clipaudit import __version__
from clipaudit.curate import all_stages  # noqa: F401  (registers every stage)
from clipaudit.curate.rundir import RunDir
from clipaudit.curate.stage import Batch, StageContext, make_stages
from clipaudit.data.decode import decode_image
from clipaudit.data.formats import Dataset, ReadOptions, batched, open_dataset
from clipaudit.errors import DuplicateIdError
from clipaudit.models.provenance import library_versions

# Model stages first: the phrase scores of nsfw and watermark reuse alignment's embeddings.
DEFAULT_STAGES = [
    "quality",
    "hashes",
    "alignment",
    "rights",
    "c2pa",
    "optout",
    "watermark",
    "visible_watermark",
    "nsfw",
]


@dataclass
class CurateConfig:
    dataset: str
    out: str
    rules: str = "default"
    model: str = "bundled:world-clip"
    format: str | None = None
    read: ReadOptions = field(default_factory=ReadOptions)
    stages: list[str] = field(default_factory=lambda: list(DEFAULT_STAGES))
    batch_size: int = 64
    device: str | None = None
    out_format: str | None = None
    decode_threads: int = 2
    gates: bool = True
    # Extra stage options (e.g. ``optout_cache``); ``rules`` is added from the field above.
    options: dict[str, Any] = field(default_factory=dict)


def input_fingerprint(ds: Dataset) -> str:
    """Shard names with their sizes and times: enough to refuse resuming onto other data."""
    h = hashlib.sha256(f"{ds.format}|{ds.describe()}".encode())
    for shard in ds.shards():
        h.update(shard.encode())
        path = getattr(ds, "_files", {}).get(shard)
        if path is not None and Path(path).exists():
            st = Path(path).stat()
            h.update(f"{st.st_size}:{int(st.st_mtime)}".encode())
    return h.hexdigest()


def _signal_table(ids: list[str], rows: list[int], cols: dict[str, list[Any]]) -> pa.Table:
    data: dict[str, Any] = {"id": pa.array(ids, pa.string()), "row": pa.array(rows, pa.int64())}
    for name, values in cols.items():
        data[name] = pa.array(values)
    return pa.table(data)


def score_shard(
    ds: Dataset,
    shard: str,
    k: int,
    stages: list[Any],
    run: RunDir,
    batch_size: int,
    pool: ThreadPoolExecutor,
    timings: dict[str, float],
) -> int:
    """Score one shard and write its files and marker; adds seconds per step to ``timings``."""
    ids: list[str] = []
    rows: list[int] = []
    cols: dict[str, list[Any]] = {c: [] for s in stages for c in s.columns}
    arrays: dict[str, list[np.ndarray]] = {}
    meta: dict[str, list[Any]] = {"id": [], "caption": [], "url": []}
    seen: set[str] = set()
    row = 0
    for stage in stages:
        stage.begin_shard()

    def work(s: Any) -> tuple[Any, list[Any]]:
        d = decode_image(s.image) if s.error is None else decode_image(None)
        return d, [stage.prepare(s, d) for stage in stages]

    def submit(samples: list[Any] | None) -> tuple[list[Any], list[Any]] | None:
        return (samples, [pool.submit(work, s) for s in samples]) if samples else None

    # One batch of look-ahead: the pool decodes batch b+1 while the model scores batch b.
    batches = batched(ds.read_shard(shard), batch_size)
    ahead = submit(next(batches, None))
    while ahead is not None:
        samples, futures = ahead
        ahead = submit(next(batches, None))
        t0 = time.perf_counter()
        results = [f.result() for f in futures]
        decoded = [r[0] for r in results]
        batch = Batch(
            samples,
            decoded,
            prepared={stage.name: [r[1][k] for r in results] for k, stage in enumerate(stages)},
        )
        t1 = time.perf_counter()
        # Waiting on decoding and per-sample preparation (what the look-ahead did not hide).
        timings["decode"] = timings.get("decode", 0.0) + t1 - t0
        for stage in stages:
            for name, values in stage.process(batch).items():
                cols[name].extend(values)
            t2 = time.perf_counter()
            timings[stage.name] = timings.get(stage.name, 0.0) + t2 - t1
            t1 = t2
        for name, arr in batch.arrays.items():
            arrays.setdefault(name, []).append(arr)
        for s in samples:
            if s.id in seen:
                raise DuplicateIdError([s.id], f"shard {shard!r} of {ds.describe()}")
            seen.add(s.id)
            ids.append(s.id)
            rows.append(row)
            row += 1
            meta["id"].append(s.id)
            meta["caption"].append(s.caption)
            meta["url"].append(s.url)
    table = _signal_table(ids, rows, cols)
    merged = {n: np.concatenate(a) for n, a in arrays.items()}
    run.write_shard(k, table, merged, pa.table(meta) if merged else None)
    return len(ids)


def curate(
    cfg: CurateConfig,
    progress: Callable[[int, int, int], None] | None = None,
    warn: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Score (or resume scoring) ``cfg.dataset`` into ``cfg.out``, then decide; return stats."""
    from clipaudit.curate.decide import decide_run
    from clipaudit.rules.schema import load_pack

    ds = open_dataset(cfg.dataset, format=cfg.format, options=cfg.read)
    if warn and "alignment" in cfg.stages:
        from clipaudit.models.domain import domain_warning

        note = domain_warning(cfg.model, ds)
        if note:
            warn(note)
    load_pack(cfg.rules)  # fail on a bad pack before any scoring work
    stages = make_stages(cfg.stages)
    ctx = StageContext(
        model_spec=cfg.model,
        device=cfg.device,
        batch_size=cfg.batch_size,
        options={**cfg.options, "rules": cfg.rules},
    )
    settings = {
        "stages": cfg.stages,
        "model": cfg.model if any(s.needs_model for s in stages) else None,
        "batch_size": cfg.batch_size,
        "read": asdict(cfg.read),
        "options": cfg.options,
    }
    fingerprint = hashlib.sha256(
        (input_fingerprint(ds) + json.dumps(settings, sort_keys=True)).encode()
    ).hexdigest()
    record = {
        "clipaudit": __version__,
        "dataset": {"source": str(cfg.dataset), "format": ds.format, "shards": ds.shards()},
        "settings": settings,
        "fingerprint": fingerprint,
        "versions": library_versions(),
        "out_format": cfg.out_format or ds.format,
    }
    run = RunDir(cfg.out)
    resumed = run.prepare(record)
    shards = ds.shards()
    todo = [k for k in range(len(shards)) if not run.shard_done(k)]
    if todo:
        for stage in stages:
            stage.setup(ctx)
        prov = {s.name: s.provenance() for s in stages}
        run.write_json("run.json", {**record, "stage_provenance": prov})
    done = len(shards) - len(todo)
    scored = 0
    timings: dict[str, float] = {}
    t_start = time.perf_counter()
    with ThreadPoolExecutor(max(1, cfg.decode_threads)) as pool:
        for k in todo:
            scored += score_shard(ds, shards[k], k, stages, run, cfg.batch_size, pool, timings)
            done += 1
            if progress:
                progress(done, len(shards), scored)
    t_scored = time.perf_counter()
    stats = decide_run(run.path, cfg.rules, dataset=ds, gates=cfg.gates)
    # Returned, never written: the run's files must not depend on how fast the machine was.
    stats["resumed"] = resumed
    stats["timings"] = {
        **{k: round(v, 3) for k, v in timings.items()},
        "scoring_wall": round(t_scored - t_start, 3),
        "decide_wall": round(time.perf_counter() - t_scored, 3),
        "scored_samples": scored,
    }
    return stats
