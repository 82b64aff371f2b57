"""The run directory: per-shard outputs with completion markers, written atomically.

::

    run.json                resolved config, pack, model provenance, versions, input fingerprint
    signals/shard-K.parquet one row per sample of input shard K: id, row, every signal
    img_emb/img_emb_K.npy   clip-retrieval layout, row-aligned with metadata_K.parquet
    text_emb/text_emb_K.npy
    metadata/metadata_K.parquet
    markers/shard-K.done    written last: a shard without it is scored again on resume
    decisions.parquet       one row per input sample: decision, reasons, duplicate_of, signals
    stats.json, gates.json  counts that add up; quality-gate results
    phases.json             decide's wall time and peak memory per phase (machine-dependent)
    kept/                   the kept dataset
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from clipaudit.data.formats import (
    Dataset,
    ReadOptions,
    atomic_write_bytes,
    open_dataset,
    output_errors,
)
from clipaudit.errors import ClipauditError

SUBFOLDERS = ("signals", "markers", "img_emb", "text_emb", "metadata")


def table_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


def npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


LOCK = ".lock"
# Run folders this process holds the lock of, with how many holders (curate's own decide
# takes it again): path -> [file descriptor, depth].
_HELD: dict[str, list[int]] = {}


def acquire_run_lock(folder: Path) -> None:
    """Hold ``folder``'s lock (an exclusive flock on ``folder/.lock``) until
    ``release_run_lock``, or fail with one sentence when another process holds it: two
    decides on one folder read and replaced each other's files (one exited 0 with a kept set
    of the other's pack), and a decide during a curate died on a missing scratch file."""
    key = str(folder.resolve())
    if key in _HELD:
        _HELD[key][1] += 1
        return
    import fcntl

    with output_errors(folder):
        fd = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise ClipauditError(
            f"{str(folder)!r} is in use by another clipaudit curate or decide; wait for it to "
            "finish (or stop it), then run this command again."
        ) from None
    _HELD[key] = [fd, 1]


def release_run_lock(folder: Path) -> None:
    key = str(folder.resolve())
    held = _HELD.get(key)
    if held is None:
        return
    held[1] -= 1
    if held[1] == 0:
        del _HELD[key]
        os.close(held[0])  # closing the descriptor releases the flock; the file stays


@contextlib.contextmanager
def run_lock(folder: Path) -> Iterator[None]:
    acquire_run_lock(folder)
    try:
        yield
    finally:
        release_run_lock(folder)


# How each recorded setting is given on the command line, for saying which one differs.
SETTING_FLAGS = {
    "stages": "--stages",
    "model": "--model",
    "batch_size": "--batch-size",
    "batch_megapixels": "--batch-megapixels",
    "model_threads": "--model-threads",
    "video_sampling": "--video-sampling",
    "read": "the reading options (columns, split, shard size)",
    "options": "the stage options",
}
# Settings recorded only when not their default (curate/scoring.py), with that default.
SETTING_DEFAULTS: dict[str, Any] = {
    "batch_megapixels": 128,
    "model_threads": None,
    "video_sampling": "uniform:8",
}


def what_differs(old: Any, new: dict[str, Any]) -> str:
    """Which recorded settings or inputs of ``old`` (an existing run.json) and ``new``
    differ, in words: "--batch-size 64 there, 32 now"."""
    if not isinstance(old, dict) or "settings" not in old:
        return "its run.json is unreadable or from another tool"
    was, now = old.get("settings") or {}, new.get("settings") or {}
    parts = []
    for key in sorted(set(was) | set(now)):
        a = was.get(key, SETTING_DEFAULTS.get(key))
        b = now.get(key, SETTING_DEFAULTS.get(key))
        if a == b:
            continue
        if key in ("read", "options") and isinstance(a, dict) and isinstance(b, dict):
            # One line per option, as typed: a whole dict cut at 80 characters hid it.
            for sub in sorted(set(a) | set(b)):
                if a.get(sub) != b.get(sub):
                    flag = "--" + str(sub).replace("_", "-")
                    parts.append(f"{flag}: {_short(a.get(sub))} there, {_short(b.get(sub))} now")
            continue
        name = SETTING_FLAGS.get(key, key)
        parts.append(f"{name}: {_short(a)} there, {_short(b)} now")
    old_data, new_data = old.get("dataset") or {}, new.get("dataset") or {}
    if old_data.get("resolved") != new_data.get("resolved"):
        there, here = _short(old_data.get("resolved")), _short(new_data.get("resolved"))
        parts.append(f"input: {there} there, {here} now")
    elif old_data.get("shards") != new_data.get("shards"):
        parts.append("the input's files are not the same list")
    if not parts:
        parts.append("the input's files changed (added, removed, rewritten or touched) since")
    return "; ".join(parts)


