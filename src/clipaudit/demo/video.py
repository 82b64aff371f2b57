"""``clipaudit demo --video``: the curation loop on the world's video pool, scored against
its planted truths (world/video.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from clipaudit.demo.loop import curate_and_score, world_pool
from clipaudit.demo.truth import prf, signal_scores
from clipaudit.world.video import UNSAFE_STANDIN, VideoPoolConfig, write_video_world

VIDEO_STAGES = ["quality", "hashes", "alignment", "watermark", "visible_watermark", "nsfw", "video"]
# Planted issue → the reason code that should find it.
PLANTS = {
    "black": "black_video",
    "still": "still_video",
    "watermark_mid": "watermark_suspect",
    "unsafe_frame": "nsfw",
}
# The demo's pack: the chosen one plus the world's stand-in for an unsafe shot, routed to
# ``nsfw`` (drop). The bundled model gives the stand-in's close-up a cosine of 0.86-0.93
# with the phrase and no frame of 150 clips of another seed (11) more than 0.57.
STANDIN_MIN_SCORE = 0.72


def demo_pack(out: Path, rules: str) -> Path:
    """A pack file in ``out`` that extends ``rules`` with the unsafe stand-in's phrase."""
    path = out / "world-video-pack.yaml"
    path.write_text(
        "name: world-video-demo\n"
        'version: "1"\n'
        f"extends: {json.dumps(rules)}\n"
        "description: the video demo's pack, with the world's stand-in for an unsafe shot\n"
        "nsfw:\n"
        "  phrases:\n"
        f"    - text: {json.dumps(UNSAFE_STANDIN)}\n"
        f"      min_score: {STANDIN_MIN_SCORE}\n"
        "      route: drop\n",
        encoding="utf-8",
    )
    return path


def score_video_run(run: Path, labels: Path) -> dict[str, Any]:
    """Precision / recall of the run's reason codes against the pool's truths.

    * misaligned captions: ``low_alignment`` on clips with content (black clips excluded:
      their frames match no caption, and ``black_video`` drops them anyway);
    * copies, by transform: found when decide put the copy and its original in one group;
      counted over copies whose original and copy both reached deduplication (a clip
      another rule dropped first is not searched); pair precision over every
      ``duplicate_of`` decide wrote;
    * the black, still, mid-clip-watermark and unsafe-frame plants: recall and false
      positives.
    """
    lab = {x["id"]: x for x in map(json.loads, labels.open())}
    dec = {d["id"]: d for d in pq.read_table(run / "decisions.parquet").to_pylist()}
    out: dict[str, Any] = {"clips": len(dec)}
    tp = fp = fn = 0
    for i, d in dec.items():
        if "black" in lab[i]["issues"] or d["alignment"] is None:
            continue
        hit, want = "low_alignment" in d["reasons"], "misaligned" in lab[i]["issues"]
        tp, fp, fn = tp + (hit and want), fp + (hit and not want), fn + (want and not hit)
    out["misaligned_caption"] = prf(tp, fp, fn)

    def family(i: str) -> str:
        return lab[i]["duplicate_of"] or i

    def searched(i: str) -> bool:  # reached dedup: only duplicate codes, if any, drop it
        d = dec[i]
        return d["decision"] != "error" and all(
            r in ("near_duplicate", "exact_duplicate") or r.startswith("route:") or r in FLAGS
            for r in d["reasons"]
        )

    by: dict[str, dict[str, Any]] = {}
    for i, d in dec.items():
        how = lab[i]["transform"]
        if not how:
            continue
        orig = lab[i]["duplicate_of"]
        if not (searched(i) and searched(orig)):
            continue
        root = {i: d["duplicate_of"] or i, orig: dec[orig]["duplicate_of"] or orig}
        found = root[i] == root[orig] or d["duplicate_of"] == orig or dec[orig]["duplicate_of"] == i
        b = by.setdefault(how, {"planted": 0, "found": 0})
        b["planted"] += 1
        b["found"] += int(found)
    for b in by.values():
        b["recall"] = round(b["found"] / b["planted"], 4) if b["planted"] else None
    out["copies_by_transform"] = by
    dropped = [(i, d["duplicate_of"]) for i, d in dec.items() if d["duplicate_of"]]
    wrong = sum(family(i) != family(o) for i, o in dropped)
    out["copy_pairs_called"] = len(dropped)
    out["copy_pair_precision"] = round(1 - wrong / len(dropped), 4) if dropped else None
    planted = signal_scores(list(dec.values()), lab, PLANTS)
    for how, v in by.items():
        planted[f"copy ({how})"] = {"code": "near_duplicate", **v, "false_positives": None}
    out["signals_by_planted_issue"] = planted
    return out


# Flag-only codes of the default pack that leave a clip in deduplication.
FLAGS = frozenset({"watermark_suspect", "license_nc", "copyright_notice", "caption_copyright"})


def run_video_demo(
    out: str | Path,
    n: int = 300,
    *,
    seed: int = 0,
    rules: str = "default",
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """The video demo: a world pool of ``n`` clips, curated and scored against its truths."""
    out = Path(out)

    def write(pool: Path) -> None:
        write_video_world(pool, VideoPoolConfig(n=n, seed=seed))

    pool = world_pool(
        out, write, f"a world video pool of {n} clips", log, {"n": n, "seed": seed, "video": True}
    )
    pack = demo_pack(out, rules)
    log(f"curating the clips with bundled:world-clip (frames sampled uniform:8), pack {pack}")
    return curate_and_score(out, pool, str(pack), score_video_run, VIDEO_STAGES)
