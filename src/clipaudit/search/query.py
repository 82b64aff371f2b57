"""``clipaudit search``: nearest samples of a run (or of its index) to a text, an image or a
sample, filtered first, scored by cosine with the run's own model.

A text or image query is embedded with the model the run was scored with; a query made
with another model is refused (its cosines would mean nothing). ``--where`` selects rows
before the vector search: an exact index searches the selected rows only; a quantised one
fetches extra neighbours and keeps the selected ones, and a selection under
``FILTER_EXACT_BELOW`` of the index (or one the extra neighbours do not fill) is searched
exactly over its own vectors instead. Results can be collapsed so that one duplicate group
(a sample and the copies decide dropped for it) shows once.

A sample without the embedding a search needs (an all-zero row in the run: an image that
did not decode, a missing caption) is never a result: its cosine, 0, says nothing.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from clipaudit.curate.rundir import RunDir
from clipaudit.errors import ClipauditError
from clipaudit.search.index import (
    FORMAT_VERSION,
    INDEX_DIR,
    INFO,
    ROWS,
    decision_columns,
    decisions_stamp,
    embedded,
    iter_run,
    run_model,
)
from clipaudit.search.where import parse_where

FILTER_EXACT_BELOW = 0.05
# A run searched without an index is read whole into memory: only up to this size.
EXACT_RUN_MAX = 200_000
SHOWN_COLUMNS = ("caption", "url", "decision", "reasons", "route", "duplicate_of")


@dataclass
class Hit:
    rank: int
    id: str
    score: float
    columns: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"rank": self.rank, "id": self.id, "score": round(self.score, 6), **self.columns}


@dataclass
class Searchable:
    """A run's vectors and rows: from its index when there is one, else read exactly."""

    run: RunDir
    model: str
    rows: pa.Table
    image: np.ndarray | None  # exact vectors (no index), row-aligned with rows
    text: np.ndarray | None
    index: Any = None  # faiss image index
    text_index: Any = None
    info: dict[str, Any] = field(default_factory=dict)
    # Rows that hold an image / a caption embedding (the others are all-zero in the run).
    has_image: np.ndarray | None = None
    has_caption: np.ndarray | None = None
    # Selected samples with neither embedding, which an index leaves out of its rows.
    unindexed: int = 0

    @property
    def size(self) -> int:
        return self.rows.num_rows

    def usable(self, captions: bool = False) -> np.ndarray:
        """One bool per row: it holds the embedding a search of images (or captions) needs."""
        mask = self.has_caption if captions else self.has_image
        return mask if mask is not None else np.ones(self.size, np.bool_)

    def left_out(self, captions: bool = False) -> int:
        """Samples a search of images (or captions) leaves out for lack of an embedding."""
        return int((~self.usable(captions)).sum()) + self.unindexed

    def vector_of(self, pos: np.ndarray, captions: bool = False) -> np.ndarray:
        """Exact vectors of rows ``pos``, from memory or the run's embedding files."""
        src = self.text if captions else self.image
        if src is not None:
            return np.asarray(src[pos], np.float32)
        folder, stem = ("text_emb", "text_emb") if captions else ("img_emb", "img_emb")
        shard = self.rows.column("shard").to_numpy()[pos]
        row = self.rows.column("row").to_numpy()[pos]
        out = np.zeros((len(pos), int(self.info["dim"])), np.float32)
        for k in np.unique(shard).tolist():
            at = np.flatnonzero(shard == k)
            emb = np.load(self.run.path / folder / f"{stem}_{k}.npy", mmap_mode="r")
            out[at] = emb[row[at]]
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return np.divide(out, norms, out=np.zeros_like(out), where=norms > 0)


