"""A run's dataset opened again (re-decide writing kept/, the judge, report thumbnails) is
read as the run read it: with its caption column and shard size. Opened with detected
columns, a run read with ``--caption-column descr`` came back captionless and one read with
``--shard-size 5`` had other shard numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from clipaudit.curate.decide import decide_run
from clipaudit.curate.pipeline import CurateConfig, curate
from clipaudit.curate.rundir import RunDir, open_run_dataset
from clipaudit.data import open_dataset
from clipaudit.data.example import example_samples
from clipaudit.data.formats import ReadOptions
from clipaudit.errors import ClipauditError


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    return _curated(tmp_path_factory.mktemp("reopen"))


def _curated(base: Path) -> tuple[Path, dict[str, str]]:
    """12 images in an imagefolder whose captions sit in a field named ``descr``, curated
    with ``--caption-column descr --shard-size 5`` (three shards)."""
    folder = base / "data"
    folder.mkdir()
    captions: dict[str, str] = {}
    lines = []
    for i, s in enumerate(example_samples(12)):
        name = f"img{i:02d}.png"
        (folder / name).write_bytes(s.image or b"")
        lines.append(json.dumps({"file_name": name, "descr": s.caption}))
        captions[name] = str(s.caption)
    (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    opts = ReadOptions(caption_column="descr", shard_size=5)
    curate(
        CurateConfig(
            str(folder), str(base / "run"), stages=["quality"], rules="keep-all", read=opts
        )
    )
    return base / "run", captions


def _name(sample_id: str) -> str:
    return sample_id.rsplit("/", 1)[-1]


def test_the_run_records_three_shards_and_reopens_with_them(
    run: tuple[Path, dict[str, str]],
) -> None:
    path, captions = run
    record = json.loads((path / "run.json").read_text())
    ds = open_run_dataset(record)
    assert len(ds.shards()) == 3 == len(record["dataset"]["shards"])
    assert {_name(s.id): s.caption for s in ds} == captions


def test_a_re_decide_keeps_the_captions(run: tuple[Path, dict[str, str]]) -> None:
    path, captions = run
    decide_run(str(path), rules="keep-all")
    kept = list(open_dataset(str(path / "kept")))
    assert len(kept) == 12
    assert {_name(s.id): s.caption for s in kept} == captions


def test_the_judge_reads_each_sample_and_its_caption(
    run: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    from PIL import Image

    from clipaudit.judge.run import _images

    path, captions = run
    ids = {str(r["id"]) for r in pq.read_table(path / "decisions.parquet").to_pylist()}
    got = _images(RunDir(path), ids, tmp_path, max_side=32)
    assert {_name(i): c for i, (_, c, _) in got.items()} == captions
    assert {note for _, _, note in got.values()} == {""}  # stills: nothing said before
    # Each picture waits on disk as the JPEG to send, downscaled: memory holds only paths.
    for jpeg, _, _ in got.values():
        assert jpeg is not None and jpeg.parent == tmp_path
        with Image.open(jpeg) as im:
            assert im.format == "JPEG" and max(im.size) <= 32


def test_a_source_that_lost_a_kept_sample_is_an_error_not_a_shorter_kept_set(
    tmp_path: Path,
) -> None:
    from tests.conftest import cli_batch

    path, _ = _curated(tmp_path)
    meta = tmp_path / "data" / "metadata.jsonl"  # the source changed after the run
    meta.write_text(
        "".join(x for x in meta.read_text().splitlines(True) if "img07" not in x),
        encoding="utf-8",
    )
    with pytest.raises(ClipauditError, match=r"holds 4 of the 5 samples the run kept"):
        decide_run(str(path), rules="keep-all")
    # From the command line: one line, and --no-kept decides from the signals alone.
    (code, _, err), (code2, out2, err2) = cli_batch(
        [
            ("decide", str(path), "--rules", "keep-all"),
            ("decide", str(path), "--rules", "keep-all", "--no-kept"),
        ]
    )
    assert code != 0 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("error: The dataset ")
    assert code2 == 0, err2
    assert "kept 12" in out2 + err2
    assert "was not rewritten: it still holds an earlier decision's kept samples" in err2


def test_a_moved_dataset_is_named_not_read_as_missing_shards(tmp_path: Path) -> None:
    """A run's dataset moved away read as one missing shard ("has 1 shards where the run
    scored 3"); it is now named, with what to do."""
    path, _ = _curated(tmp_path)
    (tmp_path / "data").rename(tmp_path / "moved")
    record = json.loads((path / "run.json").read_text())
    with pytest.raises(ClipauditError, match=r"is not there any more \(moved or deleted\)"):
        open_run_dataset(record)
    with pytest.raises(ClipauditError, match="--no-kept"):
        decide_run(str(path), rules="keep-all")
    stats = decide_run(str(path), rules="keep-all", write_kept=False)
    assert stats["kept"] == 12


