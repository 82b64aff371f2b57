"""Rules-pack and command mistakes a tester found: each is one sentence (exit 2) naming
what to do, never a traceback, and never a different policy recorded as a shipped one."""

from __future__ import annotations

from pathlib import Path

import pytest

from clipaudit.errors import ClipauditError
from clipaudit.rules.schema import load_pack
from tests.conftest import cli_batch


def test_brackets_in_user_text_are_printed_as_typed(tmp_path: Path) -> None:
    """The error handler printed messages as Rich markup: a "[/x]" in a path or a pack name
    ended in a MarkupError traceback (exit 1), and "[bold]" vanished from the message."""
    from clipaudit.curate.pipeline import CurateConfig, curate
    from clipaudit.data import write_dataset
    from clipaudit.data.example import example_samples

    write_dataset(example_samples(4), tmp_path / "data", "parquet")
    run = tmp_path / "run"
    curate(CurateConfig(str(tmp_path / "data"), str(run), stages=["quality"]))
    missing = tmp_path / "a[/b].yaml"
    runs = cli_batch(
        [
            ("decide", str(run), "--rules", str(missing)),
            ("curate", str(tmp_path / "nonexist[/x]"), "--out", str(tmp_path / "o")),
            ("decide", str(run), "--rules", "[bold]nosuch"),
        ]
    )
    for code, out, err in runs:
        said = out + err
        assert code == 2 and "Traceback" not in said and "MarkupError" not in said, said
    assert "a[/b].yaml" in runs[0][1] + runs[0][2]
    assert "nonexist[/x]" in runs[1][1] + runs[1][2]
    assert "[bold]nosuch" in runs[2][1] + runs[2][2]


def test_a_pack_nested_a_thousand_deep_is_one_sentence(tmp_path: Path) -> None:
    pack = tmp_path / "deep.yaml"
    pack.write_text('name: deep\nversion: "1"\ndescription: ' + "[" * 1000 + "]" * 1000 + "\n")
    with pytest.raises(ClipauditError, match="nested too deeply to be a rules pack"):
        load_pack(str(pack))


def test_a_pack_that_extends_another_needs_its_own_name(tmp_path: Path) -> None:
    """Without a name it took the shipped pack's: a changed policy was recorded as
    "datacomp v2"."""
    pack = tmp_path / "mine.yaml"
    pack.write_text("extends: datacomp\nactions:\n  low_alignment: keep\n")
    with pytest.raises(ClipauditError, match=r"needs its own 'name'.*recorded as 'datacomp'"):
        load_pack(str(pack))
    pack.write_text("name: mine\nextends: datacomp\nactions:\n  low_alignment: keep\n")
    assert load_pack(str(pack)).name == "mine"


def test_scientific_notation_yaml_reads_as_text_says_how_to_write_it(tmp_path: Path) -> None:
    pack = tmp_path / "sci.yaml"
    pack.write_text('name: sci\nversion: "1"\nextends: default\ndedup:\n  min_hue_overlap: 1e-3\n')
    with pytest.raises(ClipauditError, match=r"reads 1e-3 as text even unquoted: write 0\.001"):
        load_pack(str(pack))


def test_stages_naming_no_stage_and_a_run_against_itself_are_refused(tmp_path: Path) -> None:
    """--stages , ran no stage and passed every gate; --against the run itself dropped all
    of it, then a plain decide kept 36, then 0 again."""
    from clipaudit.curate.decide import decide_run
    from clipaudit.curate.pipeline import CurateConfig, curate
    from clipaudit.data import write_dataset
    from clipaudit.data.example import example_samples

    write_dataset(example_samples(6), tmp_path / "data", "parquet")
    ((code, out, err),) = cli_batch(
        [("curate", str(tmp_path / "data"), "--out", str(tmp_path / "r0"), "--stages", ",")]
    )
    assert code == 2 and "--stages ',' names no stage" in out + err
    assert not (tmp_path / "r0" / "decisions.parquet").exists()
    run = tmp_path / "run"
    curate(CurateConfig(str(tmp_path / "data"), str(run), stages=["quality", "hashes"]))
    for ref in (run, run / "kept"):
        with pytest.raises(ClipauditError, match="is this run or a folder inside it"):
            decide_run(run, "default", against_paths=[str(ref)])


def test_phrase_routes_without_the_alignment_stage_are_refused_before_scoring(
    tmp_path: Path,
) -> None:
    """curate scored every shard, then decide said the routes need a model; and curating
    again with the alignment stage was refused as "a different run"."""
    from clipaudit.curate.pipeline import CurateConfig, curate
    from clipaudit.data import write_dataset
    from clipaudit.data.example import example_samples

    write_dataset(example_samples(4), tmp_path / "data", "parquet")
    cfg = CurateConfig(str(tmp_path / "data"), str(tmp_path / "run"), rules="world-routes",
                       stages=["quality", "hashes"])  # fmt: skip
    with pytest.raises(ClipauditError, match=r"add the alignment stage \(--stages "):
        curate(cfg)
    assert not (tmp_path / "run" / "signals").exists()
