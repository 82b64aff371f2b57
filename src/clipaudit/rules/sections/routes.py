"""Rules-pack section ``routes:``: named policy routes scored with the run's own CLIP model.

A route is a set of policy phrases and, optionally, counter-phrases (the Q16 pattern: "a
photo of a weapon" against "a photo of a tool"), and/or a ``where:`` filter over the run's
signals (any detector score or flag); with both, both must hold. An image's score for a
route is its best cosine to a phrase minus its best cosine to a counter-phrase (with no
counter-phrases: the best cosine to a phrase), computed at decide time from the stored image
embeddings and the phrases' text embeddings, which the run folder caches: re-deciding needs
no model unless a phrase is new. Routes are tried in the order the pack lists them; the
first whose score reaches its threshold is the sample's ``route``, and every matching route
whose action is ``drop`` or ``flag`` adds its reason code ``route:NAME``.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import Field, field_validator, model_validator

from clipaudit.rules.base import Action, Float, Strict

ROUTE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
REASON_PREFIX = "route:"


class Route(Strict):
    description: str = ""
    phrases: list[str] = Field(default_factory=list)
    counter_phrases: list[str] = Field(default_factory=list)
    # A filter over the run's signals (the --where language, search/where.py), e.g.
    # "visible_watermark_score >= 0.79" or "c2pa_ai_generated": with phrases, both must hold.
    where: str | None = None
    # Margin of the best phrase over the best counter-phrase (or, with none, the cosine).
    threshold: Float = Field(default=0.0, ge=-2, le=2)
    # Per-model thresholds (model spec -> threshold): cosines are not comparable across models.
    models: dict[str, Annotated[Float, Field(ge=-2, le=2)]] = Field(default_factory=dict)
    action: Action = "flag"

    @field_validator("phrases", "counter_phrases")
    @classmethod
    def _real_phrases(cls, v: list[str]) -> list[str]:
        out = [p.strip() for p in v]
        if any(not p for p in out):
            raise ValueError("a route phrase is empty; write the text the image should match")
        if len(set(out)) != len(out):
            raise ValueError("a route lists the same phrase twice")
        return out

    @model_validator(mode="after")
    def _something_to_match(self) -> Route:
        if not self.phrases and not self.where:
            raise ValueError("a route needs phrases, a where: filter, or both")
        if self.counter_phrases and not self.phrases:
            raise ValueError("counter_phrases need phrases to compare with")
        if self.where is not None and not self.where.strip():
            raise ValueError("a route's where: is empty; write a filter or leave it out")
        return self

    def threshold_for(self, model_spec: str | None) -> float:
        return self.models.get(model_spec or "", self.threshold)


def check_route_names(routes: dict[str, Route]) -> dict[str, Route]:
    bad = [n for n in routes if not ROUTE_NAME.match(n)]
    if bad:
        raise ValueError(
            f"route name {bad[0]!r} is not allowed; use lower-case letters, digits and "
            "underscores, starting with a letter (at most 40)"
        )
    return routes
