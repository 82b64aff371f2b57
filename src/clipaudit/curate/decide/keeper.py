"""The duplicate reduce: exact groups, near and semantic pairs and the keeper policy, on
compact columns (a few numbers a sample), never on Python rows.

The greedy keeper policy is the one decide always had: in priority order, a sample still in
play is kept and every duplicate of it still in play is dropped naming it. Only samples
that some pair touches need the sequential walk; everything else is array work:

1. rank every standing sample once (``np.lexsort`` over the keeper keys);
2. exact copies (same pixel hash) collapse onto their top-ranked copy, so a placeholder
   repeated 10^5 times is one row to search;
3. rows whose hashes are identical collapse again into one search key: a hub of 10^5
   plain backgrounds with one pHash is one key, and its members are compared with the
   hub's top-ranked member only when the hub is larger than ``hub_cap`` (a star instead
   of a clique: bounded work, counted in the stats);
4. multi-index hashing finds key pairs within the radius; they expand to member pairs,
   which the colour thumbnails confirm (read only for the rows a pair touches);
5. the greedy walk over the confirmed graph, then copies follow their representative.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from threadpoolctl import threadpool_limits

from clipaudit.curate.decide.neardup import (
    affordable_radius,
    dense_radius,
    iter_near_pairs,
    popcount64,
)
from clipaudit.curate.decide.semdedup import semantic_pairs
from clipaudit.curate.memory import release_memory
from clipaudit.curate.stages.hashes import THUMB, ThumbCorrelation, thumb_array
from clipaudit.curate.stages.video import FRAME_THUMB

# When a pair is a duplicate in several ways, the strongest evidence names it.
DUPLICATE_KINDS = ("exact_duplicate", "near_duplicate", "semantic_duplicate")
EXACT, NEAR, SEMANTIC = 0, 1, 2
# A group of rows with identical hashes larger than this is searched as a star around its
# top-ranked member instead of as a clique (the clique of 10^5 members is 5·10^9 pairs).
HUB_CAP = 256
# Thumbnails are written to the scratch file this many rows at a time (3 KiB a row); up to
# HOLD_ROWS of them are simply held in memory.
BLOCK_ROWS = 8_192
HOLD_ROWS = 8_192
# What a candidate pair is checked as: both thumbnails, b's mirror image, or both inside
# their trimmed black or white borders.
# How a candidate pair is checked: whole thumbnails, one mirrored, inside borders, a crop
# (whole, then the shifted edge check), a crop inside borders (both framed).
PLAIN, MIRRORED, FRAMED, CROPPED, FRAMED_CROPPED = 0, 1, 2, 3, 4
INNER_KINDS = (FRAMED, FRAMED_CROPPED)
CROP_KINDS = (CROPPED, FRAMED_CROPPED)
# Candidate pairs held in memory before they go to a scratch file, and checked at a time.
PAIR_CHUNK = 131_072
THUMB_BYTES = THUMB * THUMB * 3

# Positions → their thumbnails: a list of bytes, or (uint8 matrix, valid rows).
ThumbReader = Callable[[np.ndarray], "Sequence[bytes | None] | tuple[np.ndarray, np.ndarray]"]
FRAME_THUMB_BYTES = FRAME_THUMB * FRAME_THUMB * 3
# Positions of a Compact → each row's frame thumbnails (768 bytes a frame, concatenated).
FrameThumbReader = Callable[[np.ndarray], "Sequence[bytes | None]"]
# Positions → (rows, 3): width over height of what each row's inner thumbnail shows (inside
# its border where one was trimmed, else the whole image), and the shares of the image's
# width and height inside the border (NaN where none was trimmed); NaN where unknown (runs
# scored before content_aspect was kept).
AspectReader = Callable[[np.ndarray], np.ndarray]
# A pair whose contents were both trimmed from borders is not a copy when they differ in
# aspect by more than MAX_INNER_ASPECT *and* their borders take different shares of their
# images (by more than MAX_BORDER_SHARE_RATIO on a side). The inner thumbnail is squeezed
# square, so every product shot on white (trimmed to its object) compared a tall bottle with
# a wide box; on 11,097 confirmed pairs of 500 calibration-part real photos and their edits
# (half, JPEG q30, x1.3, mirror, 90% crop, black and white 8% borders) the aspects differed by
# at most 1.19x. The shares keep a copy resized to another shape (a photo with its own white
# margin squashed to 256 x 256, ordinary preprocessing): its aspects differ by the squash but
# its border's shares do not. A pair with one side unframed is not judged by aspect: a
# letterboxed copy then squashed would be lost.
MAX_INNER_ASPECT = 1.25
MAX_BORDER_SHARE_RATIO = 1.1


@dataclass
class Compact:
    """The columns the reduce needs, one position per standing sample.

    ``hashes`` holds uint64 codes; ``hash_valid`` says which rows have them (rows that did
    not decode have none). ``pixel_hash`` is valid where ``pixel_valid``.
    """

    ids: pa.Array
    alignment: np.ndarray
    area: np.ndarray
    pixel_hash: np.ndarray
    pixel_valid: np.ndarray
    hashes: dict[str, np.ndarray] = field(default_factory=dict)
    hash_valid: np.ndarray | None = None
    # Rows whose image had a black or white border trimmed: hashes["phash_inner"] holds
    # their pHash inside it (and everyone else's pHash), searched for framed copies.
    inner: np.ndarray | None = None
    # Video rows: the pHash of each sampled frame, (rows, FRAMES) with a validity mask
    # (image rows have none); keeper.video_pairs pairs videos whose frames match.
    # Their 16x16 frame thumbnails are not here (768 bytes a frame): ``resolve`` reads them
    # for the candidate pairs only, through a FrameThumbReader.
    frames: np.ndarray | None = None
    frames_valid: np.ndarray | None = None
    # How many codes the pack flags each row for (the ``flags`` keeper key); None: none.
    flags: np.ndarray | None = None
    # Each row's stored size in bytes (the ``resolution`` key's tie-break); None: unknown.
    bytes: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.alignment)

    def take(self, pos: np.ndarray) -> Compact:
        """The rows at ``pos``, in that order."""
        return Compact(
            ids=self.ids.take(pa.array(pos, pa.int64())),
            alignment=self.alignment[pos],
            area=self.area[pos],
            pixel_hash=self.pixel_hash[pos],
            pixel_valid=self.pixel_valid[pos],
            hashes={h: v[pos] for h, v in self.hashes.items()},
            hash_valid=None if self.hash_valid is None else self.hash_valid[pos],
            inner=None if self.inner is None else self.inner[pos],
            frames=None if self.frames is None else self.frames[pos],
            frames_valid=None if self.frames_valid is None else self.frames_valid[pos],
            flags=None if self.flags is None else self.flags[pos],
            bytes=None if self.bytes is None else self.bytes[pos],
        )


@dataclass
class Outcome:
    """Per compact position: the keeper's position (-1: not a duplicate) and the kind."""

    keeper: np.ndarray
    kind: np.ndarray
    groups: int
    stats: dict[str, Any]


