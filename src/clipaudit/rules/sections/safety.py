"""Rules-pack sections for NSFW and watermark signals.

Scores are thresholds on stored signals, so most of these can change at decide time. What
is read at scoring time is marked: phrases (their scores are stored per phrase, so a pack
may drop phrases or move thresholds, but a phrase that was never scored is refused), caption
word lists (matched at scoring; a different list is refused) and the cascade settings.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from clipaudit.rules.base import Bool, Cosine, Float, Int, Probability, Strict
from clipaudit.safety.nsfw_thresholds import calibrated_classes, calibrated_video_classes
from clipaudit.safety.nudity import ALL_CLASSES, EXPOSED_CLASSES

Route = Literal["review", "drop"]  # review → nsfw_review, drop → nsfw (actions decide the rest)
Grade = Literal["partial", "likely", "very_likely"]
Mark = Literal["sdxl", "sdv1"]
MARKS: tuple[Mark, ...] = ("sdxl", "sdv1")
# Only very likely (>= 36 of 48 bits) by default: a clean image matches a 48-bit message in
# 34 or more bits by chance 0.28% of the time (binomial, p = 1/2), 36 or more 0.036%. On the
# demo's 1,950 clean images 5 read 34-35 bits and every one of its 50 planted marks 36 or more;
# a real photo turned by EXIF read 34. Packs that want the likely grade too say so (strict).
COUNTED_GRADES: tuple[Grade, ...] = ("very_likely",)

DEFAULT_WORDS = (
    "porn",
    "porno",
    "pornographic",
    "pornography",
    "xxx",
    "nsfw",
    "hentai",
    "erotic",
    "nude",
    "nudes",
    "naked",
    "topless",
)


def _exposed(score: float) -> dict[str, float | None]:
    return dict.fromkeys(EXPOSED_CLASSES, score)


class Phrase(Strict):
    """A CLIP policy phrase: an image whose cosine with it reaches ``min_score`` is routed.
    Cosines are model-relative, like alignment thresholds."""

    text: str = Field(min_length=1)
    min_score: Cosine
    route: Route = "review"
    # Scoring time, cascade only: from this cosine the image goes on to the detector
    # (None: this phrase never gates the detector, e.g. a routing-only phrase).
    bar: Cosine | None = None


class WordList(Strict):
    words: list[str] = Field(min_length=1)
    route: Route = "review"
    # Scoring time, cascade only: a hit sends the image on to the detector.
    gate: Bool = True


class Cascade(Strict):
    """Scoring time: run the detector only where a phrase bar or a gating word list fires,
    plus a seeded audit sample of the rest to measure what skipping would have missed."""

    enabled: Bool = False
    audit_rate: Probability = 0.02
    audit_seed: Int = 0
    # Nominal detector cost per image for the saved-time estimate in stats.json, which must
    # not depend on machine speed (nudenet's 320n: ~40-47 ms on one core).
    detector_ms: Float = Field(default=45.0, gt=0)


class NsfwRules(Strict):
    # nudenet class → minimum score that counts (a probability in [0, 1]; null: the class
    # does not count). A dict, so a pack that extends another changes or nulls single
    # classes. By default the thresholds chosen on benign real photos
    # (safety/nsfw_thresholds.json): at nudenet's own 0.5, 0.7% of ordinary photos (a loaf,
    # a Petri dish) were dropped.
    classes: dict[str, Probability | None] = Field(default_factory=calibrated_classes)
    # The same for a sample scored on several frames (a clip or an animation: each class at
    # its worst frame), chosen on clips filmed from the same benign calibration photos.
    video_classes: dict[str, Probability | None] = Field(default_factory=calibrated_video_classes)
    detector_route: Route = "drop"
    # Below those, a detection from these scores goes to review instead (null: not counted):
    # the uncertain band is seen by a person, not dropped and not silently kept.
    review_classes: dict[str, Probability | None] = Field(default_factory=lambda: _exposed(0.5))
    phrases: list[Phrase] = Field(default_factory=list)
    caption_words: list[WordList] = Field(
        default_factory=lambda: [WordList(words=list(DEFAULT_WORDS), route="review")]
    )
    cascade: Cascade = Field(default_factory=Cascade)

    @field_validator("classes", "video_classes", "review_classes")
    @classmethod
    def _known_classes(cls, v: dict[str, float | None]) -> dict[str, float | None]:
        unknown = sorted(set(v) - set(ALL_CLASSES))
        if unknown:
            raise ValueError(
                f"unknown nudenet class {unknown[0]!r}; the classes are: {', '.join(ALL_CLASSES)}"
            )
        return v

    @model_validator(mode="after")
    def _consistent(self) -> NsfwRules:
        texts = [p.text for p in self.phrases]
        dup = sorted({t for t in texts if texts.count(t) > 1})
        if dup:
            raise ValueError(f"the phrase {dup[0]!r} is listed twice")
        gated = any(p.bar is not None for p in self.phrases) or any(
            w.gate for w in self.caption_words
        )
        if self.cascade.enabled and not gated:
            raise ValueError(
                "the cascade is enabled but no phrase has a bar and no word list gates, "
                "so the detector would only run on the audit sample"
            )
        return self


class WatermarkRules(Strict):
    # Invisible marks (both are always read at scoring): which marks and grades count.
    invisible_marks: list[Mark] = Field(default_factory=lambda: list(MARKS))
    invisible_grades: list[Grade] = Field(default_factory=lambda: list(COUNTED_GRADES))
    # Visible: cosine(image, phrase) - cosine(image, baseline), scored with the run's CLIP.
    visible_phrase: str = Field(default="a photo with a watermark", min_length=1)
    visible_baseline: str = Field(default="a photo", min_length=1)
    # From this margin an image is watermark_suspect (None: the phrase score is only stored).
    visible_min_margin: Float | None = Field(default=None, ge=-2, le=2)
