"""Hugging Face ``datasets``: a folder written by ``save_to_disk`` or an in-memory Dataset.

Images are read undecoded (``Image(decode=False)``) so the stored bytes pass through as-is.
Shards are contiguous row ranges of ``ReadOptions.shard_size``.
"""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from clipaudit.data.formats import Dataset, DatasetFormat, ReadOptions, register_format
from clipaudit.data.sample import GeneratedIds, Sample
from clipaudit.data.tabular import ColumnMap, row_to_sample, source_row, stored_row
from clipaudit.errors import DatasetError


def _load(source: Any, split: str | None) -> Any:
    import datasets

    if isinstance(source, (str, Path)):
        try:
            obj = datasets.load_from_disk(str(source))
        except (FileNotFoundError, ValueError) as exc:
            raise DatasetError(
                f"{str(source)!r} is not a dataset saved with save_to_disk ({exc})."
            ) from exc
    else:
        obj = source
    if isinstance(obj, datasets.DatasetDict):
        names = list(obj)
        if split is None:
            if len(names) == 1 or "train" in names:
                split = "train" if "train" in names else names[0]
            else:
                raise DatasetError(
                    f"The dataset has splits {', '.join(names)}; pass --split with one of them."
                )
        if split not in obj:
            raise DatasetError(f"No split {split!r}; the splits are {', '.join(names)}.")
        obj = obj[split]
    if not isinstance(obj, datasets.Dataset):
        raise DatasetError(f"Expected a datasets.Dataset or DatasetDict, got {type(obj).__name__}.")
    return obj


class HFDataset(Dataset):
    format = "hf"

    def __init__(self, source: Any, options: ReadOptions) -> None:
        import datasets

        super().__init__(source, options)
        ds = _load(source, options.split)
        # As stored (images decoded on load): what a kept dataset in this format is saved with.
        self.features = ds.features
        image_cols = [n for n, f in ds.features.items() if isinstance(f, datasets.Image)]
        # Every image undecoded, nested ones too (a Sequence of Image came back as PIL objects,
        # which crashed the kept write and reached meta as "<PIL...JpegImageFile at 0x...>").
        for name, feature in ds.features.items():
            undecoded = _undecoded(feature)
            if undecoded != feature:
                ds = ds.cast_column(name, undecoded)
        self.ds = ds
        self.info = ds.info  # description, licence, citation: a kept dataset keeps them
        self._labels = {n: f for n, f in ds.features.items() if isinstance(f, datasets.ClassLabel)}
        where = repr(str(source)) if isinstance(source, (str, Path)) else "the dataset"
        hint = image_cols[0] if image_cols and options.image_column is None else None
        self.cols = ColumnMap.resolve(list(ds.column_names), options, where, image_hint=hint)
        self.base_dir = Path(source) if isinstance(source, (str, Path)) else None
        size = max(1, options.shard_size)
        n = len(ds)
        self._shards = {f"rows-{i:08d}": (i, min(i + size, n)) for i in range(0, n, size)}

    def describe(self) -> str:
        return str(self.source) if isinstance(self.source, (str, Path)) else "the dataset"

    def shards(self) -> list[str]:
        return list(self._shards)

    def columns(self) -> list[str]:
        return list(self.ds.column_names)

    def row_schema(self) -> Any:
        ok = self.cols.image is not None  # a path column beside it: rows get their bytes
        return self.features if ok else None

    def read_shard(self, shard: str) -> Iterator[Sample]:
        lo, hi = self._shards[shard]
        ids = GeneratedIds.for_shard(list(self._shards), shard)
        features = self.row_schema() if self.keep_rows else None
        for start in range(lo, hi, 256):
            batch = self.ds[start : min(start + 256, hi)]
            names = list(batch)
            for i in range(len(batch[names[0]]) if names else 0):
                row = {k: batch[k][i] for k in names}
                stored = dict(row)
                cap = self.cols.caption
                if cap in self._labels and isinstance(row.get(cap), int):
                    # A label used as the caption is its class name, not its index ('46');
                    # -1 is "unlabelled" in datasets, not a caption '-1'.
                    value = row[cap]
                    row[cap] = self._labels[cap].int2str(value) if value >= 0 else None
                sample = row_to_sample(row, self.cols, self.base_dir, ids)
                # ClassLabel ints are kept, with their names beside them for readability.
                for col, feature in self._labels.items():
                    value = row.get(col)
                    if col in sample.meta and isinstance(value, int) and value >= 0:
                        sample.meta[f"{col}_name"] = feature.int2str(value)
                if features is not None:
                    sample.source = source_row("hf", features, stored, self.cols, self.info)
                yield sample


