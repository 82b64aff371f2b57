from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import cli_batch


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "clipaudit", *args], capture_output=True, text=True, timeout=300
    )


def test_help_lists_the_commands() -> None:
    r = run("--help")
    assert r.returncode == 0
    for cmd in ("info", "embed", "example"):
        assert cmd in r.stdout


def test_example_info_embed(tmp_path: Path) -> None:
    ds = str(tmp_path / "ds")
    results = cli_batch(
        [
            ("example", "--out", ds, "--n", "40", "--format", "parquet", "--shard-size", "16"),
            ("info", ds, "--json"),
            ("info", ds),
            ("embed", ds, "--out", str(tmp_path / "emb")),
        ]
    )
    for code, _, stderr in results:
        assert code == 0, stderr
    info = json.loads(results[1][1])
    assert info["format"] == "parquet" and info["samples"] == 40 and info["shards"] == 3
    assert set(info["columns"]) >= {"id", "image", "caption", "url", "meta"}
    assert info["captions"][0].startswith(("a ", "an "))
    assert "samples  40" in results[2][1]
    assert "embedded 40/40 images and 40 captions in 3 shards" in results[3][1]
    arr = np.load(tmp_path / "emb" / "img_emb" / "img_emb_2.npy")
    assert arr.shape == (8, 128)


def test_user_errors_are_one_line_without_traceback(tmp_path: Path) -> None:
    (c1, _, e1), (c2, _, e2), (c3, _, e3) = cli_batch(
        [
            ("info", str(tmp_path / "missing")),
            ("embed", str(tmp_path), "--out", str(tmp_path / "o"), "--model", "nonsense"),
            ("info", str(tmp_path), "--format", "zip"),
        ]
    )
    assert c1 == 2
    assert "Traceback" not in e1
    assert e1.strip().splitlines() == [
        f"error: The dataset path {str(tmp_path / 'missing')!r} does not exist; check the path."
    ]
    assert c2 == 2 and "Traceback" not in e2
    assert c3 == 2 and "use one of: hf, imagefolder, parquet, webdataset" in e3


def test_curate_thread_options_are_recorded_and_change_no_decision(tmp_path: Path) -> None:
    common = ["--stages", "quality,hashes,alignment", "--model", "random:clipaudit-tiny"]
    common += ["--rules", "keep-all"]
    ds = str(tmp_path / "ds")
    results = cli_batch(
        [
            ("example", "--out", ds, "--n", "24", "--format", "webdataset"),
            ("curate", ds, "--out", str(tmp_path / "a"), *common),
            ("curate", ds, "--out", str(tmp_path / "b"), *common,
             "--model-threads", "1", "--decode-threads", "1"),
            ("curate", ds, "--out", str(tmp_path / "c"), "--model-threads", "0"),
        ]
    )  # fmt: skip
    for code, _, stderr in results[:3]:
        assert code == 0, stderr
    settings = json.loads((tmp_path / "b" / "run.json").read_text())["settings"]
    assert settings["model_threads"] == 1
    assert "model_threads" not in json.loads((tmp_path / "a" / "run.json").read_text())["settings"]
    import pyarrow.parquet as pq

    a = pq.read_table(tmp_path / "a" / "decisions.parquet").to_pydict()
    b = pq.read_table(tmp_path / "b" / "decisions.parquet").to_pydict()
    assert a["id"] == b["id"] and a["decision"] == b["decision"] and len(a["id"]) == 24
    assert np.allclose(a["alignment"], b["alignment"], atol=1e-6)
    code, _, stderr = results[3]
    assert code != 0 and "Traceback" not in stderr


def test_usage_mistakes_are_a_usage_message_not_a_traceback(tmp_path: Path) -> None:
    cases = {
        ("curate", "x", "--out", str(tmp_path / "r"), "--batch-size", "0"): "--batch-size",
        ("curate", "x", "--out", str(tmp_path / "r"), "--bogus"): "--bogus",
        ("curate",): "Missing argument",
        ("nosuchcommand",): "nosuchcommand",
    }
    results = cli_batch(list(cases))
    for (args, named), (code, _, stderr) in zip(cases.items(), results, strict=True):
        assert code == 2, (args, code)
        assert "Traceback" not in stderr and named in stderr, (args, stderr)


