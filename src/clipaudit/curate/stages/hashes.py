"""Perceptual hashes (pHash, dHash; 64 bits each) and an exact hash of the decoded pixels.

Hashes are stored as signed int64 (the bit pattern of the uint64) so parquet keeps them
exactly; :func:`as_uint64` turns a column back.

pHash and dHash are imagehash's (``imagehash.phash`` / ``imagehash.dhash``, hash size 8),
computed for a whole batch at once: each image still gets Pillow's own grayscale conversion
and LANCZOS resize, then one scipy DCT over the stacked 32×32 thumbnails and one numpy
comparison give the bits. The result is bit-for-bit imagehash's (tests/test_throughput_hashes.py),
at a fraction of the per-image Python and scipy call overhead.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np
from PIL import Image

from clipaudit.curate.stages import Batch, Stage, register_stage
from clipaudit.curate.stages.borders import border_box
from clipaudit.curate.stages.copyhash import WEIGHTS as COPYHASH_WEIGHTS
from clipaudit.curate.stages.copyhash import copy_hashes
from clipaudit.data.decode import Decoded
from clipaudit.data.sample import Sample

THUMB = 32
HASH_SIZE = 8
# imagehash.phash: a DCT over a (HASH_SIZE * 4)² grayscale thumbnail.
PHASH_SIDE = HASH_SIZE * 4

CROP_SIDE = 0.9  # the crop the shifted check tries: 90% of each side
CROP_OFFSETS = 9  # offsets per axis, from one edge to the other (0.4 thumbnail px apart)
# The crop check first tries values alone on a 5 x 5 grid of 16 x 16 means (a twentieth of the
# fine check's cost) and runs the fine check only where that comes within COARSE_MARGIN of the
# value cut: on 296 calibration-part real 90% crops passing the fine check, the coarse best
# value was at most 0.069 below the fine one (99th percentile 0.042). On world pools, where
# sibling scenes of one template make thousands of crop candidates, 5 in 6 stop there.
COARSE_OFFSETS = 5
COARSE_MARGIN = 0.15
# The coarse pass also reads edges (16 x 16 means, without the outer ring) where its values
# pass, and the fine check runs only where they come within COARSE_EDGE_MARGIN of the edge
# cut. On 3,220 calibration-part real 90% crops (some also halved or brightened, JPEG q30-92)
# passing the fine check, the coarse edges were at least 0.528; a tester's scan of the four
# corner and centre 90% crops of all 7,067 shared photos found 3 of 34,741 confirmed crops
# at 0.26-0.35 (a barrel, a menorah), so the margin is 0.4 (gate 0.2 at the pack's 0.6). On
# a cluster of noisy gradients (a look-alike family, 4,950 pairs) the coarse edges reach
# 0.19 at the 99th percentile (0.25 at most), where values alone sent every pair on.
COARSE_EDGE_MARGIN = 0.4

# Hue histograms of a thumbnail's coloured pixels (ThumbCorrelation.hue_overlap). The
# correlation is centred and scaled per channel, so it sees shapes, not colours: one outline
# filled red, blue or green correlated at 1.0, and product shots photographed alike in ten
# colours were one duplicate group. A pixel's chroma is (R - G, (R + G) / 2 - B); below
# HUE_FLOOR (0-255 scale) it is grey and has no hue. Histograms of HUE_BINS bins, each
# pixel's chroma split between its two nearest bins; a thumbnail with fewer than
# HUE_MIN_SHARE of its pixels coloured is not judged (black, white and grey images: no hue
# to compare, whatever their copies).
HUE_BINS = 12
HUE_FLOOR = 12.0
HUE_MIN_SHARE = 0.02


class ThumbCorrelation:
    """Pearson correlation of 32x32 colour thumbnails (centred per colour channel), for any
    pairs of rows, computed exactly in integers.

    The thumbnails stay as bytes (3 KiB a row) with each row's channel sums and centred
    sum of squares; a pair's correlation needs one integer dot product of its two rows, done
    a chunk of pairs at a time. A float copy of every thumbnail (12 KiB a row) would cost
    more memory than the signals themselves on large runs. A missing or malformed thumbnail
    correlates with nothing (-inf); a flat one (no variance) correlates 0 with everything.
    """

    PIXELS = THUMB * THUMB
    CLIP_LOW, CLIP_HIGH = 5, 250
    # Pairs whose plain correlation lies in [UNCLIP_FROM, 1) are also measured unclipped
    # (a pair far below is not a brightened copy: x1.3 on real photos keeps >= 0.9 plain);
    # at least UNCLIPPED_MIN of the values must remain.
    UNCLIP_FROM = 0.8
    UNCLIPPED_MIN = 0.25
    CLASH_MAX = 0.01  # share of values clipped on one side and across the middle on the other

    # Edges (each pixel minus its 3x3 mean, 0-255) spread less than this in either thumbnail
    # leave a pair to its values: nothing to compare (see edge_corr).
    MIN_EDGE_STD = 1.5

    # Up to this many rows, the mirrored thumbnails are made once (fast); above, a chunk at
    # a time, so a large check does not hold a second copy of every thumbnail.
    MIRROR_COPY_MAX = 20_000
    # Up to this many rows, every row's edges are filtered once (6 KiB a row: 48 MiB at
    # most, twice that with mirrors; decide's thumbnail store holds 8,192 rows at a time):
    # in a cluster of look-alike images each row is a candidate of hundreds of others.
    EDGE_CACHE_MAX = 8_192

    def __init__(
        self,
        values: Sequence[bytes | None] | tuple[np.ndarray, np.ndarray],
        chunk: int = 1024,
    ) -> None:
        self.px, self.valid = values if isinstance(values, tuple) else thumb_array(values)
        self.chunk = chunk
        self._mirrored: np.ndarray | None = None
        self._edges: tuple[np.ndarray, ...] | None = None
        self._edges_mirrored: np.ndarray | None = None
        self.sums, self.var = self.moments(self.px, chunk)

    @classmethod
    def moments(cls, px: np.ndarray, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
        """Each row's channel sums and PIXELS * centred sum of squares (exact integers)."""
        m = len(px)
        sums = np.zeros((m, 3), np.int64)
        var = np.zeros(m, np.int64)
        for s in range(0, m, chunk):
            x = px[s : s + chunk]
            part = x.reshape(len(x), cls.PIXELS, 3).sum(1, dtype=np.int64)
            sums[s : s + chunk] = part
            var[s : s + chunk] = cls.PIXELS * cls._dot(x, x) - (part * part).sum(1)
        return sums, var

    @classmethod
    def from_parts(
        cls, px: np.ndarray, valid: np.ndarray, sums: np.ndarray, var: np.ndarray
    ) -> ThumbCorrelation:
        """An instance over rows whose moments are already known (no second pass)."""
        self = cls.__new__(cls)
        self.px, self.valid, self.sums, self.var = px, valid, sums, var
        self.chunk = 1024
        self._mirrored = None
        self._edges = None
        self._edges_mirrored = None
        return self

    def _mirror_rows(self, rows: np.ndarray) -> np.ndarray:
        if len(self.px) <= self.MIRROR_COPY_MAX:
            return self.mirrored[rows]
        flip = self.px[rows].reshape(len(rows), THUMB, THUMB, 3)[:, :, ::-1]
        return np.ascontiguousarray(flip).reshape(len(rows), -1)

    @property
    def mirrored(self) -> np.ndarray:
        """Every thumbnail mirrored left-right, made once (gathering mirrored rows chunk by
        chunk through a negative stride cost twice the correlation itself)."""
        if self._mirrored is None:
            m = len(self.px)
            flip = self.px.reshape(m, THUMB, THUMB, 3)[:, :, ::-1]
            self._mirrored = np.ascontiguousarray(flip).reshape(m, -1)
        return self._mirrored

    @staticmethod
    def _dot(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Row-wise dot products of two uint8 matrices, exact: each product of two bytes
        fits uint16 (<= 65,025), summed in int64 (2.5x faster than int32 products)."""
        if x.dtype == np.uint8:
            return (x.astype(np.uint16) * y).sum(1, dtype=np.int64)
        # int16 edges (_edges9): |product| <= 2,295^2, summed exactly in int64.
        return np.einsum("ij,ij->i", x, y, dtype=np.int64)

    def __call__(
        self,
        a: np.ndarray,
        b: np.ndarray,
        mirror_b: bool = False,
        unclip: np.ndarray | None = None,
    ) -> np.ndarray:
        """Correlation of rows ``a[k]`` and ``b[k]`` for every k (``mirror_b``: against the
        left-right mirror of ``b[k]``; sums and variance do not change under a mirror).
        ``unclip[k]``: pair k may also count its correlation over unclipped values (its
        hashes agree, as a brightened copy's do; None: every pair may)."""
        return self.with_rows_of(self, a, b, mirror_b, unclip)

    def with_rows_of(
        self,
        other: ThumbCorrelation,
        a: np.ndarray,
        b: np.ndarray,
        mirror_b: bool = False,
        unclip: np.ndarray | None = None,
    ) -> np.ndarray:
        """Correlation of this object's row ``a[k]`` with ``other``'s row ``b[k]``."""
        out = np.full(len(a), -np.inf)
        for s in range(0, len(a), self.chunk):
            ia, ib = a[s : s + self.chunk], b[s : s + self.chunk]
            pb = other._mirror_rows(ib) if mirror_b else other.px[ib]
            dot = self._dot(self.px[ia], pb)
            cov = self.PIXELS * dot - (self.sums[ia] * other.sums[ib]).sum(1)
            den = np.sqrt(self.var[ia].astype(np.float64) * other.var[ib])
            corr = np.divide(cov, den, out=np.zeros(len(ia)), where=den > 0)
            may = (corr >= self.UNCLIP_FROM) & (corr < 1.0)
            if unclip is not None:
                may &= unclip[s : s + self.chunk]
            redo = np.flatnonzero(may)
            if len(redo):
                pa = self.px[ia[redo]]
                corr[redo] = np.maximum(corr[redo], self.unclipped(pa, pb[redo]))
            out[s : s + self.chunk] = np.where(self.valid[ia] & other.valid[ib], corr, -np.inf)
        return out

    def hue_overlap(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """How much the hues of rows ``a[k]`` and ``b[k]`` agree: the intersection of their
        chroma-weighted hue histograms (1: the same colours, 0: none in common; see
        HUE_BINS). NaN where either has too few coloured pixels to judge. Mirror images and
        black or white borders leave it as it is."""
        rows, inv = np.unique(np.concatenate([a, b]), return_inverse=True)
        # A chunk of rows at a time: the histograms' float temporaries are ~80 KB a row.
        h = np.zeros((len(rows), HUE_BINS))
        for s in range(0, len(rows), self.chunk):
            h[s : s + self.chunk] = hue_histograms(self.px[rows[s : s + self.chunk]])
        ha, hb = h[inv[: len(a)]], h[inv[len(a) :]]
        return np.minimum(ha, hb).sum(axis=1)

    def edge_corr(
        self, a: np.ndarray, b: np.ndarray, mirror_b: bool = False, chunk: int = 2048
    ) -> np.ndarray:
        """Correlation of the edges (each pixel minus its 3x3 mean, centred per channel) of
        row ``a[k]`` and row ``b[k]`` (its left-right mirror with ``mirror_b``), unshifted.
        +inf where either thumbnail has too little detail to judge (edge spread below
        MIN_EDGE_STD: a smooth gradient's edges are its JPEG noise), -inf where either is
        missing.

        Values alone pass different garments laid on one cloth (a black T-shirt and a navy
        polo on one carpet: 0.954; two striped shirts on one red sheet: 0.950), whose
        silhouettes fill the 32 x 32 thumbnails alike; their edges correlate at 0.46. Resized,
        re-encoded and brightened copies of held-out real photos keep >= 0.92.

        Each distinct row of a chunk is filtered once, not once per pair: a cluster of
        look-alike images (product shots on white) makes every member a candidate of every
        other, and filtering each pair's two thumbnails took most of a decide's time."""
        out = np.full(len(a), -np.inf)
        for s in range(0, len(a), chunk):
            ia, ib = a[s : s + chunk], b[s : s + chunk]
            ea, sa, va, spread_a = self._edge_rows(ia, False)
            eb, sb, vb, spread_b = self._edge_rows(ib, mirror_b)
            # Centred per channel, in integers as ``__call__``: PIXELS * sum(x y) - sums.
            cov = self.PIXELS * self._dot(ea, eb) - (sa * sb).sum(1)
            den = np.sqrt(va.astype(np.float64) * vb)
            corr = np.divide(cov, den, out=np.zeros(len(ia)), where=den > 0)
            corr = np.where(np.minimum(spread_a, spread_b) < self.MIN_EDGE_STD, np.inf, corr)
            out[s : s + chunk] = np.where(self.valid[ia] & self.valid[ib], corr, -np.inf)
        return out

    def _edge_rows(self, rows: np.ndarray, mirror: bool) -> tuple[np.ndarray, ...]:
        """``_edges9`` of these rows (of their mirror images with ``mirror``): from the
        cache of every row's edges when the rows are few enough, else each distinct row
        filtered once. The 3x3 filter is symmetric, so a mirror's edges are the mirrored
        edges, exactly (integers); sums, variance and spread do not change."""
        m = len(self.px)
        if m <= self.EDGE_CACHE_MAX:
            if self._edges is None:
                self._edges = _edges9(self.px)
            edges, sums, var, spread = self._edges
            if mirror:
                if self._edges_mirrored is None:
                    flip = edges.reshape(m, THUMB, THUMB, 3)[:, :, ::-1]
                    self._edges_mirrored = np.ascontiguousarray(flip).reshape(m, -1)
                edges = self._edges_mirrored
            return edges[rows], sums[rows], var[rows], spread[rows]
        unique, at = np.unique(rows, return_inverse=True)
        px = self._mirror_rows(unique) if mirror else self.px[unique]
        return tuple(part[at] for part in _edges9(px))

    def shifted(
        self,
        a: np.ndarray,
        b: np.ndarray,
        chunk: int = 16,
        offsets: int = CROP_OFFSETS,
        with_edges: bool = True,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(values, edges): the best correlation of row ``a[k]`` with row ``b[k]`` when one
        of them is a crop of the other, of the plain values and of the edges (each pixel
        minus its 3x3 mean): each thumbnail cropped to ``CROP_SIDE`` of each side at 9 x 9
        offsets (bilinear, resized back to 32x32) against the other whole, both ways;
        centred per channel as in ``__call__``.

        Both are needed. Values alone: two different white shirts on one red cloth reach
        0.96. Edges alone: sibling scenes of one world template reach 0.73-0.85. On 300
        calibration-part real photos, 90% crops at this grid: values >= 0.94 for 98.7%,
        edges >= 0.72 for 99%. For crop candidates only: 81 resamplings a pair (5 x 5
        offsets, 0.8 thumbnail px apart, lost a fifth of held-out real crops on edges)."""
        values, edges, _ = self._shifted(a, b, chunk, offsets, with_edges)
        return values, edges

    def _shifted(
        self,
        a: np.ndarray,
        b: np.ndarray,
        chunk: int,
        offsets: int,
        with_edges: bool,
        near: np.ndarray | None = None,
        half: bool = False,
        edge_gate: float | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``shifted`` plus where the best values lie: (values, edges, where), ``where[k, d]``
        the (row, column) offset index of direction d (0: a cropped, 1: b cropped). ``near``:
        search only the 3 x 3 window of the fine grid around ``near[k, d]`` (fine indices).
        ``half``: on 16 x 16 means of the thumbnails (a fifth of the cost); its edges leave
        out the outer ring of pixels, where a replicated border gives any two smooth ramps
        the same edges. ``edge_gate``: edges only for the directions whose best value
        reaches it (-inf elsewhere)."""
        n = len(a)
        values, edges = np.full(n, -np.inf), np.full(n, -np.inf)
        where = np.zeros((n, 2, 2), np.int64)
        fine = _crop_operators(CROP_OFFSETS)
        step = np.arange(-1, 2)
        for s in range(0, n, chunk):
            ia, ib = a[s : s + chunk], b[s : s + chunk]
            k = len(ia)
            # Channel-first (k, 3, 32, 32), so the resampling is batched matrix products.
            x = self.px[ia].reshape(k, THUMB, THUMB, 3).transpose(0, 3, 1, 2).astype(np.float32)
            y = self.px[ib].reshape(k, THUMB, THUMB, 3).transpose(0, 3, 1, 2).astype(np.float32)
            if half:
                x, y = _half(x), _half(y)
            best_v, best_e = np.full(k, -np.inf), np.full(k, -np.inf)
            for d, (src, whole) in enumerate(((x, y), (y, x))):
                if near is None:  # the whole grid, one set of operators for every pair
                    ops = _crop_operators(offsets, x.shape[-1])[None]
                    idx = np.broadcast_to(np.arange(offsets), (k, 2, offsets))
                    ops_r = ops_c = ops
                else:  # per pair, the fine operators around its own offset
                    idx = np.clip(near[s : s + chunk, d, :, None] + step, 0, CROP_OFFSETS - 1)
                    ops_r, ops_c = fine[idx[:, 0]], fine[idx[:, 1]]
                crops = _resample(src, ops_r, ops_c)  # (k, 3, P, Q, 32, 32)
                corr = _corr_grid(crops, whole)  # (k, P * Q)
                top = corr.argmax(axis=1)
                p, q = np.divmod(top, crops.shape[3])
                where[s : s + k, d, 0] = idx[np.arange(k), 0, p]
                where[s : s + k, d, 1] = idx[np.arange(k), 1, q]
                value = corr[np.arange(k), top]
                best_v = np.maximum(best_v, value)
                if with_edges:
                    sel = np.arange(k) if edge_gate is None else np.flatnonzero(value >= edge_gate)
                    if len(sel):
                        e = _grid_edges(crops[sel], whole[sel], ring=1 if half else 0)
                        best_e[sel] = np.maximum(best_e[sel], e)
            ok = self.valid[ia] & self.valid[ib]
            values[s : s + chunk] = np.where(ok, best_v, -np.inf)
            edges[s : s + chunk] = np.where(ok, best_e, -np.inf)
        return values, edges, where

    def crop_confirmed(
        self, a: np.ndarray, b: np.ndarray, min_values: float, min_edges: float
    ) -> tuple[np.ndarray, int]:
        """(ok, fine): whether row ``a[k]`` and row ``b[k]`` pass the crop check at these
        cuts (values >= min_values and edges >= min_edges), and how many pairs needed the
        fine pass. Coarse to fine: values on the 5 x 5 grid of 16 x 16 means, and the edges
        of the offsets whose values come within COARSE_MARGIN of the cut; where both come
        within their margins (COARSE_EDGE_MARGIN for edges), values and edges on the 3 x 3
        window of the 9 x 9 grid around each direction's coarse best (9 resamplings a
        direction, not 81)."""
        ok = np.zeros(len(a), np.bool_)
        gate = min_values - COARSE_MARGIN
        coarse, coarse_edges, where = self._shifted(
            a, b, 16, COARSE_OFFSETS, True, half=True, edge_gate=gate
        )
        go = np.flatnonzero((coarse >= gate) & (coarse_edges >= min_edges - COARSE_EDGE_MARGIN))
        if len(go):
            scale = (CROP_OFFSETS - 1) // (COARSE_OFFSETS - 1)
            values, edges, _ = self._shifted(
                a[go], b[go], 16, CROP_OFFSETS, True, near=where[go] * scale
            )
            ok[go] = (values >= min_values) & (edges >= min_edges)
        return ok, len(go)

    @classmethod
    def unclipped(cls, x: np.ndarray, y: np.ndarray, chunk: int = 256) -> np.ndarray:
        """Row-wise correlation of two uint8 thumbnail matrices (centred per channel) over
        the values clipped in neither row; -inf where fewer than UNCLIPPED_MIN remain."""
        out = np.full(len(x), -np.inf)
        for s in range(0, len(x), chunk):
            a = x[s : s + chunk].reshape(-1, cls.PIXELS, 3)
            b = y[s : s + chunk].reshape(-1, cls.PIXELS, 3)
            keep = (
                (a > cls.CLIP_LOW) & (a < cls.CLIP_HIGH) & (b > cls.CLIP_LOW) & (b < cls.CLIP_HIGH)
            )
            af = np.where(keep, a, 0).astype(np.float64)
            bf = np.where(keep, b, 0).astype(np.float64)
            n = np.maximum(keep.sum(1), 1)
            sa, sb = af.sum(1), bf.sum(1)
            cov = ((af * bf).sum(1) - sa * sb / n).sum(1)
            va = ((af * af).sum(1) - sa * sa / n).sum(1)
            vb = ((bf * bf).sum(1) - sb * sb / n).sum(1)
            den = np.sqrt(np.maximum(va * vb, 0.0))
            # Clipping explains a difference only where the other value lies on the same
            # side: a saturated highlight against a dark pixel is a different image.
            mid = 128
            clash = (
                ((a >= cls.CLIP_HIGH) & (b < mid))
                | ((b >= cls.CLIP_HIGH) & (a < mid))
                | ((a <= cls.CLIP_LOW) & (b > mid))
                | ((b <= cls.CLIP_LOW) & (a > mid))
            ).sum((1, 2))
            values = 3 * cls.PIXELS
            ok = (keep.sum((1, 2)) >= cls.UNCLIPPED_MIN * values) & (den > 0)
            ok &= clash <= cls.CLASH_MAX * values
            part = np.full(len(a), -np.inf)
            part[ok] = cov[ok] / den[ok]
            out[s : s + chunk] = part
        return out


@lru_cache(maxsize=4)
def _crop_operators(count: int = CROP_OFFSETS, n: int = THUMB) -> np.ndarray:
    """(count, n, n) bilinear operators: row i of operator p samples the input at the
    centre of output pixel i of a CROP_SIDE window starting at offset p."""
    ops = np.zeros((count, n, n), np.float32)
    for p, off in enumerate(np.linspace(0, n * (1 - CROP_SIDE), count)):
        for i in range(n):
            x = min(max(off + (i + 0.5) * CROP_SIDE - 0.5, 0.0), n - 1.0)
            x0 = int(np.floor(x))
            f = x - x0
            ops[p, i, x0] += 1 - f
            ops[p, i, min(x0 + 1, n - 1)] += f
    return ops


@lru_cache(maxsize=2)
def _box_operator(n: int = THUMB) -> np.ndarray:
    """(n, n): row i averages rows i-1, i, i+1 (edges replicated), so ``B @ X @ B.T`` is
    the 3x3 mean of every pixel of X."""
    box = np.zeros((n, n), np.float32)
    for i in range(n):
        for j in (i - 1, i, i + 1):
            box[i, min(max(j, 0), n - 1)] += 1 / 3
    return box


def _edges9(px: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Nine times the edges of uint8 thumbnail rows (9 x each pixel minus the sum of its 3x3
    neighbourhood, edges replicated: ``_box_operator``'s filter, exact in int16) with each
    row's channel sums, PIXELS * centred sum of squares (as ``ThumbCorrelation.moments``) and
    the spread (standard deviation) of the edges themselves."""
    m = len(px)
    x = px.reshape(m, THUMB, THUMB, 3).astype(np.int16)
    # The 3x3 sum is separable: each pixel plus its upper and lower neighbour (the edge
    # row counted again in place of the missing one), then the same across columns.
    rows = x.copy()
    rows[:, 1:] += x[:, :-1]
    rows[:, :-1] += x[:, 1:]
    rows[:, 0] += x[:, 0]
    rows[:, -1] += x[:, -1]
    near = rows.copy()
    near[:, :, 1:] += rows[:, :, :-1]
    near[:, :, :-1] += rows[:, :, 1:]
    near[:, :, 0] += rows[:, :, 0]
    near[:, :, -1] += rows[:, :, -1]
    e = (9 * x - near).reshape(m, -1)
    sums = np.einsum("mpc->mc", e.reshape(m, -1, 3), dtype=np.int64)
    sq = ThumbCorrelation._dot(e, e)
    var = ThumbCorrelation.PIXELS * sq - (sums * sums).sum(1)
    n = e.shape[1]
    total = sums.sum(1)
    spread = np.sqrt(np.maximum(sq / n - (total / n) ** 2, 0.0)) / 9
    return e, sums, var, spread


def _half(x: np.ndarray) -> np.ndarray:
    """(k, 3, 32, 32) -> (k, 3, 16, 16) means of 2 x 2 pixels. Four strided adds: numpy's
    mean over the axes (3, 5) of the 6-d view took 13 times as long, and the coarse crop pass
    calls this on every candidate pair (half its time on a world pool)."""
    v = x.reshape(len(x), x.shape[1], THUMB // 2, 2, THUMB // 2, 2)
    total = v[:, :, :, 0, :, 0] + v[:, :, :, 0, :, 1] + v[:, :, :, 1, :, 0] + v[:, :, :, 1, :, 1]
    return total * np.float32(0.25)


def _resample(src: np.ndarray, ops_r: np.ndarray, ops_c: np.ndarray) -> np.ndarray:
    """Every crop ``ops_r[p] @ src @ ops_c[q].T`` of each image: src (k, 3, 32, 32), operators
    (1 or k, P, 32, 32) and (1 or k, Q, 32, 32) -> (k, 3, P, Q, 32, 32). The operators are
    stacked into one matrix a side, so each side is one large product rather than thousands
    of 32 x 32 ones (numpy loops over small batched matrices)."""
    k = len(src)
    n, p, q = src.shape[-1], ops_r.shape[1], ops_c.shape[1]
    stack_r = ops_r.reshape(len(ops_r), 1, p * n, n)  # (1|k, 1, P*32, 32)
    rows = np.matmul(stack_r, src)  # (k, 3, P*32, 32)
    stack_c = ops_c.transpose(0, 3, 1, 2).reshape(len(ops_c), n, q * n)  # (1|k, 32, Q*32)
    if len(stack_c) == 1:
        out = (rows.reshape(-1, n) @ stack_c[0]).reshape(k, 3, p, n, q, n)
    else:
        out = np.matmul(rows.reshape(k, 3 * p * n, n), stack_c).reshape(k, 3, p, n, q, n)
    return np.ascontiguousarray(out.transpose(0, 1, 2, 4, 3, 5))


def _grid_edges(crops: np.ndarray, whole: np.ndarray, ring: int) -> np.ndarray:
    """The best edge correlation (each pixel minus its 3x3 mean) of any crop
    ``crops[k, :, p, q]`` with ``whole[k]``, over the pixels at least ``ring`` from the border.
    The crops are filtered in place."""
    box = _box_operator(crops.shape[-1])
    crops -= np.matmul(np.matmul(box, crops), box.T)
    ref = whole - np.matmul(np.matmul(box, whole), box.T)
    if ring:
        inner = (..., slice(ring, -ring), slice(ring, -ring))
        crops, ref = np.ascontiguousarray(crops[inner]), np.ascontiguousarray(ref[inner])
    return _corr_grid(crops, ref).max(axis=1)


def _corr_grid(crops: np.ndarray, whole: np.ndarray) -> np.ndarray:
    """The correlation (centred per channel) of every crop ``crops[k, :, p, q]`` with
    ``whole[k]``: (k, 3, P, Q, 32, 32) and (k, 3, 32, 32) -> (k, P * Q). The whole is centred, so
    a crop's own mean drops out of the product and only its variance needs it."""
    k, c, p, q = crops.shape[:4]
    px = crops.shape[-1] * crops.shape[-2]
    flat = crops.reshape(k, c, p * q, px)
    ref = whole.reshape(k, c, px)
    ref = ref - ref.mean(axis=2, keepdims=True)
    num = np.matmul(flat, ref[:, :, :, None])[..., 0].sum(1)  # (k, P*P)
    s1 = flat.sum(axis=3)
    var = (np.einsum("kcpi,kcpi->kcp", flat, flat) - s1 * s1 / flat.shape[3]).sum(1)
    den = np.sqrt(np.maximum(var, 0) * (ref * ref).sum(axis=(1, 2))[:, None])
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0).astype(np.float64)


def hue_histograms(px: np.ndarray) -> np.ndarray:
    """(rows, HUE_BINS) chroma-weighted hue histograms of (rows, THUMB_BYTES) RGB
    thumbnails, each summing to 1; NaN rows where under HUE_MIN_SHARE of the pixels have a
    hue (chroma at least HUE_FLOOR)."""
    n = len(px)
    x = px.reshape(n, THUMB * THUMB, 3).astype(np.float32)
    c1 = x[..., 0] - x[..., 1]
    c2 = (x[..., 0] + x[..., 1]) / 2 - x[..., 2]
    chroma = np.hypot(c1, c2)
    coloured = chroma >= HUE_FLOOR
    pos = (np.arctan2(c2, c1) % (2 * np.pi)) * (HUE_BINS / (2 * np.pi))
    lo = np.floor(pos)
    frac = pos - lo
    weight = np.where(coloured, chroma, 0.0)
    base = np.arange(n)[:, None] * HUE_BINS
    first = (base + lo.astype(np.int64) % HUE_BINS).ravel()
    second = (base + (lo.astype(np.int64) + 1) % HUE_BINS).ravel()
    hist = np.bincount(first, (weight * (1 - frac)).ravel(), minlength=n * HUE_BINS)
    hist += np.bincount(second, (weight * frac).ravel(), minlength=n * HUE_BINS)
    hist = hist.reshape(n, HUE_BINS)
    total = hist.sum(axis=1, keepdims=True)
    judged = coloured.mean(axis=1) >= HUE_MIN_SHARE
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(judged[:, None], hist / total, np.nan)


def thumb_array(values: Sequence[bytes | None]) -> tuple[np.ndarray, np.ndarray]:
    """Thumbnails as one uint8 matrix (a row each) and which rows hold a well-formed one."""
    size = THUMB * THUMB * 3
    px = np.zeros((len(values), size), np.uint8)
    valid = np.zeros(len(values), np.bool_)
    for i, v in enumerate(values):
        if v is not None and len(v) == size:
            px[i] = np.frombuffer(v, np.uint8)
            valid[i] = True
    return px, valid


def bits_to_int64(bits: np.ndarray) -> int:
    value = 0
    for b in bits.flatten():
        value = (value << 1) | int(bool(b))
    return value - (1 << 64) if value >= 1 << 63 else value


def rows_to_int64(bits: np.ndarray) -> list[int]:
    """Each row of 64 booleans (first = most significant bit) as a signed int64."""
    packed = np.packbits(bits.reshape(len(bits), 64).astype(bool), axis=1, bitorder="big")
    return [int(v) for v in packed.view(">u8").ravel().astype(np.uint64).view(np.int64)]


def as_uint64(values: Any) -> np.ndarray:
    return np.asarray(values, dtype=np.int64).view(np.uint64)


def perceptual_hashes(images: Sequence[Image.Image]) -> tuple[list[int], list[int]]:
    """(pHash, dHash) of each image as signed int64, equal to imagehash's bit for bit."""
    phash, dhash, _ = perceptual_hashes_mirrored(images)
    return phash, dhash


def perceptual_hashes_mirrored(
    images: Sequence[Image.Image],
) -> tuple[list[int], list[int], list[int]]:
    """(pHash, dHash, pHash of the left-right mirror image) of each image.

    The mirror's pHash comes from the mirrored 32x32 grayscale thumbnail (one more batched
    DCT, no second resize); Pillow's LANCZOS resize is symmetric, so it equals
    imagehash.phash of the flipped image (tests/test_throughput_hashes.py).
    """
    import scipy.fftpack

    if not images:
        return [], [], []
    lanczos = Image.Resampling.LANCZOS
    grays = [im.convert("L") for im in images]
    small = np.stack([np.asarray(g.resize((PHASH_SIDE, PHASH_SIDE), lanczos)) for g in grays])
    wide = np.stack([np.asarray(g.resize((HASH_SIZE + 1, HASH_SIZE), lanczos)) for g in grays])

    def phash_bits(thumbs: np.ndarray) -> list[int]:
        # The same 1-D transforms imagehash runs per image (rows, then columns), batched.
        dct = scipy.fftpack.dct(scipy.fftpack.dct(thumbs, axis=1), axis=2)
        low = dct[:, :HASH_SIZE, :HASH_SIZE].reshape(len(thumbs), -1)
        return rows_to_int64(low > np.median(low, axis=1, keepdims=True))

    dhash = wide[:, :, 1:] > wide[:, :, :-1]
    return phash_bits(small), rows_to_int64(dhash), phash_bits(small[:, :, ::-1])


def pixel_std(thumb: Image.Image) -> float:
    """Spread of the 32x32 box-filtered colour thumbnail: the root mean square distance of
    its pixels from their mean colour, per channel (0-255; a gray image's standard
    deviation). Near 0 for a blank, one-colour image (the box filter averages sensor and
    JPEG noise away); a small object in a colour of the background's brightness still
    counts, which a grayscale measure misses. Costs nothing beyond the thumbnail."""
    px = np.asarray(thumb, np.float32).reshape(-1, 3)
    return round(float(np.sqrt(px.var(axis=0).mean())), 3)


def pixel_hash(im: Image.Image, frames: Sequence[Image.Image] = ()) -> int:
    """First 8 bytes of the SHA-256 of the decoded pixels and the size, as a signed int64;
    of every sampled frame of a clip (``frames``): its middle frame alone made two different
    clips that share a black transition there exact duplicates."""
    digest = hashlib.sha256()
    for frame in frames if len(frames) > 1 else (im,):
        digest.update(frame.tobytes())
        digest.update(f"{frame.size}".encode())
    return int.from_bytes(digest.digest()[:8], "little", signed=True)


@register_stage("hashes")
class HashStage(Stage):
    columns = (
        "phash",
        "dhash",
        "pixel_hash",
        "thumb",
        "pixel_std",
        "phash_mirror",
        "phash_inner",
        "thumb_inner",
        "content_area",
        "chash",
        "content_aspect",
    )

    def prepare(self, sample: Sample, decoded: Decoded) -> tuple[Any, ...]:
        return self.prepare_batch([sample], [decoded])[0]

    def prepare_batch(self, samples: list[Sample], decoded: list[Decoded]) -> list[Any]:
        images = [d.image for d in decoded if d.image is not None]
        phash, dhash, mirror = perceptual_hashes_mirrored(images)
        # Inside a black or white border (letterbox, mat) an image is hashed and thumbnailed
        # again, so a framed copy meets its original; the full-image signals stay as they
        # are (a brightened copy of a photo on a white background trims differently).
        boxes = [border_box(im) for im in images]
        framed = [im.crop(b) for im, b in zip(images, boxes, strict=True) if b is not None]
        inner_phash = iter(perceptual_hashes_mirrored(framed)[0])
        # The crop-robust copy hash, of the content inside a border where there is one.
        content = [im if b is None else im.crop(b) for im, b in zip(images, boxes, strict=True)]
        chash = copy_hashes(content)
        out: list[Any] = []
        k = 0
        for d in decoded:
            im = d.image
            if im is None:
                out.append((None,) * len(self.columns))
                continue
            # A 32x32 colour thumbnail verifies hash candidates at decide time: perceptual
            # hashes of plain, similar scenes collide; their colour layouts do not.
            thumb = im.resize((THUMB, THUMB), Image.Resampling.BOX)
            box = boxes[k]
            inner = (
                (next(inner_phash), im.crop(box).resize((THUMB, THUMB), Image.Resampling.BOX))
                if box is not None
                else (None, None)
            )
            # A border adds pixels, not resolution: the keeper ranks a framed copy by the
            # area inside its border, so the unframed original is the one kept.
            area = None if box is None else (box[2] - box[0]) * (box[3] - box[1])
            # Width over height inside the border: the inner thumbnail is squeezed square, so
            # a tall and a wide shape on white trimmed to the same thumbnail (decide compares
            # these aspects for pairs checked inside borders, keeper.MAX_INNER_ASPECT).
            aspect = None if box is None else (box[2] - box[0]) / (box[3] - box[1])
            out.append(
                (
                    phash[k],
                    dhash[k],
                    pixel_hash(im, d.frames or ()),
                    thumb.tobytes(),
                    pixel_std(thumb),
                    mirror[k],
                    inner[0],
                    None if inner[1] is None else inner[1].tobytes(),
                    area,
                    chash[k],
                    aspect,
                )
            )
            k += 1
        return out

    def process(self, batch: Batch) -> dict[str, list[Any]]:
        rows = self.prepared_for(batch)
        return {c: [r[k] for r in rows] for k, c in enumerate(self.columns)}

    def provenance(self) -> dict[str, Any]:
        import imagehash

        return {
            "imagehash": getattr(imagehash, "__version__", "?"),
            "hash_size": HASH_SIZE,
            "phash": "imagehash.phash on the decoded RGB image",
            "dhash": "imagehash.dhash on the decoded RGB image",
            "phash_inner": "pHash and thumbnail inside black/white borders (stages/borders.py)",
            "chash": "learned copy hash for crops (stages/copyhash.py), NumPy",
            "chash_weights_sha256": _file_sha256(COPYHASH_WEIGHTS),
        }


@lru_cache(maxsize=4)
def _file_sha256(path: Any) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
