from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np


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
    r = run(
        "example",
        "--out",
        str(tmp_path / "ds"),
        "--n",
        "40",
        "--format",
        "parquet",
        "--shard-size",
        "16",
    )
    assert r.returncode == 0, r.stderr
    r = run("info", str(tmp_path / "ds"), "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["format"] == "parquet" and info["samples"] == 40 and info["shards"] == 3
    assert set(info["columns"]) >= {"id", "image", "caption", "url", "meta"}
    assert info["captions"][0].startswith(("a ", "an "))
    r = run("info", str(tmp_path / "ds"))
    assert "samples  40" in r.stdout
    r = run("embed", str(tmp_path / "ds"), "--out", str(tmp_path / "emb"))
    assert r.returncode == 0, r.stderr
    assert "embedded 40/40 images and 40 captions in 3 shards" in r.stdout
    arr = np.load(tmp_path / "emb" / "img_emb" / "img_emb_2.npy")
    assert arr.shape == (8, 128)


def test_user_errors_are_one_line_without_traceback(tmp_path: Path) -> None:
    r = run("info", str(tmp_path / "missing"))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [
        f"error: The dataset path {str(tmp_path / 'missing')!r} does not exist; check the path."
    ]
    r = run("embed", str(tmp_path), "--out", str(tmp_path / "o"), "--model", "nonsense")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    r = run("info", str(tmp_path), "--format", "zip")
    assert r.returncode == 2 and "use one of: hf, imagefolder, parquet, webdataset" in r.stderr


def test_curate_thread_options_are_recorded_and_change_no_decision(tmp_path: Path) -> None:
    r = run("example", "--out", str(tmp_path / "ds"), "--n", "24", "--format", "webdataset")
    assert r.returncode == 0, r.stderr
    common = ["--stages", "quality,hashes,alignment", "--model", "random:clipaudit-tiny"]
    common += ["--rules", "keep-all"]
    r = run("curate", str(tmp_path / "ds"), "--out", str(tmp_path / "a"), *common)
    assert r.returncode == 0, r.stderr
    r = run(
        "curate", str(tmp_path / "ds"), "--out", str(tmp_path / "b"), *common,
        "--model-threads", "1", "--decode-threads", "1",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    settings = json.loads((tmp_path / "b" / "run.json").read_text())["settings"]
    assert settings["model_threads"] == 1
    assert "model_threads" not in json.loads((tmp_path / "a" / "run.json").read_text())["settings"]
    import pyarrow.parquet as pq

    a = pq.read_table(tmp_path / "a" / "decisions.parquet").to_pydict()
    b = pq.read_table(tmp_path / "b" / "decisions.parquet").to_pydict()
    assert a["id"] == b["id"] and a["decision"] == b["decision"] and len(a["id"]) == 24
    assert np.allclose(a["alignment"], b["alignment"], atol=1e-6)
    r = run("curate", str(tmp_path / "ds"), "--out", str(tmp_path / "c"), "--model-threads", "0")
    assert r.returncode != 0 and "Traceback" not in r.stderr


def test_usage_mistakes_are_a_usage_message_not_a_traceback(tmp_path: Path) -> None:
    cases = {
        ("curate", "x", "--out", str(tmp_path / "r"), "--batch-size", "0"): "--batch-size",
        ("curate", "x", "--out", str(tmp_path / "r"), "--bogus"): "--bogus",
        ("curate",): "Missing argument",
        ("nosuchcommand",): "nosuchcommand",
    }
    for args, named in cases.items():
        r = run(*args)
        assert r.returncode == 2, (args, r.returncode)
        assert "Traceback" not in r.stderr and named in r.stderr, (args, r.stderr)
