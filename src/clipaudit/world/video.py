"""The world's video pool: short clips of world scenes under a moving camera, with planted
truths, written as WebDataset shards (``KEY.mp4`` beside ``KEY.txt`` and ``KEY.json``, as
video2dataset writes them) and ``labels.jsonl``.

A clip renders its scene at ``1.25 x size`` and pans a ``size`` window across it (with a slow
zoom), ``FRAMES`` frames at ``FPS``: every frame differs, as in real footage. Planted:

* ``misaligned``: captions swapped in pairs;
* copies of other clips: ``reencode`` (H.264 at CRF 38), ``resize`` (half size), ``trim``
  (70-90% of the frames kept, a random start), each labelled ``duplicate_of`` its original;
* ``watermark_mid``: the world's visible watermark stamped on the screen (not the scene: it
  stays put while the camera pans, as a broadcaster's or stock site's mark does) over the
  last third of the frames only;
* ``still``: the camera does not move (one frame repeated); ``black``: black frames;
* ``unsafe_frame``: a world stand-in for one unsafe shot, never real nudity: frames 9-11 of
  24 (one frame of ``uniform:8``) cut to a close-up of a large black star. No other clip
  shows a black star (such scenes are drawn again), and ``UNSAFE_STANDIN`` is the phrase a
  pack routes to ``nsfw`` for it (the video demo's pack does), so the plant tests that one
  bad frame among clean ones is found, not how a detector sees nudity.
"""

from __future__ import annotations

import copy
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from clipaudit.data.formats import atomic_write_bytes, write_dataset
from clipaudit.data.sample import Sample
from clipaudit.data.video import encode_video
from clipaudit.errors import ClipauditError
from clipaudit.world.render import overlay_watermark
from clipaudit.world.scenes import Scene, add_watermark, objects_scene, person_scene, rng_for

FRAMES = 24
FPS = 8
VIDEO_MARKER = "clipaudit-world-video"
UNSAFE_STANDIN = "a large black star"
UNSAFE_FRAMES = range(9, 12)  # frame 10 is the 4th of uniform:8 (centres of 8 spans)


@dataclass(frozen=True)
class VideoPoolConfig:
    n: int = 200
    seed: int = 0
    size: int = 128
    misaligned: float = 0.10
    copies: float = 0.15  # split evenly over reencode, resize, trim
    watermark_mid: float = 0.05
    still: float = 0.04
    black: float = 0.04
    unsafe_frame: float = 0.04


@dataclass
class Clip:
    id: str
    scene: Scene | None
    caption: str
    data: bytes
    issues: list[str] = field(default_factory=list)
    duplicate_of: str | None = None
    transform: str | None = None
    frames: list[Image.Image] = field(default_factory=list)


def _pan(scene: Scene, size: int, rng: random.Random, still: bool = False) -> list[Image.Image]:
    big = scene.render(int(size * 1.25))
    span = big.width - size
    x0, dx = rng.uniform(0, span * 0.2), rng.choice((-1, 1))
    frames = []
    for k in range(FRAMES):
        t = 0.0 if still else k / (FRAMES - 1)
        x = x0 + t * span * 0.8 if dx > 0 else span - x0 - t * span * 0.8
        zoom = 1.0 - 0.08 * t
        w = size * zoom
        y = (big.height - w) / 2
        box = (x + (size - w) / 2, y, x + (size + w) / 2, y + w)
        frames.append(big.resize((size, size), Image.Resampling.BILINEAR, box=box))
    return frames


def _shows_standin(scene: Scene) -> bool:
    return any(o.shape == "star" and o.color == "black" for o in scene.objects)


