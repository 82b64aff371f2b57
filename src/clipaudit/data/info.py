"""A quick look at a dataset: format, shards, sample count, columns, a few captions."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from clipaudit.data.formats import Dataset
from clipaudit.errors import DuplicateIdError


@dataclass
class DatasetInfo:
    format: str
    source: str
    shards: int
    samples: int
    columns: list[str]
    captions: list[str]
    ids: list[str] = field(repr=False)
    reader_errors: dict[str, int] = field(default_factory=dict)

    def to_dict(self, with_ids: bool = False) -> dict[str, Any]:
        d = dict(self.__dict__)
        if not with_ids:
            d.pop("ids")
        return d


def dataset_info(dataset: Dataset, n_captions: int = 3) -> DatasetInfo:
    """Read every sample header (no decoding); repeated ids are an error naming all of them."""
    ids: list[str] = []
    counts: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    captions: list[str] = []
    for shard in dataset.shards():
        for s in dataset.read_shard(shard):
            ids.append(s.id)
            counts[s.id] += 1
            if s.error:
                errors[s.error] += 1
            if s.caption and len(captions) < n_captions:
                captions.append(s.caption)
    dups = sorted(i for i, c in counts.items() if c > 1)
    if dups:
        raise DuplicateIdError(dups, dataset.describe())
    return DatasetInfo(
        dataset.format,
        dataset.describe(),
        len(dataset.shards()),
        len(ids),
        dataset.columns(),
        captions,
        ids,
        dict(errors),
    )
