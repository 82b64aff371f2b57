from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from clipaudit.curate.decide.neardup import brute_pairs, choose_bands, near_pairs, popcount64


def _planted(n: int, radius: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    h = rng.integers(0, 2**64, n, dtype=np.uint64)
    src = rng.choice(n, 2 * (n // 20), replace=False)
    for a, b in zip(src[::2], src[1::2], strict=True):
        flips = rng.choice(64, int(rng.integers(0, radius + 3)), replace=False)
        mask = 0
        for f in flips:
            mask |= 1 << int(f)
        h[b] = h[a] ^ np.uint64(mask)
    return h


@pytest.mark.parametrize("radius", [0, 3, 8, 10, 14])
@pytest.mark.parametrize("n", [2, 3, 50, 1500])
def test_multi_index_search_equals_brute_force(n: int, radius: int) -> None:
    h = _planted(n, radius, seed=n + radius)
    i, j, d = near_pairs(h, radius)
    assert set(zip(i.tolist(), j.tolist(), strict=True)) == brute_pairs(h, radius)
    assert np.all(d <= radius) and np.all(i < j)


def test_popcount_and_band_choice() -> None:
    x = np.array([0, 1, 2**64 - 1, 0xF0F0], dtype=np.uint64)
    assert popcount64(x).tolist() == [0, 1, 64, 8]
    assert choose_bands(10**6, 8) >= 3  # wide bands for large N
    assert choose_bands(100, 8) >= 1


def test_duplicated_hashes_all_pair_up() -> None:
    h = np.array([5, 5, 5, 7], dtype=np.uint64)
    i, j, _ = near_pairs(h, 0)
    assert set(zip(i.tolist(), j.tolist(), strict=True)) == {(0, 1), (0, 2), (1, 2)}


def _sig(phash: list[int], dhash: list[int], thumbs: list[bytes]) -> dict[str, np.ndarray]:
    as_obj = lambda xs: np.array(xs, dtype=object)  # noqa: E731
    return {"phash": as_obj(phash), "dhash": as_obj(dhash), "thumb": as_obj(thumbs)}


def test_match_any_finds_a_copy_that_only_one_hash_sees() -> None:
    """pHash flips many bits on smooth gradients where dHash does not: with ``match: any``
    the dHash neighbour is a candidate, and the thumbnail check still guards precision."""
    from clipaudit.curate.decide import near_duplicate_pairs
    from clipaudit.rules.schema import Dedup

    rng = np.random.default_rng(0)
    thumb = rng.integers(0, 255, 32 * 32 * 3, dtype=np.uint8).tobytes()
    other = rng.integers(0, 255, 32 * 32 * 3, dtype=np.uint8).tobytes()
    far = (1 << 20) - 1  # 20 bits apart: beyond radius 12
    sig = _sig([0, far, 0], [5, 5, 5], [thumb, thumb, other])
    rows = np.arange(3)
    both_all = Dedup(hashes=["phash", "dhash"], match="all")
    both_any = Dedup(hashes=["phash", "dhash"], match="any")
    assert near_duplicate_pairs(sig, rows, both_all) == []
    # Row 2 is within radius of both on both hashes, but its thumbnail differs: refused.
    assert near_duplicate_pairs(sig, rows, both_any) == [(0, 1)]
    assert near_duplicate_pairs(sig, rows, Dedup(hashes=["phash"])) == []
    no_thumbs = Dedup(hashes=["phash", "dhash"], match="any", min_thumb_corr=None)
    assert near_duplicate_pairs(sig, rows, no_thumbs) == [(0, 1), (0, 2), (1, 2)]


def test_match_and_hashes_are_validated() -> None:
    from pydantic import ValidationError

    from clipaudit.rules.schema import Dedup

    with pytest.raises(ValidationError):
        Dedup(match="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        Dedup(hashes=[])


def test_thumb_correlation_is_pearson_per_channel_centred() -> None:
    from clipaudit.curate.stages.hashes import ThumbCorrelation

    rng = np.random.default_rng(3)
    base = rng.integers(0, 256, (1024, 3)).astype(np.float64)
    rows = [
        base,
        np.clip(base * 0.8 + 20, 0, 255).round(),  # affine per channel: correlation ~1
        rng.integers(0, 256, (1024, 3)).astype(np.float64),  # unrelated: ~0
        255 - base,  # inverted: -1
        np.full((1024, 3), 128.0),  # flat: 0 with everything
    ]
    values: list[bytes | None] = [r.astype(np.uint8).tobytes() for r in rows]
    values += [None, b"short"]
    corr = ThumbCorrelation(values, chunk=2)  # chunks smaller than the pair list
    a = np.array([0, 0, 0, 0, 4, 0, 6])
    b = np.array([1, 2, 3, 4, 4, 5, 0])
    got = corr(a, b)

    def pearson(x: np.ndarray, y: np.ndarray) -> float:
        xc, yc = (x - x.mean(0)).ravel(), (y - y.mean(0)).ravel()
        return float(xc @ yc / np.sqrt((xc @ xc) * (yc @ yc)))

    for k in range(3):
        assert got[k] == pytest.approx(pearson(rows[a[k]], rows[b[k]]), abs=1e-12)
    assert got[0] > 0.999 and abs(got[1]) < 0.1 and got[2] == pytest.approx(-1.0)
    assert got[3] == 0.0 and got[4] == 0.0  # flat
    assert got[5] == -np.inf and got[6] == -np.inf  # missing, malformed


def test_mirror_pairs_are_found_and_confirmed_on_the_mirrored_thumbnail() -> None:
    from clipaudit.curate.decide import near_duplicate_pairs
    from clipaudit.rules.schema import Dedup

    rng = np.random.default_rng(5)
    t = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
    flipped = t[:, ::-1].copy()
    other = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
    p, m = 0, (1 << 40) - 1  # a pHash and its mirror pHash, 40 bits apart
    sig = {
        "phash": np.array([p, m, m ^ 1], dtype=object),
        "phash_mirror": np.array([m, p, p], dtype=object),
        "thumb": np.array([t.tobytes(), flipped.tobytes(), other.tobytes()], dtype=object),
    }
    rows = np.arange(3)
    # Row 2's pHash is a bit from row 0's mirror too, but its thumbnail is another image.
    assert near_duplicate_pairs(sig, rows, Dedup(hashes=["phash"], mirrors=True)) == [(0, 1)]
    assert near_duplicate_pairs(sig, rows, Dedup(hashes=["phash"], mirrors=False)) == []
    # Row 1 and row 2 share a pHash within one bit: a plain candidate, refused by thumbnails.
    loose = Dedup(hashes=["phash"], mirrors=True, min_thumb_corr=None)
    assert near_duplicate_pairs(sig, rows, loose) == [(0, 1), (0, 2), (1, 2)]


def test_mirror_thumb_correlation() -> None:
    from clipaudit.curate.stages.hashes import ThumbCorrelation

    rng = np.random.default_rng(6)
    t = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
    corr = ThumbCorrelation([t.tobytes(), t[:, ::-1].tobytes()])
    a, b = np.array([0]), np.array([1])
    assert corr(a, b, mirror_b=True)[0] == pytest.approx(1.0)
    assert corr(a, b)[0] < 0.2


@pytest.mark.parametrize("radius", [0, 5, 12])
def test_split_search_keeps_exactly_the_pairs_across_the_split(radius: int) -> None:
    rng = np.random.default_rng(radius)
    base = rng.integers(0, 2**63, 300, dtype=np.uint64)
    flips = np.array([sum(1 << int(b) for b in rng.choice(64, 3, replace=False)) for _ in base])
    h = np.concatenate([base, base ^ flips.astype(np.uint64)])  # each row near its partner
    a, b, _ = near_pairs(h, radius, split=300)
    want = {(i, j) for i, j in brute_pairs(h, radius) if i < 300 <= j}
    assert set(zip(a.tolist(), b.tolist(), strict=True)) == want
    assert (len(want) > 0) == (radius >= 3)


def _smooth_hashes(n: int, seed: int) -> np.ndarray:
    """dHash-like codes with strongly correlated neighbouring bits (runs of equal gradient
    signs, as smooth images give): contiguous bands of them are far from uniform."""
    rng = np.random.default_rng(seed)
    runs = rng.random((n, 64)) < 0.12  # a sign change starts a new run
    bits = (np.cumsum(runs, axis=1) + rng.integers(0, 2, (n, 1))) % 2
    return (bits.astype(np.uint64) << np.arange(64, dtype=np.uint64)).sum(1, dtype=np.uint64)


def test_bit_layout_is_a_permutation_that_keeps_distances_and_empties_buckets() -> None:
    from clipaudit.curate.decide.neardup import BandMass, _bands, bit_layout, permute_bits

    h = _smooth_hashes(60_000, 1)
    order = bit_layout(h[:20_000], 4)
    assert sorted(order.tolist()) == list(range(64))
    p = permute_bits(h, order)
    rng = np.random.default_rng(2)
    i, j = rng.integers(0, len(h), 5_000), rng.integers(0, len(h), 5_000)
    assert np.array_equal(popcount64(h[i] ^ h[j]), popcount64(p[i] ^ p[j]))
    contiguous = []
    for shift, w in _bands(4):
        keys = ((h >> np.uint64(shift)) & np.uint64((1 << w) - 1)).astype(np.int64)
        c = np.bincount(keys, minlength=1 << w).astype(np.float64)
        contiguous.append(float((c * c).sum()))
    # The layout's bands are at least 5x emptier than contiguous ones on correlated bits.
    assert sum(BandMass(h)(4)) * 5 < sum(contiguous)


@pytest.mark.parametrize("radius", [4, 9])
def test_large_search_with_the_data_aware_layout_matches_the_contiguous_one(
    radius: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Above MEASURE_MIN the search permutes bits; the pairs must not change (the contiguous
    search is checked against brute force above), and each pair comes exactly once."""
    from clipaudit.curate.decide import neardup

    h = _smooth_hashes(60_000, 3)
    h[30_000:30_200] = h[:200] ^ np.uint64(0b1011)  # planted near copies
    chunks = list(neardup.iter_near_pairs(h, radius, chunk_pairs=50_000))
    codes = np.concatenate([i * len(h) + j for i, j in chunks])
    assert len(codes) == len(np.unique(codes))  # exactly once across bands and probes
    got = near_pairs(h, radius)
    monkeypatch.setattr(neardup, "MEASURE_MIN", 10**9)
    want = near_pairs(h, radius)
    assert all(np.array_equal(x, y) for x, y in zip(got, want, strict=True))
    assert np.array_equal(np.sort(codes), got[0] * len(h) + got[1])
    assert {(k, 30_000 + k) for k in range(200)} <= set(zip(*got[:2], strict=False))


def test_clipped_highlights_do_not_hide_a_brightened_copy() -> None:
    """Brightening saturates highlights; the correlation over values clipped in neither
    thumbnail counts for pairs allowed to use it, and never for a clash (a saturated
    value against a dark one)."""
    import sklearn
    from PIL import Image, ImageEnhance

    from clipaudit.curate.stages.hashes import ThumbCorrelation

    path = Path(sklearn.__file__).parent / "datasets" / "images" / "china.jpg"
    im = Image.open(path).convert("RGB")
    bright = ImageEnhance.Brightness(im).enhance(2.0)  # measured: 0.941 plain, 0.954 unclipped
    thumbs = [x.resize((32, 32), Image.Resampling.BOX).tobytes() for x in (im, bright)]
    corr = ThumbCorrelation(thumbs)
    a, b = np.array([0]), np.array([1])
    plain = corr(a, b, unclip=np.zeros(1, np.bool_))[0]
    lifted = corr(a, b, unclip=np.ones(1, np.bool_))[0]
    assert 0.8 <= plain < 0.95 < lifted <= 1.0
    # Half of the values saturated where the other image is dark: a different image.
    x = np.frombuffer(thumbs[0], np.uint8).copy().reshape(1, -1)
    y = x.copy()
    dark = np.flatnonzero(x[0] < 100)[:400]
    y[0, dark] = 255
    assert ThumbCorrelation.unclipped(x, y)[0] == -np.inf


def _photo(name: str) -> Any:
    import sklearn
    from PIL import Image

    return Image.open(Path(sklearn.__file__).parent / "datasets" / "images" / name).convert("RGB")


def test_the_copy_hash_keeps_its_bits_under_crops_and_parts_distinct_photos() -> None:
    from clipaudit.curate.stages.copyhash import copy_hashes

    china, flower = _photo("china.jpg"), _photo("flower.jpg")
    w, h = china.size
    crops = [
        china.crop((x, y, x + w * 9 // 10, y + h * 9 // 10))
        for x, y in ((0, 0), (w // 10, h // 10), (w // 20, 0), (0, h // 10))
    ]
    codes = np.array(copy_hashes([china, flower, *crops]), np.int64).view(np.uint64)
    dist = popcount64(codes ^ codes[0])
    assert (dist[2:] <= 12).all(), dist  # the pack's radius
    assert dist[1] > 20, dist
    # Deterministic: the same image gives the same code.
    assert copy_hashes([china])[0] == int(codes.view(np.int64)[0])


def test_the_shifted_edge_check_confirms_a_crop_and_rejects_another_photo() -> None:
    from PIL import Image

    from clipaudit.curate.stages.hashes import THUMB, ThumbCorrelation
    from clipaudit.rules.schema import load_pack

    china, flower = _photo("china.jpg"), _photo("flower.jpg")
    w, h = china.size
    crop = china.crop((w // 10, h // 20, w // 10 + w * 9 // 10, h // 20 + h * 9 // 10))
    thumbs = [
        im.resize((THUMB, THUMB), Image.Resampling.BOX).tobytes() for im in (china, crop, flower)
    ]
    corr = ThumbCorrelation(thumbs)
    a, b = np.array([0, 1, 0]), np.array([1, 0, 2])
    plain = corr(a, b, unclip=np.zeros(3, np.bool_))
    values, edges = corr.shifted(a, b)
    d = load_pack("default").dedup
    ok = (values >= d.min_crop_value_corr) & (edges >= d.min_crop_corr)
    assert plain[0] < 0.95  # the whole thumbnails do not confirm the crop
    assert ok.tolist() == [True, True, False]  # either way round; not another photo
    assert edges[2] < d.min_crop_corr


def test_the_coarse_pass_keeps_every_crop_the_fine_check_confirms() -> None:
    """``crop_confirmed`` (5 x 5 values first, the 9 x 9 check only near the cut) decides
    exactly as the fine check alone, on crops at several offsets and on unrelated pairs."""
    from PIL import Image

    from clipaudit.curate.stages.hashes import THUMB, ThumbCorrelation
    from clipaudit.rules.schema import load_pack

    thumbs = []
    for name in ("china.jpg", "flower.jpg"):
        im = _photo(name)
        w, h = im.size
        thumbs.append(im.resize((THUMB, THUMB), Image.Resampling.BOX).tobytes())
        for fx, fy in ((0, 0), (1, 1), (1, 0), (0.5, 0.3), (0.2, 0.9)):
            x, y = int(fx * w // 10), int(fy * h // 10)
            crop = im.crop((x, y, x + w * 9 // 10, y + h * 9 // 10))
            thumbs.append(crop.resize((THUMB, THUMB), Image.Resampling.BOX).tobytes())
    corr = ThumbCorrelation(thumbs)
    pairs = np.array([(i, j) for i in range(12) for j in range(12) if i < j])
    d = load_pack("default").dedup
    values, edges = corr.shifted(pairs[:, 0], pairs[:, 1])
    fine = (values >= d.min_crop_value_corr) & (edges >= d.min_crop_corr)
    ok, n_fine = corr.crop_confirmed(
        pairs[:, 0], pairs[:, 1], d.min_crop_value_corr, d.min_crop_corr
    )
    assert ok.tolist() == fine.tolist()
    family = pairs // 6
    crop_of_whole = (family[:, 0] == family[:, 1]) & (pairs[:, 0] % 6 == 0)
    assert fine[crop_of_whole].all()  # each crop of its whole photo
    assert not fine[family[:, 0] != family[:, 1]].any()  # nothing across the two photos
    assert 0 < n_fine < len(pairs)  # the coarse pass stopped the unrelated pairs


def test_the_edge_operator_is_the_3x3_mean_with_replicated_edges() -> None:
    from scipy.ndimage import uniform_filter

    from clipaudit.curate.stages.hashes import _box_operator

    z = np.random.default_rng(0).random((2, 3, 32, 32)).astype(np.float32)
    box = _box_operator()
    want = uniform_filter(z, size=(1, 1, 3, 3), mode="nearest")
    assert np.allclose(box @ z @ box.T, want, atol=1e-5)


def test_crop_candidates_have_their_own_smaller_budget() -> None:
    """Crop candidates cost a shifted search each (~200 plain checks): under the plain pair
    budget a dense 30,000-image pool spooled millions of them and decide ran for an hour."""
    from clipaudit.curate.decide.neardup import CROP_PAIR_BUDGET, dense_radius, estimated_pairs

    rng = np.random.default_rng(4)
    # 3,000 codes in 30 tight clusters: ~150,000 pairs within 4 bits, under the plain budget
    # (every pair of 3,000 fits it) but over the crop budget.
    centres = rng.integers(0, 2**63, 30, dtype=np.uint64)
    noise = np.zeros(3000, np.uint64)
    for _ in range(3):
        noise |= (rng.random(3000) < 0.3).astype(np.uint64) << np.uint64(rng.integers(0, 64))
    codes = centres[rng.integers(0, 30, 3000)] ^ noise
    assert dense_radius(codes, 12) == 12
    r = dense_radius(codes, 12, crops=True)
    assert r < 12
    assert estimated_pairs(codes, 12)[r] <= max(CROP_PAIR_BUDGET, 2.0 * len(codes))


def _noisy_gradients(count: int, seed: int = 1) -> list[bytes]:
    """32x32 thumbnails of noisy 72-px gradients saved as JPEG: a look-alike family whose
    values correlate >= 0.99 under any crop, while nothing in them is a copy."""
    import io

    from PIL import Image

    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 200, 72, dtype=np.float32)[None, :, None]
    out = []
    for _ in range(count):
        px = np.clip(ramp + rng.integers(0, 56, (72, 72, 3)), 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(px).save(buf, "JPEG", quality=80)
        im = Image.open(buf).convert("RGB")
        out.append(im.resize((32, 32), Image.Resampling.BOX).tobytes())
    return out


def test_edge_corr_is_the_correlation_of_the_3x3_edges_mirrors_and_flat_rows_included() -> None:
    """The integer edge check (each row filtered once) against its definition in floats:
    each pixel minus its 3x3 mean (edges replicated), centred per channel, correlated."""
    from scipy.ndimage import uniform_filter

    from clipaudit.curate.stages.hashes import ThumbCorrelation

    rng = np.random.default_rng(5)
    noise = [rng.integers(0, 256, 3072, dtype=np.uint8).tobytes() for _ in range(6)]
    rows: list[bytes | None] = [*noise, *_noisy_gradients(3), bytes(3072), None]  # flat, missing
    corr = ThumbCorrelation(rows)
    a = np.array([0, 1, 2, 6, 7, 3, 9, 10])
    b = np.array([1, 0, 2, 7, 8, 4, 0, 5])

    def edges(k: int, mirror: bool) -> np.ndarray:
        x = corr.px[k].reshape(32, 32, 3).astype(np.float64)
        x = x[:, ::-1] if mirror else x
        return x - uniform_filter(x, size=(3, 3, 1), mode="nearest")

    for mirror in (False, True):
        got = corr.edge_corr(a, b, mirror)
        for k, (i, j) in enumerate(zip(a, b, strict=True)):
            if i == 10 or j == 10:  # the missing row
                assert got[k] == -np.inf
                continue
            ex, ey = edges(i, False), edges(j, mirror)
            if min(ex.std(), ey.std()) < ThumbCorrelation.MIN_EDGE_STD:
                assert got[k] == np.inf  # too little detail to judge
                continue
            cx, cy = ex - ex.mean((0, 1)), ey - ey.mean((0, 1))
            want = (cx * cy).sum() / np.sqrt((cx * cx).sum() * (cy * cy).sum())
            assert got[k] == pytest.approx(want, abs=1e-9), (mirror, i, j)
    assert corr.edge_corr(np.array([2]), np.array([2]))[0] == pytest.approx(1.0)


def test_a_look_alike_family_stops_at_the_coarse_crop_pass() -> None:
    """Noisy gradients pass the coarse values of every crop candidate; the coarse edges (the
    outer ring left out) stop nearly all before the fine check, and none is confirmed."""
    from clipaudit.curate.stages.hashes import ThumbCorrelation
    from clipaudit.rules.schema import load_pack

    corr = ThumbCorrelation(_noisy_gradients(40))
    pairs = np.array([(i, j) for i in range(40) for j in range(i + 1, 40)])
    d = load_pack("default").dedup
    values, _, _ = corr._shifted(pairs[:, 0], pairs[:, 1], 16, 5, False, half=True)
    assert (values >= d.min_crop_value_corr).all()  # values alone would send all on
    ok, n_fine = corr.crop_confirmed(
        pairs[:, 0], pairs[:, 1], d.min_crop_value_corr, d.min_crop_corr
    )
    assert n_fine <= 0.05 * len(pairs) and not ok.any()


def test_a_dense_family_narrows_the_radius_for_itself_not_for_the_rest_of_the_run() -> None:
    """One family of look-alike copy hashes passes the crop budget, so the radius narrows;
    pairs of other images between the narrowed and the full radius are still found."""
    from types import SimpleNamespace

    from clipaudit.curate.decide.keeper import CROPPED, _key_pair_chunks

    rng = np.random.default_rng(8)
    bits = np.uint64(1) << np.arange(64, dtype=np.uint64)

    def flip(code: np.uint64, k: int) -> np.uint64:
        return code ^ np.bitwise_or.reduce(bits[rng.choice(64, k, replace=False)])

    centre = rng.integers(0, 2**63, dtype=np.uint64)
    family = [flip(centre, int(rng.integers(0, 6))) for _ in range(600)]  # ~180k pairs
    others = list(rng.integers(0, 2**63, 2000, dtype=np.uint64))
    planted = [(len(family) + i, len(family) + 2000 + i) for i in range(100)]
    copies = [flip(others[i], 9 + i % 4) for i in range(100)]  # 9-12 bits from the original
    codes = np.array(family + others + copies, np.uint64).view(np.int64)
    d = SimpleNamespace(near_radius=12, search="auto", hashes=["phash"], match="any")
    stats: dict[str, Any] = {}
    # Only the crop search matters: random plain hashes, 64 bits apart on average.
    plain = rng.integers(0, 2**63, len(codes), dtype=np.uint64).view(np.int64)
    found = set()
    for a, b, kind in _key_pair_chunks(
        {"phash": plain, "chash": codes}, d, None, stats, crops=True
    ):
        if kind == CROPPED:
            found.update(zip(np.minimum(a, b).tolist(), np.maximum(a, b).tolist(), strict=True))
    assert stats["radius_searched"]["chash"] < 9  # the family narrowed the first search
    assert stats["radius_searched_outside_dense"]["chash"] == 12
    assert all(p in found for p in planted)  # every planted copy at 9-12 bits
    # Both searches stay within the crop budget: the second one only adds the keys outside
    # the family's dense core (its fringe among them), not the family's own pairs again.
    from clipaudit.curate.decide.neardup import CROP_PAIR_BUDGET

    assert stats["keys_outside_dense"]["chash"] < len(codes) - 400
    assert len(found) <= 2 * CROP_PAIR_BUDGET