def rank_order(c: Compact, keeper: Sequence[str]) -> np.ndarray:
    """Positions in keeper-priority order (best first; ties by position)."""
    keys: list[np.ndarray] = []
    for k in keeper:
        if k == "flags":  # fewer flagged codes first: keep the clean copy of a group
            keys.append(np.zeros(len(c), np.int16) if c.flags is None else c.flags)
        elif k == "alignment":  # higher first, unscored last
            keys.append(np.where(np.isnan(c.alignment), np.inf, -c.alignment))
        elif k == "resolution":  # larger first, unknown after every known size
            keys.append(np.where(np.isnan(c.area), 1.0, -c.area))
            if c.bytes is not None:  # of one size, the less compressed (more bytes) first
                keys.append(np.where(np.isnan(c.bytes), 1.0, -c.bytes.astype(np.float64)))
        else:  # the id, in code-point order (UTF-8 byte order is the same order)
            rank = np.empty(len(c), np.int64)
            rank[pc.sort_indices(c.ids).to_numpy()] = np.arange(len(c))
            keys.append(rank)
    # np.lexsort sorts by the last key first; the position breaks every tie.
    return np.lexsort([np.arange(len(c)), *reversed(keys)])


def exact_representatives(c: Compact, order: np.ndarray) -> np.ndarray:
    """For each position, the top-ranked position with the same pixel hash (itself if none)."""
    rep = np.arange(len(c))
    ranked_valid = order[c.pixel_valid[order]]
    if len(ranked_valid):
        _, first, inverse = np.unique(
            c.pixel_hash[ranked_valid], return_index=True, return_inverse=True
        )
        rep[ranked_valid] = ranked_valid[first][inverse.ravel()]
    return rep


