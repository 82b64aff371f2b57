"""Vector indexes over a curated run: faiss for clipaudit's own search, LanceDB for RAG.

An index folder (default ``RUN/index``) holds:

* ``index.json``: what was indexed (the run, as a path relative to the index folder, so a
  run moved or copied with its index still finds itself; model, filter, counts, and
  ``partial``, the shard counts of a run decided with ``--partial``, else null), the faiss
  kind and its parameters, a stamp of the decision table and the build's time;
* ``rows.parquet``: one row per sample with an image or a caption embedding: ``id`` and every
  scalar column of the decision table (caption, url, decision, reasons, route, signals),
  joined on the sample id, never on row position. ``shard`` and ``row`` locate the vector
  in the run's own ``img_emb`` files, which exact re-ranking reads back;
* ``image.index`` (and ``text.index`` where the run has caption embeddings): faiss
  indexes (``IndexIDMap``) whose labels are row numbers of ``rows.parquet`` — the layout
  clip-retrieval's back end serves. Each holds only the rows that have its embedding: a
  sample whose image did not decode, or that has no caption, has an all-zero row in the
  run's embedding files (cosine 0 with everything), which is left out;
* with ``--backend lancedb``: ``lancedb/``, a table ``samples`` (the columns above and the
  image ``vector``, rows with an image embedding) that another program opens with
  ``lancedb.connect(path).open_table("samples")`` and searches with its own API, and a table
  ``captions`` (``id``, caption ``vector``, rows with a caption embedding).

Building streams the run a shard at a time: the rows go to a Parquet writer, the vectors to
the index. Up to ``FLAT_MAX`` vectors the index is exact (flat inner product: 179 ms a query
at 10^6 x 512 on 2 cores, too slow above). Above, ``pq``: product quantisation with 4-bit
codes and two dimensions a code (faiss fast-scan, d/2 bytes a vector) finds ``K_FACTOR``
times the wanted neighbours, re-ranked exactly against the stored vectors — full floats up
to ``REFINE_FLAT_MAX`` vectors, 8-bit scalar-quantised above so 10^7 vectors fit in memory.
At 10^6 random 512-d vectors: recall@10 1.000 (SQ8 re-rank 0.978) at 7 ms a query
(bench/search_scale.py). HNSW was measured and rejected: on random 512-d vectors its
recall@10 stayed under 0.6 at efSearch 512 already at 10^5.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from clipaudit.curate.rundir import RunDir
from clipaudit.errors import ClipauditError
from clipaudit.search.where import Where, parse_where

INDEX_DIR = "index"
ROWS = "rows.parquet"
INFO = "index.json"
# 2: the run stored relative to the index; rows without an embedding left out (IndexIDMap).
FORMAT_VERSION = 2
# Exact search up to this many vectors; quantised with exact re-ranking above.
FLAT_MAX = 100_000
K_FACTOR = 100  # candidates re-ranked exactly, per wanted neighbour
REFINE_FLAT_MAX = 2_000_000  # above: the re-ranking vectors are stored in 8 bits
TRAIN_MAX = 65_536  # vectors the quantiser is trained on (a random sample of the selection)
# Columns too large or too raw to repeat in an index's rows.
SKIP_COLUMNS = frozenset({"thumb", "thumb_inner"})
LANCE_TABLE = "samples"
LANCE_CAPTIONS = "captions"


@dataclass(frozen=True)
class RunShard:
    """One shard of a decided run: its rows joined on id, and its embeddings."""

    k: int
    rows: pa.Table
    image: np.ndarray
    text: np.ndarray | None


def run_model(run: RunDir) -> str:
    record = run.read_json("run.json")
    spec = (record.get("settings") or {}).get("model")
    if not spec or "alignment" not in ((record.get("settings") or {}).get("stages") or []):
        raise ClipauditError(
            f"{str(run.path)!r} was scored without the alignment stage, so it holds no "
            "embeddings to search; curate it again with --stages ...,alignment."
        )
    return str(spec)


def _shard_numbers(run: RunDir) -> list[int]:
    files = sorted((run.path / "img_emb").glob("img_emb_*.npy"))
    # Scored shards only (their marker is written last): a curate killed after a shard's
    # embeddings but before its marker left a shard the decide did not count, and indexing
    # a run decided with --partial stopped at its first sample without a decision row.
    ks = sorted(k for f in files if run.shard_done(k := int(f.stem.rsplit("_", 1)[1])))
    if not ks:
        raise ClipauditError(
            f"{str(run.path)!r} holds no image embeddings (img_emb/); curate it with the "
            "alignment stage before indexing or searching it."
        )
    return ks


def decision_columns(run: RunDir) -> list[str]:
    """The decision table's columns an index carries (scalars and string lists)."""
    path = run.path / "decisions.parquet"
    if not path.is_file():
        raise ClipauditError(
            f"{str(run.path)!r} has no decisions.parquet; decide it first (clipaudit decide)."
        )
    schema = pq.read_schema(path)
    keep = []
    for f in schema:
        if f.name in SKIP_COLUMNS or pa.types.is_binary(f.type):
            continue
        if pa.types.is_list(f.type) and not pa.types.is_string(f.type.value_type):
            continue
        keep.append(f.name)
    return keep


