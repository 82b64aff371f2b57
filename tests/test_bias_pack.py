"""Bias thresholds as a rules-pack section: `eval bias --rules PACK` follows the pack."""

from __future__ import annotations

from pathlib import Path

import pytest

from clipaudit.errors import ClipauditError
from clipaudit.evaluate.bias.verdicts import load_thresholds, verdicts
from clipaudit.rules.schema import load_pack


def _skew_result(max_skew: float, p: float) -> dict:
    uniform = {
        "max_skew": [{"value": max_skew, "ci": [max_skew / 2, max_skew * 1.5]}],
        "max_skew_p": p,
    }
    return {
        "probes": ["skew"],
        "skew": {"k": 10, "concepts": {"doctor": {"group": {"ks": [10], "uniform": uniform}}}},
    }


def test_packs_carry_bias_thresholds_and_extend_them(tmp_path: Path) -> None:
    assert load_pack("default").bias.max_skew_fail == pytest.approx(0.22)
    strict = load_pack("strict").bias
    assert strict.max_skew_fail == pytest.approx(0.095)
    assert strict.alpha_fail == pytest.approx(0.01)  # untouched fields keep the defaults
    child = tmp_path / "child.yaml"
    child.write_text("name: child\nextends: strict\nbias:\n  alpha_fail: 0.001\n")
    got = load_thresholds(None, str(child))
    assert (got.alpha_fail, got.max_skew_fail) == (pytest.approx(0.001), pytest.approx(0.095))


def test_a_skew_between_the_two_packs_fails_only_under_strict() -> None:
    result = _skew_result(max_skew=0.2, p=0.001)  # CI [0.1, 0.3]: above 0.095, not 0.22
    lax = verdicts(result, load_thresholds(None, "default"))
    tight = verdicts(result, load_thresholds(None, "strict"))
    assert lax["overall"] == "warn" and tight["overall"] == "fail"


def test_unknown_bias_field_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nbias:\n  max_skew_fial: 0.1\n")
    with pytest.raises(ClipauditError, match=r"max_skew_fial"):
        load_pack(str(bad))
