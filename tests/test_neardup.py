from __future__ import annotations

import numpy as np
import pytest

from clipaudit.curate.neardup import brute_pairs, choose_bands, near_pairs, popcount64


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
