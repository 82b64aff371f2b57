"""Parquet datasets: one file is one shard; image bytes or paths, caption, url, meta columns."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from clipaudit.data.formats import (
    Dataset,
    DatasetFormat,
    ReadOptions,
    meta_json,
    register_format,
    shard_batches,
)
from clipaudit.data.sample import GeneratedIds, Sample
from clipaudit.data.tabular import ColumnMap, row_to_sample, source_row
from clipaudit.errors import DatasetError

SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("image", pa.binary()),
        ("image_ext", pa.string()),
        ("caption", pa.string()),
        ("url", pa.string()),
        ("meta", pa.string()),
    ]
)


def _comparable(schema: pa.Schema) -> pa.Schema:
    """``schema`` without the bounds of a pandas RangeIndex in its metadata: every file
    pandas writes records its own row range (``"stop": 10`` in one, ``7`` in the next), so a
    folder of ``df.to_parquet`` files never had one schema and its kept set lost its types
    to the canonical columns. The kept file's index reads from 0 either way."""
    meta = schema.metadata or {}
    raw = meta.get(b"pandas")
    if raw is None:
        return schema
    try:
        pandas = json.loads(raw)
    except ValueError:
        return schema
    index = pandas.get("index_columns") if isinstance(pandas, dict) else None
    if not isinstance(index, list):
        return schema
    for entry in index:
        if isinstance(entry, dict) and entry.get("kind") == "range":
            entry.update({"start": 0, "stop": 0, "step": 1})
    return schema.with_metadata({**meta, b"pandas": json.dumps(pandas).encode()})


class ParquetDataset(Dataset):
    format = "parquet"

    def __init__(self, source: Path, options: ReadOptions) -> None:
        super().__init__(source, options)
        files = sorted(source.rglob("*.parquet")) if source.is_dir() else [source]
        if not files:
            raise DatasetError(f"No .parquet files under {str(source)!r}.")
        self.root = source if source.is_dir() else source.parent
        self._files = {f.relative_to(self.root).as_posix(): f for f in files}
        first = next(iter(self._files.values()))
        try:
            schema = pq.read_schema(first)
        except (pa.ArrowException, OSError) as exc:
            raise DatasetError(f"{str(first)!r} is not a readable parquet file ({exc}).") from exc
        self._names = schema.names
        text = {
            f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)
        }
        self.cols = ColumnMap.resolve(self._names, options, repr(str(first)), text_columns=text)
        self._row_schema: pa.Schema | bool | None = False  # False: not read yet

    def shards(self) -> list[str]:
        return list(self._files)

    def columns(self) -> list[str]:
        return list(self._names)

    def row_schema(self) -> pa.Schema | None:
        if self._row_schema is False:
            self._row_schema = None
            # Images from a bytes column (a path column beside it is only a fallback for
            # rows without bytes; copied rows get their bytes set): rows can be copied.
            if self.cols.image is not None:
                schemas = [_comparable(pq.read_schema(f)) for f in self._files.values()]
                if all(s.equals(schemas[0], check_metadata=True) for s in schemas[1:]):
                    self._row_schema = schemas[0]
        return self._row_schema

    def read_shard(self, shard: str) -> Iterator[Sample]:
        path = self._files[shard]
        ids = GeneratedIds.for_shard(list(self._files), shard)
        try:
            pf = pq.ParquetFile(path)
        except (pa.ArrowException, OSError) as exc:
            raise DatasetError(f"{str(path)!r} is not a readable parquet file ({exc}).") from exc
        missing = [
            c
            for c in (self.cols.image, self.cols.path, self.cols.caption)
            if c and c not in pf.schema_arrow.names
        ]
        if missing:
            raise DatasetError(
                f"The shard {str(path)!r} lacks the column {missing[0]!r} that the first "
                "shard has; all shards must share one schema."
            )
        batches = pf.iter_batches(batch_size=256)
        rows_read = 0
        schema = self.row_schema() if self.keep_rows else None
        # This file's own other columns: shards of another schema lost theirs (the first
        # file's names were looked up in every row).
        names = pf.schema_arrow.names
        used = {self.cols.id, self.cols.image, self.cols.path, self.cols.caption, self.cols.url}
        used |= {self.cols.meta, "image_ext"}
        cols = replace(self.cols, others=[n for n in names if n not in used])
        while True:
            try:
                batch = next(batches, None)
            except (pa.ArrowException, OSError) as exc:
                # A damaged page: the shard cannot be read whole, so the run stops here,
                # before this shard is marked done, rather than skipping rows silently.
                raise DatasetError(
                    f"{str(path)!r} is damaged and cannot be read past row "
                    f"{rows_read} ({str(exc).splitlines()[0][:200]}); replace that file."
                ) from None
            if batch is None:
                return
            for i, row in enumerate(batch.to_pylist()):
                rows_read += 1
                sample = row_to_sample(row, cols, path.parent, ids)
                if schema is not None:
                    # The arrow row itself (batch and index): every type survives, extension
                    # types (fixed_shape_tensor) included, which a Python round trip does not.
                    stored = {"__batch__": batch, "__index__": i, **row}
                    sample.source = source_row("parquet", schema, stored, cols)
                yield sample