def iter_run(run: RunDir, columns: list[str] | None = None) -> Iterator[RunShard]:
    """The decided run a shard at a time: decision rows (``columns``, default all an index
    carries) joined with the shard's metadata (caption, url) on the sample id, in the
    order of the shard's embedding rows."""
    cols = columns or decision_columns(run)
    dec_path = run.path / "decisions.parquet"
    for k in _shard_numbers(run):
        meta = pq.read_table(run.path / "metadata" / f"metadata_{k}.parquet")
        image = np.load(run.path / "img_emb" / f"img_emb_{k}.npy", mmap_mode="r")
        tfile = run.path / "text_emb" / f"text_emb_{k}.npy"
        text = np.load(tfile, mmap_mode="r") if tfile.is_file() else None
        if len(image) != meta.num_rows:
            raise ClipauditError(
                f"shard {k} of {str(run.path)!r} has {len(image)} embeddings for "
                f"{meta.num_rows} metadata rows; resume the run with clipaudit curate."
            )
        wanted = [c for c in cols if c not in ("caption", "url")]
        dec = pq.read_table(
            dec_path, columns=sorted({*wanted, "id", "shard"}), filters=[("shard", "=", k)]
        )
        at = pc.index_in(meta.column("id"), value_set=dec.column("id"))
        if at.null_count:
            missing = meta.column("id").filter(pc.is_null(at))[0].as_py()
            raise ClipauditError(
                f"sample {missing!r} of shard {k} has no decision row; decide the run again "
                "(clipaudit decide) before indexing it."
            )
        rows = dec.take(at)
        out = {"id": meta.column("id")}
        for name in ("caption", "url"):
            if name in meta.column_names:
                out[name] = meta.column(name)
        for name in rows.column_names:
            if name not in out:
                out[name] = rows.column(name)
        out["row"] = pa.array(np.arange(meta.num_rows, dtype=np.int64))
        yield RunShard(k, pa.table(out), image, text)


def _normalised(v: np.ndarray) -> np.ndarray:
    v = np.ascontiguousarray(v, dtype=np.float32)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return np.divide(v, norms, out=np.zeros_like(v), where=norms > 0)


def embedded(v: np.ndarray) -> np.ndarray:
    """Rows that hold an embedding: the run stores an all-zero row for a sample whose image
    did not decode or that has no caption."""
    return np.asarray(np.any(np.asarray(v) != 0, axis=1))


def make_faiss(kind: str, dim: int, count: int = 0) -> Any:
    """An empty faiss index of ``kind`` (flat, or pq for ``count`` vectors) over inner
    products; a pq index must be trained before vectors are added."""
    import faiss

    if kind == "flat":
        return faiss.IndexFlatIP(dim)
    if kind == "pq":
        ip = faiss.METRIC_INNER_PRODUCT
        base = faiss.IndexPQFastScan(dim, _pq_m(dim), 4, ip)
        if count > REFINE_FLAT_MAX:
            refine = faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_8bit, ip)
            index = faiss.IndexRefine(base, refine)
        else:
            index = faiss.IndexRefineFlat(base)
        index.k_factor = K_FACTOR
        return index
    raise ClipauditError(f"Unknown index kind {kind!r}; use auto, flat or pq.")


def _pq_m(dim: int) -> int:
    """Sub-quantisers: two dimensions each (an odd dimension: one each)."""
    return dim // 2 if dim % 2 == 0 else dim


def _kind_params(kind: str, dim: int, count: int) -> dict[str, Any]:
    if kind == "pq":
        return {
            "pq_m": _pq_m(dim),
            "pq_bits": 4,
            "k_factor": K_FACTOR,
            "refine": "sq8" if count > REFINE_FLAT_MAX else "flat",
            "train_vectors": min(count, TRAIN_MAX),
        }
    return {}


def decisions_stamp(run: RunDir) -> str:
    """A cheap content stamp of the run's decision table: its size and the hash of its last
    64 KiB (the parquet footer, whose statistics change with the contents). Copying the run
    keeps it; deciding again changes it."""
    path = run.path / "decisions.parquet"
    if not path.is_file():
        raise ClipauditError(
            f"{str(run.path)!r} has no decisions.parquet; decide it first (clipaudit decide)."
        )
    size = path.stat().st_size
    with path.open("rb") as f:
        f.seek(max(0, size - 65536))
        tail = f.read()
    return f"{size}:{hashlib.sha256(tail).hexdigest()[:16]}"


