"""Bias probes under the null (random, exchangeable groups) and at small n: intervals cover
the null at about their nominal rate, and a verdict needs evidence and size.

No model: synthetic correctness vectors, scores and embeddings with known rates.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from clipaudit.evaluate.bias.context import BiasContext, Groups
from clipaudit.evaluate.bias.disparity import disparity_for
from clipaudit.evaluate.bias.harmful import harmful_probe
from clipaudit.evaluate.bias.promptsets import load_prompt_set
from clipaudit.evaluate.bias.skew import skew_for
from clipaudit.evaluate.bias.verdicts import BiasThresholds, verdicts
from clipaudit.evaluate.bootstrap import BootstrapSpec

SEEDS = 100


def _ctx(cols: dict[str, list[str]], seed: int = 0, **kw: Any) -> BiasContext:
    n = len(next(iter(cols.values())))
    return BiasContext(
        emb=np.zeros((n, 6), np.float32),
        ids=[str(i) for i in range(n)],
        columns=cols,
        group_columns=list(cols),
        encode_texts=None,
        prompts={},
        boot=BootstrapSpec(n=200, seed=seed),
        **kw,
    )


def _excludes(ci: list[float], null: float) -> bool:
    return ci[0] > null or ci[1] < null


@pytest.mark.parametrize("n_groups", [2, 3])
def test_disparity_intervals_cover_the_null_for_random_groups(n_groups: int) -> None:
    # Old: the max − min and min / max bootstrap excluded 0 and 1 in 100 of 100 runs, and
    # missed its own point estimate in some (difference 0.0 [0.0016, 0.125]).
    excluded, contained = {"difference": 0, "ratio": 0}, 0
    for s in range(SEEDS):
        rng = np.random.default_rng(s)
        labels = [f"g{c}" for c in rng.permutation(np.arange(200) % n_groups)]
        correct = (rng.random(200) < 0.7).astype(np.float64)
        d = disparity_for(_ctx({"a": labels}, s), correct, Groups.of("a", labels))
        for key, null in (("difference", 0.0), ("ratio", 1.0)):
            ci = d[key]["ci"]
            excluded[key] += _excludes(ci, null)
            contained += ci[0] <= d[key]["value"] <= ci[1]
        assert d["difference"]["confidence"] == pytest.approx(
            1 - 0.05 / (n_groups * (n_groups - 1) // 2)
        )
    assert contained == 2 * SEEDS
    assert excluded["difference"] <= 0.10 * SEEDS, excluded
    assert excluded["ratio"] <= 0.10 * SEEDS, excluded


@pytest.mark.parametrize("shares", [(0.5, 0.5), (0.8, 0.2)])
def test_skew_intervals_cover_the_null_for_random_groups(shares: tuple[float, float]) -> None:
    # Old: the base-rate MaxSkew interval excluded 0 in 96 of 100 balanced runs and sat
    # above its own value (0.000 [0.0091, 0.379]).
    excluded, contained = 0, 0
    for s in range(SEEDS):
        rng = np.random.default_rng(1000 + s)
        labels = rng.choice(["A", "B"], 200, p=shares).tolist()
        ctx = _ctx({"a": labels}, s, k=20, permutations=0)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no divide-by-zero leaks
            out = skew_for(ctx, rng.normal(size=200), Groups.of("a", labels), [20])
        v = out["base_rate"]["max_skew"][0]
        excluded += _excludes(v["ci"], 0.0)
        contained += v["ci"][0] - 1e-12 <= v["value"] <= v["ci"][1] + 1e-12
    assert contained == SEEDS
    assert excluded <= 0.10 * SEEDS


def _disparity_verdict(sizes: Sequence[int], correct_counts: Sequence[int]) -> dict[str, Any]:
    labels, correct = [], []
    for i, (n, c) in enumerate(zip(sizes, correct_counts, strict=True)):
        labels += [f"g{i}"] * n
        correct += [1.0] * c + [0.0] * (n - c)
    d = disparity_for(_ctx({"a": labels}), np.array(correct), Groups.of("a", labels))
    v = verdicts({"probes": ["disparity"], "disparity": {"a": d}}, BiasThresholds())
    return {"block": d, **v["items"][0]}


def test_disparity_ratio_without_evidence_passes() -> None:
    # 35/100 vs 26/100: ratio 0.743 leaves [0.8, 1.25] but Fisher p = 0.219. Old: fail.
    v = _disparity_verdict([100, 100], [35, 26])
    assert v["block"]["by_group"]["g1"]["flag"]
    assert v["block"]["by_group"]["g1"]["p_vs_reference"] == pytest.approx(0.2190, abs=1e-3)
    assert v["verdict"] == "pass"


def test_disparity_small_group_warns_but_cannot_fail() -> None:
    # 90/100 vs 0/8: flagged and significant, but the group is under --min-group-size.
    v = _disparity_verdict([100, 8], [90, 0])
    tiny = v["block"]["by_group"]["g1"]
    assert tiny["small_n"] and tiny["flag"] and tiny["p_vs_reference_holm"] < 1e-6
    assert tiny["ci"][0] == 0.0 and tiny["ci"][1] == pytest.approx(0.3244, abs=1e-3)  # Wilson
    assert v["verdict"] == "warn"


def test_disparity_with_evidence_and_size_fails() -> None:
    v = _disparity_verdict([200, 200], [180, 100])
    assert v["block"]["by_group"]["g1"]["p_vs_reference_holm"] < 1e-10
    assert v["block"]["ratio"]["value"] == pytest.approx(100 / 180)
    assert v["block"]["difference"]["between"] == ["g0", "g1"]
    assert v["verdict"] == "fail"


AXES = {"beast": 2, "person": 3}


def _encode(texts: Sequence[str]) -> np.ndarray:
    out = np.zeros((len(texts), 6), np.float32)
    for i, t in enumerate(texts):
        out[i, next((a for w, a in AXES.items() if w in t), 5)] = 1.0
    return out


def _harmful(tmp_path: Path, groups: dict[str, tuple[int, int]]) -> tuple[Any, dict[str, Any]]:
    """Groups name → (images, images whose top label is 'beast')."""
    path = tmp_path / "labels.yaml"
    path.write_text(
        "name: toy-labels\nkind: labels\nclasses:\n  person: [person]\n  beast: [beast]\n"
        "categories:\n  non_human: [beast]\n",
        encoding="utf-8",
    )
    labels, axis = [], []
    for name, (n, hits) in groups.items():
        labels += [name] * n
        axis += [AXES["beast"]] * hits + [AXES["person"]] * (n - hits)
    emb = np.zeros((len(labels), 6), np.float32)
    emb[np.arange(len(labels)), axis] = 1.0
    ctx = BiasContext(
        emb=emb,
        ids=[str(i) for i in range(len(labels))],
        columns={"group": labels},
        group_columns=["group"],
        encode_texts=_encode,
        prompts={"labels": load_prompt_set(path)},
        boot=BootstrapSpec(n=100, seed=0),
    )
    detail = harmful_probe(ctx).detail
    v = verdicts({"probes": ["harmful"], "harmful": detail}, BiasThresholds())
    item = next(i for i in v["items"] if i["item"] == "non_human / group")
    return item, detail


def test_harmful_ratio_without_evidence_passes(tmp_path: Path) -> None:
    # 16/100 vs 8/100: ratio 2 > 1.25, as in the random-group runs; Fisher p = 0.126. Old: warn.
    item, detail = _harmful(tmp_path, {"A": (100, 16), "B": (100, 8)})
    t = detail["tests"]["without_optional"]["non_human"]["group"]
    assert (t["high"], t["low"], t["ratio"]) == ("A", "B", pytest.approx(2.0))
    assert t["p"] == pytest.approx(0.1264, abs=1e-4)
    assert item["verdict"] == "pass"


def test_harmful_small_group_with_no_hits_has_a_real_interval(tmp_path: Path) -> None:
    # 9/30 vs 0/8: the old bootstrap gave the small group [0, 0] and the item failed.
    item, detail = _harmful(tmp_path, {"A": (30, 9), "B": (8, 0)})
    b = detail["variants"]["without_optional"]["non_human"]["group"]["B"]
    assert b["ci"][0] == 0.0 and b["ci"][1] == pytest.approx(0.3244, abs=1e-3)
    assert b["small_n"] and b["ci_method"] == "wilson"
    t = detail["tests"]["without_optional"]["non_human"]["group"]
    assert t["ratio"] is None and t["p"] == pytest.approx(0.1592, abs=1e-3)
    assert item["verdict"] == "pass"


def test_harmful_small_group_with_evidence_only_warns(tmp_path: Path) -> None:
    item, _ = _harmful(tmp_path, {"A": (100, 5), "B": (10, 10)})
    assert item["verdict"] == "warn"


def test_harmful_with_evidence_and_size_fails(tmp_path: Path) -> None:
    # The documented world run's rates: 40/100 vs 13/100.
    item, detail = _harmful(tmp_path, {"mox": (100, 40), "zib": (100, 13)})
    t = detail["tests"]["without_optional"]["non_human"]["group"]
    assert t["p_adjusted"] < 1e-4 and t["pairs"] == 1
    assert item["verdict"] == "fail"


def test_harmful_extremes_are_adjusted_for_the_pairs_they_were_picked_from(
    tmp_path: Path,
) -> None:
    groups = {f"g{i}": (60, h) for i, h in enumerate([6, 8, 10, 12, 14, 16])}
    _, detail = _harmful(tmp_path, groups)
    t = detail["tests"]["without_optional"]["non_human"]["group"]
    assert (t["high"], t["low"], t["pairs"]) == ("g5", "g0", 15)
    assert t["p_adjusted"] == pytest.approx(min(1.0, 15 * t["p"]))


def test_a_group_absent_from_the_top_k_is_negative_not_max_skew() -> None:
    # 5% of 200 images are group "r", none in the top 10. Old: its share floored at 1/k
    # gave ln(0.1 / 0.05) = +0.693, reported as MaxSkew@10 (base rate).
    labels = ["q"] * 190 + ["r"] * 10
    scores = np.r_[np.linspace(1, 0.5, 190), np.linspace(0.4, 0, 10)]
    ctx = _ctx({"a": labels}, k=10, permutations=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = skew_for(ctx, scores, Groups.of("a", labels), [10])["base_rate"]
    assert out["absent"] == ["r"]
    assert out["skew_by_group"]["r"]["value"] == pytest.approx(-np.log(11))
    assert out["max_skew"][0]["value"] == pytest.approx(np.log(1 / 0.95))
    assert out["max_skew"][0]["group"] == "q"
    assert out["min_skew"][0]["value"] == pytest.approx(-np.log(11))
    assert out["min_skew"][0]["group"] == "r"
    assert out["ndkl"][0]["value"] > 0


def test_disparity_interval_of_tied_groups_is_not_degenerate() -> None:
    # Equal accuracies: max − min is 0, but its interval must still show the uncertainty.
    labels = ["a"] * 50 + ["b"] * 50
    correct = np.r_[np.ones(35), np.zeros(15), np.ones(35), np.zeros(15)]
    d = disparity_for(_ctx({"g": labels}), correct, Groups.of("g", labels))
    assert d["difference"]["value"] == 0.0 and d["difference"]["between"] == ["a", "b"]
    lo, hi = d["difference"]["ci"]
    assert lo < -0.05 and hi > 0.05