def generate_video_pool(cfg: VideoPoolConfig) -> list[Clip]:
    if cfg.n < 10:
        raise ClipauditError(f"--n must be at least 10 for a video pool, got {cfg.n}.")
    rng = random.Random(f"clipaudit-world-video:{cfg.seed}")
    n_copies = round(cfg.n * cfg.copies)
    n_base = cfg.n - n_copies
    base: list[Clip] = []
    for i in range(n_base):
        srng = rng_for(cfg.seed, "video", i)
        scene = objects_scene(srng) if srng.random() < 0.55 else person_scene(srng)
        while _shows_standin(scene):  # the stand-in shot is the unsafe plant's alone
            scene = objects_scene(srng)
        kind = rng.random()
        issues: list[str] = []
        still = kind < cfg.still
        if still:
            issues.append("still")
        frames = _pan(scene, cfg.size, srng, still=still)
        if cfg.still <= kind < cfg.still + cfg.black:
            frames = [Image.new("RGB", (cfg.size, cfg.size), (0, 0, 0))] * FRAMES
            issues.append("black")
        elif cfg.still + cfg.black <= kind < cfg.still + cfg.black + cfg.watermark_mid:
            spec = add_watermark(copy.deepcopy(scene), srng, mention_rate=0.0).watermark
            assert spec is not None
            cut = 2 * FRAMES // 3
            frames = frames[:cut] + [overlay_watermark(f, spec) for f in frames[cut:]]
            issues.append("watermark_mid")
        elif 0 <= kind - (cfg.still + cfg.black + cfg.watermark_mid) < cfg.unsafe_frame:
            shot = objects_scene(srng, wanted=[("star", "black", "large")]).render(cfg.size)
            frames = [shot if k in UNSAFE_FRAMES else f for k, f in enumerate(frames)]
            issues.append("unsafe_frame")
        base.append(Clip(f"v{i:05d}", scene, scene.caption, b"", issues, frames=frames))
    # Swap captions in pairs among clips with content (not black).
    swappable = [c for c in base if "black" not in c.issues]
    k = round(cfg.n * cfg.misaligned / 2) * 2
    chosen = rng.sample(swappable, min(k, len(swappable) - len(swappable) % 2))
    for a, b in zip(chosen[::2], chosen[1::2], strict=True):
        if a.caption != b.caption:
            a.caption, b.caption = b.caption, a.caption
            a.issues.append("misaligned")
            b.issues.append("misaligned")
    for c in base:
        c.data = encode_video(c.frames, FPS)
    # Copies are of plain clips: a copy's labels then say all it carries (a trimmed copy of
    # a marked clip may or may not keep the mark).
    originals = [
        c for c in base if not set(c.issues) & {"black", "still", "watermark_mid", "unsafe_frame"}
    ]
    copies: list[Clip] = []
    for j in range(n_copies):
        orig = rng.choice(originals)
        how = ("reencode", "resize", "trim")[j % 3]
        frames = orig.frames
        crf = 23
        if how == "reencode":
            crf = 38
        elif how == "resize":
            frames = [
                f.resize((cfg.size // 2, cfg.size // 2), Image.Resampling.BILINEAR) for f in frames
            ]
        else:
            keep = round(FRAMES * rng.uniform(0.7, 0.9))
            start = rng.randint(0, FRAMES - keep)
            frames = frames[start : start + keep]
        data = encode_video(frames, FPS, crf=crf)
        copies.append(
            Clip(
                f"v{n_base + j:05d}",
                orig.scene,
                orig.caption,
                data,
                # A copy of a clip whose caption was swapped carries the swapped caption.
                ["near_duplicate", *(["misaligned"] if "misaligned" in orig.issues else [])],
                duplicate_of=orig.id,
                transform=how,
            )
        )
    clips = base + copies
    order = list(range(len(clips)))
    rng.shuffle(order)
    return [clips[i] for i in order]


def write_video_world(
    out: str | Path, cfg: VideoPoolConfig, shard_size: int = 100
) -> dict[str, Any]:
    """The pool as WebDataset shards under ``out/data`` and its truths in labels.jsonl."""
    root = Path(out)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise ClipauditError(
            f"The output {str(root)!r} is a file or a folder that is not empty; choose a "
            "new folder."
        )
    clips = generate_video_pool(cfg)
    samples = (
        Sample(
            id=c.id,
            image=c.data,
            caption=c.caption,
            meta={"world": VIDEO_MARKER},
            image_ext="mp4",
        )
        for c in clips
    )
    write_dataset(samples, root / "data", "webdataset", shard_size=shard_size)
    lines = []
    for c in clips:
        truth = c.scene.truth() if c.scene is not None else {}
        lines.append(
            json.dumps(
                {
                    "id": c.id,
                    "issues": c.issues,
                    "duplicate_of": c.duplicate_of,
                    "transform": c.transform,
                    "truth": {**truth, "caption": truth.get("caption")},
                    "caption": c.caption,
                }
            )
        )
    atomic_write_bytes(root / "labels.jsonl", ("\n".join(lines) + "\n").encode("utf-8"))
    info = {"kind": "video-pool", "settings": cfg.__dict__, "clips": len(clips)}
    atomic_write_bytes(root / "world.json", json.dumps(info, indent=2).encode("utf-8"))
    return info