def test_a_kept_format_nobody_can_write_fails_before_scoring(tmp_path: Path) -> None:
    """--out-format was checked only when kept/ was written, after the whole dataset was
    scored, and run.json kept the typo, so the corrected command and every later decide
    failed the same way."""
    ds, out = str(tmp_path / "ds"), str(tmp_path / "r")
    curate = ("curate", ds, "--out", out, "--stages", "quality", "--rules", "keep-all")
    results = cli_batch(
        [
            ("example", "--out", ds, "--n", "6", "--format", "webdataset"),
            (*curate, "--out-format", "bogus"),
            curate,
            (*curate, "--out-format", "parquet"),
            ("decide", out, "--rules", "keep-all", "--out-format", "zip"),
        ]
    )
    assert results[0][0] == 0
    code, _, err = results[1]
    assert code == 2 and err.strip().splitlines() == [
        "error: Unknown dataset format 'bogus'; use one of: hf, imagefolder, parquet, webdataset."
    ]
    assert results[2][0] == 0 and results[3][0] == 0, results[3][2]
    # The finished run's kept format follows the latest command.
    assert json.loads((tmp_path / "r" / "run.json").read_text())["out_format"] == "parquet"
    assert sorted(p.name for p in (tmp_path / "r" / "kept").iterdir()) == ["00000.parquet"]
    assert results[4][0] == 2 and "Unknown dataset format 'zip'" in results[4][2]
    # A run that recorded a format this version cannot write says what to pass.
    from clipaudit.curate.decide import decide_run
    from clipaudit.errors import ClipauditError

    record = json.loads((tmp_path / "r" / "run.json").read_text())
    (tmp_path / "r" / "run.json").write_text(json.dumps({**record, "out_format": "bogus"}))
    try:
        decide_run(tmp_path / "r", "keep-all")
    except ClipauditError as exc:
        assert "records the kept format 'bogus'" in str(exc) and "--out-format" in str(exc)
    else:
        raise AssertionError("decide accepted a kept format it cannot write")


