"""Policy routes at decide time: phrase embeddings cached in the run, scores per sample.

Scores come from the stored image embeddings (``img_emb/``) and the text embeddings of the
routes' phrases under the run's own model. The phrase embeddings are cached in the run
folder (``route_phrases.parquet``, keyed by model and phrase), so a re-decide with the same
phrases loads no model; a new phrase loads the model's text tower once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from clipaudit.errors import ClipauditError
from clipaudit.rules.schema import Pack
from clipaudit.rules.sections.routes import REASON_PREFIX
from clipaudit.search.where import parse_where

PHRASE_CACHE = "route_phrases.parquet"
SCORE_PREFIX = "route_score_"


@dataclass(frozen=True)
class RouteTable:
    """Every route's phrase vectors in one matrix (picklable, for decide's map jobs)."""

    names: tuple[str, ...]
    actions: tuple[str, ...]
    thresholds: np.ndarray  # (R,)
    phrases: np.ndarray  # (P, d) unit rows
    phrase_route: np.ndarray  # (P,) route index of each phrase
    counters: np.ndarray  # (C, d)
    counter_route: np.ndarray  # (C,)
    wheres: tuple[str | None, ...] = ()  # per route: a filter over the signals, or None
    pack: str = ""  # the pack's name, for error messages

    @property
    def needs_embeddings(self) -> bool:
        return len(self.phrases) > 0

    def masks(self, signals: pa.Table) -> np.ndarray:
        """(n, R): whether each row passes each route's ``where:`` (True without one)."""
        out = np.ones((signals.num_rows, len(self.names)), np.bool_)
        for j, text in enumerate(self.wheres):
            if text:
                try:
                    out[:, j] = parse_where(text, signals.column_names).mask(signals)
                except ClipauditError as exc:
                    # A type mismatch shows only here, on the data: name the route as the
                    # load-time syntax and column checks do.
                    where = f"pack {self.pack!r}, route {self.names[j]!r}"
                    raise ClipauditError(f"{where}: {exc}") from None
        return out

    def scores(self, emb: np.ndarray | None, n: int) -> np.ndarray:
        """(n, R): each row's best phrase cosine minus its best counter-phrase cosine (with
        none: the best phrase cosine); NaN for a row without an embedding (a zero row) and
        for a route without phrases."""
        r = len(self.names)
        out = np.full((n, r), np.nan, np.float32)
        if emb is None or not len(self.phrases):
            return out
        emb = np.asarray(emb, np.float32)
        sims = emb @ self.phrases.T
        for j in range(r):
            if (self.phrase_route == j).any():
                out[:, j] = sims[:, self.phrase_route == j].max(axis=1)
        if len(self.counters):
            csims = emb @ self.counters.T
            for j in range(r):
                sel = self.counter_route == j
                if sel.any():
                    out[:, j] -= csims[:, sel].max(axis=1)
        out[np.linalg.norm(emb, axis=1) < 0.5] = np.nan
        return out

    def assign(
        self, scores: np.ndarray, masks: np.ndarray
    ) -> tuple[list[str | None], list[list[str]]]:
        """(route, matched): the first route (pack order) each row reaches, and every route
        it reaches: its phrase score at the threshold (routes with phrases) and its filter
        (routes with one)."""
        phrased = np.zeros(len(self.names), np.bool_)
        phrased[np.unique(self.phrase_route)] = True
        passed = np.nan_to_num(scores, nan=-np.inf) >= self.thresholds[None, :]
        hit = np.where(phrased[None, :], passed, True) & masks
        route: list[str | None] = []
        matched: list[list[str]] = []
        for row in hit:
            names = [self.names[j] for j in np.flatnonzero(row)]
            route.append(names[0] if names else None)
            matched.append(names)
        return route, matched

    def reasons(self, matched: list[list[str]]) -> list[list[str]]:
        """``route:NAME`` for each matched route whose action drops or flags."""
        act = dict(zip(self.names, self.actions, strict=True))
        return [[REASON_PREFIX + m for m in row if act[m] != "keep"] for row in matched]


