"""Fuzz (hypothesis, bounded): mutate real image files and whole tar shards, curate, and
check the accounting invariant — kept + dropped + errored = what the reader yielded, one
decision per sample, the kept dataset equal to the keep/flag decisions — or one clear
error. Never a crash, never a hang."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clipaudit.data import Sample, open_dataset, write_dataset
from tests.hostile.images import IMAGE_CLASSES
from tests.hostile.runner import FAST_STAGES, curate_and_account

# Real encodings of every kind the catalogue knows to decode (formats, modes, animations).
SEEDS = [
    c
    for make in (
        "animated GIF, APNG, WebP",
        "CMYK, 16-bit, palette+transparency, float",
        "EXIF orientation (valid, bogus, broken)",
    )
    for c in IMAGE_CLASSES[make]()
][::3]


def mutate(data: bytes, ops: list[tuple[str, float, int]]) -> bytes:
    out = bytearray(data)
    for kind, where, value in ops:
        if not out:
            break
        at = int(where * (len(out) - 1))
        if kind == "flip":
            out[at] ^= value or 1
        elif kind == "truncate":
            del out[at:]
        elif kind == "splice":
            out[at:at] = bytes([value]) * 37
        elif kind == "zero_block":
            out[at : at + 512] = bytes(min(512, len(out) - at))
        elif kind == "delete":
            del out[at : at + value + 1]
    return bytes(out)


op = st.tuples(
    st.sampled_from(["flip", "truncate", "splice", "zero_block", "delete"]),
    st.floats(0, 1),
    st.integers(0, 255),
)


def _check(data: Path, tmp: Path) -> None:
    try:
        ds = open_dataset(data)
        yielded = [s.id for shard in ds.shards() for s in ds.read_shard(shard)]
    except Exception as exc:  # the reader may refuse a wrecked shard, but only clearly
        from clipaudit.errors import ClipauditError

        assert isinstance(exc, ClipauditError), repr(exc)
        return
    run = curate_and_account(data, tmp / "run", None, FAST_STAGES, limit_s=120)
    if run.error is not None:
        assert run.error.category == "clear_error", run.error
        return
    assert sorted(run.per_id) == sorted(yielded)
    bad = {i: o for i, o in run.per_id.items() if o.category not in ("ok", "reason")}
    assert not bad, bad


@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.lists(
        st.tuples(st.integers(0, len(SEEDS) - 1), st.lists(op, max_size=3)), min_size=1, max_size=8
    )
)
def test_mutated_images_are_all_accounted_for(specs: list) -> None:
    samples = [
        Sample(f"m{i}", mutate(SEEDS[k].data, ops), caption=f"caption {i}", image_ext=SEEDS[k].ext)
        for i, (k, ops) in enumerate(specs)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        write_dataset(samples, Path(tmp) / "d", "webdataset", shard_size=4)
        _check(Path(tmp) / "d", Path(tmp))


@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.integers(2, 8), st.lists(op, min_size=1, max_size=4))
def test_mutated_tar_shards_are_all_accounted_for(n: int, ops: list) -> None:
    samples = [
        Sample(
            f"t{i}",
            SEEDS[i % len(SEEDS)].data,
            caption=f"caption {i}",
            url=f"https://example.org/{i}",
            image_ext=SEEDS[i % len(SEEDS)].ext,
        )
        for i in range(n)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / "d"
        write_dataset(samples, d, "webdataset", shard_size=100)
        shard = d / "00000.tar"
        shard.write_bytes(mutate(shard.read_bytes(), ops))
        _check(d, Path(tmp))
