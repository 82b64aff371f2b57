"""A world-trained model on data the world did not make: its alignment scores are at chance
there (real photos with their own class names: AUROC 0.51), so decide must not drop on them,
and must say so; on world data nothing changes."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq

from clipaudit.curate.decide import decide_run
from clipaudit.curate.decide.model_fit import alignment_skip, without_alignment
from clipaudit.curate.pipeline import CurateConfig, curate
from clipaudit.data import write_dataset
from clipaudit.data.example import example_samples
from clipaudit.rules.schema import load_pack


def test_alignment_decides_nothing_where_the_model_does_not_know_the_data(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    write_dataset(example_samples(16), str(data), "parquet")
    out = tmp_path / "run"
    curate(CurateConfig(str(data), str(out), stages=["quality", "alignment"], model_threads=1))
    record = json.loads((out / "run.json").read_text())
    assert record["model_fit"]["fits_data"] is False
    assert "trained only on clipaudit's synthetic world" in record["model_fit"]["note"]
    table = pq.read_table(out / "decisions.parquet").to_pylist()
    assert len(table) == 16
    # The scores are kept (they are what the model said) but decide nothing.
    assert all(r["alignment"] is not None for r in table)
    assert not any("low_alignment" in (r["reasons"] or "") for r in table)
    stats = json.loads((out / "stats.json").read_text())
    assert stats["thresholds"]["alignment_min"] is None
    assert stats["thresholds"]["alignment_skipped"].startswith("not applied: bundled:world-clip")
    # Re-decided with a pack that asks for a cut, still not applied.
    pack = tmp_path / "p.yaml"
    pack.write_text("name: p\nextends: default\nalignment:\n  min: 0.99\n", encoding="utf-8")
    again = decide_run(out, rules=str(pack), write_kept=False)
    assert again["by_reason"].get("low_alignment", 0) == 0
    # The report says so beside the scores.
    from clipaudit.reports.render import write_report

    write_report([out], tmp_path / "r.html")
    html = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "Alignment threshold not applied: bundled:world-clip was trained only" in html


def test_world_data_keeps_its_alignment_rule() -> None:
    record = {"model_fit": {"model": "bundled:world-clip", "fits_data": True, "note": None}}
    assert alignment_skip(record) is None
    assert alignment_skip({}) is None  # another model, or a run from before the record
    skip = alignment_skip({"model_fit": {"model": "bundled:world-clip", "fits_data": False}})
    assert skip is not None and "--model" in skip
    pack = without_alignment(load_pack("default"))
    assert pack.alignment.min is None and pack.alignment_for("bundled:world-clip").min is None
    assert load_pack("default").alignment_for("bundled:world-clip").min == 0.48
