"""Bias metrics against hand-computed small cases, and disparity against fairlearn."""

from __future__ import annotations

import math

import numpy as np
import pytest

from clipaudit.errors import ClipauditError
from clipaudit.evaluate.bias.context import BiasContext, Groups
from clipaudit.evaluate.bias.disparity import disparity_for, intersect
from clipaudit.evaluate.bias.metrics import (
    check_k,
    max_skew,
    min_skew,
    ndkl,
    skew,
    skew_from_counts,
    weat_effect_size,
    weat_p_value,
)
from clipaudit.evaluate.bootstrap import BootstrapSpec


def test_topk_matching_desired_distribution_has_zero_skew() -> None:
    assert np.allclose(skew(np.array([0, 1, 1, 0]), np.array([0.5, 0.5])), 0.0)
    base = np.array([0.75, 0.25])
    assert max_skew(np.array([0, 0, 1, 0]), base) == pytest.approx(0.0)
    assert min_skew(np.array([0, 0, 1, 0]), base) == pytest.approx(0.0)


def test_skew_by_hand_and_absent_group() -> None:
    uniform = np.array([0.5, 0.5])
    s = skew(np.array([0, 0, 0, 1]), uniform)
    assert s == pytest.approx([math.log(1.5), math.log(0.5)])
    # Group 1 is absent from the top 4: skew −∞ by definition, reported as −ln(k + 1).
    assert min_skew(np.array([0, 0, 0, 0]), uniform) == pytest.approx(-math.log(5))
    assert max_skew(np.array([0, 0, 0, 0]), uniform) == pytest.approx(math.log(2.0))


def test_absent_group_never_gets_a_positive_skew() -> None:
    # A group with a 5% base rate absent from the top 10: the old 1/k floor gave it
    # ln(0.1 / 0.05) = +0.693, and it became MaxSkew@10.
    base = np.array([0.95, 0.05])
    s = skew(np.zeros(10, np.int64), base)
    assert s == pytest.approx([math.log(1 / 0.95), -math.log(11)])
    assert max_skew(np.zeros(10, np.int64), base) == pytest.approx(0.05129, abs=1e-5)
    # Below a group holding one place of the top k, whatever the desired share.
    for share in (0.01, 0.5, 0.99):
        one = skew(np.array([0] * 9 + [1]), np.array([1 - share, share]))[1]
        assert skew(np.zeros(10, np.int64), np.array([1 - share, share]))[1] < min(one, 0)


def test_group_without_desired_share_has_no_skew_and_no_warning() -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the old code leaked a divide-by-zero RuntimeWarning
        s = skew_from_counts(np.array([3, 0]), 3, np.array([1.0, 0.0]))
    assert s[0] == pytest.approx(0.0) and np.isnan(s[1])


def test_prefix_constant_ranking_has_zero_ndkl() -> None:
    # Every prefix holds only group 0, which is exactly the desired distribution.
    assert ndkl(np.zeros(10, np.int64), np.array([1.0, 0.0])) == pytest.approx(0.0)


def test_ndkl_by_hand() -> None:
    # i=1: D=[1,0], KL=ln 2, weight 1; i=2: D=[.5,.5], KL=0, weight 1/log2(3).
    want = math.log(2) / (1 + 1 / math.log2(3))
    assert ndkl(np.array([0, 1]), np.array([0.5, 0.5])) == pytest.approx(want)
    sorted_rank = ndkl(np.array([0, 0, 0, 1, 1, 1]), np.array([0.5, 0.5]))
    alternating = ndkl(np.array([0, 1, 0, 1, 0, 1]), np.array([0.5, 0.5]))
    assert 0 < alternating < sorted_rank


def test_degenerate_k_is_refused() -> None:
    with pytest.raises(ClipauditError, match="not below the number of images"):
        check_k(10, 10, 2)
    with pytest.raises(ClipauditError, match="below the number of groups"):
        check_k(2, 100, 7)
    check_k(7, 100, 7)


def test_weat_effect_size_and_exact_p_by_hand() -> None:
    x, y = np.array([1.0, 2.0]), np.array([3.0, 4.0])
    sd = np.std([1, 2, 3, 4], ddof=1)
    assert weat_effect_size(x, y) == pytest.approx(-2 / sd)
    assert weat_effect_size(y, x) == pytest.approx(2 / sd)  # swapping X and Y flips the sign
    # Partitions of {1,2,3,4} into 2+2 give Σx−Σy ∈ {-4,-2,0,0,2,4}: |Σx−Σy| ≥ 4 in 2 of 6.
    # Two-sided (the default), so the order of the groups does not change p.
    assert weat_p_value(x, y) == (pytest.approx(1 / 3), "exact", 6)
    assert weat_p_value(y, x) == (pytest.approx(1 / 3), "exact", 6)
    # The one-sided iEAT p (X closer to A) is still there: the old default, order-dependent.
    assert weat_p_value(x, y, alternative="greater") == (1.0, "exact", 6)
    assert weat_p_value(y, x, alternative="greater") == (pytest.approx(1 / 6), "exact", 6)