def test_ctrl_c_exits_130_not_0(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Typer turns Ctrl-C into a returned 130 out of standalone mode, which main() dropped:
    an interrupted curate exited 0 with nothing printed, so `curate && index` went on."""
    import clipaudit.cli as cli
    import clipaudit.data.info as info

    def interrupted(*a: object, **k: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(info, "dataset_info", interrupted)
    monkeypatch.setattr(sys, "argv", ["clipaudit", "info", str(tmp_path / "ds")])
    cli_batch([("example", "--out", str(tmp_path / "ds"), "--n", "2")])
    with pytest.raises(SystemExit) as stop:
        cli.main()
    assert stop.value.code == 130
    assert capsys.readouterr().err.strip() == "aborted"


def test_quality_always_runs_and_a_stage_named_twice_is_one_line(tmp_path: Path) -> None:
    """Without quality in --stages a corrupt file was decided keep and written to kept/, and
    the input gate read every caption as missing; a stage named twice was a traceback."""
    import pyarrow.parquet as pq

    ds, out = tmp_path / "ds", tmp_path / "r"
    cli_batch([("example", "--out", str(ds), "--n", "10", "--format", "imagefolder")])
    victim = sorted(ds.rglob("*.jpg"))[0]
    victim.write_bytes(victim.read_bytes()[:40])  # cut short
    results = cli_batch(
        [
            ("curate", str(ds), "--out", str(out), "--stages", "rights"),
            ("curate", str(ds), "--out", str(tmp_path / "r2"), "--stages", "quality,quality"),
        ]
    )
    assert results[0][0] == 0, results[0][2]
    dec = pq.read_table(out / "decisions.parquet").to_pylist()
    assert len(dec) == 10
    bad = [d for d in dec if d["decision"] == "error"]
    assert len(bad) == 1 and bad[0]["reasons"] == ["decode_error"]
    run = json.loads((out / "run.json").read_text())
    assert run["settings"]["stages"] == ["quality", "rights"]
    code, _, err = results[1]
    assert code == 2 and err.strip().splitlines() == [
        "error: --stages lists 'quality' twice; name each stage once."
    ]
    # The gate now sees the decode error, and its line prints a plain number.
    pack = tmp_path / "gate.yaml"
    pack.write_text(
        "name: g\nversion: '1'\nextends: default\ngates:\n  min_decodable_share: 0.95\n"
    )
    ((code, said, err),) = cli_batch([("decide", str(out), "--rules", str(pack), "--no-kept")])
    assert code == 1 and "observed {'observed_value': 0.9}" in err, err
    # The pack's alignment cut over a run without alignment scores is said to cut nothing.
    assert "→ not applied: the run has no alignment scores" in said, said
    assert json.loads((out / "stats.json").read_text())["thresholds"]["alignment_scored"] is False


def test_piped_output_is_not_wrapped_at_80_columns(tmp_path: Path) -> None:
    """Rich wrapped lines at 80 columns when stdout was not a terminal, so
    `clipaudit demo | grep "pair precision"` lost the number on the next line."""
    import os

    out = tmp_path / ("a-folder-name-long-enough-to-push-the-line-past-eighty-columns" * 2)
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    done = subprocess.run(
        [sys.executable, "-m", "clipaudit", "example", "--out", str(out), "--n", "2"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines() == [f"wrote 2 samples in 1 file → {out}"]


def test_piped_help_is_drawn_at_a_readable_width() -> None:
    """With piped output widened for result lines, `clipaudit --help | less` drew its boxes
    10,000 columns wide; help and usage errors are capped at 100 columns."""
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    for args, stream in ((["--help"], "stdout"), (["curate", "--bogus"], "stderr")):
        done = subprocess.run(
            [sys.executable, "-m", "clipaudit", *args],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
        lines = getattr(done, stream).splitlines()
        assert lines and max(len(line) for line in lines) <= 100, (args, lines[:3])
        assert any("─" in line for line in lines) or "No such option" in "".join(lines)


def test_help_reflows_docstrings_instead_of_keeping_their_line_breaks() -> None:
    """Typer kept a docstring's hard line breaks: `clipaudit --help` showed "with its sample
    ids," alone on a line and `judge`'s summary broken mid-sentence twice."""
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("LINES",)}
    env["COLUMNS"] = "200"
    done = subprocess.run(
        [sys.executable, "-m", "clipaudit", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    line = next(x for x in done.stdout.splitlines() if " index " in x)
    assert "with its sample ids, captions, urls, decisions, reasons, routes and signals" in line


def test_a_file_as_out_and_a_damaged_run_are_one_line(tmp_path: Path) -> None:
    """example/world/train/embed with --out naming a file, and card on a run whose
    stats.json was cut short, were tracebacks (NotADirectoryError, JSONDecodeError)."""
    afile = tmp_path / "afile"
    afile.write_text("x")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "run.json").write_text("{}")
    (run_dir / "stats.json").write_text('{"input": 3, "ke')
    results = cli_batch(
        [
            ("example", "--out", str(afile), "--n", "2"),
            ("world", "--out", str(afile), "--n", "2"),
            ("card", str(run_dir)),
        ]
    )
    for code, _, err in results[:2]:
        assert code == 2 and err.strip().splitlines() == [
            f"error: The output {str(afile)!r} is a file or a folder that is not empty; "
            "choose a new folder."
        ], err
    code, _, err = results[2]
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "has an unreadable stats.json or run.json" in err


def test_train_refuses_a_bad_device_or_learning_rate_in_one_line(tmp_path: Path) -> None:
    """--device tpu / cuda without a GPU and --lr -1 / nan were torch tracebacks."""
    base = ("train", "--steps", "1", "--batch-size", "4", "--n-train", "4")
    results = cli_batch(
        [
            (*base, "--out", str(tmp_path / "a"), "--device", "tpu"),
            (*base, "--out", str(tmp_path / "b"), "--lr", "-1"),
            (*base, "--out", str(tmp_path / "c"), "--lr", "nan"),
        ]
    )
    for code, _, err in results:
        assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert "tpu" in results[0][2]
    assert "--lr must be a positive number, got -1.0." in results[1][2]
    assert "got nan" in results[2][2]
