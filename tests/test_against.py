"""``--against``: copies of a reference set's samples are dropped naming the reference id."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from clipaudit.curate.decide import decide_run
from clipaudit.curate.pipeline import CurateConfig, curate
from clipaudit.errors import ClipauditError
from tests.conftest import WorldRun, write_pool

STAGES = ["quality", "hashes"]


@pytest.fixture(scope="module")
def halves(tmp_path_factory: pytest.TempPathFactory) -> Path:
    world = write_pool(
        tmp_path_factory.mktemp("against"),
        n=240,
        shard_size=120,
        rates={"exact_duplicate": 0.12, "near_duplicate": 0.2},
    )
    for half, tar in (("A", "00000.tar"), ("B", "00001.tar")):
        (world.root / half).mkdir()
        shutil.copy(world.data / tar, world.root / half / tar)
    return world.root


def _ids(folder: Path, labels: dict[str, dict[str, object]]) -> set[str]:
    import tarfile

    with tarfile.open(next(folder.glob("*.tar"))) as tf:
        return {m.name.split(".")[0] for m in tf.getmembers()} & set(labels)


def _cross_copies(root: Path) -> tuple[list[tuple[str, set[str], str]], set[str]]:
    """(B sample, the A samples showing the same image, transform) for every cross copy."""
    labels = WorldRun(root).labels_by_id()
    a, b = _ids(root / "A", labels), _ids(root / "B", labels)

    def origin(i: str) -> str:
        return str(labels[i].get("duplicate_of") or i)

    family: dict[str, set[str]] = {}
    for i in labels:
        family.setdefault(origin(i), set()).add(i)
    out = []
    for i in sorted(b):
        in_a = family[origin(i)] & a
        if in_a:
            kinds = {
                str(labels[x].get("transform") or "exact") for x in (i, *in_a) if x != origin(i)
            }
            out.append((i, in_a, ",".join(sorted(kinds))))
    return out, b


def _decisions(run: Path) -> dict[str, dict[str, object]]:
    cols = ["id", "decision", "reasons", "duplicate_of_reference"]
    return {r["id"]: r for r in pq.read_table(run / "decisions.parquet", columns=cols).to_pylist()}


def test_every_cross_copy_is_dropped_naming_its_reference(halves: Path) -> None:
    cross, b_ids = _cross_copies(halves)
    # Crops are not near duplicates to the hashes (issue 19): judged apart from the rest.
    wanted = [(i, a) for i, a, t in cross if "crop" not in t]
    assert len(wanted) >= 10
    cache = halves / "cache"
    run = halves / "runB"
    stats = curate(
        CurateConfig(
            dataset=str(halves / "B"),
            out=str(run),
            stages=STAGES,
            rules="default",
            against=[str(halves / "A")],
            against_cache=str(cache),
        )
    )
    dec = _decisions(run)
    for i, a in wanted:
        assert "duplicate_of_reference" in dec[i]["reasons"], i
        assert dec[i]["decision"] == "drop"
        assert dec[i]["duplicate_of_reference"] in a, (i, a)
    crossed = {i for i, _, _ in cross}
    false = [i for i in b_ids - crossed if dec[i]["duplicate_of_reference"] is not None]
    assert false == []  # nothing that has no copy in A is called one
    (ref,) = stats["against"]
    assert ref["kind"] == "dataset" and ref["samples"] == 120 and ref["hashed_now"] == 120
    assert ref["matched"] == stats["by_reason"]["duplicate_of_reference"] >= len(wanted)
    # A second decide against the same data reads the cached hashes: nothing is hashed again.
    again = decide_run(run, "default", against_paths=[str(halves / "A")], against_cache=cache)
    assert again["against"][0]["hashed_now"] == 0
    assert again["against"][0]["matched"] == ref["matched"]
    assert _decisions(run) == dec


def test_against_an_earlier_run_uses_its_kept_samples(halves: Path) -> None:
    run_a = halves / "runA"
    curate(CurateConfig(dataset=str(halves / "A"), out=str(run_a), stages=STAGES))
    kept_a = {
        r["id"]
        for r in pq.read_table(run_a / "decisions.parquet", columns=["id", "decision"]).to_pylist()
        if r["decision"] in ("keep", "flag")
    }
    run_b = halves / "runB2"
    stats = curate(
        CurateConfig(dataset=str(halves / "B"), out=str(run_b), stages=STAGES, against=[str(run_a)])
    )
    dec = _decisions(run_b)
    named = {r["duplicate_of_reference"] for r in dec.values()} - {None}
    assert named and named <= kept_a  # only samples the earlier run kept are references
    assert stats["against"][0] == {**stats["against"][0], "kind": "run", "samples": len(kept_a)}
    assert stats["against"][0]["hashed_now"] == 0


def test_an_against_path_that_is_no_run_or_dataset_is_one_line(
    halves: Path, tmp_path: Path
) -> None:
    run = halves / "runB"
    if not (run / "decisions.parquet").is_file():
        pytest.skip("needs the first test's run")
    with pytest.raises(ClipauditError, match="does not exist"):
        decide_run(run, "default", against_paths=[str(tmp_path / "nope")], write_kept=False)
    note = tmp_path / "notes.txt"
    note.write_text("not images")
    with pytest.raises(ClipauditError, match="neither a clipaudit run nor a dataset"):
        decide_run(
            run,
            "default",
            against_paths=[str(note)],
            write_kept=False,
            against_cache=tmp_path / "c",
        )


def test_the_cli_takes_against_and_names_a_bad_path_in_one_line(halves: Path) -> None:
    import subprocess
    import sys

    run = halves / "runB"
    if not (run / "decisions.parquet").is_file():
        pytest.skip("needs the first test's run")
    cmd = [sys.executable, "-m", "clipaudit", "decide", str(run), "--against"]
    r = subprocess.run([*cmd, str(halves / "nope")], capture_output=True, text=True, timeout=600)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [
        f"error: --against {str(halves / 'nope')!r} does not exist; give a run folder, a run's "
        "kept/ folder or a dataset."
    ]
    cache = halves / "cache"  # the first test hashed A here: the CLI reads it, hashes nothing
    r = subprocess.run(
        [*cmd, str(halves / "A"), "--against-cache", str(cache)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    stats = json.loads((run / "stats.json").read_text())
    assert stats["against"][0]["hashed_now"] == 0 and stats["against"][0]["matched"] > 0
    dec = _decisions(run)
    assert (
        sum(r["duplicate_of_reference"] is not None for r in dec.values())
        == stats["by_reason"]["duplicate_of_reference"]
    )


def test_a_redecide_keeps_the_reference_sets_until_told_otherwise(
    halves: Path, tmp_path: Path
) -> None:
    """`decide RUN --rules strict` without --against silently kept every copy of the
    reference the curate had dropped."""
    import subprocess
    import sys

    run = tmp_path / "run"
    cache = tmp_path / "cache"
    first = curate(
        CurateConfig(
            dataset=str(halves / "B"),
            out=str(run),
            stages=STAGES,
            against=[str(halves / "A")],
            against_cache=str(cache),
        )
    )
    matched = first["by_reason"]["duplicate_of_reference"]
    assert matched > 0
    recorded = json.loads((run / "against.json").read_text())
    assert recorded == {"references": [str((halves / "A").resolve())], "cache": str(cache)}

    def decide(*extra: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "clipaudit", "decide", str(run), "--no-kept", *extra]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=600)

    r = decide("--rules", "strict", "--against", str(halves / "A"), "--against-cache", str(cache))
    assert r.returncode == 0, r.stderr
    strict = json.loads((run / "stats.json").read_text())["by_reason"]["duplicate_of_reference"]
    r = decide("--rules", "strict")
    assert r.returncode == 0, r.stderr
    stats = json.loads((run / "stats.json").read_text())
    assert stats["by_reason"]["duplicate_of_reference"] == strict > 0
    assert stats["against"][0]["hashed_now"] == 0  # the recorded cache was read
    said = r.stdout + r.stderr
    assert "dropped as the run's last decide did" in said and "--no-against" in said
    r = decide("--no-against")
    assert r.returncode == 0, r.stderr
    stats = json.loads((run / "stats.json").read_text())
    assert "duplicate_of_reference" not in stats["by_reason"] and "against" not in stats
    r = decide()  # the last decide used none: none again
    assert "duplicate_of_reference" not in json.loads((run / "stats.json").read_text())["by_reason"]
    r = decide("--against", str(halves / "A"), "--no-against")
    assert r.returncode == 2 and "contradict" in r.stderr and "Traceback" not in r.stderr
    # A recorded reference set that has gone: one line saying where it came from, and the
    # ways on (it blamed an --against the user never typed).
    (run / "against.json").write_text(
        json.dumps({"references": [str(tmp_path / "gone")], "cache": None})
    )
    r = decide()
    assert r.returncode == 2 and "Traceback" not in r.stderr
    said = " ".join(r.stderr.split())
    assert "against.json) cannot be read" in said and "--no-against" in said