def input_changed(old: Any, new: dict[str, Any]) -> bool:
    """Whether the settings agree, so the input itself is what changed."""
    if not isinstance(old, dict):
        return False
    was, now = old.get("settings") or {}, new.get("settings") or {}
    keys = set(was) | set(now)
    return all(
        was.get(k, SETTING_DEFAULTS.get(k)) == now.get(k, SETTING_DEFAULTS.get(k)) for k in keys
    )


def _short(value: Any, limit: int = 80) -> str:
    if value is None:  # JSON's null read as jargon in a sentence
        return "not given"
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class RunDir:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def prepare(self, record: dict[str, Any], legacy_fingerprints: Sequence[str] = ()) -> bool:
        """Create the run or check that an existing one is the same run; True when resuming.
        ``legacy_fingerprints``: the same input and settings as earlier versions computed
        them, so a run they started still resumes (its run.json then takes the new one)."""
        run_json = self.path / "run.json"
        if run_json.is_file():
            try:
                old = json.loads(run_json.read_text())
            except (OSError, ValueError):
                old = {}
            was = old.get("fingerprint") if isinstance(old, dict) else None
            same = was == record.get("fingerprint")
            if not same and was in legacy_fingerprints:
                same = True
                self.write_json("run.json", {**old, "fingerprint": record.get("fingerprint")})
            if not same and self._scored_nothing():
                # A start that failed before its first shard (a mistyped --model): the
                # corrected command starts the run afresh instead of being refused.
                self.write_json("run.json", record)
                return False
            if not same:
                advice = (
                    "choose a new --out folder, or delete that one, to curate the input as it "
                    "is now"
                    if input_changed(old, record)
                    else "run the command that made it to resume it, or choose a new --out "
                    "folder or delete that one"
                )
                raise ClipauditError(
                    f"{str(self.path)!r} holds a different run ({what_differs(old, record)}); "
                    f"{advice}."
                )
            with output_errors(self.path):
                self.remove_leftovers()
            return True
        self.refuse_foreign()
        # run.json first: a run killed at any later point is recognised and resumed (its
        # folders are made on demand by the atomic writes).
        self.write_json("run.json", record)
        with output_errors(self.path):
            for sub in SUBFOLDERS:
                (self.path / sub).mkdir(parents=True, exist_ok=True)
        return False

    def _scored_nothing(self) -> bool:
        """Only run.json and empty subfolders (temporary files aside): nothing to resume."""
        for p in self.path.iterdir():
            if p.name in ("run.json", LOCK) or (p.name.startswith(".") and p.name.endswith(".tmp")):
                continue
            if p.name not in SUBFOLDERS or not p.is_dir() or p.is_symlink():
                return False
            if any(not (q.name.startswith(".") and q.name.endswith(".tmp")) for q in p.iterdir()):
                return False
        return True

    def refuse_foreign(self) -> None:
        """Fail unless the folder is absent, empty or a run (it holds run.json)."""
        if (self.path / "run.json").is_file():
            return
        if self.path.is_dir() and any(p.name != LOCK for p in self.path.iterdir()):
            raise ClipauditError(
                f"The output folder {str(self.path)!r} is not empty and is not a clipaudit run; "
                "choose a new folder."
            )

    def remove_leftovers(self) -> None:
        """Temp files and folders a killed run left (``.name.XXXX.tmp``, ``.kept-XXXX``):
        never read, but a resumed run must end with exactly the files of an unbroken one."""
        for folder in (self.path, *(self.path / sub for sub in SUBFOLDERS)):
            if not folder.is_dir():
                continue
            for p in folder.iterdir():
                if p.name.startswith(".") and p.name.endswith(".tmp") and p.is_file():
                    p.unlink(missing_ok=True)
                elif p.name.startswith(".kept-") and p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p, ignore_errors=True)

    def write_json(self, name: str, obj: Any) -> None:
        atomic_write_bytes(
            self.path / name, json.dumps(obj, indent=2, sort_keys=True, default=str).encode()
        )

    def read_json(self, name: str) -> Any:
        p = self.path / name
        if not p.is_file():
            raise ClipauditError(f"{str(p)!r} is missing; is {str(self.path)!r} a clipaudit run?")
        return json.loads(p.read_text())

    def marker(self, k: int) -> Path:
        return self.path / "markers" / f"shard-{k:05d}.done"

    def shard_done(self, k: int) -> bool:
        return self.marker(k).is_file()

    def write_shard(
        self, k: int, signals: pa.Table, arrays: dict[str, np.ndarray], metadata: pa.Table | None
    ) -> None:
        """All of a shard's files, then its marker: a kill leaves no marker for half a shard."""
        atomic_write_bytes(self.path / "signals" / f"shard-{k:05d}.parquet", table_bytes(signals))
        for name, arr in sorted(arrays.items()):
            atomic_write_bytes(self.path / name / f"{name}_{k}.npy", npy_bytes(arr))
        if metadata is not None:
            atomic_write_bytes(
                self.path / "metadata" / f"metadata_{k}.parquet", table_bytes(metadata)
            )
        atomic_write_bytes(self.marker(k), b"")


