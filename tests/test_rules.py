from __future__ import annotations

from pathlib import Path

import pytest

from clipaudit.errors import ClipauditError
from clipaudit.rules.schema import load_pack, shipped_packs


def test_shipped_packs_load_and_extend() -> None:
    assert set(shipped_packs()) >= {"default", "laion", "datacomp", "strict"}
    default, datacomp, strict = load_pack("default"), load_pack("datacomp"), load_pack("strict")
    assert datacomp.extends == "default"
    assert datacomp.alignment.min is None and datacomp.alignment.min_percentile == 70
    assert datacomp.quality.min_side == 200 and datacomp.quality.max_aspect == 3.0
    # Inherited, not restated:
    assert datacomp.quality.max_caption_chars == default.quality.max_caption_chars == 2000
    assert default.action("license_nc") == "flag" and strict.action("license_nc") == "drop"
    assert strict.action("decode_error") == "drop"  # unlisted reasons drop
    assert default.dedup.keeper == ["flags", "alignment", "resolution", "id"]


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "pack.yaml"
    p.write_text(text)
    return p


def test_typo_names_file_line_field_and_allowed_fields(tmp_path: Path) -> None:
    p = _write(tmp_path, "name: mine\nextends: default\nquality:\n  min_sid: 100\n")
    with pytest.raises(ClipauditError) as err:
        load_pack(str(p))
    assert str(err.value) == (
        f"{p}, line 4: unknown field 'quality.min_sid'; the allowed fields there are: "
        "caption_length, languages, max_aspect, max_black_frame_share, max_caption_chars, "
        "max_video_duration, "
        "min_caption_chars, min_caption_words, min_file_bytes, min_language_score, "
        "min_pixel_std, min_side, min_video_motion."
    )


def test_bad_values_are_named(tmp_path: Path) -> None:
    p = _write(tmp_path, "name: x\nactions:\n  nsfw: delete\n")
    with pytest.raises(
        ClipauditError,
        match=r"line 3: field 'actions.nsfw': Input should be "
        r"'drop', 'flag' or 'keep'",
    ):
        load_pack(str(p))
    p = _write(tmp_path, "name: x\nactions:\n  nsfww: drop\n")
    with pytest.raises(ClipauditError, match="unknown reason code 'nsfww'; the codes are: "):
        load_pack(str(p))
    p = _write(tmp_path, "name: x\nalignment:\n  min_percentile: 130\n")
    with pytest.raises(ClipauditError, match=r"line 3: field 'alignment\.min_percentile'"):
        load_pack(str(p))
    p = _write(tmp_path, "name: x\nquality: [1, 2\n")
    with pytest.raises(ClipauditError, match="not valid YAML"):
        load_pack(str(p))
    with pytest.raises(
        ClipauditError,
        match=r"Unknown rules pack 'nope'; use a \.yaml path or "
        r"one of: datacomp, default, keep-all, laion, strict",
    ):
        load_pack("nope")


def test_extends_loop_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("name: a\nextends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("name: b\nextends: a.yaml\n")
    with pytest.raises(ClipauditError, match="loops back"):
        load_pack(str(tmp_path / "a.yaml"))


def test_per_model_threshold(tmp_path: Path) -> None:
    p = _write(
        tmp_path,
        "name: x\nextends: default\nmodels:\n  'bundled:world-clip':\n    alignment: {min: 0.5}\n",
    )
    pack = load_pack(str(p))
    assert pack.alignment_for("bundled:world-clip").min == 0.5
    assert pack.alignment_for("ViT-B-32:openai").min == 0.28


def test_a_packs_own_percentile_wins_over_inherited_model_thresholds(tmp_path: Path) -> None:
    """datacomp's top 30% is model-relative, so it applies under the bundled model too; an
    absolute cosine (laion's 0.28, a ViT-B/32 number) leaves the model's calibration."""
    datacomp, laion = load_pack("datacomp"), load_pack("laion")
    got = datacomp.alignment_for("bundled:world-clip")
    assert got.min is None and got.min_percentile == 70
    assert "bundled:world-clip" not in datacomp.models
    assert laion.alignment_for("bundled:world-clip").min == 0.48
    assert laion.alignment_for("hf-hub:some/vit-b-32").min == 0.28
    # A percentile pack that names a model itself keeps that entry.
    own = _write(
        tmp_path,
        "name: own\nextends: default\nalignment:\n  min: null\n  min_percentile: 50\n"
        "models:\n  bundled:world-clip:\n    alignment:\n      min: 0.5\n",
    )
    assert load_pack(str(own)).alignment_for("bundled:world-clip").min == 0.5


def test_the_keep_all_pack_keeps_every_reason_code() -> None:
    """The null pack of `clipaudit ablate`: a code it leaves out (the video and judge codes
    once) drops or flags under it, and its arm no longer matches the raw one."""
    import yaml

    from clipaudit.rules.reasons import REASONS

    path = Path(__file__).resolve().parents[1] / "src/clipaudit/rules/packs/keep-all.yaml"
    actions = yaml.safe_load(path.read_text())["actions"]
    assert sorted(set(REASONS) - set(actions)) == []
    assert set(actions.values()) == {"keep"}
