"""World benchmarks by name, through the CLI and the pure functions, with the bundled model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from clipaudit.evaluate import BootstrapSpec, run_world_benchmark, world_benchmark_metrics
from clipaudit.evaluate.cli import eval_app
from clipaudit.evaluate.heads import HeadCache
from clipaudit.evaluate.images import embed_images
from clipaudit.evaluate.world import WORLD_BENCHMARKS, world_images
from clipaudit.models import load_clip
from clipaudit.world.measure import zero_shot_acc
from clipaudit.world.prompts import color_prompts
from clipaudit.world.splits import scenes

N = 48
BOOT = 200
RESULT_KEYS = ["schema", "task", "dataset", "model", "prompts", "seed", "bootstrap", "metrics"]


@pytest.fixture(scope="module")
def clip() -> Any:
    return load_clip("bundled:world-clip", device="cpu")


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("eval") / "colors"
    args = ["world-colors", "--n", str(N), "--bootstrap", str(BOOT), "--out", str(out)]
    # The same model twice: the comparison must show an exact zero difference.
    res = CliRunner().invoke(
        eval_app, [*args, "-m", "bundled:world-clip", "-m", "bundled:world-clip"]
    )
    assert res.exit_code == 0, res.output
    assert "acc1" in res.output
    return out


def test_world_colors_cli_equals_pure_function(clip: Any, cli_run: Path) -> None:
    written = json.loads((cli_run / "00-bundled-world-clip" / "results.json").read_text())
    assert list(written)[: len(RESULT_KEYS)] == RESULT_KEYS
    ours = run_world_benchmark("world-colors", clip, n=N, boot=BootstrapSpec(BOOT))
    assert written["metrics"] == ours["metrics"]
    assert written["prompts"]["fingerprint"] == ours["prompts"]["fingerprint"]
    assert written["model"]["weights_sha256"] == clip.provenance.weights_sha256
    assert written["bootstrap"]["n"] == BOOT and written["seed"] == 0
    assert written["metrics"]["acc1"]["value"] >= 0.9  # a floor the bundled model clears
    lo, hi = written["metrics"]["acc1"]["ci"]
    assert lo <= written["metrics"]["acc1"]["value"] <= hi
    rows = pq.read_table(cli_run / "00-bundled-world-clip" / "predictions.parquet").to_pylist()
    assert len(rows) == N
    assert {"id", "label", "pred", "top5", "top5_scores", "rank"} <= set(rows[0])
    assert np.mean([r["label"] == r["pred"] for r in rows]) == written["metrics"]["acc1"]["value"]


def test_model_against_itself_differs_by_exactly_zero(cli_run: Path) -> None:
    comparison = json.loads((cli_run / "comparison.json").read_text())
    assert [row["model"] for row in comparison["table"]] == ["bundled:world-clip"] * 2
    (diff,) = comparison["differences"]
    for name in ("acc1", "acc5", "mean_per_class_recall"):
        assert diff["metrics"][name]["value"] == 0.0
        assert diff["metrics"][name]["ci"] == [0.0, 0.0]


def test_world_colors_agrees_with_the_card_definition(clip: Any) -> None:
    """measure.py's color_acc1 on the same scenes is our acc1 (the card's number)."""
    emb = embed_images(clip, world_images("eval-objects", N, 1, 256))
    truth = [s.truth()["objects"][0]["color"] for s in scenes("eval-objects", N, seed=1)]
    card = zero_shot_acc(clip, emb.emb, truth, color_prompts())
    ours = run_world_benchmark("world-colors", clip, n=N, boot=BootstrapSpec(0), embedded=None)
    assert ours["metrics"]["acc1"]["value"] == card


def test_world_benchmark_metrics_for_the_card(clip: Any) -> None:
    heads = HeadCache()
    out = world_benchmark_metrics(
        clip, n_objects=N, n_people=20, n_retrieval=24, boot=BootstrapSpec(100)
    )
    assert set(out) == set(WORLD_BENCHMARKS) | {"eval"}
    assert out["world-colors"]["n"] == N and out["world-occupations"]["n"] == 20
    assert "acc5" not in out["world-occupations"] or out["world-occupations"]["acc5"] == 1.0
    assert out["world-colors"]["acc1"] >= 0.9
    r = out["world-retrieval"]
    assert (
        r["text_to_image_recall@1"] <= r["text_to_image_recall@5"] <= r["text_to_image_recall@10"]
    )
    for entry in (out[k] for k in WORLD_BENCHMARKS):
        for name, value in entry.items():
            if name.endswith("_ci"):
                metric = entry[name[:-3]]
                assert value[0] <= metric <= value[1]
    # The same number as running the benchmark on its own, shared embeddings and all.
    alone = run_world_benchmark("world-shapes", clip, n=N, boot=BootstrapSpec(100), heads=heads)
    assert alone["metrics"]["acc1"]["value"] == out["world-shapes"]["acc1"]
    assert heads.computed == 1


def test_world_retrieval_has_several_captions_per_image(clip: Any) -> None:
    res = run_world_benchmark("world-retrieval", clip, n=24, boot=BootstrapSpec(0))
    ds = res["dataset"]
    assert ds["n_images"] == 24 and ds["n_captions"] > 24
    rows = res["per_sample"]
    texts = [
        c for c, d in zip(rows["caption"], rows["direction"], strict=True) if d == "text_to_image"
    ]
    assert len(texts) == len(set(texts)) == ds["n_captions"]  # every caption names one image
    t2i = [r for r, d in zip(rows["rank"], rows["direction"], strict=True) if d == "text_to_image"]
    assert res["metrics"]["text_to_image_recall@1"]["value"] == pytest.approx(
        np.mean(np.array(t2i) < 1)
    )