def _pair_codes(a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    return lo.astype(np.int64) * n + hi


def search_radius(
    n: int, d: Any, a: np.ndarray | None = None, b: np.ndarray | None = None, crops: bool = False
) -> int:
    """The radius a search over ``n`` hashes uses: the pack's, or under ``search: auto`` the
    largest one whose exact search fits the work budget and, given the hashes ``a`` (and
    ``b`` for a cross search), whose estimated candidate pairs fit the pair budget (the
    smaller crop budget for the copy hash, ``crops``)."""
    if d.search == "exact":
        return int(d.near_radius)
    if a is None:
        return affordable_radius(n, d.near_radius)
    h = a if b is None else np.concatenate([a, b])
    r = affordable_radius(n, d.near_radius, h=h)
    return min(r, dense_radius(a, r, b, crops=crops))


def _key_pair_chunks(
    codes: dict[str, np.ndarray],
    d: Any,
    mirror: np.ndarray | None,
    stats: dict[str, Any],
    framed: np.ndarray | None = None,
    crops: bool = False,
) -> Iterator[tuple[np.ndarray, np.ndarray, int]]:
    """Candidate key pairs as they are found, a chunk at a time: (keys a, keys b, how the
    pair is checked: PLAIN, MIRRORED (b's mirror against a) or FRAMED (inside borders;
    ``framed`` marks the keys with a trimmed border, a pair needs one)). A pair found by
    two hashes comes twice; the check costs twice, but no set of all candidates is held."""
    stats["radius_requested"] = d.near_radius
    searched = stats.setdefault("radius_searched", {})

    def radius(name: str, a: np.ndarray, b: np.ndarray | None = None) -> int:
        r = search_radius(len(a) + (0 if b is None else len(b)), d, a, b, crops=name == "chash")
        searched[name] = min(r, searched.get(name, r))
        return r

    if d.match == "any":
        for h in d.hashes:
            for a, b in _tiered_pairs(codes[h], radius(h, codes[h]), d, stats, h):
                yield a, b, PLAIN
    else:
        h0 = d.hashes[0]
        for a, b in iter_near_pairs(codes[h0], radius(h0, codes[h0])):
            ok = np.ones(len(a), np.bool_)
            for other in d.hashes[1:]:
                ho = codes[other]
                ok &= popcount64(ho[a] ^ ho[b]) <= d.near_radius
            yield a[ok], b[ok], PLAIN
    if framed is not None:
        hi = codes["phash_inner"]
        for a, b in iter_near_pairs(hi, radius("phash_inner", hi)):
            keep = framed[a] | framed[b]
            yield a[keep], b[keep], FRAMED
    if crops:
        ch = codes["chash"]
        for a, b in _tiered_pairs(ch, radius("chash", ch), d, stats, "chash", crops=True):
            yield a, b, CROPPED
    if mirror is not None:
        ph = codes["phash"]
        n = len(ph)
        rm = radius("phash_mirror", ph, mirror)
        for a, b in iter_near_pairs(np.concatenate([ph, mirror]), rm, split=n):
            b = b - n
            cross = a != b  # a key against its own mirror: pairs inside the key, handled apart
            yield a[cross], b[cross], MIRRORED


# A key with this many candidates at a narrowed radius lies in a dense family (look-alike
# images); the keys with fewer are searched again at the full radius among themselves. At 8,
# 394 of a 2,000-gradient family's keys (its fringe) fell outside at a 3-bit radius, 976 at 32.
DENSE_KEY_PAIRS = 8


def _tiered_pairs(
    h: np.ndarray, r: int, d: Any, stats: dict[str, Any], name: str, crops: bool = False
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Pairs of keys within radius ``r`` of hash ``h``; where ``r`` was narrowed below the
    pack's radius (the candidates would pass the pair budget), also the pairs of the keys
    outside dense families (fewer than DENSE_KEY_PAIRS candidates at ``r``) up to the largest
    radius their own search affords, the pack's at most. Without this one family of
    look-alike images (2,000 noisy gradients narrowed the copy hash to 3 bits) cost every
    other image of the run the pairs between ``r`` and the full radius: most real 90% crops
    need 9-12 bits of the copy hash."""
    full = int(d.near_radius)
    if r >= full or d.search == "exact":
        yield from iter_near_pairs(h, r)
        return
    counts = np.zeros(len(h), np.int32)
    for a, b in iter_near_pairs(h, r):
        keys, n = np.unique(np.concatenate([a, b]), return_counts=True)
        counts[keys] += n.astype(np.int32)
        yield a, b
    sparse = np.flatnonzero(counts < DENSE_KEY_PAIRS)
    if len(sparse) == len(h):
        return  # no dense family: the budgets narrowed the radius for every key alike
    sub = h[sparse]
    r2 = search_radius(len(sub), d, sub, crops=crops)
    tier = stats.setdefault("radius_searched_outside_dense", {})
    tier[name] = min(r2, tier.get(name, r2))
    outside = stats.setdefault("keys_outside_dense", {})
    outside[name] = outside.get(name, 0) + len(sparse)
    if r2 <= r:
        return
    for a, b in iter_near_pairs(sub, r2):
        far = popcount64(sub[a] ^ sub[b]) > r  # those within r came from the first search
        yield sparse[a[far]], sparse[b[far]]


class PairSpool:
    """Candidate pairs (a, b, kind) collected while the search runs and read back a
    chunk at a time for the thumbnail check: in memory up to ``hold`` pairs, then in a
    scratch file (24 bytes a pair), so tens of millions of candidates cost disk, not RAM."""

    def __init__(self, scratch: Path | None, hold: int = PAIR_CHUNK) -> None:
        self.scratch, self.hold = scratch, hold
        self.parts: list[np.ndarray] = []
        self.held = 0
        self.path: Path | None = None
        self.count = 0

    def add(self, a: np.ndarray, b: np.ndarray, kind: int) -> None:
        if not len(a):
            return
        lo, hi = np.minimum(a, b), np.maximum(a, b)
        part = np.stack([lo, hi, np.full(len(a), kind, np.int64)], axis=1).astype(np.int64)
        self.parts.append(part)
        self.held += len(part)
        self.count += len(part)
        if self.held > self.hold and self.scratch is not None:
            self._flush()

    def _flush(self) -> None:
        assert self.scratch is not None
        if self.path is None:
            self.path = self.scratch / "pairs.i64"
            self.path.unlink(missing_ok=True)
        with open(self.path, "ab") as f:
            for part in self.parts:
                f.write(np.ascontiguousarray(part).tobytes())
        self.parts, self.held = [], 0

    def chunks(self, size: int = PAIR_CHUNK) -> Iterator[np.ndarray]:
        """The pairs, ``size`` rows of (a, b, kind) at a time."""
        if self.path is not None:
            self._flush()
            with open(self.path, "rb") as f:
                while True:
                    block = np.fromfile(f, np.int64, size * 3)
                    if not len(block):
                        break
                    yield block.reshape(-1, 3)
            return
        if self.parts:
            whole = np.concatenate(self.parts)
            for lo in range(0, len(whole), size):
                yield whole[lo : lo + size]

    def close(self) -> None:
        self.parts = []
        if self.path is not None:
            self.path.unlink(missing_ok=True)


class ThumbStore:
    """The thumbnails of the rows that candidate pairs touch. Up to ``hold_rows`` rows they
    are held in memory; beyond (a run of similar scenes at 10^6 rows would need gigabytes)
    they are written to a scratch file block by block, with each row's moments kept in
    memory (32 bytes a row), and each slice of pairs reads just its rows back (one read per
    run of consecutive rows). A memory map would not bound memory: the kernel maps the
    pages around every touched row, and a few thousand random rows map the whole file."""

    # Pairs checked per read of their rows: at most 2 * 2,048 rows (12 MiB) held at once.
    SLICE_PAIRS = 2_048

    def __init__(
        self,
        need: np.ndarray,
        reader: ThumbReader,
        scratch: Path | None,
        block_rows: int = BLOCK_ROWS,
        hold_rows: int = HOLD_ROWS,
        name: str = "thumbs",
    ) -> None:
        self.need = need
        self.path: Path | None = None
        # Each needed row's content aspect and border shares (inner store only; see
        # AspectReader, MAX_INNER_ASPECT), set by its owner; None: not known, not compared.
        self.aspect: np.ndarray | None = None
        if scratch is None or len(need) <= hold_rows:
            self.corr: ThumbCorrelation | None = ThumbCorrelation(reader(need))
            return
        self.corr = None
        self.path = scratch / f"{name}.u8"
        self.valid = np.zeros(len(need), np.bool_)
        self.sums = np.zeros((len(need), 3), np.int64)
        self.var = np.zeros(len(need), np.int64)
        with open(self.path, "wb") as f:
            for s in range(0, len(need), block_rows):
                px, ok = _as_arrays(reader(need[s : s + block_rows]))
                f.write(np.ascontiguousarray(px).reshape(-1).data)
                e = s + len(px)
                self.valid[s:e] = ok
                self.sums[s:e], self.var[s:e] = ThumbCorrelation.moments(px)

    def _read(self, f: Any, rows: np.ndarray) -> np.ndarray:
        """The thumbnails of sorted distinct ``rows`` from the scratch file."""
        px = np.empty((len(rows), THUMB_BYTES), np.uint8)
        cut = np.flatnonzero(np.diff(rows) != 1) + 1
        starts = np.concatenate(([0], cut))
        ends = np.concatenate((cut, [len(rows)]))
        for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
            f.seek(int(rows[s]) * THUMB_BYTES)
            f.readinto(px[s:e].reshape(-1).data)
        return px

    def _slices(
        self, ia: np.ndarray, ib: np.ndarray
    ) -> Iterator[tuple[int, ThumbCorrelation, np.ndarray, np.ndarray]]:
        """The pairs (ia[k], ib[k]) of stored rows, ``SLICE_PAIRS`` at a time, their rows read
        back from the scratch file: (first k, the correlation over just those rows, the
        slice's a and b as positions in it)."""
        assert self.path is not None
        with open(self.path, "rb", buffering=0) as f:
            for lo in range(0, len(ia), self.SLICE_PAIRS):
                pa_, pb_ = ia[lo : lo + self.SLICE_PAIRS], ib[lo : lo + self.SLICE_PAIRS]
                rows, inv = np.unique(np.concatenate([pa_, pb_]), return_inverse=True)
                part = ThumbCorrelation.from_parts(
                    self._read(f, rows), self.valid[rows], self.sums[rows], self.var[rows]
                )
                yield lo, part, inv[: len(pa_)], inv[len(pa_) :]

    def _parts(
        self, a: np.ndarray, b: np.ndarray
    ) -> Iterator[tuple[slice, ThumbCorrelation, np.ndarray, np.ndarray]]:
        """The pairs (a[k], b[k]) as (which k, a correlation over their rows, their a and b
        as positions in it): all at once when the thumbnails are held, else ``_slices``."""
        ia, ib = np.searchsorted(self.need, a), np.searchsorted(self.need, b)
        if self.corr is not None:
            yield slice(0, len(a)), self.corr, ia, ib
            return
        for lo, part, la, lb in self._slices(ia, ib):
            yield slice(lo, lo + len(la)), part, la, lb

    def _by_flag(
        self,
        a: np.ndarray,
        b: np.ndarray,
        mirror_b: np.ndarray,
        score: Callable[[ThumbCorrelation, np.ndarray, np.ndarray, bool, np.ndarray], np.ndarray],
    ) -> np.ndarray:
        """``score(part, a, b, mirrored, k)`` of each pair, the mirrored and plain ones apart
        (k: the pairs' positions in the caller's arrays)."""
        out = np.full(len(a), -np.inf)
        for at, part, la, lb in self._parts(a, b):
            k = np.arange(len(a))[at]
            for flag in (False, True):
                sel = np.flatnonzero(mirror_b[at] == flag)
                if len(sel):
                    out[k[sel]] = score(part, la[sel], lb[sel], flag, k[sel])
        return out

    def correlate(
        self, a: np.ndarray, b: np.ndarray, mirror_b: np.ndarray, unclip: np.ndarray
    ) -> np.ndarray:
        """Correlation of each pair (a[k], b[k]), against b's mirror image where mirror_b[k];
        over unclipped values too where unclip[k] (ThumbCorrelation)."""
        return self._by_flag(a, b, mirror_b, lambda part, x, y, f, k: part(x, y, f, unclip[k]))

    def edge_corr(self, a: np.ndarray, b: np.ndarray, mirror_b: np.ndarray) -> np.ndarray:
        """``ThumbCorrelation.edge_corr`` of each pair (a[k], b[k]), against b's mirror image
        where mirror_b[k]."""
        return self._by_flag(a, b, mirror_b, lambda part, x, y, f, k: part.edge_corr(x, y, f))

    def hue_overlap(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """``ThumbCorrelation.hue_overlap`` of each pair (a[k], b[k])."""
        out = np.full(len(a), np.nan)
        for at, part, la, lb in self._parts(a, b):
            out[at] = part.hue_overlap(la, lb)
        return out

    def crop_confirmed(
        self, a: np.ndarray, b: np.ndarray, min_values: float, min_edges: float
    ) -> tuple[np.ndarray, int]:
        """``ThumbCorrelation.crop_confirmed`` of each pair (a[k], b[k]): (ok, fine checks)."""
        ok = np.zeros(len(a), np.bool_)
        fine = 0
        for at, part, la, lb in self._parts(a, b):
            ok[at], n_fine = part.crop_confirmed(la, lb, min_values, min_edges)
            fine += n_fine
        return ok, fine

    def close(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)


def _as_arrays(
    v: Sequence[bytes | None] | tuple[np.ndarray, np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    return v if isinstance(v, tuple) else thumb_array(v)


@dataclass
class _Keys:
    """Rows grouped by identical hashes, in CSR form: key k's members are
    ``rows[order[bounds[k]:bounds[k + 1]]]`` (a hub's ranked best first). No Python object
    per key: at 10^7 rows a list of member arrays alone would cost a gigabyte."""

    rows: np.ndarray
    order: np.ndarray
    bounds: np.ndarray
    hub: np.ndarray
    single: np.ndarray = field(init=False)
    lead: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        # Per key, whether it stands for one row (one member, or a hub's leader) and that
        # row: made once, used by every chunk of key pairs.
        self.single = (np.diff(self.bounds) == 1) | self.hub
        self.lead = self.rows[self.order[self.bounds[:-1]]]

    def members(self, k: int, lead_only: bool = False) -> np.ndarray:
        lo, hi = int(self.bounds[k]), int(self.bounds[k + 1])
        if lead_only and self.hub[k]:
            hi = lo + 1
        return self.rows[self.order[lo:hi]]


def _group_keys(
    c: Compact, rows: np.ndarray, names: list[str], d: Any, hub_cap: int
) -> tuple[_Keys, dict[str, np.ndarray]]:
    cols = [c.hashes[h][rows] for h in names]
    order = np.lexsort(tuple(reversed(cols)))  # stable: members stay in position order
    new = np.ones(len(rows), np.bool_)
    if len(rows) > 1:
        new[1:] = np.logical_or.reduce([col[order][1:] != col[order][:-1] for col in cols])
    starts = np.flatnonzero(new)
    bounds = np.append(starts, len(rows))
    codes = {h: col[order][starts] for h, col in zip(names, cols, strict=True)}
    hub = np.diff(bounds) > hub_cap
    if hub.any():
        # A hub's leader is its best-ranked member: the one the greedy walk would keep.
        pos_rank = np.empty(len(c), np.int64)
        pos_rank[rank_order(c, d.keeper)] = np.arange(len(c))
        for k in np.flatnonzero(hub).tolist():
            seg = order[bounds[k] : bounds[k + 1]]
            order[bounds[k] : bounds[k + 1]] = seg[np.argsort(pos_rank[rows[seg]], kind="stable")]
    return _Keys(rows, order, bounds, hub), codes


def _expand(ka: np.ndarray, kb: np.ndarray, keys: _Keys) -> tuple[np.ndarray, np.ndarray]:
    """Member pairs of key pairs; a hub key contributes its leader only. Key pairs whose
    keys both have one member (nearly all of them) map straight to rows, as arrays; only
    pairs touching a multi-member key are expanded one by one."""
    single, lead = keys.single, keys.lead
    direct = single[ka] & single[kb]
    out_a: list[np.ndarray] = [lead[ka[direct]]]
    out_b: list[np.ndarray] = [lead[kb[direct]]]
    rest = np.flatnonzero(~direct)
    for x, y in zip(ka[rest].tolist(), kb[rest].tolist(), strict=True):
        mx, my = keys.members(x, lead_only=True), keys.members(y, lead_only=True)
        out_a.append(np.repeat(mx, len(my)))
        out_b.append(np.tile(my, len(mx)))
    return np.concatenate(out_a).astype(np.int64), np.concatenate(out_b).astype(np.int64)


def _inside(keys: _Keys, which: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Member pairs inside each listed key: every pair, or the leader's star for a hub."""
    out_a: list[np.ndarray] = []
    out_b: list[np.ndarray] = []
    for k in which.tolist():
        m = keys.members(k)
        if keys.hub[k]:
            out_a.append(np.full(len(m) - 1, m[0]))
            out_b.append(m[1:])
        else:
            i, j = np.triu_indices(len(m), 1)
            out_a.append(m[i])
            out_b.append(m[j])
    if not out_a:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(out_a), np.concatenate(out_b)


def _hashes_agree(
    c: Compact, a: np.ndarray, b: np.ndarray, kinds: np.ndarray, d: Any
) -> np.ndarray:
    """Per pair: within the pack's radius on every hash that fits how the pair is checked
    (each listed hash for a plain pair, pHash against the mirror pHash, the pHash inside
    borders). Only such pairs may count their thumbnails' correlation over unclipped
    values: a brightened copy keeps its pHash and dHash bits (real photos x1.3: within 12
    on both), while a smooth gradient and its own corner share dHash bits and, once their
    clipped values are set aside, a ramp that correlates perfectly."""
    return hashes_agree(c.hashes, c.hashes, a, b, kinds, d)


def hashes_agree(
    ha: dict[str, np.ndarray],
    hb: dict[str, np.ndarray],
    a: np.ndarray,
    b: np.ndarray,
    kinds: np.ndarray,
    d: Any,
) -> np.ndarray:
    """``_hashes_agree`` for rows ``a`` of hashes ``ha`` against rows ``b`` of ``hb``."""
    close = np.ones(len(a), np.bool_)
    for kind, pairs in (
        (PLAIN, [(h, h) for h in d.hashes]),
        (MIRRORED, [("phash", "phash_mirror")]),
        (FRAMED, [("phash_inner", "phash_inner")]),
        (FRAMED_CROPPED, [("phash_inner", "phash_inner")]),
        # A crop pair qualifies as a plain pair does: the learned copy hash keeps its bits
        # across different shots of one scene, which is no evidence of a brightened copy.
        (CROPPED, [(h, h) for h in d.hashes]),
    ):
        sel = np.flatnonzero(kinds == kind)
        if not len(sel):
            continue
        for x, y in pairs:
            if x not in ha or y not in hb:
                close[sel] = False
                continue
            close[sel] &= popcount64(ha[x][a[sel]] ^ hb[y][b[sel]]) <= d.near_radius
    return close


def near_duplicate_pairs(
    c: Compact,
    rows: np.ndarray,
    d: Any,
    thumbs: ThumbReader | None,
    stats: dict[str, Any] | None = None,
    hub_cap: int = HUB_CAP,
    scratch: Path | None = None,
    inner_thumbs: ThumbReader | None = None,
    inner_aspects: AspectReader | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Confirmed near-duplicate pairs (a < b, as positions) among ``rows``: within
    ``d.near_radius`` on every listed hash (``match: all``) or on one (``any``); with
    ``mirrors``, also one image's pHash against the other's mirror pHash; where images had
    a black or white border trimmed, also the pHashes inside the borders. Each pair is
    confirmed on the colour thumbnails (a mirror pair against the mirrored thumbnail, a
    framed pair on the thumbnails inside the borders, ``inner_thumbs``, whose contents must
    agree in aspect, ``inner_aspects``)."""
    empty = np.zeros(0, np.int64)
    st: dict[str, Any] = stats if stats is not None else {}
    rows = np.asarray(rows, np.int64)
    if c.hash_valid is not None:
        rows = rows[c.hash_valid[rows]]
    if len(rows) < 2 or d.hashes[0] not in c.hashes:
        return empty, empty
    use_mirror = bool(d.mirrors) and "phash" in c.hashes and "phash_mirror" in c.hashes
    use_framed = (
        "phash_inner" in c.hashes
        and c.inner is not None
        and bool(c.inner[rows].any())
        and (inner_thumbs is not None or d.min_thumb_corr is None)
    )
    use_crops = bool(d.crops) and "chash" in c.hashes
    names = list(
        dict.fromkeys(
            [
                *d.hashes,
                *(["phash", "phash_mirror"] if use_mirror else []),
                *(["phash_inner"] if use_framed else []),
                *(["chash"] if use_crops else []),
            ]
        )
    )
    keys, codes = _group_keys(c, rows, names, d, hub_cap)
    sizes = np.diff(keys.bounds)
    mirror = codes["phash_mirror"] if use_mirror else None
    framed = None
    if use_framed:  # per key: does a member have a trimmed border
        assert c.inner is not None
        member_framed = c.inner[keys.rows[keys.order]].astype(np.int8)
        framed = np.maximum.reduceat(member_framed, keys.bounds[:-1]).astype(np.bool_)
    st["search_keys"] = st.get("search_keys", 0) + len(sizes)
    st["hub_keys"] = st.get("hub_keys", 0) + int(keys.hub.sum())
    st["hub_members"] = st.get("hub_members", 0) + int(sizes[keys.hub].sum())
    check = d.min_thumb_corr is not None and thumbs is not None
    spool = PairSpool(scratch)
    touched = np.zeros(len(c), np.bool_)
    touched_inner = np.zeros(len(c), np.bool_)

    def add(a: np.ndarray, b: np.ndarray, kind: int) -> None:
        if use_framed and kind in (PLAIN, CROPPED):
            # Two framed images correlate through their frames (two photos in one black
            # mat): such a pair is checked on what lies inside the borders.
            assert c.inner is not None
            both = c.inner[a] & c.inner[b]
            if both.any():
                spool.add(a[both], b[both], FRAMED if kind == PLAIN else FRAMED_CROPPED)
                if check:
                    touched_inner[a[both]] = True
                    touched_inner[b[both]] = True
                    if kind == CROPPED:
                        touched[a[both]] = True
                        touched[b[both]] = True
                a, b = a[~both], b[~both]
        spool.add(a, b, kind)
        if check:
            mark = touched_inner if kind in INNER_KINDS else touched
            mark[a] = True
            mark[b] = True
            if kind == FRAMED_CROPPED:  # its shifted check reads the whole thumbnails
                touched[a] = True
                touched[b] = True
            if kind == CROPPED and use_framed:  # one side framed: also checked inside it
                assert c.inner is not None
                one = c.inner[a] | c.inner[b]
                touched_inner[a[one]] = True
                touched_inner[b[one]] = True

    try:
        # Pairs inside a key: distance 0 on every hash, so always plain candidates; also
        # mirror candidates where the key's pHash is within the radius of its own mirror.
        multi = np.flatnonzero(sizes > 1)
        add(*_inside(keys, multi), PLAIN)
        if mirror is not None:
            self_mirror = multi[popcount64(codes["phash"][multi] ^ mirror[multi]) <= d.near_radius]
            add(*_inside(keys, self_mirror), MIRRORED)
        for ka, kb, kind in _key_pair_chunks(codes, d, mirror, st, framed, use_crops):
            add(*_expand(ka, kb, keys), kind)
        st["candidate_pairs"] = st.get("candidate_pairs", 0) + spool.count
        st["candidates_spilled"] = bool(st.get("candidates_spilled")) or spool.path is not None
        n = len(c)
        confirmed: list[np.ndarray] = []
        stores: dict[bool, ThumbStore] = {}
        if check and spool.count:
            need = np.flatnonzero(touched)
            need_inner = np.flatnonzero(touched_inner)
            del touched, touched_inner
            release_memory()  # the search's temporaries, before the thumbnails come in
            st["thumbnails_read"] = st.get("thumbnails_read", 0) + len(need) + len(need_inner)
            assert thumbs is not None
            stores[False] = ThumbStore(need, thumbs, scratch)
            if len(need_inner):
                assert inner_thumbs is not None
                stores[True] = ThumbStore(need_inner, inner_thumbs, scratch, name="inner")
                if inner_aspects is not None:  # 24 bytes a touched row, held
                    stores[True].aspect = np.asarray(inner_aspects(need_inner), np.float64)
            release_memory()  # the blocks the scratch files were written from
            spilled = any(s.path is not None for s in stores.values())
            st["thumbnails_spilled"] = bool(st.get("thumbnails_spilled")) or spilled
        # One BLAS thread: the checks are many small matrix products, which two threads
        # do no faster on an idle machine, and on a busy one (other jobs, decide's own map
        # workers) OpenBLAS threads waiting on each other made them 1.8x slower.
        try:
            with threadpool_limits(1, user_api="blas"):
                for part in spool.chunks():
                    a, b = _confirmed(part, stores, c, d, st)
                    confirmed.append(np.unique(_pair_codes(a, b, n)))
        finally:
            for store in stores.values():
                store.close()
    finally:
        spool.close()
    code = np.unique(np.concatenate(confirmed)) if confirmed else empty
    st["confirmed_pairs"] = st.get("confirmed_pairs", 0) + len(code)
    return code // n, code % n


def _aspects_apart(store: ThumbStore, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Whether rows a[k] and b[k], both trimmed from borders, differ in content aspect by more
    than MAX_INNER_ASPECT and in their borders' shares by more than MAX_BORDER_SHARE_RATIO
    (False where either is unknown or unframed)."""
    assert store.aspect is not None
    at = store.aspect
    x, y = at[np.searchsorted(store.need, a)], at[np.searchsorted(store.need, b)]
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.abs(np.log(x / y))  # aspect, share of width, share of height
    ratio = np.nan_to_num(ratio, nan=0.0)
    shares_differ = (ratio[:, 1:] > np.log(MAX_BORDER_SHARE_RATIO)).any(axis=1)
    return (ratio[:, 0] > np.log(MAX_INNER_ASPECT)) & shares_differ


def _confirmed(
    part: np.ndarray, stores: dict[bool, ThumbStore], c: Compact, d: Any, st: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray]:
    """The candidate pairs of one spooled chunk (rows of a, b, kind) that the thumbnails
    confirm (all of them without a thumbnail check)."""
    a, b, kinds = part[:, 0], part[:, 1], part[:, 2]
    if not stores:
        return a, b
    ok = np.zeros(len(a), np.bool_)
    for inner, store in stores.items():
        sel = np.flatnonzero(np.isin(kinds, INNER_KINDS) == inner)
        if store.aspect is not None and len(sel):
            apart = _aspects_apart(store, a[sel], b[sel])
            st["aspect_rejected"] = st.get("aspect_rejected", 0) + int(apart.sum())
            sel = sel[~apart]
        mirrored = kinds[sel] == MIRRORED
        close = _hashes_agree(c, a[sel], b[sel], kinds[sel], d)
        corr = store.correlate(a[sel], b[sel], mirrored, close)
        ok[sel] = corr >= d.min_thumb_corr
        if d.min_edge_corr is not None:  # and their edges (edge_corr)
            judged = sel[ok[sel]]
            edges = store.edge_corr(a[judged], b[judged], kinds[judged] == MIRRORED)
            ok[judged] = edges >= d.min_edge_corr
            rejected = int((edges < d.min_edge_corr).sum())
            st["edge_rejected"] = st.get("edge_rejected", 0) + rejected
    # A crop candidate the thumbnails do not confirm: the best value and edge correlations
    # of 81 offsets of a 90% crop of either against the other, on the whole thumbnails
    # (edges are not fooled by a shared mat).
    crop = np.flatnonzero(np.isin(kinds, CROP_KINDS) & ~ok)
    if len(crop):
        ok[crop], fine = stores[False].crop_confirmed(
            a[crop], b[crop], d.min_crop_value_corr, d.min_crop_corr
        )
        st["crop_checks"] = st.get("crop_checks", 0) + len(crop)
        st["crop_fine_checks"] = st.get("crop_fine_checks", 0) + fine
    # A crop of a letterboxed or matted copy against the unframed original: the whole
    # thumbnails differ by the bars, so the framed side is also read inside its border
    # (16:9-framed copies cropped 90% were found 0 times in 50).
    if True in stores and c.inner is not None:
        one = (kinds == CROPPED) & (c.inner[a] ^ c.inner[b]) & ~ok
        mixed = np.flatnonzero(one)
        if len(mixed):
            ok[mixed], fine = stores[True].crop_confirmed(
                a[mixed], b[mixed], d.min_crop_value_corr, d.min_crop_corr
            )
            st["crop_checks_inside_borders"] = st.get("crop_checks_inside_borders", 0) + len(mixed)
            st["crop_fine_checks"] = st.get("crop_fine_checks", 0) + fine
    if d.min_hue_overlap is not None:  # last: only the pairs confirmed so far are read
        for inner, store in stores.items():
            sel = np.flatnonzero(ok & (np.isin(kinds, INNER_KINDS) == inner))
            if len(sel):
                apart = store.hue_overlap(a[sel], b[sel]) < d.min_hue_overlap  # NaN: judged alike
                ok[sel[apart]] = False
                st["hue_rejected"] = st.get("hue_rejected", 0) + int(apart.sum())
    return a[ok], b[ok]


class _Edges(NamedTuple):
    """Confirmed pairs of positions (a[k], b[k]), each with the kind of its evidence."""

    a: np.ndarray
    b: np.ndarray
    kind: np.ndarray

    def take(self, sel: np.ndarray) -> _Edges:
        return _Edges(self.a[sel], self.b[sel], self.kind[sel])


def _component_keepers(
    edges: _Edges, pos_rank: np.ndarray, keeper: np.ndarray, kind: np.ndarray
) -> None:
    """One keeper per connected component of the confirmed pairs: its top-ranked member;
    every other member is dropped as its copy, named by the strongest evidence among the
    member's own pairs. A copy of a copy is a copy: with greedy stars, an original
    dropped for its framed copy would leave that copy's own mirror image standing."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    ea, eb, ek = edges
    if not len(ea):
        return
    nodes, inv = np.unique(np.concatenate([ea, eb]), return_inverse=True)
    k = len(nodes)
    a, b = inv[: len(ea)], inv[len(ea) :]
    graph = coo_matrix((np.ones(len(a), np.int8), (a, b)), shape=(k, k)).tocsr()
    _, label = connected_components(graph, directed=False)
    # The top-ranked member of each component: sort by (component, rank), take the first.
    o = np.lexsort((pos_rank[nodes], label))
    first = np.concatenate(([True], label[o][1:] != label[o][:-1]))
    top_of = np.empty(label.max() + 1, np.int64)
    top_of[label[o][first]] = nodes[o][first]
    strongest = np.full(k, np.iinfo(np.int8).max, np.int8)
    np.minimum.at(strongest, a, ek)
    np.minimum.at(strongest, b, ek)
    top = top_of[label]
    drop = top != nodes
    keeper[nodes[drop]] = top[drop]
    kind[nodes[drop]] = strongest[drop]


def _ball_keepers(
    edges: _Edges, pos_rank: np.ndarray, keeper: np.ndarray, kind: np.ndarray, hops: int = 2
) -> None:
    """Greedy balls: in rank order, a member still in play is kept and drops every member
    still in play within ``hops`` confirmed pairs of it (through members it drops); members
    ``keeper`` already marks dropped stay out of play. A copy
    of a copy is a copy (an original's framed copy's mirror image goes with it), but a
    chain of look-alikes is not one group: among 3,000 product shots on white, components
    joined 1,084 distinct products into one group with one keeper."""
    ea, eb, ek = edges
    if not len(ea):
        return
    src, dst, knd = np.concatenate([ea, eb]), np.concatenate([eb, ea]), np.concatenate([ek, ek])
    o = np.argsort(src, kind="stable")
    src, dst, knd = src[o], dst[o], knd[o]
    nodes = np.unique(src)
    starts = np.searchsorted(src, nodes).tolist()
    ends = np.searchsorted(src, nodes, side="right").tolist()
    span = {u: (s, e) for u, s, e in zip(nodes.tolist(), starts, ends, strict=True)}
    state = bytearray((keeper >= 0).astype(np.uint8) * 2)  # 0 in play, 1 kept, 2 dropped
    dst_l, knd_l = dst.tolist(), knd.tolist()
    for top in nodes[np.argsort(pos_rank[nodes], kind="stable")].tolist():
        if state[top] == 2:
            continue
        state[top] = 1
        frontier = [top]
        for _ in range(hops):
            reached = []
            for u in frontier:
                s, e = span[u]
                for j, k in zip(dst_l[s:e], knd_l[s:e], strict=True):
                    if state[j] == 0:
                        state[j] = 2
                        keeper[j] = top
                        kind[j] = k
                        reached.append(j)
            frontier = reached


def _star_keepers(
    edges: _Edges, pos_rank: np.ndarray, keeper: np.ndarray, kind: np.ndarray
) -> None:
    """Greedy stars: in rank order, a member still in play is kept and drops its direct
    neighbours still in play (a neighbour's neighbour may stay). Members ``keeper``
    already marks dropped stay out of play."""
    _ball_keepers(edges, pos_rank, keeper, kind, hops=1)


def video_pairs(
    frames: np.ndarray, valid: np.ndarray, radius: int, share: float
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of rows (videos) where at least ``share`` of the sampled frames of one of the
    two have a frame of the other within ``radius`` pHash bits: a re-encoded or resized copy
    matches frame for frame, a trimmed copy's frames all lie inside the original (sampled at
    other times, so a frame matches its nearest neighbour in time). Frame hashes are searched
    as one set (sub-quadratic); a pair of frames of one video counts for nothing."""
    owner = np.repeat(np.arange(len(frames)), valid.sum(axis=1))
    slot = np.nonzero(valid)[1]
    codes = frames[valid].astype(np.uint64)
    if len(codes) < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    found: list[np.ndarray] = []
    for i, j in iter_near_pairs(codes, radius):
        keep = owner[i] != owner[j]
        i, j = i[keep], j[keep]
        # (video a, video b, frame slot of a) and the mirror: which frames found a match.
        a = np.concatenate([owner[i], owner[j]])
        b = np.concatenate([owner[j], owner[i]])
        f = np.concatenate([slot[i], slot[j]])
        found.append(np.unique(np.stack([a, b, f], axis=1), axis=0))
    if not found:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    trip = np.unique(np.concatenate(found), axis=0)
    pairs, matched = np.unique(trip[:, :2], axis=0, return_counts=True)
    frac = matched / np.maximum(valid.sum(axis=1)[pairs[:, 0]], 1)
    ok = pairs[frac >= share]
    lo, hi = np.minimum(ok[:, 0], ok[:, 1]), np.maximum(ok[:, 0], ok[:, 1])
    code = np.unique(lo * len(frames) + hi)
    return (code // len(frames)).astype(np.int64), (code % len(frames)).astype(np.int64)


def frame_thumb_matrix(values: Sequence[bytes | None], valid: np.ndarray) -> np.ndarray:
    """Rows' frame thumbnails (768 bytes a frame, concatenated) as (rows, F, 768) uint8."""
    size = FRAME_THUMB_BYTES
    out = np.zeros((*valid.shape, size), np.uint8)
    for r, v in enumerate(values):
        if v:
            k = min(len(v) // size, valid.shape[1])
            out[r, :k] = np.frombuffer(v[: k * size], np.uint8).reshape(k, size)
    return out


def confirm_video_pairs(
    a: np.ndarray, b: np.ndarray, valid: np.ndarray, reader: FrameThumbReader, d: Any
) -> np.ndarray:
    """Which candidate pairs (positions ``a[k]``, ``b[k]``) have frame thumbnails alike at
    ``d.video_min_frame_corr``; thumbnails are read for the videos in a pair only."""
    need = np.unique(np.concatenate([a, b]))
    th = frame_thumb_matrix(reader(need), valid[need])
    ia, ib = np.searchsorted(need, a), np.searchsorted(need, b)
    return frame_corr(th[ia], valid[a], th[ib], valid[b]) >= d.video_min_frame_corr


def frame_corr(ta: np.ndarray, va: np.ndarray, tb: np.ndarray, vb: np.ndarray) -> np.ndarray:
    """Per pair k: how alike two videos' frames are — for each valid frame of one, its best
    correlation with any frame of the other, the median over its frames, the larger of the
    two directions. ta/tb: (k, F, 768) uint8 thumbnails; va/vb: (k, F) validity."""

    def unit(t: np.ndarray) -> np.ndarray:
        x = t.astype(np.float32)
        x -= x.mean(axis=2, keepdims=True)
        return x / (np.linalg.norm(x, axis=2, keepdims=True) + 1e-6)

    c = np.einsum("kfd,kgd->kfg", unit(ta), unit(tb))
    c = np.where(va[:, :, None] & vb[:, None, :], c, -np.inf)
    ab = np.where(va, c.max(axis=2), np.nan)
    ba = np.where(vb, c.max(axis=1), np.nan)
    with np.errstate(all="ignore"):
        out = np.fmax(np.nanmedian(ab, axis=1), np.nanmedian(ba, axis=1))
    return np.nan_to_num(out, nan=-1.0)


def resolve(
    c: Compact,
    d: Any,
    thumbs: ThumbReader | None,
    image_emb: np.ndarray | None = None,
    hub_cap: int = HUB_CAP,
    scratch: Path | None = None,
    inner_thumbs: ThumbReader | None = None,
    frame_thumbs: FrameThumbReader | None = None,
    kept_kinds: Sequence[int] = (),
    inner_aspects: AspectReader | None = None,
) -> Outcome:
    """The keeper policy over every position of ``c`` (all of them standing). ``kept_kinds``
    are the duplicate kinds (NEAR, SEMANTIC) the pack only flags, so a representative named
    one of them stays in the kept set."""
    m = len(c)
    keeper = np.full(m, -1, np.int64)
    kind = np.full(m, -1, np.int8)
    stats: dict[str, Any] = {"standing": m}
    semantic = d.semantic_eps is not None and image_emb is not None
    if m == 0 or (not c.hashes and not semantic):
        return Outcome(keeper, kind, 0, stats)
    order = rank_order(c, d.keeper)
    rep = exact_representatives(c, order)
    reps = np.flatnonzero(rep == np.arange(m))
    stats["exact_representatives"] = len(reps)
    edges_a: list[np.ndarray] = []
    edges_b: list[np.ndarray] = []
    edges_k: list[np.ndarray] = []
    if c.hashes:
        a, b = near_duplicate_pairs(
            c, reps, d, thumbs, stats, hub_cap, scratch, inner_thumbs, inner_aspects
        )
        edges_a.append(a)
        edges_b.append(b)
        edges_k.append(np.full(len(a), NEAR, np.int8))
    if c.frames is not None and c.frames_valid is not None:
        a, b = video_pairs(c.frames[reps], c.frames_valid[reps], d.video_radius, d.video_match)
        stats["video_candidates"] = len(a)
        if frame_thumbs is not None and len(a):
            ok = confirm_video_pairs(reps[a], reps[b], c.frames_valid, frame_thumbs, d)
            a, b = a[ok], b[ok]
        stats["video_pairs"] = len(a)
        edges_a.append(reps[a])
        edges_b.append(reps[b])
        edges_k.append(np.full(len(a), NEAR, np.int8))
    if semantic:
        assert image_emb is not None and d.semantic_eps is not None
        sp = semantic_pairs(image_emb, reps, d.semantic_eps)
        if sp:
            arr = np.array([(x, y) for x, y, _ in sp], np.int64)
            edges_a.append(arr[:, 0])
            edges_b.append(arr[:, 1])
            edges_k.append(np.full(len(arr), SEMANTIC, np.int8))
    ea = np.concatenate(edges_a) if edges_a else np.zeros(0, np.int64)
    eb = np.concatenate(edges_b) if edges_b else np.zeros(0, np.int64)
    ek = np.concatenate(edges_k) if edges_k else np.zeros(0, np.int8)
    # One edge per pair, named by its strongest evidence.
    if len(ea):
        code = _pair_codes(ea, eb, m)
        o = np.lexsort((ek, code))
        code, ek = code[o], ek[o]
        first = np.concatenate(([True], code[1:] != code[:-1]))
        code, ek = code[first], ek[first]
        ea, eb = code // m, code % m
    pos_rank = np.empty(m, np.int64)
    pos_rank[order] = np.arange(m)
    edges = _Edges(ea, eb, ek)
    if d.groups == "component":
        # Copying is transitive, likeness is not: hash pairs group by component, and
        # semantic pairs then drop by stars among the members still standing.
        near = ek == NEAR
        _component_keepers(edges.take(near), pos_rank, keeper, kind)
        edges = edges.take(~near)
    elif d.groups == "ball":
        near = ek == NEAR
        _ball_keepers(edges.take(near), pos_rank, keeper, kind)
        edges = edges.take(~near)
    _star_keepers(edges, pos_rank, keeper, kind)
    # Copies follow their representative: dropped with it, or dropped as its exact copies.
    # A representative the pack only flags (near duplicates for review) stays in the kept
    # set, so its copies are its exact copies: named after its keeper too, two identical
    # images were both kept, flagged, beside a pack that drops exact duplicates.
    copies = np.flatnonzero(rep != np.arange(m))
    r = rep[copies]
    rep_dropped = (keeper[r] >= 0) & ~np.isin(kind[r], np.asarray(kept_kinds, np.int8))
    keeper[copies] = np.where(rep_dropped, keeper[r], r)
    kind[copies] = np.where(rep_dropped, kind[r], EXACT)
    groups = len(np.unique(keeper[keeper >= 0]))
    stats["dropped"] = int((keeper >= 0).sum())
    return Outcome(keeper, kind, groups, stats)