def _partial(run: RunDir) -> dict[str, Any] | None:
    stats = run.path / "stats.json"
    if not stats.is_file():
        return None
    try:
        part = json.loads(stats.read_text(encoding="utf-8")).get("partial")
    except (OSError, ValueError, AttributeError):
        return None
    return part if isinstance(part, dict) else None


def build_index(
    run_path: str | Path,
    out: str | Path | None = None,
    backend: str = "faiss",
    where: str | None = None,
    kind: str = "auto",
) -> dict[str, Any]:
    """Index a decided run's embeddings (see the module docstring); returns index.json."""
    if backend not in ("faiss", "lancedb"):
        raise ClipauditError(f"Unknown --backend {backend!r}; use faiss or lancedb.")
    if backend == "lancedb":
        try:
            import lancedb  # noqa: F401
        except ImportError:
            raise ClipauditError(
                "--backend lancedb needs the lancedb package: pip install 'clipaudit[lancedb]'."
            ) from None
    if kind not in ("auto", "flat", "pq"):
        raise ClipauditError(f"Unknown --kind {kind!r}; use auto, flat or pq.")
    run = RunDir(run_path)
    if not (run.path / "run.json").is_file():
        raise ClipauditError(f"{str(run.path)!r} is not a run folder (no run.json).")
    model = run_model(run)
    cols = decision_columns(run)
    flt: Where | None = None
    if where is not None:
        flt = parse_where(where, [*cols, "caption", "url"])
    target = Path(out) if out is not None else run.path / INDEX_DIR
    t0 = time.perf_counter()
    # Pass 1: how many rows the filter keeps (columns only), to choose the index kind.
    count = 0
    dim = 0
    for part in iter_run(run, sorted(flt.columns | {"id"}) if flt else ["id"]):
        dim = part.image.shape[1]
        count += int(flt.mask(part.rows).sum()) if flt else part.rows.num_rows
    if count == 0:
        raise ClipauditError(
            f"the filter {where!r} selects no sample of {str(run.path)!r}; loosen it."
        )
    chosen = kind if kind != "auto" else ("flat" if count <= FLAT_MAX else "pq")
    tmp = target.with_name(f".{target.name}.building")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        info = _write(run, tmp, backend, flt, chosen, dim, count)
        info.update(
            {
                "format": FORMAT_VERSION,
                # Relative to the index folder: a run moved or copied with its index (the
                # default RUN/index) finds itself, never the folder it was built in.
                "run": os.path.relpath(run.path.resolve(), target.resolve()),
                "run_fingerprint": run.read_json("run.json").get("fingerprint"),
                "decisions": decisions_stamp(run),
                # A run decided with --partial: the index holds its scored shards only.
                "partial": _partial(run),
                "model": model,
                "dim": dim,
                "selected": count,
                "where": where,
                "backend": backend,
                "kind": chosen,
                "params": _kind_params(chosen, dim, count),
                "build_s": round(time.perf_counter() - t0, 3),
            }
        )
        (tmp / INFO).write_text(json.dumps(info, indent=2))
        if target.exists():
            shutil.rmtree(target)
        tmp.replace(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return info


def _training_sample(
    run: RunDir, flt: Where | None, count: int, captions: bool
) -> np.ndarray | None:
    """A seeded uniform sample of up to TRAIN_MAX selected vectors, a shard at a time."""
    rng = np.random.default_rng(0)
    share = min(1.0, TRAIN_MAX / max(count, 1))
    parts = []
    for part in iter_run(run, sorted(flt.columns | {"id"}) if flt else ["id"]):
        src = part.text if captions else part.image
        if src is None:
            return None
        sel = flt.mask(part.rows) if flt else np.ones(part.rows.num_rows, np.bool_)
        idx = np.flatnonzero(sel & (rng.random(len(sel)) < share))
        vectors = np.asarray(src[idx])
        parts.append(_normalised(vectors[embedded(vectors)]))
    sample = np.concatenate(parts)[:TRAIN_MAX]
    return sample if len(sample) else None


def _no_image_embedding(run: RunDir) -> ClipauditError:
    return ClipauditError(
        f"no selected sample of {str(run.path)!r} has an image embedding (every image failed "
        "to decode); there is nothing to index."
    )


def _write(
    run: RunDir, folder: Path, backend: str, flt: Where | None, kind: str, dim: int, count: int
) -> dict[str, Any]:
    """Stream the selected rows into the indexes: a row goes to ``rows.parquet`` when it has
    an image or a caption embedding, and its vector to each index whose embedding it has
    (labels: its row number in ``rows.parquet``)."""
    import faiss

    image_index = faiss.IndexIDMap(make_faiss(kind, dim, count))
    text_index: Any = None
    if kind == "pq":
        sample = _training_sample(run, flt, count, False)
        if sample is None:
            raise _no_image_embedding(run)
        image_index.train(sample)
        sample = _training_sample(run, flt, count, True)
        if sample is not None:
            text_index = faiss.IndexIDMap(make_faiss(kind, dim, count))
            text_index.train(sample)
    writer: pq.ParquetWriter | None = None
    lance: Any = None
    has_text = True
    n_rows = n_image = n_text = no_image = no_text = 0
    try:
        for part in iter_run(run):
            sel = flt.mask(part.rows) if flt else np.ones(part.rows.num_rows, np.bool_)
            idx = np.flatnonzero(sel)
            if not len(idx):
                continue
            image = np.asarray(part.image[idx])
            has_image = embedded(image)
            has_text = has_text and part.text is not None
            text = np.asarray(part.text[idx]) if has_text and part.text is not None else None
            has_caption = embedded(text) if text is not None else np.zeros(len(idx), np.bool_)
            no_image += int((~has_image).sum())
            no_text += int((~has_caption).sum())
            keep = has_image | has_caption
            if not keep.any():
                continue
            rows = part.rows.take(pa.array(idx[keep]))
            labels = n_rows + np.arange(rows.num_rows, dtype=np.int64)
            has_image, has_caption = has_image[keep], has_caption[keep]
            image_vectors = _normalised(image[keep][has_image])
            if len(image_vectors):
                image_index.add_with_ids(image_vectors, labels[has_image])
            text_vectors = None
            if text is not None:
                text_vectors = _normalised(text[keep][has_caption])
                if len(text_vectors):
                    if text_index is None:
                        text_index = faiss.IndexIDMap(make_faiss(kind, dim, count))
                    text_index.add_with_ids(text_vectors, labels[has_caption])
            n_rows += rows.num_rows
            n_image += len(image_vectors)
            n_text += len(text_vectors) if text_vectors is not None else 0
            if writer is None:
                writer = pq.ParquetWriter(folder / ROWS, rows.schema)
            writer.write_table(rows.cast(writer.schema))
            if backend == "lancedb":
                caps = None
                if text_vectors is not None and len(text_vectors):
                    caps = (rows.column("id").filter(pa.array(has_caption)), text_vectors)
                lance = _lance_add(
                    folder, lance, rows.filter(pa.array(has_image)), image_vectors, caps
                )
    finally:
        if writer is not None:
            writer.close()
    if n_image == 0:
        raise _no_image_embedding(run)
    faiss.write_index(image_index, str(folder / "image.index"))
    files = ["image.index", ROWS]
    with_text = has_text and text_index is not None and n_text > 0
    if with_text:
        faiss.write_index(text_index, str(folder / "text.index"))
        files.append("text.index")
    if backend == "lancedb":
        files.append("lancedb")
    return {
        "files": files,
        "lancedb_table": LANCE_TABLE if backend == "lancedb" else None,
        "rows": n_rows,
        "count": n_image,
        "caption_count": n_text if with_text else 0,
        # Selected samples left out of each index: all-zero embedding rows (an image that
        # did not decode; a missing caption).
        "without_image": no_image,
        "without_caption": no_text if with_text else None,
    }


def _lance_add(
    folder: Path,
    tables: Any,
    rows: pa.Table,
    image: np.ndarray,
    captions: tuple[pa.ChunkedArray, np.ndarray] | None,
) -> Any:
    """Append a shard to the LanceDB tables: ``samples`` (one vector column, so a reader's
    ``table.search(vector)`` needs no column name; rows with an image embedding) and
    ``captions`` (id, caption vector; rows with a caption embedding)."""
    import lancedb

    def vectors(v: np.ndarray) -> pa.Array:
        return pa.FixedSizeListArray.from_arrays(pa.array(v.ravel()), v.shape[1])

    data = rows.append_column("vector", vectors(image)) if rows.num_rows else None
    caps = None
    if captions is not None:
        caps = pa.table({"id": captions[0], "vector": vectors(captions[1])})

    def add(table: Any, name: str, part: pa.Table | None) -> Any:
        """``part`` appended to ``table``, made on its first non-empty part."""
        if part is None:
            return table
        if table is None:
            db = lancedb.connect(str(folder / "lancedb"))
            return db.create_table(name, data=part, mode="overwrite")
        table.add(part)
        return table

    samples, caption_table = tables if tables is not None else (None, None)
    return (add(samples, LANCE_TABLE, data), add(caption_table, LANCE_CAPTIONS, caps))
