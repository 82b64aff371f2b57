"""Decide's duplicate resolution: exact copies collapse onto one representative before the
near-duplicate search, with the same outcome as resolving the full graph of pairs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from clipaudit.curate.decide import DUPLICATE_KINDS, dedup, near_duplicate_pairs
from clipaudit.rules.schema import load_pack


def _signals(n: int, groups: np.ndarray, flips: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Rows in the same group are exact copies; ``flips[g]`` bits of pHash make group g a
    near copy of group g - 1 (same thumbnail) when small."""
    rng = np.random.default_rng(seed)
    n_groups = int(groups.max()) + 1
    ph = rng.integers(0, 2**62, n_groups)
    thumbs = [rng.integers(0, 256, 3072, dtype=np.uint8).tobytes() for _ in range(n_groups)]
    for g in range(1, n_groups):
        if flips[g] <= 12:
            ph[g] = ph[g - 1] ^ ((1 << int(flips[g])) - 1)
            thumbs[g] = thumbs[g - 1]
    obj = lambda xs: np.array(list(xs), dtype=object)  # noqa: E731
    return {
        "id": obj(f"r{i:05d}" for i in range(n)),
        "pixel_hash": obj(int(1000 + g) for g in groups),
        "phash": obj(int(ph[g]) for g in groups),
        "dhash": obj(int(ph[g]) for g in groups),
        "thumb": obj(thumbs[g] for g in groups),
        "alignment": rng.random(n).round(2),  # ties happen: the id breaks them
        "width": np.full(n, 64),
        "height": np.full(n, 64),
    }


def _reference(sig: dict[str, np.ndarray], pack: Any) -> dict[int, tuple[int, str]]:
    """The plain greedy over every pair (exact copies as cliques): the behaviour to keep."""
    n = len(sig["id"])
    adj: dict[int, dict[int, str]] = {}

    def link(x: int, y: int, kind: str) -> None:
        for a, b in ((x, y), (y, x)):
            was = adj.setdefault(a, {}).get(b)
            if was is None or DUPLICATE_KINDS.index(kind) < DUPLICATE_KINDS.index(was):
                adj[a][b] = kind

    for x in range(n):
        for y in range(x + 1, n):
            if sig["pixel_hash"][x] == sig["pixel_hash"][y]:
                link(x, y, "exact_duplicate")
    for x, y in near_duplicate_pairs(sig, np.arange(n), pack.dedup):
        link(x, y, "near_duplicate")
    order = sorted(adj, key=lambda i: (-sig["alignment"][i], -4096, str(sig["id"][i])))
    kept: set[int] = set()
    dropped: dict[int, tuple[int, str]] = {}
    for top in order:
        if top in dropped:
            continue
        kept.add(top)
        for j, kind in adj[top].items():
            if j not in kept and j not in dropped:
                dropped[j] = (top, kind)
    return dropped


