"""The output gate checks what a pack promises: a cut the pack drops leaves no kept row past
it; a cut the pack flags leaves none past it without the code."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa

from clipaudit.rules.gates import first_failure, marked_codes, run_gates
from clipaudit.rules.schema import Pack, load_pack


def _frame(reasons: list[list[str]], decisions: list[str]) -> pd.DataFrame:
    """Four samples: b copies a, d is a's pixel twin, c is poorly aligned."""
    frame = pd.DataFrame(
        {
            "id": ["a", "b", "c", "d"],
            "error": [None] * 4,
            "caption_chars": [20] * 4,
            "decision": decisions,
            "duplicate_of": [None, "a", None, "a"],
            "pixel_hash": ["p1", "p2", "p3", "p1"],
            "alignment": [0.9, 0.9, 0.1, 0.9],
            "min_side": [256] * 4,
        }
    )
    return frame.assign(**marked_codes(pa.array(reasons, pa.list_(pa.string()))))


def _pack(tmp_path: Path, actions: str) -> Pack:
    path = tmp_path / "p.yaml"
    path.write_text(f"name: p\nversion: '1'\nextends: default\nactions:\n{actions}")
    return load_pack(str(path))


def test_marked_codes_reads_each_rows_list() -> None:
    marks = marked_codes(
        pa.chunked_array(
            [
                pa.array([["near_duplicate"], [], None], pa.list_(pa.string())),
                pa.array([["x", "low_alignment", "too_small"]], pa.list_(pa.string())),
            ]
        )
    )
    assert marks["marked:near_duplicate"].tolist() == [True, False, False, False]
    assert marks["marked:low_alignment"].tolist() == [False, False, False, True]
    assert marks["marked:too_small"].tolist() == [False, False, False, True]
    assert not marks["marked:exact_duplicate"].any()


def test_flagged_duplicates_and_cuts_pass_when_marked(tmp_path: Path) -> None:
    pack = _pack(
        tmp_path,
        "  near_duplicate: flag\n  exact_duplicate: flag\n  low_alignment: flag\n",
    )
    frame = _frame(
        [[], ["near_duplicate"], ["low_alignment"], ["exact_duplicate"]],
        ["keep", "flag", "flag", "flag"],
    )
    result = run_gates(frame, frame, pack, 0.5)
    assert result["success"], first_failure(result)


def test_a_flagged_row_without_its_code_fails(tmp_path: Path) -> None:
    pack = _pack(tmp_path, "  near_duplicate: flag\n  low_alignment: flag\n")
    # c is past the cut and kept without the code the pack flags it with.
    frame = _frame(
        [[], ["near_duplicate"], [], ["exact_duplicate"]], ["keep", "flag", "keep", "drop"]
    )
    failure = first_failure(run_gates(frame, frame, pack, 0.5))
    assert failure is not None and "expect_column_values_to_be_between" in failure
    # b copies a and carries no near_duplicate code: two kept rows in one group.
    frame = _frame(
        [[], [], ["low_alignment"], ["exact_duplicate"]], ["keep", "keep", "flag", "drop"]
    )
    failure = first_failure(run_gates(frame, frame, pack, 0.5))
    assert failure is not None and "unique" in failure and "dup_group" in failure


def test_a_dropping_pack_still_fails_on_a_kept_copy(tmp_path: Path) -> None:
    pack = _pack(tmp_path, "  caption_too_short: flag\n")  # duplicates drop, as in default
    # The mark does not excuse a copy the pack promised to drop.
    frame = _frame(
        [[], ["near_duplicate"], [], ["exact_duplicate"]], ["keep", "flag", "drop", "drop"]
    )
    failure = first_failure(run_gates(frame, frame, pack, 0.5))
    assert failure is not None and "dup_group" in failure