def test_a_start_that_failed_before_scoring_is_redone_with_the_corrected_command(
    tmp_path: Path,
) -> None:
    """A mistyped --model failed after run.json was written; the corrected command was then
    refused as "a different run" though nothing had been scored."""
    from clipaudit.data.formats import write_dataset

    data = tmp_path / "data"
    write_dataset(example_samples(6, seed=1), data, "parquet")
    out = tmp_path / "run"
    cfg = dict(dataset=str(data), out=str(out), stages=["quality", "alignment"])
    with pytest.raises(ClipauditError, match="nosuch"):
        curate(CurateConfig(**cfg, model="bundled:nosuch"))  # type: ignore[arg-type]
    assert (out / "run.json").is_file()
    stats = curate(CurateConfig(**cfg, model="random:clipaudit-tiny"))  # type: ignore[arg-type]
    assert stats["input"] == 6
    assert (
        json.loads((out / "run.json").read_text())["settings"]["model"] == "random:clipaudit-tiny"
    )
    # Once a shard is scored, a different command is still refused.
    with pytest.raises(
        ClipauditError, match=r'--stages: \["quality", "alignment"\] there, \["quality"\] now'
    ):
        curate(CurateConfig(**{**cfg, "stages": ["quality"]}))  # type: ignore[arg-type]


def test_a_run_folder_inside_the_dataset_folder_is_refused(tmp_path: Path) -> None:
    """The run's own parquet files were then read as part of the dataset: the next decide
    failed on 'No image column in .../compact-00000.parquet'."""
    from clipaudit.data.formats import write_dataset

    data = tmp_path / "data"
    write_dataset(example_samples(4, seed=2), data, "parquet")
    with pytest.raises(ClipauditError, match="inside the dataset folder"):
        curate(CurateConfig(dataset=str(data), out=str(data / "run"), stages=["quality"]))
    assert not (data / "run").exists()


def test_a_different_run_names_what_differs() -> None:
    from clipaudit.curate.rundir import what_differs

    base = {
        "settings": {"stages": ["quality"], "batch_size": 64, "model": None},
        "dataset": {"resolved": "/data/a", "shards": ["0.parquet"]},
    }
    moved = {**base, "dataset": {"resolved": "/data/b", "shards": ["0.parquet"]}}
    assert what_differs(base, moved) == "input: '/data/a' there, '/data/b' now"
    # A setting recorded only when not its default compares against that default.
    budget = {**base, "settings": {**base["settings"], "batch_megapixels": 32}}
    assert what_differs(base, budget) == "--batch-megapixels: 128 there, 32 now"
    more = {**base, "dataset": {"resolved": "/data/a", "shards": ["0.parquet", "1.parquet"]}}
    assert what_differs(base, more) == "the input's files are not the same list"
    assert what_differs(base, base) == (
        "the input's files changed (added, removed, rewritten or touched) since"
    )
    reading = {**base, "settings": {**base["settings"], "read": {"url_column": None, "a": 1}}}
    other = {**base, "settings": {**base["settings"], "read": {"url_column": "url", "a": 1}}}
    assert what_differs(reading, other) == "--url-column: not given there, 'url' now"
    assert (
        what_differs(["not", "a", "run"], base) == "its run.json is unreadable or from another tool"
    )


