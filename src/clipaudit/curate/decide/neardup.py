"""Near-duplicate search over 64-bit perceptual hashes by multi-index hashing.

Split the 64 bits into ``m`` bands. Two hashes within Hamming distance ``r`` differ by at
most ``floor(r / m)`` bits in at least one band (pigeonhole), so probing each band's table
with every key within that many bit flips finds every pair — no pair is missed, and no all-
pairs comparison is made. ``m`` is chosen per call to minimise the expected work for the
dataset size. Tables are direct-address (counting sort), so a probe is a gather, not a search.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np

_POP8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def popcount64(x: np.ndarray) -> np.ndarray:
    """Bit count of each uint64 (numpy's native popcount where it has one)."""
    x = np.ascontiguousarray(x, dtype=np.uint64)
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x).astype(np.int64)
    b = x.view(np.uint8).reshape(-1, 8)
    return _POP8[b].sum(axis=1, dtype=np.int64)


def _bands(m: int) -> list[tuple[int, int]]:
    """(shift, width) of ``m`` bands covering 64 bits as evenly as possible."""
    widths = [64 // m + (1 if i < 64 % m else 0) for i in range(m)]
    out, shift = [], 0
    for w in widths:
        out.append((shift, w))
        shift += w
    return out


def permute_bits(h: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Hashes whose bit ``i`` is bit ``order[i]`` of ``h``. Hamming distances are unchanged."""
    h = np.ascontiguousarray(h, dtype=np.uint64)
    out = np.zeros_like(h)
    one = np.uint64(1)
    for i, b in enumerate(np.asarray(order).tolist()):
        if i != b:
            out |= ((h >> np.uint64(b)) & one) << np.uint64(i)
        else:
            out |= h & (one << np.uint64(i))
    return out


def bit_layout(sample: np.ndarray, m: int) -> np.ndarray:
    """A bit order whose ``m`` contiguous bands are as close to independent bits as the data
    allows. Perceptual-hash bits are correlated (neighbouring gradients of dHash, the DCT
    terms of pHash on smooth images), so contiguous bands are far from uniform and their
    buckets far fuller than ``n / 2^w``; any partition of the bits keeps the search exact,
    so correlated bits are dealt to different bands, the most biased bits first."""
    le = np.ascontiguousarray(sample, dtype="<u8").view(np.uint8).reshape(-1, 8)
    bits = np.unpackbits(le, axis=1, bitorder="little").astype(np.float32)  # bit i: column i
    p = bits.mean(axis=0)
    centred = bits - p
    sd = np.sqrt((centred * centred).mean(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.abs((centred.T @ centred) / len(bits) / np.outer(sd, sd))
    corr = np.nan_to_num(corr, nan=0.0)
    np.fill_diagonal(corr, 0.0)
    widths = [w for _, w in _bands(m)]
    bands: list[list[int]] = [[] for _ in range(m)]
    for b in np.argsort(-np.abs(p - 0.5), kind="stable").tolist():
        open_ = [k for k in range(m) if len(bands[k]) < widths[k]]
        # Least correlation with the band's bits; ties to the emptiest band.
        k = min(open_, key=lambda k: (float(corr[b, bands[k]].sum()), len(bands[k]), k))
        bands[k].append(b)
    return np.array([b for band in bands for b in band], dtype=np.int64)


class BandMass:
    """Per band count, the data-aware bit layout and the candidate mass of the real hashes
    under it: the sum over band keys of (hashes with that key)^2. Uniform hashes give
    n^2 / 2^w; clustered ones (similar scenes, smooth images) give more, and the search's
    real work follows it. Measured on a seeded sample of at most ``SAMPLE`` hashes, the
    pair part scaled up to the whole input."""

    SAMPLE = 200_000
    LAYOUT_SAMPLE = 20_000  # enough to estimate 64 x 64 bit correlations

    def __init__(self, h: np.ndarray) -> None:
        h = np.ascontiguousarray(h, dtype=np.uint64)
        self.n = n = len(h)
        rng = np.random.default_rng(0)
        pick = np.sort(rng.choice(n, size=self.SAMPLE, replace=False)) if n > self.SAMPLE else None
        self.sample = h.copy() if pick is None else h[pick]  # never a view of the input
        self.cache: dict[int, list[float]] = {}
        self.orders: dict[int, np.ndarray] = {}

    def order(self, m: int) -> np.ndarray:
        if m not in self.orders:
            step = max(1, len(self.sample) // self.LAYOUT_SAMPLE)
            self.orders[m] = bit_layout(self.sample[::step], m)
        return self.orders[m]

    def __call__(self, m: int) -> list[float]:
        if m not in self.cache:
            n, s = self.n, len(self.sample)
            scale = n * (n - 1) / max(s * (s - 1), 1)
            hs = permute_bits(self.sample, self.order(m))
            out = []
            for shift, w in _bands(m):
                keys = (hs >> np.uint64(shift)) & np.uint64((1 << w) - 1)
                if w <= 20:  # a table of 2^w counts: at most 8 MiB, faster than sorting
                    c = np.bincount(keys.astype(np.int64), minlength=1 << w).astype(np.float64)
                else:  # occupied keys only: the table would be 32 MiB at w = 22
                    c = np.unique(keys, return_counts=True)[1].astype(np.float64)
                out.append(n + float((c * (c - 1)).sum()) * scale)
            self.cache[m] = out
        return self.cache[m]


# Below this many hashes the uniform model and contiguous bands are used (measuring the
# real mass costs more than it saves).
MEASURE_MIN = 50_000


# The radius choice and the search itself measure the same hashes: keep the last few
# measurements, keyed by the hashes' content (a sample and a few layouts each, no input).
_MASS_CACHE: dict[bytes, BandMass] = {}


def _mass(h: np.ndarray | None) -> BandMass | None:
    if h is None or len(h) < MEASURE_MIN:
        return None
    h = np.ascontiguousarray(h, dtype=np.uint64)
    key = hashlib.blake2b(h.data, digest_size=16).digest()
    if key not in _MASS_CACHE:
        while len(_MASS_CACHE) >= 4:
            _MASS_CACHE.pop(next(iter(_MASS_CACHE)))
        _MASS_CACHE[key] = BandMass(h)
    return _MASS_CACHE[key]


def choose_bands(n: int, radius: int, h: np.ndarray | None = None) -> int:
    """The band count with the least expected probing plus candidate-checking work (on the
    real hashes' band mass when ``h`` is given and large)."""
    return _best_bands(n, radius, _mass(h))[0]


# The exact search's work grows like n^2 / 2^w times the probes: past some size the full
# radius is not affordable. A search gets this much work (cost-model units; about 10-25 s on
# one 2-core machine), or this much per hash when the input is larger.
SEARCH_BUDGET = 1e9
SEARCH_BUDGET_PER_HASH = 5000.0


def affordable_radius(
    n: int, radius: int, budget: float | None = None, h: np.ndarray | None = None
) -> int:
    """The largest radius up to ``radius`` whose exact search fits the work budget
    (``max(SEARCH_BUDGET, SEARCH_BUDGET_PER_HASH * n)`` by default), on the real hashes'
    band mass when ``h`` is given. Every pair within the returned radius is found; pairs
    between it and ``radius`` may not be."""
    if budget is None:
        budget = max(SEARCH_BUDGET, SEARCH_BUDGET_PER_HASH * n)
    mass = _mass(h)
    r = radius
    while r > 0 and _best_bands(n, r, mass)[1] > budget:
        r -= 1
    return r


# Candidate pairs a search may yield: similar scenes (plain backgrounds, one template)
# put far more pairs within a radius than random hashes do, and every candidate costs a
# thumbnail check (about 3 us; candidates stream to a scratch file, so they cost no memory).
# Past this many (estimated), the radius narrows.
PAIR_BUDGET = 5_000_000
PAIR_BUDGET_PER_HASH = 5.0
# Crop candidates (the learned copy hash) that the plain thumbnails do not confirm cost a
# shifted search each, ~0.5-0.9 ms against ~3 us for a plain pair: under the plain budget a
# 30,000-image world pool at 64 px spooled millions of them and decide ran past 50 minutes.
# Their own budget keeps that check to a fraction of the scoring time.
CROP_PAIR_BUDGET = 100_000
CROP_PAIR_BUDGET_PER_HASH = 2.0


def estimated_pairs(
    a: np.ndarray, radius: int, b: np.ndarray | None = None, seed: int = 0
) -> np.ndarray:
    """Estimated pairs within each radius 0..radius among ``a`` (or between ``a`` and ``b``),
    from the distances of a seeded sample of 2,000 rows to 20,000 others (exact when smaller)."""
    rng = np.random.default_rng(seed)
    other = a if b is None else b
    qi = rng.choice(len(a), size=min(2_000, len(a)), replace=False)
    ti = rng.choice(len(other), size=min(20_000, len(other)), replace=False)
    hist = np.zeros(65, np.int64)
    for s in range(0, len(qi), 25):  # 25 x 20,000 distances (4 MiB) at a time
        d = popcount64((a[qi[s : s + 25], None] ^ other[None, ti]).ravel())
        hist += np.bincount(d, minlength=65)
    if b is None:  # a row met itself: not a pair
        hist[0] -= len(np.intersect1d(qi, ti))
    total = len(a) * (len(a) - 1) / 2 if b is None else len(a) * len(other)
    sampled = len(qi) * len(ti) - (len(np.intersect1d(qi, ti)) if b is None else 0)
    return np.cumsum(hist)[: radius + 1] / max(sampled, 1) * total


def dense_radius(
    a: np.ndarray, radius: int, b: np.ndarray | None = None, crops: bool = False
) -> int:
    """The largest radius up to ``radius`` whose estimated pair count fits the pair budget
    (the crop budget for the copy hash's candidates, ``crops``)."""
    n = len(a) + (0 if b is None else len(b))
    budget = (
        max(CROP_PAIR_BUDGET, CROP_PAIR_BUDGET_PER_HASH * n)
        if crops
        else max(PAIR_BUDGET, PAIR_BUDGET_PER_HASH * n)
    )
    if n < 2 or (n * n / 2 <= budget):
        return radius  # every pair of the input fits: nothing to estimate
    est = estimated_pairs(a, radius, b)
    r = radius
    while r > 0 and est[r] > budget:
        r -= 1
    return r


def _best_bands(n: int, radius: int, mass: BandMass | None = None) -> tuple[int, float]:
    best_m, best_cost = 1, math.inf
    # Any m is exact (a pair within r differs by at most floor(r/m) bits in some band);
    # m past r + 1 only narrows the bands, which keeps the tables small for r = 0.
    for m in range(1, 17):
        s = radius // m
        cost = 0.0
        bands = _bands(m)
        if any(w > 26 for _, w in bands):  # direct-address tables past 2^26 cost too much
            continue
        real = mass(m) if mass is not None else None
        for b, (_, w) in enumerate(bands):
            probes = sum(math.comb(w, t) for t in range(s + 1))
            collide = real[b] if real is not None else n * n / 2**w
            cost += probes * (n + collide) + 2**w
        if cost < best_cost:
            best_m, best_cost = m, cost
    return best_m, best_cost


def _flip_masks(width: int, s: int) -> Iterator[int]:
    for t in range(s + 1):
        for bits in itertools.combinations(range(width), t):
            mask = 0
            for b in bits:
                mask |= 1 << b
            yield mask


class _Earlier:
    """Rejects a pair a band before this one already yields: the pair is reported by the
    first band in which it differs by at most ``s`` bits, so each pair appears once."""

    def __init__(self, bands: list[tuple[int, int]], s: int) -> None:
        self.bands, self.s = bands, s

    def fresh(self, x: np.ndarray) -> np.ndarray:
        ok = np.ones(len(x), np.bool_)
        for shift, width in self.bands:
            part = (x >> np.uint64(shift)) & np.uint64((1 << width) - 1)
            ok &= popcount64(part) > self.s
        return ok


def _expand(
    h: np.ndarray,
    order: np.ndarray,
    qi: np.ndarray,
    lo: np.ndarray,
    cnt: np.ndarray,
    radius: int,
    same_bucket: bool,
    chunk_pairs: int,
    earlier: _Earlier,
    split: int | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Pairs (query, each member of its probed bucket) within ``radius`` on the full hash,
    as (lower, higher) index arrays, about ``chunk_pairs`` candidates at a time."""
    total = int(cnt.sum())
    step = max(1, len(qi) * chunk_pairs // max(total, 1))
    for a in range(0, len(qi), step):
        ci, cl, cc = qi[a : a + step], lo[a : a + step], cnt[a : a + step]
        rep_i = np.repeat(ci, cc)
        offs = np.arange(int(cc.sum())) - np.repeat(np.cumsum(cc) - cc, cc)
        j = order[np.repeat(cl, cc) + offs].astype(np.int64)
        if same_bucket:
            keep = rep_i < j
            rep_i, j = rep_i[keep], j[keep]
        x = h[rep_i] ^ h[j]
        ok = popcount64(x) <= radius
        if split is not None:  # only pairs across the split are wanted: store no others
            ok &= (np.minimum(rep_i, j) < split) & (np.maximum(rep_i, j) >= split)
        sel = np.flatnonzero(ok)
        if len(sel) and earlier.bands:
            sel = sel[earlier.fresh(x[sel])]
        if len(sel):
            yield np.minimum(rep_i[sel], j[sel]), np.maximum(rep_i[sel], j[sel])


# Probes handed to the threads at once (each holds only the pairs within the radius).
PROBE_BATCH = 32


def _probe_band(
    h: np.ndarray,
    shift: int,
    width: int,
    s: int,
    radius: int,
    chunk_pairs: int,
    workers: int,
    earlier: _Earlier,
    split: int | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    n = len(h)
    keys = ((h >> np.uint64(shift)) & np.uint64((1 << width) - 1)).astype(np.int32)
    order = np.argsort(keys, kind="stable").astype(np.int32)
    counts = np.bincount(keys, minlength=1 << width).astype(np.int32)
    starts = np.concatenate(([0], np.cumsum(counts, dtype=np.int64)[:-1])).astype(np.int32)
    # A pair whose band keys differ by `mask` is met from both ends; probe only from the end
    # whose key has a 0 at the mask's top bit. The masks are taken grouped by their top bit,
    # so one bit's query rows are selected once, and only one bit's are held at a time
    # (holding every bit's costs width * n * 12 bytes: 2.6 GB at 2 * 10^7 hashes).
    # Row indices as int32 (half the memory of int64 at 2 * 10^7 hashes; n < 2^31).
    idx_type = np.int32 if n < 2**31 else np.int64
    by_top: dict[int, list[int]] = {}
    for mask in _flip_masks(width, s):
        by_top.setdefault(mask.bit_length() - 1, []).append(mask)
    pool = ThreadPoolExecutor(max_workers=workers) if workers > 1 else None
    try:
        for top, masks in sorted(by_top.items()):
            if top < 0:
                qi_all, q_all = np.arange(n, dtype=idx_type), keys
            else:
                qi_all = np.flatnonzero(((keys >> top) & 1) == 0).astype(idx_type)
                q_all = keys[qi_all]

            def probe(
                mask: int, qi_all: np.ndarray = qi_all, q_all: np.ndarray = q_all
            ) -> list[tuple[np.ndarray, np.ndarray]]:
                q = q_all ^ np.int32(mask) if mask else q_all
                cnt = counts[q]
                hit = cnt > 0
                if not hit.any():
                    return []
                return list(
                    _expand(
                        h,
                        order,
                        qi_all[hit],
                        starts[q[hit]],
                        cnt[hit],
                        radius,
                        mask == 0,
                        chunk_pairs,
                        earlier,
                        split,
                    )
                )

            if pool is None:
                for m in masks:
                    yield from probe(m)
            else:  # numpy releases the GIL in gathers and arithmetic: threads share probes,
                # a batch at a time so the pairs found never pile up
                step = workers * PROBE_BATCH
                for k in range(0, len(masks), step):
                    for part in pool.map(probe, masks[k : k + step]):
                        yield from part
    finally:
        if pool is not None:
            pool.shutdown()


def iter_near_pairs(
    hashes: np.ndarray,
    radius: int,
    chunk_pairs: int = 262_144,
    workers: int | None = None,
    split: int | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Every pair (i < j) with ``popcount(h[i] ^ h[j]) <= radius`` exactly once, as chunks
    of (i, j) index arrays, so a caller can check and drop candidates as they come instead
    of holding them all (at 10^6 similar images that is tens of millions of pairs).

    ``workers`` threads share the probes (default: the machine's cores for large inputs).
    ``split``: only pairs with i < split <= j (two sets searched against each other; pairs
    inside either set are dropped as they are found, never stored).
    """
    h = np.ascontiguousarray(hashes, dtype=np.uint64)
    n = len(h)
    if n < 2:
        return
    if workers is None:
        workers = min(os.cpu_count() or 1, 8) if n >= 50_000 else 1
    mass = _mass(h)
    m = _best_bands(n, radius, mass)[0]
    s = radius // m
    if mass is not None:  # the data-aware layout: same pairs, emptier buckets
        h = permute_bits(h, mass.order(m))
        # The caller's array (often a temporary, such as pHashes joined to their mirrors)
        # is not needed past the permutation: at 2 * 10^7 hashes that is 160 MB.
        del hashes
    bands = _bands(m)
    for k, (shift, width) in enumerate(bands):
        earlier = _Earlier(bands[:k], s)
        yield from _probe_band(h, shift, width, s, radius, chunk_pairs, workers, earlier, split)


def near_pairs(
    hashes: np.ndarray,
    radius: int,
    chunk_pairs: int = 262_144,
    workers: int | None = None,
    split: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs (i < j) within ``radius``, sorted, plus their distances (see
    ``iter_near_pairs``, which this collects)."""
    h = np.ascontiguousarray(hashes, dtype=np.uint64)
    n = len(h)
    empty = np.zeros(0, np.int64)
    found = [i * n + j for i, j in iter_near_pairs(h, radius, chunk_pairs, workers, split)]
    if not found:
        return empty, empty, empty
    code = np.sort(np.concatenate(found))
    i, j = code // n, code % n
    return i, j, popcount64(h[i] ^ h[j])


def brute_pairs(hashes: np.ndarray, radius: int) -> set[tuple[int, int]]:
    """All pairs by comparing everything: the reference the fast search is tested against."""
    h = np.asarray(hashes, dtype=np.uint64)
    out: set[tuple[int, int]] = set()
    for i in range(len(h) - 1):
        d = popcount64(h[i + 1 :] ^ h[i])
        for j in np.nonzero(d <= radius)[0]:
            out.add((i, i + 1 + int(j)))
    return out
