"""Video stage: what a video sample's container and sampled frames say, and frame hashes.

The pipeline decodes a video sample once (``data/decode.decode_sample``: frames sampled by
the run's policy, ``--video-sampling``, ``data/video.py``); the image stages score its middle
frame, the alignment, phrase, NSFW and visible-watermark stages every sampled frame, and this
stage records, per sample:

* ``media``: ``image`` or ``video`` (images get nulls in the other columns);
* ``video_duration`` (s), ``video_fps``, ``video_width``, ``video_height`` (as shown: the
  sample aspect ratio and a display matrix's quarter turn applied), ``video_codec``,
  ``video_hdr`` (``pq`` or ``hlg`` for HDR clips, whose frames are tone-mapped to SDR;
  ``… as stored`` where this PyAV could not), ``video_interlaced`` (share of sampled frames
  that were interlaced; one field of each is kept), ``video_frames`` (distinct frames
  sampled), ``video_policy`` (the sampling policy), ``video_capped`` (the policy met the
  32-frame cap: ``fps`` and ``keyframes`` then spread 32 frames over the whole clip,
  ``scenes`` stopped scanning; or a group of pictures ran past the decode bound and the
  targets past it got no frame, see docs/video.md) and ``video_bad_packets`` (packets that
  failed to decode and were skipped, as a player skips them: 0 for an undamaged clip);
* ``video_motion``: the largest mean absolute difference (0-255) between any two sampled
  frames' 32x32 grey thumbnails (0: a still video; null where fewer than two frames were
  sampled, so one frame is never called a still video), and ``video_black_share``: the
  share of sampled frames that are black;
* ``frame_phash``: the pHash of each sampled frame, in time order, and ``frame_thumbs``: a
  16x16 colour thumbnail of each (768 bytes a frame): decide pairs videos whose frames match
  (re-encoded, resized, trimmed copies) and confirms them on the thumbnails, see
  ``keeper.video_pairs``.

Rules (pack ``quality``): ``still_video`` below ``min_video_motion`` (never on a null
motion), ``black_video`` at
``max_black_frame_share`` or more, ``video_too_long`` over ``max_video_duration``;
``video_damaged`` where packets failed to decode (flagged by the default pack, dropped by
``strict``: the sampled frames skip the damage, training on the whole clip may not).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from clipaudit.curate.signal_shards import floats
from clipaudit.curate.stages import Batch, Stage, StageContext, register_stage
from clipaudit.curate.stages.hashes import perceptual_hashes
from clipaudit.curate.stages.reasons import Signals, column, register_rule, register_stats
from clipaudit.data.decode import Decoded
from clipaudit.data.sample import Sample

if TYPE_CHECKING:
    from clipaudit.rules.schema import Pack

COLUMNS = (
    "media",
    "video_duration",
    "video_fps",
    "video_width",
    "video_height",
    "video_codec",
    "video_hdr",
    "video_interlaced",
    "video_frames",
    "video_policy",
    "video_capped",
    "video_bad_packets",
    "video_motion",
    "video_black_share",
    "frame_phash",
    "frame_thumbs",
)
FRAME_THUMB = 16  # side of each sampled frame's colour thumbnail (768 bytes a frame)


@register_stage("video")
class VideoStage(Stage):
    columns = COLUMNS

    def __init__(self) -> None:
        self.policy = "uniform:8"

    def setup(self, ctx: StageContext) -> None:
        self.policy = str(ctx.options.get("video_sampling") or self.policy)

    def prepare(self, sample: Sample, decoded: Decoded) -> tuple[Any, ...]:
        media = sample.media
        v = decoded.video or {}
        if media != "video":
            return ("image",) + (None,) * (len(COLUMNS) - 1)
        frames = decoded.frames or []
        phash = perceptual_hashes(frames)[0] if frames else None
        thumbs = (
            b"".join(
                f.resize((FRAME_THUMB, FRAME_THUMB), Image.Resampling.BOX).tobytes() for f in frames
            )
            if frames
            else None
        )
        return (
            "video",
            v.get("duration"),
            v.get("fps"),
            v.get("width"),
            v.get("height"),
            v.get("codec"),
            v.get("hdr"),
            v.get("interlaced"),
            len(frames) if frames else None,
            v.get("policy"),
            v.get("capped"),
            v.get("bad_packets"),
            v.get("motion"),
            v.get("black_share"),
            phash,
            thumbs,
        )

    def process(self, batch: Batch) -> dict[str, list[Any]]:
        rows = self.prepared_for(batch)
        return {c: [r[k] for r in rows] for k, c in enumerate(COLUMNS)}

    def provenance(self) -> dict[str, Any]:
        from clipaudit.data.video import (
            DEADLINE_S,
            MAX_FRAME_PIXELS,
            MAX_GOP_WORK,
            MIN_FRAME_WORK,
            SamplingPolicy,
        )

        return {
            "decoder": "PyAV (FFmpeg's libraries in its wheel)",
            "policy": str(SamplingPolicy.parse(self.policy)),
            "deadline_s": DEADLINE_S,
            "max_frame_pixels": MAX_FRAME_PIXELS,
            # pixels decoded from one key frame, each frame counted as at least MIN_FRAME_WORK
            "max_gop_work": MAX_GOP_WORK,
            "min_frame_work": MIN_FRAME_WORK,
            "image_stages": "score the middle sampled frame",
            "alignment": "mean of the sampled frames' embeddings, renormalised",
        }


@register_rule("video")
def video_rule(sig: Signals, pack: Pack) -> list[list[str]]:
    n = len(sig["id"])
    out: list[list[str]] = [[] for _ in range(n)]
    if "media" not in sig:
        return out
    q = pack.quality
    media = column(sig, "media")
    motion = floats(column(sig, "video_motion"))
    black = floats(column(sig, "video_black_share"))
    duration = floats(column(sig, "video_duration"))
    bad = floats(column(sig, "video_bad_packets")) if "video_bad_packets" in sig else None
    for i in range(n):
        if media[i] != "video":
            continue
        if bad is not None and bad[i] > 0:
            out[i].append("video_damaged")
        if black[i] >= q.max_black_frame_share:
            out[i].append("black_video")
        elif (
            q.min_video_motion is not None
            and not np.isnan(motion[i])  # one frame sampled: no motion verdict
            and motion[i] < q.min_video_motion
        ):
            out[i].append("still_video")
        if q.max_video_duration is not None and duration[i] > q.max_video_duration:
            out[i].append("video_too_long")
    return out


@register_stats("video")
def video_stats(sig: Signals, pack: Pack, reasons: list[list[str]]) -> dict[str, Any]:
    if "media" not in sig:
        return {}
    media = np.array([str(m) for m in column(sig, "media")])
    dur = floats(column(sig, "video_duration"))
    vid = media == "video"
    return {
        "videos": int(vid.sum()),
        "images": int((media == "image").sum()),
        "video_seconds": round(float(np.nansum(dur[vid])), 1) if vid.any() else 0.0,
        "still": sum("still_video" in r for r in reasons),
        "black": sum("black_video" in r for r in reasons),
        "damaged": sum("video_damaged" in r for r in reasons),
    }