def test_a_model_no_stage_uses_is_named_not_silently_ignored(tmp_path: Path) -> None:
    from clipaudit.data.example import example_samples
    from clipaudit.data.formats import write_dataset

    data = tmp_path / "data"
    write_dataset(example_samples(4, seed=2), data, "parquet")
    said: list[str] = []
    cfg = dict(dataset=str(data), stages=["quality", "hashes"])
    curate(CurateConfig(**cfg, out=str(tmp_path / "a"), model="bundled:nosuch"), warn=said.append)  # type: ignore[arg-type]
    assert any("--model 'bundled:nosuch' is not used" in m and "quality, hashes" in m for m in said)
    said.clear()
    curate(CurateConfig(**cfg, out=str(tmp_path / "b")), warn=said.append)  # type: ignore[arg-type]
    assert not any("is not used" in m for m in said)  # the default model: nothing to say


def test_the_same_input_by_another_path_resumes_and_a_changed_image_folder_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fingerprint held the path as typed (`wds` and `/abs/wds` were "different runs")
    and none of an image folder's files (a file added since was silently left out)."""
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        Image.new("RGB", (64, 64), (60 * i, 90, 40)).save(folder / f"p{i}.jpg")
        (folder / f"p{i}.txt").write_text(f"a coloured square number {i}")
    monkeypatch.chdir(tmp_path)
    cfg = dict(stages=["quality"], out=str(tmp_path / "run"))
    first = curate(CurateConfig(dataset="imgs", **cfg))  # type: ignore[arg-type]
    again = curate(CurateConfig(dataset=str(folder), **cfg))  # type: ignore[arg-type]
    assert first["input"] == again["input"] == 3
    Image.new("RGB", (64, 64), (1, 2, 3)).save(folder / "p3.jpg")
    (folder / "p3.txt").write_text("one more square")
    with pytest.raises(ClipauditError, match=r"changed \(added.*to curate the input as it is now"):
        curate(CurateConfig(dataset="imgs", **cfg))  # type: ignore[arg-type]


def test_a_run_an_earlier_version_fingerprinted_still_resumes(tmp_path: Path) -> None:
    from clipaudit.curate.scoring import input_fingerprint

    data = tmp_path / "data"
    from clipaudit.data.formats import write_dataset

    write_dataset(example_samples(4, seed=3), data, "parquet")
    cfg = CurateConfig(dataset=str(data), out=str(tmp_path / "run"), stages=["quality"])
    curate(cfg)
    run_json = tmp_path / "run" / "run.json"
    record = json.loads(run_json.read_text())
    ds = open_dataset(str(data))
    settings = json.dumps(record["settings"], sort_keys=True)
    import hashlib

    old = hashlib.sha256((input_fingerprint(ds, legacy=True) + settings).encode()).hexdigest()
    run_json.write_text(json.dumps({**record, "fingerprint": old}))
    assert curate(cfg)["input"] == 4  # recognised, not "a different run"
    assert json.loads(run_json.read_text())["fingerprint"] == record["fingerprint"]


