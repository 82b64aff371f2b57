"""``CurateConfig``: everything one curate run is asked to do, and the default stages."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from clipaudit.data.formats import ReadOptions

# Model stages first: the phrase scores of nsfw and watermark reuse alignment's embeddings.
DEFAULT_STAGES = [
    "quality",
    "hashes",
    "alignment",
    "rights",
    "c2pa",
    "optout",
    "watermark",
    "visible_watermark",
    "nsfw",
    "video",
]


@dataclass
class CurateConfig:
    dataset: str
    out: str
    rules: str = "default"
    model: str = "bundled:world-clip"
    format: str | None = None
    read: ReadOptions = field(default_factory=ReadOptions)
    stages: list[str] = field(default_factory=lambda: list(DEFAULT_STAGES))
    batch_size: int = 64
    # A batch also closes at this many megapixels of decoded images (headers' sizes): at 64
    # camera photos a batch held 6 GB, and the look-ahead holds three (curate/engines/local.py).
    batch_megapixels: int = 128
    device: str | None = None
    out_format: str | None = None
    decode_threads: int = 2
    # Intra-op threads of the model (None: torch's default, one per core). On a small or
    # shared machine 1 is much faster, as the decode threads need the other cores and
    # torch's waiting threads spin; but a batch under 16 images then embeds differently in
    # the last bit (<= 5e-8) than with several threads, so it is a recorded setting.
    model_threads: int | None = None
    gates: bool = True
    # How a video sample's frames are sampled (data/video.py: uniform:N, fps:F, keyframes,
    # scenes); part of the fingerprint when not the default.
    video_sampling: str = "uniform:8"
    # Who scores the shards: "local" (this process) or "ray" (see curate/engines/); the
    # engine never changes the run's files, so it is not part of the run's fingerprint.
    engine: str = "local"
    ray_address: str | None = None
    # Extra stage options (e.g. ``optout_cache``); ``rules`` is added from the field above.
    options: dict[str, Any] = field(default_factory=dict)
    # Reference sets whose copies are dropped (runs or datasets; curate/decide/against.py), and
    # where a dataset's hashes are cached. Decide-time settings: not in the fingerprint.
    against: list[str] = field(default_factory=list)
    against_cache: str | None = None
    # False: score only (a reference set's hashes, say); no decisions, no kept dataset.
    decide: bool = True
