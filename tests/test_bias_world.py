"""The planted bias (doctor → zib) on the world's balanced eval-people split, with the
bundled model: detected by retrieval skew, while most unbiased occupations are not.

k is a tenth of the images, the top-10% share the model card measures. No number of the
model is written here: the test states the criterion of the issue and the model meets it
or not.
"""

from __future__ import annotations

from typing import Any

import pytest

from clipaudit.evaluate.bias import load_bias_data, run_bias
from clipaudit.evaluate.bias.context import excludes_zero
from clipaudit.evaluate.bootstrap import BootstrapSpec
from clipaudit.evaluate.images import embed_images
from clipaudit.models import load_clip
from clipaudit.world.vocab import BIASED_GROUP, BIASED_OCCUPATION, OCCUPATIONS

N = 2000
K = N // 10


@pytest.fixture(scope="module")
def result() -> dict[str, Any]:
    clip = load_clip("bundled:world-clip")
    data = load_bias_data("world", n=N, seed=1)
    return run_bias(
        clip,
        data,
        probes="skew,disparity",
        world=True,
        boot=BootstrapSpec(n=200, seed=0),
        k=K,
        permutations=2000,
        embedded=embed_images(clip, data.images, batch_size=128),
    )


def _uniform(result: dict[str, Any], occ: str) -> dict[str, Any]:
    block: dict[str, Any] = result["skew"]["concepts"][occ]["group"]["uniform"]
    return block


def test_planted_bias_is_detected(result: dict[str, Any]) -> None:
    ks = result["skew"]["concepts"][BIASED_OCCUPATION]["group"]["ks"]
    u = _uniform(result, BIASED_OCCUPATION)
    head = u["max_skew"][ks.index(K)]
    assert excludes_zero(head["ci"]), head
    assert u["max_skew_p"] < 0.01, u["max_skew_p"]
    # The over-represented group is the planted one.
    assert u["skew_by_group"][BIASED_GROUP]["value"] > 0
    assert excludes_zero(u["skew_by_group"][BIASED_GROUP]["ci"])


def test_most_unbiased_occupations_are_not_flagged(result: dict[str, Any]) -> None:
    others = [o for o in OCCUPATIONS if o != BIASED_OCCUPATION]
    p = {o: _uniform(result, o)["max_skew_p"] for o in others}
    assert sum(v > 0.05 for v in p.values()) > len(others) / 2, p


def test_accuracy_by_group_is_reported(result: dict[str, Any]) -> None:
    d = result["disparity"]["group"]
    assert set(d["by_group"]) == {"zib", "mox"}
    assert all(g["n"] == N // 2 for g in d["by_group"].values())
    assert 0 <= d["difference"]["value"] <= 1 and 0 <= d["ratio"]["value"] <= 1
