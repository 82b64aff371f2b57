"""Bad configuration: every malformed or mistyped pack in the catalogue names the file, the
line, the field and what is allowed; every bad model spec lists the accepted forms."""

from __future__ import annotations

from pathlib import Path

import pytest

from clipaudit.errors import ClipauditError
from clipaudit.rules.schema import load_pack
from tests.hostile import config


def test_every_bad_pack_is_one_sentence_with_file_line_field_and_allowed(tmp_path: Path) -> None:
    res = config.run_packs(tmp_path)
    assert res.failed == 0 and not res.unexpected, "\n".join(res.unexpected)
    assert res.counts["clear_error"] == res.cases == len(config.PACK_CASES)


def test_every_bad_model_spec_lists_what_is_accepted() -> None:
    res = config.run_model_specs()
    assert res.failed == 0 and not res.unexpected, "\n".join(res.unexpected)
    assert res.cases == len(config.MODEL_SPECS)


def test_unknown_field_in_a_list_item_lists_that_items_fields(tmp_path: Path) -> None:
    p = tmp_path / "p.yaml"
    p.write_text(
        "name: x\nnsfw:\n  phrases:\n    - text: t\n      min_score: 0.3\n      rout: drop\n"
    )
    with pytest.raises(ClipauditError) as err:
        load_pack(str(p))
    assert str(err.value) == (
        f"{p}, line 6: unknown field 'nsfw.phrases.0.rout'; the allowed fields there are: "
        "bar, min_score, route, text."
    )


def test_a_pack_that_is_not_utf8_says_so(tmp_path: Path) -> None:
    p = tmp_path / "p.yaml"
    p.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(ClipauditError, match=r"not UTF-8 text \(byte 9 is 0xe9\)"):
        load_pack(str(p))
