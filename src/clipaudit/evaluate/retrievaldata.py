"""Retrieval datasets: images (or videos, as the mean of their sampled frames) with one or
more captions each.

Several captions per image arrive two ways, both accepted: samples whose image bytes are
identical are one image (its captions in reading order, its id the first sample's), and a
``--captions-field`` in a sample's meta may hold a list of captions (or a JSON list).
An image with no caption stays in the gallery as a distractor but is not an image query.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from clipaudit.data import ReadOptions, Sample, open_dataset
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
            value = [value]
    if value is None:
        return []
    if not isinstance(value, (list, tuple)) or not all(isinstance(c, str) for c in value):
        raise ClipauditError(
            f"The captions field {captions_field!r} of sample {s.id!r} is not a list of "
            "strings; store a list (or a JSON list) of captions there."
        )
    return list(value)


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
    for s in ds:
        if s.error is not None or s.image is None:
            errors[s.id] = s.error or "missing_image"
            continue
        key = hashlib.sha256(s.image).hexdigest()
        if key not in group_of:
            group_of[key] = len(leaders)
            leaders.append(s.id)
            videos += s.media == "video"
        texts = ([s.caption] if s.caption else []) + _extra_captions(s, captions_field)
        for k, text in enumerate(texts):
            captions.append(text)
            caption_ids.append(s.id if k == 0 and s.caption else f"{s.id}#{k}")
            caption_image.append(group_of[key])
    keep = set(leaders)

    def read() -> Iterator[tuple[Picture | None, str | None]]:
        for s in ds:
            if s.id in keep:
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
