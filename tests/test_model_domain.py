"""A world-trained model on data the world did not make: its alignment scores are at chance
there (real photos with their own class names: AUROC 0.51), so decide must not drop on them,
and must say so; on world data nothing changes."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from clipaudit.curate.decide import decide_run
from clipaudit.curate.decide.model_fit import (
    alignment_skip,
    reads_model_scores,
    without_model_scores,
)
from clipaudit.curate.pipeline import CurateConfig, curate
from clipaudit.data import write_dataset
from clipaudit.data.example import example_samples
from clipaudit.errors import ClipauditError
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
    pack, _ = without_model_scores(load_pack("default"))
    assert pack.alignment.min is None and pack.alignment_for("bundled:world-clip").min is None
    assert load_pack("default").alignment_for("bundled:world-clip").min == 0.48


UNFIT_PACK = """\
name: cosines
extends: default
dedup:
  semantic_eps: 0.5
nsfw:
  phrases:
    - {text: a photo of a nude person, min_score: -1, route: review}
watermark:
  visible_min_margin: -2
routes:
  by_phrase:
    phrases: [a photo of a thing]
    threshold: -2
    action: flag
  by_alignment:
    where: "alignment > -2"
    action: flag
  by_size:
    where: "width >= 1"
    action: flag
"""


def test_no_rule_on_the_models_cosines_decides_where_it_does_not_know_the_data(
    tmp_path: Path,
) -> None:
    """Phrases, the watermark margin, phrase routes, routes filtering on a model score and
    semantic duplicates all rest on the same cosines as alignment: left out together, while
    a route over other signals still applies. The same pack on the same scores with the
    model trusted fires every one of them, so the test would fail if nothing were left out."""
    data = tmp_path / "data"
    write_dataset(example_samples(12), str(data), "parquet")
    pack = tmp_path / "cosines.yaml"
    pack.write_text(UNFIT_PACK, encoding="utf-8")
    out = tmp_path / "run"
    curate(
        CurateConfig(
            str(data),
            str(out),
            stages=["quality", "alignment", "watermark", "nsfw"],
            rules=str(pack),
            model_threads=1,
        )
    )
    record = json.loads((out / "run.json").read_text())
    assert record["model_fit"]["fits_data"] is False
    stats = json.loads((out / "stats.json").read_text())
    assert stats["model_scores_not_applied"] == [
        "alignment",
        "dedup.semantic_eps",
        "dedup.keeper.alignment",
        "nsfw.phrases",
        "watermark.visible_min_margin",
        "routes.by_phrase",
        "routes.by_alignment",
    ]
    rows = pq.read_table(out / "decisions.parquet").to_pylist()
    assert len(rows) == 12
    fired = {code for r in rows for code in r["reasons"] or []}
    assert "route:by_size" in fired
    assert not fired & {
        "low_alignment",
        "semantic_duplicate",
        "nsfw",
        "nsfw_review",
        "watermark_suspect",
        "route:by_phrase",
        "route:by_alignment",
    }
    assert set(stats["routes"]) == {"by_size"}
    from clipaudit.reports.render import write_report

    write_report([out], tmp_path / "r.html")
    html = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert (
        "Also not applied, as they rest on the same model's scores: dedup.semantic_eps, "
        "dedup.keeper.alignment, nsfw.phrases, watermark.visible_min_margin, routes.by_phrase, "
        "routes.by_alignment." in html
    )

    # The same scores with the model trusted: every left-out rule fires.
    record["model_fit"]["fits_data"] = True
    (out / "run.json").write_text(json.dumps(record), encoding="utf-8")
    trusted = decide_run(out, rules=str(pack), write_kept=False)
    assert "model_scores_not_applied" not in trusted
    # (Every rule here flags, so every sample stands for the duplicate search.)
    for code in ("nsfw_review", "watermark_suspect", "route:by_phrase", "route:by_alignment"):
        assert trusted["by_reason"].get(code, 0) == 12, code
    assert trusted["by_reason"].get("semantic_duplicate", 0) > 0


def test_where_filters_that_read_a_model_score_are_recognised() -> None:
    assert reads_model_scores("alignment < 0.2")
    assert reads_model_scores("width > 3 and `wm_phrase_score` >= 0.1")
    assert reads_model_scores("not (nsfw_phrases is null)")
    # Quoted text and other columns that merely start alike are not the model's scores.
    assert not reads_model_scores("'alignment' in caption")
    assert not reads_model_scores('"it\'s the alignment" in caption and width > 1')
    assert not reads_model_scores("alignment_frames > 1 or visible_watermark_score >= 0.9")


def test_the_nsfw_cascade_does_not_gate_on_an_unfit_models_phrases(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_dataset(example_samples(10), str(data), "parquet")
    pack = tmp_path / "cascade.yaml"
    pack.write_text(
        "name: cascade\nextends: default\nnsfw:\n  cascade: {enabled: true, audit_rate: 0}\n"
        "  phrases:\n    - {text: a nude photo, min_score: 0.99, bar: 0.99}\n",
        encoding="utf-8",
    )
    out = tmp_path / "run"
    warnings: list[str] = []
    from clipaudit.curate.scoring import score

    score(
        CurateConfig(str(data), str(out), stages=["quality", "nsfw"], rules=str(pack)),
        warn=warnings.append,
    )
    assert any("the detector reads every image" in w for w in warnings)
    sig = pq.read_table(out / "signals").to_pylist()
    assert len(sig) == 10
    # No image reached the 0.99 bar, and with the cascade on none would have been read.
    assert all(r["nsfw_cascade"] is None and r["nsfw_detector"] is not None for r in sig)


def test_a_model_clipaudit_train_made_is_world_trained(tmp_path: Path) -> None:
    """Only the spec string bundled:world-clip was recognised: a model from `clipaudit
    train` (world-only by construction) got no warning on real data and its chance-level
    cosines dropped 15 of 16 real photos as low_alignment."""
    from clipaudit.data import open_dataset
    from clipaudit.models.domain import model_fit, world_trained

    data = tmp_path / "data"
    write_dataset(example_samples(4), str(data), "parquet")
    ds = open_dataset(str(data))
    trained, other = tmp_path / "trained", tmp_path / "other"
    trained.mkdir()
    other.mkdir()
    (trained / "train.json").write_text(json.dumps({"config": {"seed": 0}}))
    (other / "train.json").write_text("not json")
    assert world_trained(f"local-dir:{trained}") and world_trained("bundled:world-clip")
    assert not world_trained(f"local-dir:{other}") and not world_trained("local-dir:/nowhere")
    fit = model_fit(f"local-dir:{trained}", ds)
    assert fit is not None and fit["fits_data"] is False
    assert "trained only on clipaudit's synthetic world" in fit["note"]
    assert model_fit(f"local-dir:{other}", ds) is None  # the user's own model is trusted


def test_a_relative_model_folder_is_recorded_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`curate -m local-dir:m` stored `local-dir:m` as typed: search and route decides from
    any other folder failed, and the same folder named absolutely was 'not the run's model'."""
    import shutil

    from clipaudit.models.loader import BUNDLED_DIR
    from clipaudit.search.query import check_model, open_searchable

    shutil.copytree(BUNDLED_DIR / "world-clip", tmp_path / "m")
    write_dataset(example_samples(4), str(tmp_path / "data"), "parquet")
    monkeypatch.chdir(tmp_path)
    curate(CurateConfig("data", "run", stages=["quality", "alignment"], model="local-dir:m"))
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["settings"]["model"] == f"local-dir:{tmp_path / 'm'}"
    monkeypatch.chdir("/")
    s = open_searchable(tmp_path / "run")
    check_model(s, f"local-dir:{tmp_path / 'm'}")  # the run's own model, named absolutely
    with pytest.raises(ClipauditError, match="is not the run's model"):
        check_model(s, "random:clipaudit-tiny")
    monkeypatch.chdir(tmp_path)
    check_model(s, "local-dir:m")  # and relatively, from its folder