def open_searchable(path: str | Path, use_index: bool = True) -> Searchable:
    """A run folder (its ``index/`` if built and ``use_index``, else its embeddings read
    whole, for exact search) or an index folder."""
    p = Path(path)
    if (p / INFO).is_file():
        return _from_index(p)
    if not (p / "run.json").is_file():
        raise ClipauditError(
            f"{str(p)!r} is neither a run folder (run.json) nor an index (index.json); "
            "give a folder written by clipaudit curate or clipaudit index."
        )
    if use_index and (p / INDEX_DIR / INFO).is_file():
        return _from_index(p / INDEX_DIR, RunDir(p))  # this run's own index, wherever it is
    run = RunDir(p)
    model = run_model(run)
    total = sum(np.load(f, mmap_mode="r").shape[0] for f in (p / "img_emb").glob("img_emb_*.npy"))
    if total > EXACT_RUN_MAX:
        raise ClipauditError(
            f"{str(p)!r} holds {total:,} samples and no index; build one first "
            f"(clipaudit index {p}): an exact search would hold every embedding in memory."
        )
    parts, image, text = [], [], []
    has_text = True
    for part in iter_run(run):
        parts.append(part.rows)
        image.append(np.asarray(part.image, np.float32))
        has_text = has_text and part.text is not None
        if part.text is not None:
            text.append(np.asarray(part.text, np.float32))
    rows = pa.concat_tables(parts)
    img = np.concatenate(image)
    has_image = embedded(img)
    img /= np.maximum(np.linalg.norm(img, axis=1, keepdims=True), 1e-12)
    txt = None
    has_caption = None
    if has_text and text:
        txt = np.concatenate(text)
        has_caption = embedded(txt)
        txt /= np.maximum(np.linalg.norm(txt, axis=1, keepdims=True), 1e-12)
    return Searchable(
        run,
        model,
        rows,
        img,
        txt,
        info={"dim": img.shape[1], "kind": "exact"},
        has_image=has_image,
        has_caption=has_caption,
    )


def _index_run(folder: Path, info: dict[str, Any]) -> RunDir:
    """The run an index searched on its own was built from: ``info["run"]`` is relative to
    the index folder, so a run moved or copied together with its index finds itself."""
    path = Path(os.path.normpath(folder.absolute() / str(info.get("run") or "")))
    if not (path / "run.json").is_file():
        raise ClipauditError(
            f"the index in {str(folder)!r} was built from the run at {str(path)!r} (stored "
            "relative to the index), which is not there now; search the run folder itself "
            "(clipaudit search RUN uses RUN/index) or build the index again with "
            "clipaudit index RUN."
        )
    return RunDir(path)


def _from_index(folder: Path, run: RunDir | None = None) -> Searchable:
    """An index folder; ``run``: the run it belongs to (a run folder given on the command
    line, whose ``index/`` this is), else the run ``index.json`` names relative to it."""
    import faiss

    info = json.loads((folder / INFO).read_text())
    if int(info.get("format") or 1) < FORMAT_VERSION:
        raise ClipauditError(
            f"the index in {str(folder)!r} was built by an earlier clipaudit (index format "
            f"{info.get('format') or 1}), which kept samples without embeddings and the run's "
            "absolute path; build it again with clipaudit index."
        )
    run = run or _index_run(folder, info)
    built = info.get("run_fingerprint")
    now = run.read_json("run.json").get("fingerprint")
    if built and now and built != now:
        raise ClipauditError(
            f"the index in {str(folder)!r} was built from another run than {str(run.path)!r} "
            "(their fingerprints differ); build it again with clipaudit index."
        )
    rows = pq.read_table(folder / ROWS)
    index: Any = faiss.read_index(str(folder / "image.index"))
    text_index: Any = None
    if (folder / "text.index").is_file():
        text_index = faiss.read_index(str(folder / "text.index"))
    masks: list[np.ndarray | None] = []
    for ix in (index, text_index):
        if ix is None:
            masks.append(None)
            continue
        if info.get("kind") == "pq":
            inner: Any = faiss.downcast_index(ix.index)  # no type stubs
            inner.k_factor = int(info["params"]["k_factor"])
        labels = faiss.vector_to_array(ix.id_map)
        if len(labels) and (labels.min() < 0 or labels.max() >= rows.num_rows):
            raise ClipauditError(
                f"the index in {str(folder)!r} holds labels beyond its {rows.num_rows} rows; "
                "build it again with clipaudit index."
            )
        mask = np.zeros(rows.num_rows, np.bool_)
        mask[labels] = True
        masks.append(mask)
    if info["decisions"] != decisions_stamp(run):
        rows = _fresh_decisions(folder, info, run, rows)
    return Searchable(
        run,
        str(info["model"]),
        rows,
        None,
        None,
        index,
        text_index,
        info,
        has_image=masks[0],
        has_caption=masks[1],
        unindexed=int(info.get("selected", rows.num_rows)) - rows.num_rows,
    )


