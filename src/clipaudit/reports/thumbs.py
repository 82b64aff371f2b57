"""Thumbnails and captions for the samples a report shows, as small inline JPEG data: URIs.

Only the shards that hold a wanted id are read (the run stores each row's shard), so a
report of a large run reads a few shards, not the dataset. NSFW-flagged samples are never
even decoded unless the caller asks for them.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from clipaudit.curate.rundir import open_run_dataset, recorded_source
from clipaudit.data.decode import decode_image, decode_sample
from clipaudit.data.formats import open_dataset
from clipaudit.data.sample import Sample
from clipaudit.errors import ClipauditError

THUMB_PX = 72
JPEG_QUALITY = 60
# Reason codes whose samples are hidden unless ``show_nsfw``.
NSFW_CODES = frozenset({"nsfw", "nsfw_review"})


@dataclass
class SampleView:
    """What a report shows of one sample; ``thumb`` is a data: URI or None."""

    id: str
    caption: str | None = None
    url: str | None = None
    thumb: str | None = None
    hidden: bool = False
    strip: bool = False  # a video's sampled frames side by side


@dataclass
class ThumbSource:
    """Where a run's images can be read again: its source dataset, else its kept copy."""

    run: Path
    record: dict[str, Any]
    shard_of: dict[str, int]
    note: str | None = None
    views: dict[str, SampleView] = field(default_factory=dict)
    px: int = THUMB_PX

    def _dataset(self) -> Any:
        src = recorded_source(self.record) if self.record.get("dataset") else None
        if src and Path(src).exists():
            try:
                return open_run_dataset(self.record), True  # as the run read it
            except ClipauditError:
                pass
        kept = self.run / "kept"
        if kept.exists():
            self.note = (
                "the source dataset is not on this machine; only kept samples have thumbnails"
            )
            try:
                return open_dataset(kept), False
            except ClipauditError:
                pass
        self.note = "the source dataset is not on this machine; no thumbnails"
        return None, False

    def load(self, ids: Iterable[str], hidden: set[str]) -> dict[str, SampleView]:
        """Views for ``ids``; those in ``hidden`` get a caption but no decoded image."""
        wanted = {i for i in ids if i not in self.views}
        if not wanted:
            return self.views
        ds, is_source = self._dataset()
        if ds is None:
            for i in wanted:
                self.views[i] = SampleView(id=i, hidden=i in hidden)
            return self.views
        shards = ds.shards()
        if is_source:
            ks = sorted({self.shard_of[i] for i in wanted if i in self.shard_of})
            names = [shards[k] for k in ks if k < len(shards)]
        else:
            names = list(shards)
        left = set(wanted)
        for name in names:
            for s in ds.read_shard(name):
                if s.id not in left:
                    continue
                left.discard(s.id)
                hide = s.id in hidden
                self.views[s.id] = SampleView(
                    id=s.id,
                    caption=s.caption,
                    url=s.url,
                    thumb=None if hide else sample_thumbnail(s, self.px),
                    strip=s.media == "video",
                    hidden=hide,
                )
            if not left:
                break
        for i in left:
            self.views[i] = SampleView(id=i, hidden=i in hidden)
        return self.views


def sample_thumbnail(sample: Sample, px: int = THUMB_PX) -> str | None:
    """An image's thumbnail, or for a video a strip of its sampled frames (each ``px`` high,
    side by side), as a JPEG data: URI; None if nothing decodes."""
    if sample.media != "video":
        return thumbnail(sample.image, px)
    d = decode_sample(sample)
    if not d.frames:
        return None
    tiles = []
    for f in d.frames:  # half height a frame: eight of them fit one report figure
        t = f.copy()
        t.thumbnail((px // 2, px // 2))
        tiles.append(t)
    strip = Image.new("RGB", (sum(t.width for t in tiles), max(t.height for t in tiles)))
    x = 0
    for t in tiles:
        strip.paste(t, (x, 0))
        x += t.width
    buf = io.BytesIO()
    strip.save(buf, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def thumbnail(data: bytes | None, px: int = THUMB_PX) -> str | None:
    """A JPEG data: URI at most ``px`` on its longer side, or None if it cannot be decoded."""
    d = decode_image(data)
    if d.image is None:
        return None
    im = d.image.copy()
    im.thumbnail((px, px))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
