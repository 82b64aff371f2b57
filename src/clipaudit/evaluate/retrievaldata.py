"""Retrieval datasets: images (or videos, as the mean of their sampled frames) with one or
more captions each.

Several captions per image arrive three ways, all accepted: samples whose image bytes are
identical are one image (its captions in reading order, its id the first sample's); rows
that repeat a sample id for the same image bytes (an imagefolder ``metadata.jsonl`` with one
``file_name`` row per caption) are that image's further captions, ids ``ID#1``, ``ID#2``…;
and a ``--captions-field`` in a sample's meta may hold a list of captions (or a JSON list).
The field must be in at least one sample, and where present must be a list of strings: a
plain string is refused (``--caption-column`` names a one-caption field). An image with no
caption stays in the gallery as a distractor but is not an image query.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from clipaudit.data import Dataset, ReadOptions, Sample, open_dataset
from clipaudit.data.decode import decode_sample
from clipaudit.data.video import DEFAULT_POLICY, SamplingPolicy
from clipaudit.errors import ClipauditError
from clipaudit.evaluate.images import ImageSet, Picture


@dataclass
class RetrievalData:
    """Captions point at images: ``caption_image[t]`` is the image index of caption t."""

    name: str
    images: ImageSet
    captions: list[str]
    caption_ids: list[str]
    caption_image: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.captions:
            raise ClipauditError(f"The dataset {self.name!r} has no captions to retrieve with.")


def _extra_captions(s: Sample, captions_field: str | None) -> list[str]:
    if captions_field is None:
        return []
    value = s.meta.get(captions_field)
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            value = s.meta[captions_field]
    if value is None:
        return []
    if isinstance(value, str):
        raise ClipauditError(
            f"The captions field {captions_field!r} of sample {s.id!r} holds one string "
            f"({value[:40]!r}), not a list of captions; store a list (or a JSON list) there, "
            "or pass a one-caption field as --caption-column."
        )
    if not isinstance(value, (list, tuple)) or not all(isinstance(c, str) for c in value):
        raise ClipauditError(
            f"The captions field {captions_field!r} of sample {s.id!r} is not a list of "
            "strings; store a list (or a JSON list) of captions there."
        )
    return list(value)


def _rows(ds: Dataset) -> Iterator[Sample]:
    """Every stored row, a repeated id included (``Dataset.__iter__`` refuses those)."""
    for shard in ds.shards():
        yield from ds.read_shard(shard)


def load_retrieval(
    source: Any,
    format: str | None = None,
    options: ReadOptions | None = None,
    captions_field: str | None = None,
    policy: SamplingPolicy | None = None,
) -> RetrievalData:
    """Open an image–caption dataset and group it into images and their captions; a video
    sample's frames are sampled by ``policy`` (``uniform:8`` when None), as curate does."""
    policy = policy or DEFAULT_POLICY
    ds = open_dataset(source, format=format, options=options)
    leaders: list[str] = []
    group_of: dict[str, int] = {}
    captions: list[str] = []
    caption_ids: list[str] = []
    caption_image: list[int] = []
    errors: dict[str, str] = {}
    videos = 0
    first_key: dict[str, str | None] = {}  # sample id -> its image's hash (None: unreadable)
    n_from_id: dict[str, int] = {}  # captions so far under each sample id
    fields: set[str] = set()
    field_seen = False
    lost_captions = 0  # captions of unreadable samples, never added
    for s in _rows(ds):
        fields.update(s.meta)
        field_seen = field_seen or (captions_field is not None and captions_field in s.meta)
        key = hashlib.sha256(s.image).hexdigest() if s.image is not None else None
        if s.id in first_key:
            if first_key[s.id] != key:
                raise ClipauditError(
                    f"The id {s.id!r} names two different images in {ds.describe()!r}; a "
                    "repeated id (or file_name) must be the same image, one row per caption: "
                    "give each sample its own id."
                )
            if key is None:  # another row of an unreadable sample: one image, more captions
                lost_captions += bool(s.caption) + len(_extra_captions(s, captions_field))
                continue
        elif s.error is not None or key is None:
            first_key[s.id] = None
            errors[s.id] = s.error or "missing_image"
            lost_captions += bool(s.caption) + len(_extra_captions(s, captions_field))
            continue
        else:
            first_key[s.id] = key
        assert key is not None
        if key not in group_of:
            group_of[key] = len(leaders)
            leaders.append(s.id)
            videos += s.media == "video"
        texts = ([s.caption] if s.caption else []) + _extra_captions(s, captions_field)
        for k, text in enumerate(texts):
            n = n_from_id.get(s.id, 0)
            captions.append(text)
            caption_ids.append(s.id if n == 0 and k == 0 and s.caption else f"{s.id}#{n}")
            caption_image.append(group_of[key])
            n_from_id[s.id] = n + 1
    if captions_field is not None and not field_seen:
        raise ClipauditError(
            f"The captions field {captions_field!r} is in no sample of {ds.describe()!r}, "
            + (
                f"whose other fields are {', '.join(sorted(fields))}: pass one of those"
                if fields
                else "whose samples have no field besides image, caption and id: add it"
            )
            + ", or leave --captions-field out."
        )
    keep = set(leaders)

    def read() -> Iterator[tuple[Picture | None, str | None]]:
        done: set[str] = set()
        for s in _rows(ds):
            if s.id in keep and s.id not in done:
                done.add(s.id)
                dec = decode_sample(s, policy)
                yield (dec.frames or dec.image), dec.error

    per_image = np.bincount(np.asarray(caption_image, np.int64), minlength=len(leaders))
    info = {
        "source": ds.describe(),
        "format": ds.format,
        "grouping": "identical image bytes"
        + (f" + list field {captions_field!r}" if captions_field else ""),
        "images_without_captions": int((per_image == 0).sum()),
        "unreadable_samples": len(errors),
        "unreadable_captions": lost_captions,
    }
    if videos:  # a video's embedding is the mean of these frames' embeddings
        info |= {"videos": videos, "video_sampling": str(policy)}
    return RetrievalData(
        ds.describe(),
        ImageSet(leaders, read, errors),
        captions,
        caption_ids,
        np.asarray(caption_image, np.int64),
        info,
    )