def test_weat_p_two_sided_with_unequal_sizes_by_hand() -> None:
    # X = {3}, Y = {0, 0, 0}: mean_X − mean_Y is 3 when X holds the 3 (1 of 4 partitions)
    # and −1 otherwise, so p = 1/4 two-sided. (|Σx − Σy| would be 3 in all four: the
    # statistic is the difference of means, which is centred under re-partition.)
    x, y = np.array([3.0]), np.array([0.0, 0.0, 0.0])
    assert weat_p_value(x, y) == (pytest.approx(1 / 4), "exact", 4)
    assert weat_p_value(y, x) == (pytest.approx(1 / 4), "exact", 4)
    assert weat_p_value(x, y, alternative="greater")[0] == pytest.approx(1 / 4)
    assert weat_p_value(y, x, alternative="greater")[0] == pytest.approx(1.0)


def test_weat_p_is_sampled_above_the_exact_limit() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(1, 1, 20), rng.normal(0, 1, 20)  # C(40, 20) ≫ 10,000
    p, method, used = weat_p_value(x, y, n_samples=2000, seed=1)
    assert method == "sampled" and used == 2000
    assert p < 0.01
    # The same evidence whichever group is X (the old one-sided p here was 0.9995).
    p_rev, _, _ = weat_p_value(y, x, n_samples=2000, seed=1)
    assert p_rev < 0.01
    one_rev, _, _ = weat_p_value(y, x, n_samples=2000, seed=1, alternative="greater")
    assert one_rev > 0.99


@pytest.mark.parametrize("sizes", [(20, 20), (15, 25)])
def test_sampled_two_sided_p_is_identical_when_groups_swap(sizes: tuple[int, int]) -> None:
    # Near alpha, sampling noise alone must not flip a verdict when group names swap
    # (the tester saw 0.0483 vs 0.0517 for the same data): the same re-partitions are drawn.
    rng = np.random.default_rng(5)
    x, y = rng.normal(0.6, 1, sizes[0]), rng.normal(0, 1, sizes[1])
    p, _, _ = weat_p_value(x, y, n_samples=3000, seed=2)
    assert p == weat_p_value(y, x, n_samples=3000, seed=2)[0]
    assert 0 < p < 1
    one, _, _ = weat_p_value(x, y, n_samples=3000, seed=2, alternative="greater")
    one_rev, _, _ = weat_p_value(y, x, n_samples=3000, seed=2, alternative="greater")
    # One-sided p-values of the two orientations: (1 + hits) / (1 + n) each, hits summing to n.
    assert one + one_rev == pytest.approx(1 + 1 / 3001)


def _table(n: int = 400) -> tuple[np.ndarray, np.ndarray, dict[str, list[str]]]:
    rng = np.random.default_rng(3)
    a = rng.choice(["p", "q", "r"], n, p=[0.5, 0.3, 0.2]).tolist()
    b = rng.choice(["u", "v"], n).tolist()
    y_true = rng.integers(0, 3, n)
    flip = rng.random(n) < np.where(np.array(a) == "r", 0.4, 0.15)
    y_pred = np.where(flip, (y_true + 1) % 3, y_true)
    return y_true, y_pred, {"a": a, "b": b}


def _ctx(cols: dict[str, list[str]]) -> BiasContext:
    n = len(next(iter(cols.values())))
    return BiasContext(
        emb=np.zeros((n, 2), np.float32),
        ids=[str(i) for i in range(n)],
        columns=cols,
        group_columns=list(cols),
        encode_texts=None,
        prompts={},
        boot=BootstrapSpec(n=50),
    )


@pytest.mark.parametrize("columns", [["a"], ["a", "b"]])
def test_disparity_matches_fairlearn_metricframe(columns: list[str]) -> None:
    pd = pytest.importorskip("pandas")
    fairlearn_metrics = pytest.importorskip("fairlearn.metrics")
    from sklearn.metrics import accuracy_score

    y_true, y_pred, cols = _table()
    ctx = _ctx(cols)
    groups = [Groups.of(c, cols[c]) for c in columns]
    g = groups[0] if len(groups) == 1 else intersect(groups)
    ours = disparity_for(ctx, (y_true == y_pred).astype(np.float64), g)
    mf = fairlearn_metrics.MetricFrame(
        metrics=accuracy_score,
        y_true=y_true,
        y_pred=y_pred,
        sensitive_features=pd.DataFrame({c: cols[c] for c in columns}),
    )
    assert ours["overall"] == pytest.approx(mf.overall)
    assert ours["difference"]["value"] == pytest.approx(mf.difference())
    assert ours["ratio"]["value"] == pytest.approx(mf.ratio())
    assert ours["difference_to_overall"]["value"] == pytest.approx(
        mf.difference(method="to_overall")
    )
    assert ours["ratio_to_overall"]["value"] == pytest.approx(mf.ratio(method="to_overall"))
    assert sorted(v["value"] for v in ours["by_group"].values()) == pytest.approx(
        sorted(mf.by_group.to_numpy().ravel().tolist())
    )
    lo, hi = ours["difference"]["ci"]
    assert lo <= ours["difference"]["value"] <= hi


def test_small_groups_are_warned_not_dropped() -> None:
    cols = {"a": ["big"] * 100 + ["tiny"] * 5}
    ctx = _ctx(cols)
    correct = np.r_[np.ones(100), np.zeros(5)]
    out = disparity_for(ctx, correct, Groups.of("a", cols["a"]))
    assert out["by_group"]["tiny"]["n"] == 5 and out["by_group"]["tiny"]["small_n"]
    assert out["reference"] == "big"
    # Aequitas: accuracy ratio 0 / 1 to the reference leaves [0.8, 1.25].
    assert out["by_group"]["tiny"]["flag"] and not out["by_group"]["big"]["flag"]
