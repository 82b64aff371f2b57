"""Rules-pack section for the trained visible-watermark detector.

Decide-time only: the stage stores raw scores, so a pack may move the threshold or turn the
rule off without re-reading an image.
"""

from __future__ import annotations

from clipaudit.rules.base import Bool, Probability, Strict

# The shipped detector's threshold at 1% false-positive rate on clean real photos kept out of
# its training (the tune part of ../shared/photos; models/bundled/watermark-detector/
# metrics.json, "thresholds"); 5% FPR is FPR_5_THRESHOLD. Held-out photos: see its CARD.md.
FPR_1_THRESHOLD = 0.972167
FPR_5_THRESHOLD = 0.754551
# The same false-positive rates for a video's score (frame scores aggregated over time), on
# clips filmed from the tune photos: models/bundled/watermark-detector/video_metrics.json
# (``python -m clipaudit.safety.visible.video``).
FPR_1_VIDEO_THRESHOLD = 0.901600
FPR_5_VIDEO_THRESHOLD = 0.607570


class VisibleWatermarkRules(Strict):
    """``watermark_suspect`` when the detector's score reaches ``threshold``.

    The default is the 1%-FPR threshold: the flag feeds a review queue, and at a 10%
    watermark rate a 5% FPR would put about one clean image in the queue for every two
    marked ones. Packs that drop on the flag and prefer recall (strict) use the 5% one.
    A video sample is judged against ``video_threshold`` (the same false-positive rate for
    its aggregated frame scores).
    """

    enabled: Bool = True
    threshold: Probability = FPR_1_THRESHOLD
    video_threshold: Probability = FPR_1_VIDEO_THRESHOLD