@pytest.mark.parametrize("seed", range(6))
def test_collapsed_exact_groups_give_the_full_graphs_outcome(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 120
    groups = np.sort(rng.integers(0, 40, n))
    groups = np.unique(groups, return_inverse=True)[1]  # 0..k-1, no gaps
    rng.shuffle(groups)
    flips = rng.integers(0, 30, int(groups.max()) + 1)
    sig = _signals(n, groups, flips, seed)
    pack = load_pack("default")
    pack.dedup.groups = "star"  # the reference is the greedy star
    got, n_groups = dedup(sig, np.ones(n, bool), pack)
    want = _reference(sig, pack)
    assert got == want
    assert n_groups == len({k for k, _ in want.values()}) > 0
    assert {kind for _, kind in got.values()} == {"exact_duplicate", "near_duplicate"}


def test_a_placeholder_repeated_thousands_of_times_is_one_row_to_search(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import clipaudit.curate.decide.keeper as keeper

    searched: list[int] = []
    real = keeper.near_duplicate_pairs

    def spy(c: Any, rows: np.ndarray, *args: Any, **kw: Any) -> Any:
        searched.append(len(rows))
        return real(c, rows, *args, **kw)

    monkeypatch.setattr(keeper, "near_duplicate_pairs", spy)
    n = 20_000
    groups = np.zeros(n, np.int64)
    groups[15_000:] = np.arange(1, 5_001)  # 15,000 copies of one image, 5,000 others
    flips = np.full(5_001, 40)
    flips[1] = 3  # group 1 is a near copy of the placeholder
    sig = _signals(n, groups, flips, 0)
    sig["alignment"][:] = 0.5
    got, n_groups = dedup(sig, np.ones(n, bool), load_pack("default"))
    assert got[1] == (0, "exact_duplicate") and got[14_999] == (0, "exact_duplicate")
    assert got[15_000] == (0, "near_duplicate")
    assert len(got) == 15_000 and n_groups == 1
    # One representative per exact group enters the search: the full graph would hold
    # 1.1e8 exact pairs (and the search 1.1e8 identical-hash pairs).
    assert searched == [5_001]


def _chain(alignment: list[float]) -> dict[str, np.ndarray]:
    """Three images in a chain: b is 8 bits from a, c 8 other bits from b (16 from a), all
    with one thumbnail; a and c are not a pair at radius 12."""
    rng = np.random.default_rng(3)
    a = int(rng.integers(0, 2**62))
    ph = [a, a ^ 0xFF, a ^ 0xFF ^ 0xFF00]
    thumb = rng.integers(0, 256, 3072, dtype=np.uint8).tobytes()
    obj = lambda xs: np.array(list(xs), dtype=object)  # noqa: E731
    return {
        "id": obj(["a", "b", "c"]),
        "pixel_hash": obj([1, 2, 3]),
        "phash": obj(ph),
        "dhash": obj(ph),
        "thumb": obj([thumb] * 3),
        "alignment": np.array(alignment),
        "width": np.full(3, 64),
        "height": np.full(3, 64),
    }


@pytest.mark.parametrize("alignment", [[0.9, 0.5, 0.8], [0.5, 0.9, 0.8], [0.5, 0.8, 0.9]])
def test_a_copy_of_a_copy_is_dropped_with_its_group(alignment: list[float]) -> None:
    sig = _chain(alignment)
    pack = load_pack("default")
    assert pack.dedup.groups == "component"
    got, n_groups = dedup(sig, np.ones(3, bool), pack)
    top = int(np.argmax(alignment))
    assert n_groups == 1
    assert got == {j: (top, "near_duplicate") for j in range(3) if j != top}
    # Greedy stars leave the far end standing when an end is kept first: its only pair,
    # the middle image, is gone.
    pack.dedup.groups = "star"
    star, _ = dedup(sig, np.ones(3, bool), pack)
    if top == 1:
        assert star == got
    else:
        assert star == {1: (top, "near_duplicate")}


def test_the_default_keeper_keeps_the_clean_copy_over_a_flagged_one() -> None:
    """The keeper ranked by alignment first, so a group kept the copy flagged for a
    watermark suspicion and dropped its clean twin; the default pack ranks flags first."""
    from clipaudit.curate.decide.rules import flag_counts

    sig = _signals(4, np.array([0, 0, 1, 1]), np.array([0, 30]), seed=5)
    sig["alignment"] = np.array([0.9, 0.5, 0.8, 0.7])
    pack = load_pack("default")
    # r00000 is the best aligned but flagged; r00003 is flagged, so r00002 stays the keeper.
    reasons = [["watermark_suspect", "license_nc"], [], [], ["license_nc"]]
    flags = flag_counts(reasons, pack)
    assert flags.tolist() == [2, 0, 0, 1]
    got, _ = dedup(sig, np.ones(4, bool), pack, None, flags)
    assert got == {0: (1, "exact_duplicate"), 3: (2, "exact_duplicate")}
    # Without the key (or the counts) alignment decides, as before.
    pack.dedup.keeper = ["alignment", "resolution", "id"]
    assert dedup(sig, np.ones(4, bool), pack, None, flags)[0] == {
        1: (0, "exact_duplicate"),
        3: (2, "exact_duplicate"),
    }


def test_identical_near_copies_under_a_pack_that_flags_near_keep_one(tmp_path: Path) -> None:
    """Two identical images, both near copies of a keeper, were both named after the keeper
    as near duplicates: a pack that flags near duplicates and drops exact ones kept both
    (and failed its own output gate on their shared pixel hash)."""
    sig = _signals(3, np.array([0, 1, 1]), np.array([0, 3]), seed=2)
    sig["alignment"] = np.array([0.9, 0.5, 0.4])
    dropping = load_pack("default")
    got, _ = dedup(sig, np.ones(3, bool), dropping)
    assert got == {1: (0, "near_duplicate"), 2: (0, "near_duplicate")}  # both go, as before
    pack_file = tmp_path / "p.yaml"
    pack_file.write_text(
        "name: p\nversion: '1'\nextends: default\nactions:\n  near_duplicate: flag\n"
    )
    flagging = load_pack(str(pack_file))
    got, _ = dedup(sig, np.ones(3, bool), flagging)
    assert got == {1: (0, "near_duplicate"), 2: (1, "exact_duplicate")}


def _long_chain(n: int) -> dict[str, np.ndarray]:
    """``n`` images in a chain, each 8 bits from the one before and with one thumbnail: only
    neighbours are pairs (look-alikes drifting from one end to the other)."""
    rng = np.random.default_rng(4)
    ph = [int(rng.integers(0, 2**62))]
    for k in range(1, n):
        ph.append(ph[-1] ^ (0xFF << (8 * (k % 7))))
    thumb = rng.integers(0, 256, 3072, dtype=np.uint8).tobytes()
    obj = lambda xs: np.array(list(xs), dtype=object)  # noqa: E731
    return {
        "id": obj(f"c{k}" for k in range(n)),
        "pixel_hash": obj(range(n)),
        "phash": obj(ph),
        "dhash": obj(ph),
        "thumb": obj([thumb] * n),
        "alignment": np.linspace(0.9, 0.1, n),  # the first ranks first
        "width": np.full(n, 64),
        "height": np.full(n, 64),
    }


def test_a_chain_of_look_alikes_is_groups_of_two_hops_not_one_group() -> None:
    """Components make any chain of confirmed look-alikes one group with one keeper (1,084
    distinct product shots on white in one group); balls drop two hops from each keeper."""
    sig = _long_chain(7)
    assert near_duplicate_pairs(sig, np.arange(7), load_pack("default").dedup) == [
        (k, k + 1) for k in range(6)
    ]
    pack = load_pack("default")
    pack.dedup.groups = "ball"
    got, n_groups = dedup(sig, np.ones(7, bool), pack)
    assert got == {
        1: (0, "near_duplicate"),
        2: (0, "near_duplicate"),
        4: (3, "near_duplicate"),
        5: (3, "near_duplicate"),
    }
    assert n_groups == 2  # 6 is kept: its only pair, 5, went with keeper 3
    pack.dedup.groups = "component"
    got, n_groups = dedup(sig, np.ones(7, bool), pack)
    assert got == {k: (0, "near_duplicate") for k in range(1, 7)} and n_groups == 1
