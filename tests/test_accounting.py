"""Property: whatever happens to the bytes, kept + dropped + errored = input, each id once."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clipaudit.curate.pipeline import CurateConfig, curate
from clipaudit.data import Sample, open_dataset, write_dataset
from tests.conftest import image_zoo

ZOO = image_zoo()
NAMES = sorted(ZOO)


def corrupt(data: bytes, kind: str, where: float, value: int) -> bytes:
    at = int(where * max(0, len(data) - 1))
    if kind == "truncate":
        return data[:at]
    if kind == "flip":
        return data[:at] + bytes([data[at] ^ (value or 1)]) + data[at + 1 :] if data else data
    if kind == "splice":
        return data[:at] + bytes([value]) * 64 + data[at:]
    return data


sample_st = st.tuples(
    st.sampled_from(NAMES),
    st.sampled_from(["none", "truncate", "flip", "splice"]),
    st.floats(0, 1),
    st.integers(0, 255),
    st.booleans(),
)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(sample_st, min_size=1, max_size=10), st.sampled_from(["parquet", "webdataset"]))
def test_accounting_holds_under_random_corruption(specs: list, fmt: str) -> None:
    samples = [
        Sample(
            f"s{i}",
            corrupt(ZOO[name][0], kind, where, value),
            caption=f"caption {i}" if has_caption else None,
            image_ext=ZOO[name][1],
        )
        for i, (name, kind, where, value, has_caption) in enumerate(specs)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        data, run = Path(tmp) / "data", Path(tmp) / "run"
        write_dataset(samples, data, fmt, shard_size=4)
        stats = curate(
            CurateConfig(
                dataset=str(data),
                out=str(run),
                rules="laion",
                stages=["quality", "hashes"],
                gates=False,
            )
        )
        dec = pq.read_table(run / "decisions.parquet").to_pylist()
        assert [d["id"] for d in dec] == [s.id for s in samples]
        assert stats["kept"] + stats["dropped"] + stats["errored"] == len(samples)
        assert stats["adds_up"]
        kept = (
            [s.id for s in open_dataset(run / "kept")]
            if any(d["decision"] in ("keep", "flag") for d in dec)
            else []
        )
        assert kept == [d["id"] for d in dec if d["decision"] in ("keep", "flag")]
        for d in dec:
            if d["decision"] == "error":
                assert d["reasons"] and d["reasons"][0] in {
                    "decode_error",
                    "empty_image",
                    "missing_image",
                    "image_too_large",
                }
        json.dumps(stats)