def recorded_read_options(record: dict[str, Any]) -> ReadOptions:
    """The read options (columns, shard size, split) a run was scored with, as ``run.json``
    records them; keys this version does not know are left out."""
    known = {f.name for f in dataclasses.fields(ReadOptions)}
    read = (record.get("settings") or {}).get("read") or {}
    return ReadOptions(**{k: v for k, v in read.items() if k in known})


def open_run_dataset(record: dict[str, Any]) -> Dataset:
    """The dataset a run was scored from, opened as the run read it: the same format and read
    options. Opened with detected columns instead, a run read with ``--caption-column descr``
    would come back captionless (a re-decide wrote its kept captions as empty, the judge asked
    about an empty caption) and one sharded by ``--shard-size`` with other shard numbers."""
    source = recorded_source(record)
    if "{" not in source and not Path(source).exists():
        # Opened anyway, a moved folder read as one missing shard ("has 1 shards where the
        # run scored 2"), which sent the user looking for a damaged dataset.
        raise ClipauditError(
            f"The run's dataset {source!r} is not there any more (moved or deleted); put it "
            "back, or decide with --no-kept to use the run's signals alone."
        )
    return open_dataset(
        source,
        format=(record.get("dataset") or {}).get("format"),
        options=recorded_read_options(record),
    )


def other_shards(n: int) -> str:
    """ "the other shard" / "the other 3 shards" ("the other 1 shards" read as a slip)."""
    return "the other shard" if n == 1 else f"the other {n} shards"


def _source_present(source: str) -> bool:
    """Whether a dataset path resolves from here; a shard pattern (``shard-{000..009}.tar``)
    by its first shard, which is the only part that is a file."""
    from clipaudit.data.webdataset import expand_braces

    return Path(expand_braces(source)[0] if "{" in source else source).exists()


def resolved_source(source: str) -> str | None:
    """The absolute form of a dataset path to record beside the path as typed; a shard pattern
    by its folder (a relative pattern was recorded without one, so the resume command printed
    from another folder named shards that were not there)."""
    if not _source_present(source):
        return None
    if "{" in source:
        path = Path(source)
        return str(path.parent.resolve() / path.name)
    return str(Path(source).resolve())


def recorded_source(record: dict[str, Any]) -> str:
    """The dataset a run was scored from, as ``run.json`` records it: the path as typed, or
    its absolute form when the typed one was relative and does not resolve from here (a
    decide run from another folder)."""
    ds = record["dataset"]
    source, resolved = str(ds["source"]), ds.get("resolved")
    if resolved and not _source_present(source) and _source_present(str(resolved)):
        return str(resolved)
    return source


# The settings resume_command gives as `FLAG VALUE` where not their default (SETTING_FLAGS).
_VALUE_SETTINGS = {"batch_size": 64, **SETTING_DEFAULTS}
_READ_FLAGS = ("caption_column", "image_column", "path_column", "id_column", "url_column", "split")


def resume_command(record: dict[str, Any], run: Path) -> str:
    """The curate command that resumes this run as run.json records it: the same input, stages
    and settings, so it is not refused as "a different run" (a bare `curate SOURCE --out RUN`
    was, for any run scored with --stages or a column option)."""
    import shlex

    from clipaudit.curate.config import DEFAULT_STAGES

    settings = record.get("settings") or {}
    words = ["clipaudit", "curate", recorded_source(record), "--out", str(run)]
    fmt = (record.get("dataset") or {}).get("format")
    if fmt:  # detection may pick another (a parquet folder with a stray .tar in it)
        words += ["--format", str(fmt)]
    if record.get("out_format") and record["out_format"] != fmt:
        words += ["--out-format", str(record["out_format"])]
    stages = settings.get("stages")
    if stages and list(stages) != DEFAULT_STAGES:
        words += ["--stages", ",".join(stages)]
    if settings.get("model") and settings["model"] != "bundled:world-clip":
        words += ["--model", str(settings["model"])]
    for key, default in _VALUE_SETTINGS.items():
        if settings.get(key) is not None and settings[key] != default:
            words += [SETTING_FLAGS[key], str(settings[key])]
    read = settings.get("read") or {}
    for key in _READ_FLAGS:
        if read.get(key) is not None:
            words += ["--" + key.replace("_", "-"), str(read[key])]
    if (read.get("extra") or {}).get("follow_symlinks"):
        words.append("--follow-symlinks")
    for key, value in sorted((settings.get("options") or {}).items()):
        if key in ("optout_cache", "c2pa_trust_anchors") and value:
            words += ["--" + key.replace("_", "-"), str(value)]
    return " ".join(shlex.quote(w) for w in words)
