"""Rules-pack section ``judge:``: rubrics a native multimodal model is asked, which samples
are borderline enough to ask about, and what its verdicts may change at decide time.

A rubric is a yes/no or multiple-choice question about one image (and its caption where the
question names ``{caption}``); the answer must be a JSON object ``{"answer": ..., "reason":
...}`` whose ``answer`` is one of the rubric's choices, or it is recorded as unparseable.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from clipaudit.rules.base import Bool, Float, Probability, Strict
from clipaudit.rules.sections.visible import FPR_1_THRESHOLD

About = Literal["alignment", "watermark", "nsfw", "other"]


class Rubric(Strict):
    question: str = Field(min_length=1, max_length=2000)
    choices: list[str] = Field(default_factory=lambda: ["yes", "no"], min_length=2)
    # The signal the rubric second-guesses (selection and the agreement table use it).
    about: About = "other"

    @model_validator(mode="after")
    def _distinct(self) -> Rubric:
        if len(set(self.choices)) != len(self.choices):
            raise ValueError("a rubric lists the same choice twice")
        return self


SHIPPED_RUBRICS: dict[str, Rubric] = {
    "faithful": Rubric(
        question=(
            "Here is an image and a caption written for it. Caption: {caption}\n"
            "Does the caption describe the image faithfully: the objects or people it names "
            "are there, with the colours, sizes and counts it says? Answer yes or no."
        ),
        about="alignment",
    ),
    "watermark": Rubric(
        question=(
            "Does this image carry a visible watermark, logo or text overlay added on top "
            "of the picture (not text that is part of the scene)? Answer yes or no."
        ),
        about="watermark",
    ),
    "nsfw": Rubric(
        question=(
            "Does this image show nudity, sexual content or graphic violence? Answer yes or no."
        ),
        about="nsfw",
    ),
}


class JudgeRules(Strict):
    # Extra rubrics (a name taken by a shipped one replaces it).
    rubrics: dict[str, Rubric] = Field(default_factory=dict)
    # Default selection: alignment within this of the pack's cut is borderline ...
    alignment_margin: Float = Field(default=0.15, ge=0, le=2)
    # ... and a visible-watermark score (a probability) in this band, low to high.
    watermark_band: tuple[Probability, Probability] = (0.5, FPR_1_THRESHOLD)  # up to the flag
    # At decide time: a "yes" on faithful lifts low_alignment; a "no" adds judge_unfaithful.
    keep_faithful: Bool = True
    drop_unfaithful: Bool = True
    # A "yes" on watermark adds judge_watermark.
    flag_watermark: Bool = True

    @field_validator("watermark_band")
    @classmethod
    def _band_order(cls, v: tuple[float, float]) -> tuple[float, float]:
        if v[0] > v[1]:
            raise ValueError(
                f"the band's low end ({v[0]}) is above its high end ({v[1]}); write [low, high]"
            )
        return v

    def rubric(self, name: str) -> Rubric | None:
        return self.rubrics.get(name) or SHIPPED_RUBRICS.get(name)

    def names(self) -> list[str]:
        return sorted({*SHIPPED_RUBRICS, *self.rubrics})