def phrase_vectors(run_path: Path, model_spec: str, phrases: list[str]) -> np.ndarray:
    """Unit text embeddings of ``phrases`` under ``model_spec``, from the run's cache; the
    missing ones embedded now (the model's text tower loads once) and added to it."""
    cache = run_path / PHRASE_CACHE
    known: dict[str, np.ndarray] = {}
    rows: list[dict[str, object]] = []
    if cache.is_file():
        rows = pq.read_table(cache).to_pylist()
        known = {
            str(r["phrase"]): np.asarray(r["vector"], np.float32)
            for r in rows
            if r["model"] == model_spec
        }
    missing = sorted({p for p in phrases if p not in known})
    if missing:
        from clipaudit.models import load_clip

        vecs = load_clip(model_spec).encode_texts(missing)
        for p, v in zip(missing, vecs, strict=True):
            known[p] = v
            rows.append({"model": model_spec, "phrase": p, "vector": v.tolist()})
        from clipaudit.curate.rundir import table_bytes
        from clipaudit.data.formats import atomic_write_bytes

        table = pa.table(
            {
                "model": pa.array([r["model"] for r in rows], pa.string()),
                "phrase": pa.array([r["phrase"] for r in rows], pa.string()),
                "vector": pa.array([r["vector"] for r in rows], pa.list_(pa.float32())),
            }
        )
        atomic_write_bytes(cache, table_bytes(table))
    return np.stack([known[p] for p in phrases]) if phrases else np.zeros((0, 0), np.float32)


def route_table(
    run_path: Path, pack: Pack, model_spec: str | None, signal_columns: list[str]
) -> RouteTable | None:
    """The pack's routes ready to score this run, or None when the pack has none. Each
    route's filter is checked against the run's signal columns here, once."""
    if not pack.routes:
        return None
    for name, route in pack.routes.items():
        if route.where:
            try:
                parse_where(route.where, signal_columns)
            except ClipauditError as exc:
                raise ClipauditError(f"pack {pack.name!r}, route {name!r}: {exc}") from None
    if not any(r.phrases for r in pack.routes.values()):
        return RouteTable(
            names=tuple(pack.routes),
            actions=tuple(r.action for r in pack.routes.values()),
            thresholds=np.zeros(len(pack.routes)),
            phrases=np.zeros((0, 1), np.float32),
            phrase_route=np.zeros(0, np.int64),
            counters=np.zeros((0, 1), np.float32),
            counter_route=np.zeros(0, np.int64),
            wheres=tuple(r.where for r in pack.routes.values()),
            pack=pack.name,
        )
    if not model_spec:
        raise ClipauditError(
            f"pack {pack.name!r} has routes but the run records no model; curate it with "
            "the alignment stage, which embeds the images routes are scored on."
        )
    if not any((run_path / "img_emb").glob("img_emb_*.npy")):
        raise ClipauditError(
            f"pack {pack.name!r} has routes but {str(run_path)!r} holds no image embeddings; "
            "curate it again with the alignment stage (--stages ...,alignment)."
        )
    names = tuple(pack.routes)
    phrases = [p for r in pack.routes.values() for p in r.phrases]
    counters = [p for r in pack.routes.values() for p in r.counter_phrases]
    vecs = phrase_vectors(run_path, model_spec, phrases + counters)
    return RouteTable(
        names=names,
        actions=tuple(r.action for r in pack.routes.values()),
        thresholds=np.array([r.threshold_for(model_spec) for r in pack.routes.values()]),
        phrases=vecs[: len(phrases)],
        phrase_route=np.array(
            [j for j, r in enumerate(pack.routes.values()) for _ in r.phrases], np.int64
        ),
        counters=vecs[len(phrases) :],
        counter_route=np.array(
            [j for j, r in enumerate(pack.routes.values()) for _ in r.counter_phrases], np.int64
        ),
        wheres=tuple(r.where for r in pack.routes.values()),
        pack=pack.name,
    )


def shard_embeddings(run_path: Path, k: int, rows: int) -> np.ndarray:
    """Shard ``k``'s image embeddings, checked against its signal row count."""
    f = run_path / "img_emb" / f"img_emb_{k}.npy"
    if not f.is_file():
        raise ClipauditError(
            f"{str(f)!r} is missing: routes need the image embeddings of the alignment "
            "stage; curate the run again with it."
        )
    emb = np.load(f, mmap_mode="r", allow_pickle=False)
    if len(emb) != rows:
        raise ClipauditError(
            f"{str(f)!r} has {len(emb)} rows for {rows} samples; the run is incomplete: "
            "resume it with clipaudit curate."
        )
    return np.asarray(emb)
