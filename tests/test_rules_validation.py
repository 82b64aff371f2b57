"""Strict pack validation: duplicate keys, language codes, bounded thresholds, min/max pairs
and strict types each end in one sentence naming the file, the line and the value, while the
neighbouring valid value still loads."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from clipaudit.errors import ClipauditError
from clipaudit.rules.languages import LANGUAGE_CODES, suggest_language
from clipaudit.rules.schema import Pack, load_pack, shipped_packs

H = 'name: x\nversion: "1"\nextends: default\n'  # the cases' own lines start at 4


def _pack(tmp_path: Path, body: str, head: str = H) -> Path:
    p = tmp_path / "pack.yaml"
    p.write_text(head + body)
    return p


def _error(p: Path) -> str:
    with pytest.raises(ClipauditError) as err:
        load_pack(str(p))
    return str(err.value)


def test_every_shipped_pack_loads() -> None:
    for name in shipped_packs():
        assert isinstance(load_pack(name), Pack), name


# 1. Duplicate keys


@pytest.mark.parametrize(
    ("body", "line", "key", "first"),
    [
        ("actions:\n  nsfw: drop\n  nsfw: keep\n", 6, "actions.nsfw", 5),
        ("quality:\n  min_side: 10\n  min_side: 500\n", 6, "quality.min_side", 5),
        ("quality:\n  min_side: 10\nquality:\n  min_caption_words: 5\n", 6, "quality", 4),
        (
            "nsfw:\n  classes: {ANUS_EXPOSED: 0.5, ANUS_EXPOSED: 0.6}\n",
            5,
            "nsfw.classes.ANUS_EXPOSED",
            5,
        ),
        ("routes:\n  a:\n    where: x > 1\n    where: x > 2\n", 7, "routes.a.where", 6),
    ],
)
def test_duplicate_keys_are_refused(
    tmp_path: Path, body: str, line: int, key: str, first: int
) -> None:
    p = _pack(tmp_path, body)
    assert _error(p) == (
        f"{p}, line {line}: duplicate key {key!r} (first at line {first}); YAML would keep "
        "only the last one, so remove one of them."
    )


def test_a_merged_key_may_be_overridden_and_distinct_keys_load(tmp_path: Path) -> None:
    p = _pack(tmp_path, "actions:\n  nsfw: keep\n  nsfw_review: drop\n")
    assert load_pack(str(p)).action("nsfw") == "keep"
    # A key that a ``<<`` merge brings in is the merge's to override, not a duplicate.
    p = _pack(tmp_path, "quality:\n  <<: {min_side: 3, min_caption_words: 2}\n  min_side: 9\n")
    pack = load_pack(str(p))
    assert (pack.quality.min_side, pack.quality.min_caption_words) == (9, 2)


def test_a_duplicate_in_the_extended_pack_names_that_file(tmp_path: Path) -> None:
    (tmp_path / "parent.yaml").write_text("name: p\nquality:\n  min_side: 1\n  min_side: 2\n")
    child = _pack(tmp_path, "", head="name: c\nextends: parent.yaml\n")
    assert _error(child) == (
        f"{tmp_path / 'parent.yaml'}, line 4: duplicate key 'quality.min_side' (first at "
        "line 3); YAML would keep only the last one, so remove one of them."
    )


def test_alias_bombs_stay_small_and_are_refused(tmp_path: Path) -> None:
    """The key check visits a shared (aliased) node once: 10^9 expanded strings or 10^12
    expanded keys cost nothing, and the pack is refused on its first wrong field."""
    rows = "".join(f"x{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 10) + "]\n" for i in range(1, 10))
    lists = _pack(tmp_path, 'description: &a0 "lol"\n' + rows + "quality:\n  languages: *a9\n")
    maps = tmp_path / "maps.yaml"
    maps.write_text(
        H
        + "x0: &m0 {k: 1}\n"
        + "".join(
            f"x{i}: &m{i} {{" + ", ".join(f"k{j}: *m{i - 1}" for j in range(10)) + "}\n"
            for i in range(1, 13)
        )
    )
    t0 = time.perf_counter()
    assert "field 'quality.languages.0': Input should be a valid string." in _error(lists)
    assert "line 4: unknown field 'x0'" in _error(maps)
    assert time.perf_counter() - t0 < 5


# 2. Language codes


@pytest.mark.parametrize(
    ("code", "hint"),
    [("EN", "en"), ("english", "en"), ("en-US", "en"), ("eng", "en"), ("zh_Hant", "zh")],
)
def test_a_language_the_detector_never_outputs_is_refused_with_the_code(
    tmp_path: Path, code: str, hint: str
) -> None:
    p = _pack(tmp_path, f"quality:\n  languages: [fr, {code}]\n")
    assert _error(p) == (
        f"{p}, line 5: field 'quality.languages.1': {code!r} is not a language code the "
        f"detector outputs; write {hint!r} (lower-case ISO 639-1 where the language has one)."
    )


def test_languages_without_an_obvious_code_list_the_codes(tmp_path: Path) -> None:
    msg = _error(_pack(tmp_path, "quality:\n  languages: [klingon]\n"))
    assert "field 'quality.languages.0': 'klingon' is not a language code the detector" in msg
    assert "outputs; the codes are: ace, af, am, " in msg and msg.endswith(", zu, zxx.")
    p = _pack(tmp_path, "quality:\n  languages: []\n")
    assert _error(p) == (
        f"{p}, line 5: field 'quality.languages': an empty list allows no language at all; "
        "list codes such as [en], or leave the field out (or null) to allow any."
    )
    p = _pack(tmp_path, "quality:\n  languages: [en, fr, en]\n")
    assert _error(p) == f"{p}, line 5: field 'quality.languages': 'en' is listed twice."
    p = _pack(tmp_path, "quality:\n  languages: [en, yue, zxx]\n")
    assert load_pack(str(p)).quality.languages == ["en", "yue", "zxx"]


def test_the_language_codes_are_the_detectors_labels() -> None:
    from clipaudit.curate.stages.quality import _identifier

    assert set(_identifier().nb_classes) == LANGUAGE_CODES
    assert suggest_language("Norwegian") == "no" and suggest_language("xx") is None


# 3. Bounds and NaN


@pytest.mark.parametrize(
    ("body", "line", "field", "msg"),
    [
        ("alignment:\n  min: 2.0\n", 5, "alignment.min", "less than or equal to 1, got 2.0"),
        ("alignment:\n  min: -5\n", 5, "alignment.min", "greater than or equal to -1, got -5"),
        (
            "models:\n  'bundled:world-clip':\n    alignment:\n      min: 7\n",
            7,
            "models.bundled:world-clip.alignment.min",
            "less than or equal to 1, got 7",
        ),
        (
            "nsfw:\n  classes:\n    FEMALE_BREAST_EXPOSED: 4\n",
            6,
            "nsfw.classes.FEMALE_BREAST_EXPOSED",
            "less than or equal to 1, got 4",
        ),
        (
            "nsfw:\n  review_classes:\n    ANUS_EXPOSED: -0.1\n",
            6,
            "nsfw.review_classes.ANUS_EXPOSED",
            "greater than or equal to 0, got -0.1",
        ),
        (
            "judge:\n  watermark_band: [0.5, 1.5]\n",
            5,
            "judge.watermark_band.1",
            "less than or equal to 1, got 1.5",
        ),
        (
            "routes:\n  a:\n    phrases: [a dog]\n    models: {m: 3}\n",
            7,
            "routes.a.models.m",
            "less than or equal to 2, got 3",
        ),
    ],
)
def test_out_of_range_thresholds_are_refused(
    tmp_path: Path, body: str, line: int, field: str, msg: str
) -> None:
    p = _pack(tmp_path, body)
    assert _error(p) == f"{p}, line {line}: field {field!r}: Input should be {msg}."


@pytest.mark.parametrize(
    ("body", "line", "field", "value"),
    [
        ("alignment:\n  min: .nan\n", 5, "alignment.min", "nan"),
        ("quality:\n  max_video_duration: .nan\n", 5, "quality.max_video_duration", "nan"),
        ("quality:\n  max_aspect: .inf\n", 5, "quality.max_aspect", "inf"),
        ("nsfw:\n  cascade:\n    detector_ms: .inf\n", 6, "nsfw.cascade.detector_ms", "inf"),
        ("bias:\n  max_skew_fail: .nan\n", 5, "bias.max_skew_fail", "nan"),
    ],
)
def test_nan_and_infinity_are_refused(
    tmp_path: Path, body: str, line: int, field: str, value: str
) -> None:
    p = _pack(tmp_path, body)
    assert _error(p) == (
        f"{p}, line {line}: field {field!r}: Input should be a finite number, got {value} "
        "(write a number, or null where the field allows none)."
    )


def test_thresholds_at_their_bounds_load(tmp_path: Path) -> None:
    p = _pack(
        tmp_path,
        "alignment:\n  min: -1\nmodels:\n  m:\n    alignment: {min: 1.0}\n"
        "quality:\n  max_aspect: null\n"
        "nsfw:\n  classes: {FEMALE_BREAST_EXPOSED: 1, ANUS_EXPOSED: 0}\n"
        "judge:\n  watermark_band: [0.2, 0.9]\n",
    )
    pack = load_pack(str(p))
    assert pack.alignment.min == -1 and pack.alignment_for("m").min == 1.0
    assert pack.nsfw.classes["FEMALE_BREAST_EXPOSED"] == 1
    assert pack.judge.watermark_band == (0.2, 0.9)


# 4. Contradictory limits


def test_min_above_max_is_refused(tmp_path: Path) -> None:
    p = _pack(tmp_path, "quality:\n  min_caption_chars: 100\n  max_caption_chars: 10\n")
    assert _error(p) == (
        f"{p}, line 6: field 'quality.max_caption_chars': min_caption_chars (100) is above "
        "max_caption_chars (10), so every caption would be dropped; lower the minimum or "
        "raise the maximum."
    )
    # Against the inherited maximum (default: 2000), at the section the pack sets.
    p = _pack(tmp_path, "quality:\n  min_caption_chars: 3000\n")
    assert _error(p).startswith(
        f"{p}, line 4: field 'quality.max_caption_chars': min_caption_chars (3000) is above "
        "max_caption_chars (2000)"
    )
    p = _pack(tmp_path, "quality:\n  min_caption_chars: 10\n  max_caption_chars: 10\n")
    assert load_pack(str(p)).quality.max_caption_chars == 10


@pytest.mark.parametrize(
    ("body", "line", "field", "msg"),
    [
        (
            "judge:\n  watermark_band: [0.9, 0.5]\n",
            5,
            "judge.watermark_band",
            "the band's low end (0.9) is above its high end (0.5); write [low, high]",
        ),
        (
            "bias:\n  alpha_fail: 0.1\n  alpha_warn: 0.05\n",
            6,
            "bias.alpha_warn",
            "alpha_fail (0.1) is above alpha_warn (0.05); a fail needs the smaller p-value, "
            "so lower alpha_fail or raise alpha_warn",
        ),
        (
            "bias:\n  weat_d_fail: 0.3\n  weat_d_warn: 0.5\n",
            6,
            "bias.weat_d_warn",
            "weat_d_warn (0.5) is above weat_d_fail (0.3); a fail needs the larger effect, "
            "so lower weat_d_warn or raise weat_d_fail",
        ),
    ],
)
def test_other_inverted_pairs_are_refused(
    tmp_path: Path, body: str, line: int, field: str, msg: str
) -> None:
    p = _pack(tmp_path, body)
    assert _error(p) == f"{p}, line {line}: field {field!r}: {msg}."


# 5. Strict types and empty identity


@pytest.mark.parametrize(
    ("body", "line", "field", "msg"),
    [
        (
            "quality:\n  min_side: true\n",
            5,
            "quality.min_side",
            "Input should be a valid integer, got True (write a number, not true or false)",
        ),
        (
            "gates:\n  min_caption_share: '0.9'\n",
            5,
            "gates.min_caption_share",
            "Input should be a valid number, got '0.9' (a quoted string; write the number "
            "without quotes)",
        ),
        (
            "quality:\n  min_side: '64'\n",
            5,
            "quality.min_side",
            "Input should be a valid integer, got '64' (a quoted string; write the number "
            "without quotes)",
        ),
        (
            "dedup:\n  mirrors: 1\n",
            5,
            "dedup.mirrors",
            "Input should be a valid boolean, got 1",
        ),
        (
            "actions:\n  too_small: no\n",
            5,
            "actions.too_small",
            "Input should be 'drop', 'flag' or 'keep', got False (YAML reads an unquoted "
            "yes, no, on, off, true or false as a switch; quote it)",
        ),
    ],
)
def test_strict_types(tmp_path: Path, body: str, line: int, field: str, msg: str) -> None:
    p = _pack(tmp_path, body)
    assert _error(p) == f"{p}, line {line}: field {field!r}: {msg}."


def test_numbers_written_as_numbers_load(tmp_path: Path) -> None:
    p = _pack(tmp_path, "quality:\n  min_side: 64\ngates:\n  min_caption_share: 1\n")
    pack = load_pack(str(p))
    assert pack.quality.min_side == 64 and pack.gates.min_caption_share == 1.0


def test_empty_name_or_version_is_refused(tmp_path: Path) -> None:
    p = _pack(tmp_path, "", head='name: ""\nextends: default\n')
    assert (
        _error(p)
        == f"{p}, line 1: field 'name': the pack's name is empty; write one, e.g. my-pack."
    )
    p = _pack(tmp_path, "", head="name: x\nversion: '  '\n")
    assert _error(p) == (
        f"{p}, line 2: field 'version': the pack's version is empty; write one, e.g. \"1\"."
    )
    p = _pack(tmp_path, "", head="name: x\nversion: 2\n")
    assert _error(p) == (
        f"{p}, line 2: field 'version': Input should be a valid string, got 2 (quote it: \"2\")."
    )
    assert load_pack(str(_pack(tmp_path, "", head="name: x\nversion: '2'\n"))).version == "2"