@register_format("parquet")
class ParquetFormat(DatasetFormat):
    detect_priority = 20
    shard_file = "{n:05d}.parquet"

    @classmethod
    def detect(cls, path: Path) -> bool:
        if path.suffix == ".parquet":
            return True
        if not path.is_dir():
            return False
        # The Hugging Face hub's layout keeps its files under data/ (README.md at the top):
        # "Cannot tell the format", though the reader finds them.
        hub = path / "data"
        return any(path.glob("*.parquet")) or (hub.is_dir() and any(hub.rglob("*.parquet")))

    @classmethod
    def open(cls, path: Path, options: ReadOptions) -> Dataset:
        return ParquetDataset(path, options)

    @classmethod
    def write(cls, samples: Iterable[Sample], out: Path, shard_size: int) -> list[Path]:
        files: list[Path] = []
        for n, batch in enumerate(shard_batches(samples, shard_size)):
            table = _as_stored(batch)
            if table is None:
                table = pa.Table.from_pydict(
                    {
                        "id": [s.id for s in batch],
                        "image": [s.image for s in batch],
                        "image_ext": [s.image_ext for s in batch],
                        "caption": [s.caption for s in batch],
                        "url": [s.url for s in batch],
                        "meta": [meta_json(s.meta) for s in batch],
                    },
                    schema=SCHEMA,
                )
            final = out / f"{n:05d}.parquet"
            tmp = out / f".{n:05d}.parquet.tmp"
            pq.write_table(table, tmp, row_group_size=256)
            tmp.replace(final)
            files.append(final)
        return files


def _as_stored(batch: list[Sample]) -> pa.Table | None:
    """The batch's rows in their input's parquet schema, each the stored arrow row (so every
    type survives), where each was read with it (``Sample.source``); None otherwise (the
    canonical columns are written). A row whose image came from its path column gets its
    bytes in the image column; an input without an id column gets the run's ids in front."""
    srcs = [s.source for s in batch]
    first = srcs[0] if srcs else None
    if first is None or first.format != "parquet":
        return None
    if any(x is None or x.format != "parquet" or x.schema is not first.schema for x in srcs):
        return None
    schema: pa.Schema = first.schema
    rows = [x.row for x in srcs if x is not None]
    table = pa.Table.from_batches(
        [r["__batch__"].slice(r["__index__"], 1) for r in rows], schema=schema
    )
    image = first.image_column
    cells = table.column(image)
    if cells.null_count and any(
        r.get(image) is None and s.image is not None for r, s in zip(rows, batch, strict=True)
    ):
        kind = schema.field(image).type
        filled: list[Any]
        if pa.types.is_struct(kind):
            filled = [
                dict(r.get(image) or {}, bytes=s.image) for r, s in zip(rows, batch, strict=True)
            ]
        else:
            filled = [s.image for s in batch]
        table = table.set_column(
            schema.get_field_index(image), schema.field(image), pa.array(filled, kind)
        )
    if first.id_column is not None:
        table = table.add_column(
            0, pa.field(first.id_column, pa.string()), pa.array([s.id for s in batch], pa.string())
        )
    own = first.own_id_column
    if own is not None:
        field = schema.field(own)
        if pa.types.is_string(field.type) or pa.types.is_large_string(field.type):
            # The id the run used, which decisions join on: the stored one cleaned, or a
            # generated one where it was empty (a null id stayed null before).
            ids = pa.array([s.id for s in batch], field.type)
            table = table.set_column(schema.get_field_index(own), field, ids)
    return table.combine_chunks()