def _fresh_decisions(folder: Path, info: dict[str, Any], run: RunDir, rows: pa.Table) -> pa.Table:
    """The index's rows with the decision columns of the run's current decision table: the
    run was decided again since the index was built (embeddings do not change with a decide,
    decisions, reasons and routes do). An index filtered by ``--where`` may hold the wrong
    samples now, so it is refused instead."""
    if info.get("where"):
        raise ClipauditError(
            f"the index in {str(folder)!r} was built with --where {info['where']!r} from an "
            "earlier decision of the run; build it again with clipaudit index."
        )
    path = run.path / "decisions.parquet"
    # ``shard`` and ``row`` locate each vector in the run's embedding files: the index's own;
    # caption and url come from the run's metadata, which a decide does not change.
    names = [c for c in decision_columns(run) if c not in (*LOCATORS, *FROM_METADATA)]
    dec = pq.read_table(path, columns=["id", *names])
    at = pc.index_in(rows.column("id"), value_set=dec.column("id"))
    if at.null_count:
        raise ClipauditError(
            f"the index in {str(folder)!r} holds samples the run's decision table no longer "
            "has; build it again with clipaudit index."
        )
    for name in names:  # columns the new decision added (a route, say) are added too
        col = dec.column(name).take(at)
        k = rows.schema.get_field_index(name)
        rows = rows.set_column(k, name, col) if k >= 0 else rows.append_column(name, col)
    # Columns the new decision no longer writes (a route removed) go with it.
    kept = (*names, *LOCATORS, *FROM_METADATA)
    return rows.drop_columns([c for c in rows.column_names if c not in kept])


LOCATORS = ("id", "shard", "row")
FROM_METADATA = ("caption", "url")


def fit_warning(s: Searchable) -> str | None:
    """One sentence when the run's model does not fit its data (run.json ``model_fit``, as
    decide reads it): a world-trained model on real photos ranks them at chance, so a
    search would return arbitrary samples in confident order."""
    from clipaudit.curate.decide.model_fit import unfit_model

    try:
        record = s.run.read_json("run.json")
    except (OSError, ValueError, ClipauditError):  # an index whose run has moved
        return None
    model = unfit_model(record)
    if model is None:
        return None
    return (
        f"warning: the run's model {model} was trained only on the synthetic world "
        "and this run's data was not made by `clipaudit world`: its cosines rank these "
        "samples near chance, so the results below mean little; curate again with --model "
        "set to a CLIP trained on real images."
    )


def check_model(s: Searchable, model: str | None) -> None:
    from clipaudit.models.spec_paths import portable_spec

    # The same folder named relatively or absolutely is the same model.
    if model is not None and portable_spec(model) != portable_spec(s.model):
        raise ClipauditError(
            f"the query model {model!r} is not the run's model {s.model!r}; cosines of two "
            "models do not compare: search with the run's own model (drop --model)."
        )


def embed_text(s: Searchable, text: str) -> np.ndarray:
    if not text or not text.strip():
        raise ClipauditError("the search text is empty; give words to search for.")
    from clipaudit.models import load_clip

    return load_clip(s.model).encode_texts([text.strip()])[0]


