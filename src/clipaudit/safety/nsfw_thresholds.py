"""The detector's drop thresholds chosen on benign real photographs.

``nsfw_thresholds.json`` is written by ``bench/real_photos.py --nsfw --write-thresholds``
from nudenet's scores on the calibration part of ``shared/photos``: per exposed class, the
smallest threshold (at least 0.5) that no benign calibration photo reaches, plus a margin.
It rests on benign photos only: recall on real nudity is not measured on these machines.

A clip or an animation takes each class at its worst sampled frame: eight looks at one scene
give a benign clip eight chances to cross a photo's threshold, so it has thresholds of its
own (``video_classes``), chosen by ``bench/video_nsfw_benign.py --calibrate N
--write-thresholds`` on clips filmed from calibration photos by the same rule, never below
the photo's.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

from clipaudit.safety.nudity import EXPOSED_CLASSES

FALLBACK = 0.5  # nudenet's own cut, where no calibrated threshold ships


@cache
def calibration() -> dict[str, object]:
    try:
        text = resources.files("clipaudit.safety").joinpath("nsfw_thresholds.json").read_text()
    except FileNotFoundError:
        return {}
    return dict(json.loads(text))


def calibrated_classes() -> dict[str, float | None]:
    """Exposed class → drop threshold (a fresh dict: packs change single classes)."""
    shipped = calibration().get("classes", {})
    assert isinstance(shipped, dict)
    return {c: float(shipped.get(c, FALLBACK)) for c in EXPOSED_CLASSES}


def calibrated_video_classes() -> dict[str, float | None]:
    """Exposed class → drop threshold for a sample scored on several frames (a clip, an
    animation); None: the class never drops such a sample (its review band still flags it).
    The photo thresholds where no clip calibration ships."""
    shipped = calibration().get("video_classes")
    if not isinstance(shipped, dict):
        return calibrated_classes()
    return {c: None if shipped.get(c) is None else float(shipped[c]) for c in EXPOSED_CLASSES}
