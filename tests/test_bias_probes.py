"""Each probe on synthetic embeddings with a known planted association (no model needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from clipaudit.errors import ClipauditError
from clipaudit.evaluate.bias.association import association_probe
from clipaudit.evaluate.bias.context import BiasContext, excludes_zero
from clipaudit.evaluate.bias.harmful import harmful_probe
from clipaudit.evaluate.bias.promptsets import load_prompt_set
from clipaudit.evaluate.bias.registry import get_probes
from clipaudit.evaluate.bias.skew import skew_probe
from clipaudit.evaluate.bootstrap import BootstrapSpec

N = 400
AXES = {"biased": 0, "fair": 1, "beast": 2, "person": 3, "kid": 4}


def encode(texts: Sequence[str]) -> np.ndarray:
    """Each text points along the axis of the first keyword it holds."""
    out = np.zeros((len(texts), 6), np.float32)
    for i, t in enumerate(texts):
        out[i, next((a for w, a in AXES.items() if w in t), 5)] = 1.0
    return out


@pytest.fixture(scope="module")
def ctx(tmp_path_factory: pytest.TempPathFactory) -> BiasContext:
    folder: Path = tmp_path_factory.mktemp("prompts")
    (folder / "concepts.yaml").write_text(
        "name: toy\nkind: concepts\ntemplates: ['{}', 'a {}']\n"
        "classes:\n  biased: [biased]\n  fair: [fair]\n",
        encoding="utf-8",
    )
    (folder / "labels.yaml").write_text(
        "name: toy-labels\nkind: labels\nclasses:\n  person: [person]\n  beast: [beast]\n"
        "  kid: [kid]\ncategories:\n  non_human: [beast]\noptional: [kid]\n",
        encoding="utf-8",
    )
    rng = np.random.default_rng(0)
    group = np.array(["a", "b"] * (N // 2))
    emb = rng.normal(0, 1, (N, 6))
    # Symmetric shifts keep both groups' norms alike, so only the planted axes differ.
    emb[:, 0] += np.where(group == "a", 0.5, -0.5)  # "biased" prefers group a
    emb[:, 2] += np.where(group == "b", 0.75, -0.75)  # group b drawn to "beast"
    emb[:, 3] += 1.0
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return BiasContext(
        emb=emb.astype(np.float32),
        ids=[str(i) for i in range(N)],
        columns={"group": group.tolist()},
        group_columns=["group"],
        encode_texts=encode,
        prompts={
            "concepts": load_prompt_set(folder / "concepts.yaml"),
            "labels": load_prompt_set(folder / "labels.yaml"),
        },
        boot=BootstrapSpec(n=200, seed=0),
        k=40,
        permutations=500,
    )


def test_skew_detects_the_planted_concept_only(ctx: BiasContext) -> None:
    res = skew_probe(ctx)
    biased = res.detail["concepts"]["biased"]["group"]
    fair = res.detail["concepts"]["fair"]["group"]
    assert biased["uniform"]["max_skew_p"] < 0.01
    assert excludes_zero(biased["uniform"]["skew_by_group"]["a"]["ci"])
    assert biased["uniform"]["skew_by_group"]["a"]["value"] > 0
    assert fair["uniform"]["max_skew_p"] > 0.05
    # Curves over k, every k valid, headline included; balanced data: uniform == base rate.
    assert 40 in biased["ks"] and max(biased["ks"]) < N
    values = {d: [v["value"] for v in biased[d]["max_skew"]] for d in ("uniform", "base_rate")}
    assert values["uniform"] == pytest.approx(values["base_rate"])
    assert set(biased["prompt_sensitivity"]["by_template"]) == {"{}", "a {}"}
    assert "skew.biased.group.uniform.max_skew@40" in res.metrics
    assert len(res.per_sample["score:biased"]) == N


def test_skew_refuses_degenerate_k(ctx: BiasContext) -> None:
    from dataclasses import replace

    with pytest.raises(ClipauditError, match="k=400"):
        skew_probe(replace(ctx, k=N))
    with pytest.raises(ClipauditError, match="k=1 is below"):
        skew_probe(replace(ctx, k=1))


def test_harmful_rates_and_child_ablation(ctx: BiasContext) -> None:
    res = harmful_probe(ctx)
    without = res.detail["variants"]["without_optional"]["non_human"]["group"]
    assert without["b"]["value"] > without["a"]["value"]
    lo_b = without["b"]["ci"][0]
    assert lo_b > without["a"]["ci"][1]
    # Adding a class can only take predictions away from the others.
    abl = res.detail["ablation"]["non_human"]["group"]
    assert all(v <= 0 for v in abl.values())
    assert set(res.per_sample) == {"label:without_optional", "label:with_optional"}


def test_association_sign_and_significance(ctx: BiasContext) -> None:
    res = association_probe(ctx)
    tests = res.detail["group"]["a|b"]
    assert tests["biased|rest"]["d"] > 0.5 and tests["biased|rest"]["p"] < 0.01
    assert tests["fair|rest"]["d"] < 0  # fair vs biased: the mirror image
    assert tests["biased|rest"]["p_method"] == "sampled"


def test_probe_names_are_checked() -> None:
    assert get_probes("all") == ["association", "disparity", "harmful", "skew"] or set(
        get_probes("all")
    ) == {"association", "disparity", "harmful", "skew"}
    with pytest.raises(ClipauditError, match="skew"):
        get_probes("skw")


def test_verdicts_follow_thresholds(ctx: BiasContext, tmp_path: Path) -> None:
    from clipaudit.evaluate.bias.verdicts import BiasThresholds, load_thresholds, verdicts

    body = {"probes": ["skew", "association"], "skew": skew_probe(ctx).detail}
    body["association"] = association_probe(ctx).detail
    v = verdicts(body, BiasThresholds(max_skew_fail=0.0))
    by = {(i["probe"], i["item"]): i["verdict"] for i in v["items"]}
    assert by[("skew", "biased / group")] == "fail"
    assert by[("skew", "fair / group")] == "pass"
    assert v["overall"] == "fail"
    # A very high size bar turns the significant skew into a warning only.
    relaxed = verdicts(body, BiasThresholds(max_skew_fail=5.0, weat_d_fail=5.0))
    assert {i["verdict"] for i in relaxed["items"] if i["item"] == "biased / group"} == {"warn"}
    bad = tmp_path / "t.yaml"
    bad.write_text("alpha_fial: 0.01\n", encoding="utf-8")
    with pytest.raises(ClipauditError, match="alpha_fial"):
        load_thresholds(bad)


def test_association_verdict_does_not_depend_on_group_names(ctx: BiasContext) -> None:
    """Renaming group a to z makes it Y instead of X: d flips sign, p and verdicts stay.
    (The old one-sided p gave the renamed planted association p ≈ 1 and a pass.)"""
    from dataclasses import replace

    from clipaudit.evaluate.bias.verdicts import BiasThresholds, verdicts

    renamed = replace(
        ctx, columns={"group": ["z" if g == "a" else g for g in ctx.columns["group"]]}
    )
    got = {}
    for name, c in (("a|b", ctx), ("b|z", renamed)):
        detail = association_probe(c).detail
        v = verdicts({"probes": ["association"], "association": detail}, BiasThresholds())
        got[name] = (
            detail["group"][name],
            {i["item"].split(" ~ ")[1]: i["verdict"] for i in v["items"]},
        )
    (orig, v_orig), (swap, v_swap) = got["a|b"], got["b|z"]
    for attr in ("biased|rest", "fair|rest"):
        assert swap[attr]["d"] == pytest.approx(-orig[attr]["d"])
        assert orig[attr]["p"] == swap[attr]["p"] == pytest.approx(1 / 10_001)
        assert orig[attr]["alternative"] == "two-sided"
    assert v_orig == v_swap == {"biased|rest": "fail", "fair|rest": "fail"}
    # The one-sided p is kept and is the order-dependent one.
    assert orig["biased|rest"]["p_one_sided"] < 0.01 < swap["biased|rest"]["p_one_sided"]


def test_skew_names_the_group_behind_max_and_min_and_lists_absent_groups(
    ctx: BiasContext,
) -> None:
    res = skew_probe(ctx)
    s = res.detail["concepts"]["biased"]["group"]
    j = s["ks"].index(40)
    u = s["uniform"]
    assert u["max_skew"][j]["group"] == "a" and u["min_skew"][j]["group"] == "b"
    assert u["max_skew"][j]["confidence"] == pytest.approx(0.975)  # 1 − 0.05 / 2 groups
    lo, hi = u["max_skew"][j]["ci"]
    assert lo <= u["max_skew"][j]["value"] <= hi
    assert u["absent"] == []