def _undecoded(feature: Any) -> Any:
    """``feature`` with every Image in it, however nested, read as stored bytes."""
    import dataclasses

    import datasets

    if isinstance(feature, datasets.Image):
        return datasets.Image(decode=False)
    if isinstance(feature, dict):
        return {k: _undecoded(v) for k, v in feature.items()}
    if isinstance(feature, (list, tuple)):
        return type(feature)(_undecoded(v) for v in feature)
    inner = getattr(feature, "feature", None)
    if inner is not None and dataclasses.is_dataclass(feature) and not isinstance(feature, type):
        new = _undecoded(inner)
        return feature if new == inner else dataclasses.replace(feature, feature=new)
    return feature


@register_format("hf")
class HFFormat(DatasetFormat):
    detect_priority = 5

    @classmethod
    def detect(cls, path: Path) -> bool:
        return path.is_dir() and any(
            (path / n).is_file() for n in ("dataset_info.json", "state.json", "dataset_dict.json")
        )

    @classmethod
    def open(cls, path: Path | Any, options: ReadOptions) -> Dataset:
        return HFDataset(path, options)

    @classmethod
    def write(cls, samples: Iterable[Sample], out: Path, shard_size: int) -> list[Path]:
        import datasets

        def pq_rows(path: Path) -> int:
            import pyarrow.parquet as pq

            return int(pq.ParquetFile(path).metadata.num_rows)

        features = datasets.Features(
            {
                "id": datasets.Value("string"),
                "image": datasets.Image(),
                "image_ext": datasets.Value("string"),
                "caption": datasets.Value("string"),
                "url": datasets.Value("string"),
                "meta": datasets.Value("string"),
            }
        )

        with tempfile.TemporaryDirectory(prefix="clipaudit-hf-") as cache:
            # datasets pickles the generator to fingerprint it, and the samples may arrive as
            # a generator (which cannot be pickled): spool them to parquet shards first, a
            # shard at a time, and let the generator read those back (memory stays bounded).
            from clipaudit.data.parquet import ParquetFormat

            (Path(cache) / "spool").mkdir()
            it = iter(samples)
            first = next(it, None)
            stream = itertools.chain([] if first is None else [first], it)
            src = first.source if first is not None else None
            as_stored = src is not None and src.format == "hf"
            if as_stored:
                # Rows read from an hf dataset are saved with its own features (ClassLabel,
                # Sequence, every column), not folded into ``meta``.
                assert src is not None
                features = datasets.Features(
                    {src.id_column: datasets.Value("string"), **src.schema}
                    if src.id_column
                    else dict(src.schema)
                )
                spooled = _spool_stored(stream, Path(cache) / "spool", features)
            else:
                spooled = ParquetFormat.write(stream, Path(cache) / "spool", min(shard_size, 1000))

            def rows(
                paths: tuple[str, ...] = tuple(map(str, spooled)), canonical: bool = not as_stored
            ) -> Iterator[dict[str, Any]]:
                import pyarrow.parquet as pq

                for path in paths:
                    for batch in pq.ParquetFile(path).iter_batches(batch_size=256):
                        for r in batch.to_pylist():
                            if canonical:
                                image = r.pop("image")
                                has = image is not None
                                r["image"] = {"bytes": image, "path": None} if has else None
                            yield r

            # datasets draws its own bars ("Generating train split", "Saving the dataset")
            # into the command's output; the caller's setting is restored after.
            was_off = datasets.are_progress_bars_disabled()
            datasets.disable_progress_bars()
            try:
                if any(pq_rows(p) for p in spooled):
                    ds = datasets.Dataset.from_generator(
                        rows, features=features, cache_dir=cache, keep_in_memory=False
                    )
                    if as_stored and src is not None and src.extra is not None:
                        for field in ("description", "citation", "homepage", "license"):
                            setattr(ds.info, field, getattr(src.extra, field, "") or "")
                    ds.save_to_disk(str(out), max_shard_size="500MB")
                else:
                    # An empty kept set (or route) is an empty dataset with the same features,
                    # in one (empty) shard so it loads: from_generator refuses a generator that
                    # yields nothing, which crashed decide after it had rewritten the decisions
                    # and left the previous kept/ in place.
                    ds = datasets.Dataset.from_dict({k: [] for k in features}, features=features)
                    ds.save_to_disk(str(out), num_shards=1)
            finally:
                if not was_off:
                    datasets.enable_progress_bars()
        return sorted(out.glob("*.arrow"))


def _spool_stored(samples: Iterable[Sample], out: Path, features: Any) -> list[Path]:
    """Samples read with their hf rows (``Sample.source``), as parquet files in the arrow
    schema of ``features``, 1,000 rows a file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = features.arrow_schema
    files: list[Path] = []
    chunk: list[dict[str, Any]] = []

    def flush() -> None:
        path = out / f"{len(files):05d}.parquet"
        pq.write_table(pa.Table.from_pylist(chunk, schema=schema), path)
        files.append(path)
        chunk.clear()

    for s in samples:
        if s.source is None or s.source.format != "hf":
            raise DatasetError(f"Sample {s.id!r} was not read from a Hugging Face dataset.")
        chunk.append(stored_row(s))
        if len(chunk) == 1000:
            flush()
    if chunk or not files:
        flush()
    return files