def test_a_second_command_on_a_run_folder_in_use_is_one_sentence(tmp_path: Path) -> None:
    """Two decides on one folder read and replaced each other's files (one exited 0 with
    the other's kept set); a decide during a curate died on a missing scratch file."""
    import subprocess
    import sys

    data = tmp_path / "data"
    from clipaudit.data.formats import write_dataset

    write_dataset(example_samples(4, seed=4), data, "parquet")
    run = tmp_path / "run"
    curate(CurateConfig(dataset=str(data), out=str(run), stages=["quality"]))
    hold = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from clipaudit.curate.rundir import acquire_run_lock\n"
        "acquire_run_lock(Path(sys.argv[1]))\n"
        "print('held', flush=True)\n"
        "time.sleep(60)\n"
    )
    import os

    import clipaudit

    env = {**os.environ, "PYTHONPATH": str(Path(clipaudit.__file__).parents[1])}
    other = subprocess.Popen(
        [sys.executable, "-c", hold, str(run)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert other.stdout is not None and other.stdout.readline().strip() == "held"
        with pytest.raises(ClipauditError, match="is in use by another clipaudit curate or decide"):
            decide_run(run, "default")
        with pytest.raises(ClipauditError, match="is in use"):
            curate(CurateConfig(dataset=str(data), out=str(run), stages=["quality"]))
        # A refused curate changes nothing: it rewrote run.json (other settings) and removed
        # the running command's temporary files before it met the lock.
        before = (run / "run.json").read_bytes()
        in_flight = run / "signals" / ".shard-00000.parquet.tmp"
        in_flight.write_bytes(b"being written")
        with pytest.raises(ClipauditError, match="is in use"):
            curate(CurateConfig(dataset=str(data), out=str(run), stages=["quality", "hashes"]))
        assert (run / "run.json").read_bytes() == before and in_flight.is_file()
    finally:
        other.kill()
        other.wait()
    # Free again once the holder is gone; the decide removes the temporary file it left.
    assert decide_run(run, "default")["input"] == 4 and not in_flight.exists()


def test_a_reference_set_hashed_for_against_is_not_left_locked(tmp_path: Path) -> None:
    """Hashing a dataset given to --against scores it into a cache run folder; its lock
    must not stay held by this process for the rest of its life."""
    from clipaudit.curate.decide.against import load_reference
    from clipaudit.curate.rundir import _HELD
    from clipaudit.data.formats import write_dataset

    data = tmp_path / "ref"
    write_dataset(example_samples(3, seed=5), data, "parquet")
    load_reference(data, tmp_path / "cache")
    assert not any(k.startswith(str((tmp_path / "cache").resolve())) for k in _HELD)


def test_a_run_whose_curate_stopped_part_way_is_refused_then_decided_with_partial(
    tmp_path: Path,
) -> None:
    """A decide on a run with unscored shards wrote a decision table without their samples
    and said "adds up"; it is refused with the command that finishes the run, and
    ``--partial`` decides the scored shards saying so in the stats, report and cards."""
    import subprocess
    import sys

    from clipaudit.reports.cards import write_cards
    from clipaudit.reports.render import write_report

    path, _ = _curated(tmp_path)
    # A curate killed between shard 2's signals and its marker (written last): not scored.
    (path / "markers" / "shard-00002.done").unlink()
    with pytest.raises(ClipauditError, match="has 2 of its input's 3 shards scored"):
        decide_run(path, "keep-all")
    # What a curate killed after two of its three shards leaves: no marker, no signals.
    (path / "signals" / "shard-00002.parquet").unlink()
    with pytest.raises(ClipauditError) as err:
        decide_run(path, "keep-all")
    msg = str(err.value)
    assert "has 2 of its input's 3 shards scored (shard 2 not)" in msg
    assert "--stages quality" in msg and "--caption-column descr" in msg
    assert "--format imagefolder" in msg and "--rules and --against" in msg
    assert "--partial" in msg

    r = subprocess.run(
        [sys.executable, "-m", "clipaudit", "decide", str(path), "--rules", "keep-all"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode != 0
    assert "Traceback" not in r.stderr + r.stdout
    assert "2 of its input's 3 shards" in " ".join((r.stderr + r.stdout).split())

    stats = decide_run(path, "keep-all", partial=True)
    assert stats["partial"] == {"input_shards": 3, "scored_shards": 2, "unscored_shards": [2]}
    assert stats["input"] == 10 and stats["adds_up"]
    html = write_report([path]).html.read_text(encoding="utf-8")
    assert (
        "Partial run: only 2 of the input's 3 shards" in html
        and "the other shard (not scored)" in html
    )
    cards = write_cards(path)
    assert len(cards) == 3
    for doc in cards:  # the card, the datasheet and the EU summary: before any figure
        text = doc.read_text(encoding="utf-8")
        assert "**Partial run**: only [2](" in text, doc.name
        assert text.index("**Partial run**") < text.index("\n## "), doc.name

    # Resumed with the same settings: the missing shard is scored, the run is whole again.
    said: list[str] = []
    opts = ReadOptions(caption_column="descr", shard_size=5)
    stats = curate(
        CurateConfig(str(tmp_path / "data"), str(path), stages=["quality"], rules="keep-all",
                     read=opts),
        warn=said.append,
    )  # fmt: skip
    assert stats["input"] == 12 and "partial" not in stats
    assert any("2 of 3 shards were already scored" in m for m in said)


def test_the_stages_in_any_order_are_one_run_and_an_earlier_typed_order_resumes(
    tmp_path: Path,
) -> None:
    """`--stages hashes,quality` and `quality,hashes` were two runs: the second was refused."""
    import hashlib

    from clipaudit.data.formats import write_dataset

    data = tmp_path / "data"
    write_dataset(example_samples(4, seed=5), data, "parquet")
    out = str(tmp_path / "run")
    curate(CurateConfig(dataset=str(data), out=out, stages=["hashes", "quality"]))
    run_json = tmp_path / "run" / "run.json"
    record = json.loads(run_json.read_text())
    assert record["settings"]["stages"] == ["quality", "hashes"]
    said: list[str] = []
    stats = curate(
        CurateConfig(dataset=str(data), out=out, stages=["quality", "hashes"]), warn=said.append
    )
    assert stats["input"] == 4 and any("resuming" in m for m in said)

    # A run an earlier version fingerprinted with the stages as typed (hashes first) resumes
    # when the same command is typed again.
    from clipaudit.curate.scoring import input_fingerprint

    typed = json.dumps({**record["settings"], "stages": ["hashes", "quality"]}, sort_keys=True)
    ds = open_dataset(str(data))
    old = hashlib.sha256((input_fingerprint(ds) + typed).encode()).hexdigest()
    run_json.write_text(json.dumps({**record, "fingerprint": old}))
    assert (
        curate(CurateConfig(dataset=str(data), out=out, stages=["hashes", "quality"]))["input"] == 4
    )
    assert json.loads(run_json.read_text())["fingerprint"] == record["fingerprint"]


def test_an_option_of_a_stage_not_run_is_said_and_not_part_of_the_run(tmp_path: Path) -> None:
    """--optout-cache without the optout stage was recorded: the same run without it was
    refused as a different run, and nothing said the cache went unread."""
    from clipaudit.data.formats import write_dataset

    data = tmp_path / "data"
    write_dataset(example_samples(4, seed=6), data, "parquet")
    out = str(tmp_path / "run")
    said: list[str] = []
    cfg = CurateConfig(
        dataset=str(data), out=out, stages=["quality"], options={"optout_cache": "/nowhere"}
    )
    curate(cfg, warn=said.append)
    assert any(m.startswith("--optout-cache is not used: the optout stage") for m in said)
    assert json.loads((tmp_path / "run" / "run.json").read_text())["settings"]["options"] == {}
    assert curate(CurateConfig(dataset=str(data), out=out, stages=["quality"]))["input"] == 4


def test_model_threads_of_a_run_without_a_model_are_said_and_not_recorded(
    tmp_path: Path,
) -> None:
    """--model-threads without a model stage made a different run from the same run without
    it. --video-sampling stays recorded without the video stage: every stage reads a clip's
    frames as sampled, and the judge sends them."""
    from clipaudit.data.formats import write_dataset

    data = tmp_path / "data"
    write_dataset(example_samples(4, seed=8), data, "parquet")
    out = str(tmp_path / "run")
    said: list[str] = []
    cfg = CurateConfig(
        dataset=str(data), out=out, stages=["quality"], model_threads=1, video_sampling="fps:2"
    )
    curate(cfg, warn=said.append)
    assert any(m.startswith("--model-threads is not used") for m in said)
    settings = json.loads((tmp_path / "run" / "run.json").read_text())["settings"]
    assert "model_threads" not in settings and settings["video_sampling"] == "fps:2"
    again = CurateConfig(dataset=str(data), out=out, stages=["quality"], video_sampling="fps:2")
    assert curate(again)["input"] == 4


def test_an_unfinished_reference_run_is_named_as_the_reference(tmp_path: Path) -> None:
    from clipaudit.curate.decide.against import load_reference

    path, _ = _curated(tmp_path)
    (path / "decisions.parquet").unlink()  # a reference run stopped before its decide
    (path / "markers" / "shard-00001.done").unlink()
    with pytest.raises(ClipauditError) as err:
        load_reference(path)
    msg = str(err.value)
    assert msg.startswith(f"The reference run {str(path)!r} (--against) has 2 of its input's 3")
    assert "--partial" not in msg and "give its dataset to --against" in msg


def test_a_relative_shard_pattern_and_optout_cache_resume_from_another_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relative brace pattern was recorded without its folder and --optout-cache as typed,
    so the resume command printed for a decide run from another folder named shards and a
    cache that were not there. Both are recorded absolute; a run an earlier version started
    with the cache as typed still resumes."""
    import hashlib
    import shlex

    from clipaudit.curate.rundir import resume_command
    from clipaudit.data.formats import write_dataset

    work = tmp_path / "work"
    write_dataset(example_samples(6, seed=9), work / "wds", "webdataset", shard_size=3)
    (work / "cache").mkdir()
    monkeypatch.chdir(work)
    shards = sorted(p.name for p in (work / "wds").iterdir())
    assert len(shards) == 2
    pattern = "wds/" + shards[0].replace("00000", "{00000..00001}")
    cfg = CurateConfig(
        dataset=pattern, out="run", stages=["quality", "optout"], rules="keep-all",
        options={"optout_cache": "cache"},
    )  # fmt: skip
    curate(cfg)
    record = json.loads((work / "run" / "run.json").read_text())
    assert record["dataset"]["resolved"] == str((work / "wds").resolve() / Path(pattern).name)
    assert record["settings"]["options"] == {"optout_cache": str((work / "cache").resolve())}

    (work / "run" / "markers" / "shard-00001.done").unlink()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ClipauditError) as err:
        decide_run(work / "run", "keep-all")
    words = shlex.split(str(err.value).split("Run `", 1)[1].split("`", 1)[0])
    assert words[2] == record["dataset"]["resolved"]
    assert words[words.index("--optout-cache") + 1] == str((work / "cache").resolve())
    assert words == shlex.split(resume_command(record, work / "run"))
    said: list[str] = []
    again = CurateConfig(
        dataset=words[2], out=str(work / "run"), stages=["quality", "optout"], rules="keep-all",
        options={"optout_cache": words[words.index("--optout-cache") + 1]},
    )  # fmt: skip
    assert curate(again, warn=said.append)["input"] == 6
    assert any("1 of 2 shards were already scored" in m and "the other shard." in m for m in said)

    # A run an earlier version started: the cache as typed in its settings and fingerprint.
    from clipaudit.curate.scoring import input_fingerprint

    monkeypatch.chdir(work)
    old = json.loads((work / "run" / "run.json").read_text())
    old["settings"]["options"] = {"optout_cache": "cache"}
    ds = open_dataset(pattern, format="webdataset")
    said_then = json.dumps(old["settings"], sort_keys=True)
    old["fingerprint"] = hashlib.sha256((input_fingerprint(ds) + said_then).encode()).hexdigest()
    (work / "run" / "run.json").write_text(json.dumps(old))
    (work / "run" / "markers" / "shard-00001.done").unlink()
    said.clear()
    assert curate(cfg, warn=said.append)["input"] == 6
    assert any("1 of 2 shards were already scored" in m for m in said)


def test_a_resumed_curate_says_it_removed_the_runs_report(tmp_path: Path) -> None:
    """A curate that resumes a run decides it again, which removes the report and cards made
    from the decisions it replaces; `decide` said so, `curate` removed them silently."""
    from clipaudit.data.formats import write_dataset
    from clipaudit.reports.render import write_report
    from tests.conftest import cli_batch

    data, run = tmp_path / "data", tmp_path / "run"
    write_dataset(example_samples(4, seed=10), data, "parquet")
    curate(CurateConfig(str(data), str(run), stages=["quality"], rules="keep-all"))
    write_report([run])
    ((code, stdout, stderr),) = cli_batch(
        [("curate", str(data), "--out", str(run), "--stages", "quality", "--rules", "keep-all")]
    )
    assert code == 0, stderr
    said = " ".join((stdout + stderr).split())
    assert "nothing is left to score, deciding again" in said
    assert f"note: removed report.html, report.json, report.csv from {run}: they described" in said
    assert not (run / "report.html").exists()
