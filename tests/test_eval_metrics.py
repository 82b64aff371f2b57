"""Metric definitions on known logits: acc5 presence, balanced recall, ranks, bootstrap."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score

from clipaudit.evaluate.bootstrap import (
    BootstrapSpec,
    balanced_recall_stat,
    mean_stat,
    paired_difference,
    summarise,
)
from clipaudit.evaluate.classification import classification_metrics
from clipaudit.evaluate.ranking import rank_of


def _logits(n: int, c: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, c, n)
    logits = rng.normal(size=(n, c)).astype(np.float32)
    logits[np.arange(n), labels] += 1.0  # better than chance, not perfect
    return logits, labels


def test_acc5_absent_below_five_classes() -> None:
    logits, labels = _logits(40, 4, 0)
    out = classification_metrics(
        logits, labels, list("abcd"), [str(i) for i in range(40)], BootstrapSpec(50)
    )
    assert "acc5" not in out["metrics"] and "correct5" not in out["per_sample"]
    assert any("acc5" in note and "4 classes" in note for note in out["notes"])
    assert len(out["per_sample"]["top5"][0]) == 4  # every class, not a padded top 5


def test_trivial_metrics_say_so() -> None:
    """With exactly 5 classes acc5 is 1.0 [1, 1] whatever the model (reported, as
    CLIP_benchmark does, with a note); with one class acc1 is."""
    logits, labels = _logits(30, 5, 1)
    out = classification_metrics(
        logits, labels, list("abcde"), [str(i) for i in range(30)], BootstrapSpec(20)
    )
    assert out["metrics"]["acc5"]["value"] == 1.0
    assert "acc5 is 1.0 by construction: the dataset has exactly 5 classes." in out["notes"]
    one = classification_metrics(
        np.zeros((3, 1), np.float32), np.zeros(3, np.int64), ["a"], list("xyz"), BootstrapSpec(0)
    )
    assert one["metrics"]["acc1"]["value"] == 1.0
    assert "acc1 is 1.0 by construction: the dataset has one class." in one["notes"]
    six = classification_metrics(
        *_logits(30, 6, 2), list("abcdef"), [str(i) for i in range(30)], BootstrapSpec(0)
    )
    assert not any("by construction" in n for n in six["notes"])


def test_metrics_on_known_logits() -> None:
    logits = np.array(
        [[3, 2, 1, 0, 0, 0], [0, 3, 2, 1, 0, 0], [0, 0, 0, 0, 0, 9], [5, 4, 3, 2, 1, 0]], np.float32
    )
    labels = np.array([0, 2, 1, 5])  # hit, rank 1, rank 2 (a tie: index order), rank 5
    out = classification_metrics(logits, labels, list("abcdef"), list("wxyz"), BootstrapSpec(0))
    assert out["per_sample"]["rank"].tolist() == [0, 1, 2, 5]
    assert out["metrics"]["acc1"]["value"] == 0.25
    assert out["metrics"]["acc5"]["value"] == 0.75
    assert out["metrics"]["acc1"]["ci"] is None  # no resamples, no interval
    # classes a, b, c, f are present with recalls 1, 0, 0, 0
    assert out["metrics"]["mean_per_class_recall"]["value"] == 0.25
    assert out["per_class"]["recall"] == {
        "a": 1.0,
        "b": 0.0,
        "c": 0.0,
        "d": None,
        "e": None,
        "f": 0.0,
    }
    assert out["confusion_matrix"]["counts"][5][0] == 1
    assert out["per_sample"]["pred"] == ["a", "b", "f", "a"]


def test_balanced_recall_equals_sklearn_even_with_missing_classes() -> None:
    logits, labels = _logits(300, 7, 1)
    pred = logits.argmax(1)
    stat = balanced_recall_stat(labels, pred == labels, 7)
    absent = np.flatnonzero(labels != 3)[:50]  # a resample in which class 3 has no samples
    both = np.stack([np.arange(50), absent])
    for row, value in zip(both, stat(both), strict=True):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # sklearn warns when a predicted class is absent
            want = balanced_accuracy_score(labels[row], pred[row])
        assert value == pytest.approx(want, abs=1e-12)
    assert 3 not in labels[absent]


def test_bootstrap_is_seeded_and_contains_the_point() -> None:
    logits, labels = _logits(200, 10, 2)
    correct = logits.argmax(1) == labels
    stat = mean_stat(correct)
    a = summarise(stat, 200, BootstrapSpec(n=300, seed=7))
    b = summarise(stat, 200, BootstrapSpec(n=300, seed=7))
    c = summarise(stat, 200, BootstrapSpec(n=300, seed=8))
    assert a == b and a["ci"] != c["ci"]
    lo, hi = a["ci"]
    assert a["value"] == pytest.approx(correct.mean())
    assert lo <= a["value"] <= hi
    assert 0.0 < hi - lo < 0.2  # n = 200: a real interval, not a degenerate one


def test_paired_difference_of_a_model_with_itself_is_exactly_zero() -> None:
    logits, labels = _logits(120, 6, 3)
    stat = balanced_recall_stat(labels, logits.argmax(1) == labels, 6)
    diff = paired_difference(stat, stat, 120, BootstrapSpec(n=200, seed=0))
    assert diff["value"] == 0.0 and diff["ci"] == [0.0, 0.0] and diff["excludes_zero"] is False
    better = balanced_recall_stat(labels, np.ones(120, bool), 6)
    up = paired_difference(stat, better, 120, BootstrapSpec(n=200, seed=0))
    assert up["value"] > 0 and up["excludes_zero"] is True


def test_rank_ties_follow_index_order() -> None:
    scores = np.array([[1.0, 2.0, 2.0, 2.0]])
    assert [int(rank_of(scores, np.array([j]))[0]) for j in range(4)] == [3, 0, 1, 2]