def embed_image(s: Searchable, path: str | Path) -> np.ndarray:
    from clipaudit.data.decode import decode_image

    p = Path(path)
    if p.is_dir():
        raise ClipauditError(
            f"the query image {str(p)!r} is a folder; give one image file inside it."
        )
    if not p.is_file():
        raise ClipauditError(f"the query image {str(p)!r} does not exist; give an image file.")
    decoded = decode_image(p.read_bytes())
    if decoded.image is None:
        raise ClipauditError(
            f"the query image {str(p)!r} cannot be decoded ({decoded.error}); give a JPEG, "
            "PNG or WebP image."
        )
    from clipaudit.models import load_clip

    return load_clip(s.model).encode_images([decoded.image.convert("RGB")])[0]


def position_of(s: Searchable, sample_id: str) -> int:
    at = pc.index(s.rows.column("id"), sample_id).as_py()
    if at < 0:
        if _in_decisions(s.run, sample_id):
            raise ClipauditError(
                f"sample {sample_id!r} has no embedding (its image did not decode and it has "
                "no caption), so the index left it out; give another sample's id."
            )
        raise ClipauditError(
            f"no sample {sample_id!r} in this run's index; give an id from its decisions "
            "(clipaudit search prints them)."
        )
    return int(at)


def like_query(s: Searchable, sample_id: str) -> tuple[int, np.ndarray]:
    """``--like ID``: the sample's row and its stored image embedding, which it must have."""
    at = position_of(s, sample_id)
    if not s.usable()[at]:
        why = ""
        if "error" in s.rows.column_names and s.rows.column("error")[at].as_py():
            why = f" ({s.rows.column('error')[at].as_py()})"
        raise ClipauditError(
            f"sample {sample_id!r} has no image embedding: its image did not decode{why}, so "
            "--like has nothing to search with; search with its caption as text instead, or "
            "give another sample's id."
        )
    return at, s.vector_of(np.array([at]))[0]


def _in_decisions(run: RunDir, sample_id: str) -> bool:
    path = run.path / "decisions.parquet"
    if not path.is_file():
        return False
    return pq.read_table(path, columns=["id"], filters=[("id", "=", sample_id)]).num_rows > 0


def search(
    s: Searchable,
    query: np.ndarray,
    k: int = 10,
    where: str | None = None,
    captions: bool = False,
    collapse: bool = False,
    exclude: int | None = None,
    copies_first: bool = False,
) -> list[Hit]:
    """The ``k`` nearest rows to ``query`` (cosine) among those ``where`` selects.
    ``exclude``: a row left out (the ``--like`` sample itself); ``copies_first``: that row's
    duplicate group as decide found it (exact, near, crop and mirror copies, whichever of
    them decide kept) ranks first, by cosine, then everything else by cosine."""
    if k < 1:
        raise ClipauditError(f"--k must be at least 1, got {k}.")
    if captions and s.text is None and s.text_index is None:
        raise ClipauditError("this run holds no caption embeddings; search images instead.")
    q = np.asarray(query, np.float32).reshape(1, -1)
    q /= max(float(np.linalg.norm(q)), 1e-12)
    usable = s.usable(captions)
    # Rows without the embedding searched never rank: an all-zero row has cosine 0 with
    # every query (above every real but negative cosine).
    allowed: np.ndarray | None = None if usable.all() else np.flatnonzero(usable)
    if where is not None:
        flt = parse_where(where, s.rows.column_names)
        allowed = np.flatnonzero(flt.mask(s.rows) & usable)
    if exclude is not None:
        base = allowed if allowed is not None else np.arange(s.size)
        allowed = base[base != exclude]
    want = min(s.size, k * 8 if collapse else k)
    pos, scores = _nearest(s, q, want, allowed, captions)
    if copies_first and exclude is not None:
        members = _group_of(s, exclude)
        members = members[usable[members]]
        if allowed is not None:
            members = np.intersect1d(members, allowed)
        members = members[members != exclude]
        if len(members):
            gscores = s.vector_of(members, captions) @ q[0]
            order = np.argsort(-gscores, kind="stable")
            rest = ~np.isin(pos, members)
            pos = np.concatenate([members[order], pos[rest]])
            scores = np.concatenate([gscores[order], scores[rest]])
    hits: list[Hit] = []
    seen: set[str] = set()
    ids = s.rows.column("id")
    dup = s.rows.column("duplicate_of") if "duplicate_of" in s.rows.column_names else None
    for p, sc in zip(pos.tolist(), scores.tolist(), strict=True):
        sid = str(ids[p].as_py())
        if collapse:
            group = (dup[p].as_py() if dup is not None else None) or sid
            if group in seen:
                continue
            seen.add(group)
        cols = {
            c: _plain(s.rows.column(c)[p].as_py())
            for c in SHOWN_COLUMNS
            if c in s.rows.column_names
        }
        hits.append(Hit(len(hits) + 1, sid, float(sc), cols))
        if len(hits) == k:
            break
    return hits


