"""``clipaudit eval bias`` end to end on a small world, and the face-label layouts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from clipaudit.errors import ClipauditError
from clipaudit.evaluate.bias.data import detect_layout, load_bias_data


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "clipaudit", "eval", "bias", *args],
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_probe_all_on_a_small_world(tmp_path: Path) -> None:
    out = tmp_path / "bias"
    r = run(
        "--world", "--n", "100", "--k", "20", "--bootstrap", "20", "--permutations", "50",
        "--fail-on", "never", "--out", str(out),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    res = json.loads((out / "results.json").read_text())
    assert list(res)[:8] == [
        "schema", "task", "dataset", "model", "prompts", "seed", "bootstrap", "metrics",
    ]  # fmt: skip
    assert res["task"] == "bias" and res["dataset"]["n"] == 100
    assert set(res["probes"]) == {"skew", "harmful", "association", "disparity"}
    assert {"concepts", "labels", "classes"} <= set(res["prompts"])
    assert all(len(p["fingerprint"]) == 64 for p in res["prompts"].values())
    assert set(res["skew"]["concepts"]) == {"doctor", "chef", "builder", "painter", "farmer"}
    assert res["disparity"]["label_column"] == "occupation"
    assert res["verdicts"]["overall"] in ("pass", "warn", "fail")
    assert f"verdict: {res['verdicts']['overall']}" in r.stdout
    preds = pq.read_table(out / "predictions.parquet")
    assert preds.num_rows == 100 and {"id", "group", "correct"} <= set(preds.column_names)
    table = pq.read_table(out / "bias_table.parquet").to_pylist()
    assert {row["probe"] for row in table} == {"skew", "harmful", "association", "disparity"}


def test_degenerate_k_is_one_clear_line(tmp_path: Path) -> None:
    r = run("--world", "--n", "30", "--probe", "skew", "--k", "30", "--out", str(tmp_path / "o"))
    assert r.returncode == 2
    assert "k=30 is not below the number of images (30)" in r.stderr + r.stdout
    assert "Traceback" not in r.stderr


def _png(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (120, 30, 30)).save(path)


def test_fairface_csv_layout(tmp_path: Path) -> None:
    csv = tmp_path / "fairface_label_val.csv"
    csv.write_text(
        "file,age,gender,race,service_test\n"
        "val/1.jpg,20-29,Male,East Asian,True\n"
        "val/2.jpg,3-9,Female,Black,False\n",
        encoding="utf-8",
    )
    _png(tmp_path / "val" / "1.jpg")
    assert detect_layout(csv) == "fairface"
    data = load_bias_data("fairface", csv)
    assert data.images.ids == ["val/1.jpg", "val/2.jpg"]
    assert data.columns["race"] == ["East Asian", "Black"]
    got = [err for _, err in data.images.read()]
    assert got == [None, "missing_image"]


def test_utkface_file_name_layout(tmp_path: Path) -> None:
    for name in ("25_0_2_20170116.jpg.chip.jpg", "71_1_1_2017.jpg", "bad_name.jpg"):
        _png(tmp_path / name)
    assert detect_layout(tmp_path) == "utkface"
    data = load_bias_data("utkface", tmp_path)
    assert data.columns["gender"] == ["Male", "Female"]
    assert data.columns["race"] == ["Asian", "Black"]
    assert data.columns["age_bin"] == ["20-29", "more than 70"]
    assert data.info["unparsed_names"] == 1


def test_unknown_layout_lists_the_known() -> None:
    with pytest.raises(ClipauditError, match="fairface"):
        load_bias_data("celeba", "x")


def test_any_dataset_with_group_columns(tmp_path: Path) -> None:
    import io

    from clipaudit.data import Sample, write_dataset

    def png() -> bytes:
        buf = io.BytesIO()
        Image.new("RGB", (8, 8), (10, 200, 10)).save(buf, format="PNG")
        return buf.getvalue()

    samples = [
        Sample(id=f"s{i}", image=png(), caption="x", meta={"gender": g, "race": r})
        for i, (g, r) in enumerate([("Male", "Black"), ("Female", "White"), ("Male", "White")])
    ]
    write_dataset(samples, tmp_path / "ds", "parquet")
    assert detect_layout(tmp_path / "ds") == "dataset"
    data = load_bias_data("dataset", tmp_path / "ds", columns=["gender", "race"])
    assert data.images.ids == ["s0", "s1", "s2"]
    assert data.columns == {
        "gender": ["Male", "Female", "Male"],
        "race": ["Black", "White", "White"],
    }
    assert [err for _, err in data.images.read()] == [None, None, None]
    with pytest.raises(ClipauditError, match="no column 'age'"):
        load_bias_data("dataset", tmp_path / "ds", columns=["age"])
