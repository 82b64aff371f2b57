"""Parquet datasets: one file is one shard; image bytes or paths, caption, url, meta columns."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

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
from clipaudit.data.tabular import ColumnMap, row_to_sample
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
            self._names = pq.read_schema(first).names
        except (pa.ArrowException, OSError) as exc:
            raise DatasetError(f"{str(first)!r} is not a readable parquet file ({exc}).") from exc
        self.cols = ColumnMap.resolve(self._names, options, repr(str(first)))

    def shards(self) -> list[str]:
        return list(self._files)

    def columns(self) -> list[str]:
        return list(self._names)

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
            for row in batch.to_pylist():
                rows_read += 1
                yield row_to_sample(row, self.cols, path.parent, ids)


@register_format("parquet")
class ParquetFormat(DatasetFormat):
    detect_priority = 20
    shard_file = "{n:05d}.parquet"

    @classmethod
    def detect(cls, path: Path) -> bool:
        if path.suffix == ".parquet":
            return True
        return path.is_dir() and any(path.glob("*.parquet"))

    @classmethod
    def open(cls, path: Path, options: ReadOptions) -> Dataset:
        return ParquetDataset(path, options)

    @classmethod
    def write(cls, samples: Iterable[Sample], out: Path, shard_size: int) -> list[Path]:
        files: list[Path] = []
        for n, batch in enumerate(shard_batches(samples, shard_size)):
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
