"""The shipped world model: its card's numbers are re-measured here and held to the floors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from clipaudit.models import load_clip
from clipaudit.models.card import CARD_TARGETS
from clipaudit.models.loader import BUNDLED_DIR
from clipaudit.world.measure import world_card_metrics

FOLDER = BUNDLED_DIR / "world-clip"


@pytest.fixture(scope="module")
def measured() -> dict:
    return world_card_metrics(load_clip("bundled:world-clip"))


def test_weights_ship_small_with_a_card() -> None:
    weights = FOLDER / "open_clip_model.safetensors"
    assert weights.stat().st_size <= 25 * 1024 * 1024
    card = (FOLDER / "MODEL_CARD.md").read_text()
    for section in ("## Data", "## Config", "## Training", "## Measured", "## Limits"):
        assert section in card


def test_card_numbers_are_what_the_model_measures(measured: dict) -> None:
    shipped = json.loads((FOLDER / "metrics.json").read_text())
    for key in CARD_TARGETS:
        assert measured[key] == pytest.approx(shipped[key], abs=1e-6), key
    assert measured["bias_top10_overrep"] == pytest.approx(shipped["bias_top10_overrep"], abs=1e-6)
    card = (FOLDER / "MODEL_CARD.md").read_text()
    assert f"| color_acc1 | {shipped['color_acc1']:.3f} |" in card


@pytest.mark.parametrize(("key", "floor"), [(k, t) for k, (_, t) in CARD_TARGETS.items()])
def test_held_out_floors(measured: dict, key: str, floor: float) -> None:
    assert measured[key] >= floor, (key, measured[key])


def test_planted_bias_is_measurable(measured: dict) -> None:
    bias = measured["bias_top10_overrep"]
    planted = measured["bias_planted"]["occupation"]
    assert bias[planted] >= 0.2, bias


def test_unbiased_occupations_stay_below_0_1(measured: dict) -> None:
    bias = measured["bias_top10_overrep"]
    planted = measured["bias_planted"]["occupation"]
    for occ, value in bias.items():
        if occ != planted:
            assert abs(value) < 0.1, (occ, value)


def test_one_warning_on_data_the_world_did_not_make(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "clipaudit", *args], capture_output=True, text=True, timeout=300
        )

    assert run("example", "--out", str(tmp_path / "ex"), "--n", "8").returncode == 0
    r = run(
        "embed",
        str(tmp_path / "ex"),
        "--out",
        str(tmp_path / "e1"),
        "--model",
        "bundled:world-clip",
    )
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("warning: bundled:world-clip was trained only on") == 1
    assert (
        run(
            "world", "--out", str(tmp_path / "w"), "--n", "8", "--split", "eval-retrieval"
        ).returncode
        == 0
    )
    r = run(
        "embed",
        str(tmp_path / "w" / "data"),
        "--out",
        str(tmp_path / "e2"),
        "--model",
        "bundled:world-clip",
    )
    assert r.returncode == 0, r.stderr
    assert "warning" not in r.stderr


def test_card_world_benchmarks_are_what_the_model_measures(measured: dict) -> None:
    """The card's `clipaudit eval world-*` table: classification acc1 equals the card's own
    measure on the same scenes, and world-retrieval is re-run and matched to 1e-9."""
    from clipaudit.evaluate.world import run_world_benchmark

    wb = json.loads((FOLDER / "metrics.json").read_text())["world_benchmarks"]
    assert wb["world-colors"]["acc1"] == pytest.approx(measured["color_acc1"], abs=1e-9)
    assert wb["world-shapes"]["acc1"] == pytest.approx(measured["shape_acc1"], abs=1e-9)
    assert wb["world-occupations"]["acc1"] == pytest.approx(measured["occupation_acc1"], abs=1e-9)
    got = run_world_benchmark("world-retrieval", load_clip("bundled:world-clip"))["metrics"]
    for key in ("text_to_image_recall@1", "image_to_text_recall@5"):
        assert got[key]["value"] == pytest.approx(wb["world-retrieval"][key], abs=1e-9)
        assert got[key]["ci"] == pytest.approx(wb["world-retrieval"][f"{key}_ci"], abs=1e-9)
    assert "## World benchmarks" in (FOLDER / "MODEL_CARD.md").read_text()