def _group_of(s: Searchable, at: int) -> np.ndarray:
    """Rows of row ``at``'s duplicate group: its keeper and every sample dropped for it."""
    if "duplicate_of" not in s.rows.column_names:
        return np.zeros(0, np.int64)
    ids, dup = s.rows.column("id"), s.rows.column("duplicate_of")
    root = dup[at].as_py() or ids[at].as_py()
    member = pc.or_(pc.equal(ids, root), pc.fill_null(pc.equal(dup, root), False))
    return np.flatnonzero(member.to_numpy(zero_copy_only=False))


def _plain(v: Any) -> Any:
    return [str(x) for x in v] if isinstance(v, list) else v


def _nearest(
    s: Searchable, q: np.ndarray, k: int, allowed: np.ndarray | None, captions: bool
) -> tuple[np.ndarray, np.ndarray]:
    index = s.text_index if captions else s.index
    if allowed is not None and not len(allowed):
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    total = int(s.usable(captions).sum())  # the vectors the index holds
    if index is None or (allowed is not None and len(allowed) < FILTER_EXACT_BELOW * total):
        pos = allowed if allowed is not None else np.arange(s.size)
        return _exact(s, q, k, pos, captions)
    if allowed is not None and s.info.get("kind") == "flat":
        import faiss

        fa: Any = faiss  # its SWIG classes have no type stubs
        params = fa.SearchParameters(sel=fa.IDSelectorBatch(allowed.astype(np.int64)))
        scores, labels = index.search(q, k, params=params)
    else:
        # Enough extra neighbours that the selection, at its share, still fills k.
        share = 1.0 if allowed is None else len(allowed) / max(total, 1)
        fetch = min(total, int(np.ceil(k / share * 2)) if allowed is not None else k)
        scores, labels = index.search(q, fetch)
    got = labels[0] >= 0
    pos, sc = labels[0][got].astype(np.int64), scores[0][got]
    if allowed is not None:
        keep = np.isin(pos, allowed)
        pos, sc = pos[keep], sc[keep]
        if len(pos) < min(k, len(allowed)):  # the neighbours did not fill k: exact instead
            return _exact(s, q, k, allowed, captions)
    return pos[:k], sc[:k]


def _exact(
    s: Searchable, q: np.ndarray, k: int, pos: np.ndarray, captions: bool, chunk: int = 65536
) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` of rows ``pos`` by inner product, a chunk of rows at a time."""
    best_pos = np.zeros(0, np.int64)
    best = np.zeros(0, np.float32)
    for lo in range(0, len(pos), chunk):
        part = pos[lo : lo + chunk]
        sc = s.vector_of(part, captions) @ q[0]
        cand_pos = np.concatenate([best_pos, part])
        cand = np.concatenate([best, sc])
        top = np.argsort(-cand, kind="stable")[:k]
        best_pos, best = cand_pos[top], cand[top]
    return best_pos, best


def index_columns(path: str | Path) -> list[str]:
    """The columns ``--where`` may name for a run or index."""
    p = Path(path)
    if (p / INFO).is_file():
        return pq.read_schema(p / ROWS).names
    return [*decision_columns(RunDir(p)), "caption", "url", "row"]
