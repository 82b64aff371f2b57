"""What decide does with a run whose model does not know its data (``run.json`` →
``model_fit``, written by curate from ``clipaudit.models.domain.model_fit``). Kept apart from
``clipaudit.models``, whose package imports torch: re-deciding loads no model."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from clipaudit.rules.schema import Pack

# Signal columns the run's CLIP model wrote (alignment, the watermark phrase, NSFW phrases).
MODEL_COLUMNS = ("alignment", "wm_phrase_score", "nsfw_phrases")
_QUOTED = re.compile(r"'(?:[^'\\]|''|\\.)*'|\"(?:[^\"\\]|\"\"|\\.)*\"")
_MODEL_NAME = re.compile(r"(?<![\w`])`?(" + "|".join(MODEL_COLUMNS) + r")`?(?![\w`])")


def reads_model_scores(where: str) -> bool:
    """Whether a ``where:`` filter names a column the model wrote (quoted text aside)."""
    return bool(_MODEL_NAME.search(_QUOTED.sub("''", where)))


def unfit_model(record: Any) -> str | None:
    """The run's model where its ``run.json`` (``record``) says the model does not fit the
    run's data, else None."""
    fit = record.get("model_fit") if isinstance(record, dict) else None
    if not isinstance(fit, dict) or fit.get("fits_data") is not False:
        return None
    return str(fit.get("model"))


def alignment_skip(record: dict[str, Any]) -> str | None:
    """Why the run's CLIP scores must not decide anything, or None where they may: a
    world-trained model on other data scores at chance (on real photos with their own
    class names as captions: AUROC 0.51 against shuffled captions, 98.5% of the right
    captions under its 0.48 cut), so low_alignment would drop nearly every sample, and a
    phrase, a route or a semantic-duplicate cut would fire at random."""
    model = unfit_model(record)
    if model is None:
        return None
    return (
        f"not applied: {model} was trained only on the synthetic world and this "
        "run's data was not made by `clipaudit world`; curate again with --model set to a "
        "CLIP trained on real images to check alignment"
    )


def without_model_scores(pack: Pack) -> tuple[Pack, list[str]]:
    """``pack`` with nothing decided on the run model's cosines, and what was left out (pack
    keys, ``routes.NAME`` for a route). Kept: detectors, hashes, words, and routes with only
    a ``where:`` filter over other signals. The keeper no longer prefers the better-aligned
    copy."""
    from clipaudit.rules.schema import Threshold

    left: list[str] = []
    if pack.alignment != Threshold() or any(
        m.alignment != Threshold() for m in pack.models.values()
    ):
        left.append("alignment")
    models = {k: v.model_copy(update={"alignment": Threshold()}) for k, v in pack.models.items()}
    dedup = pack.dedup
    if dedup.semantic_eps is not None:
        left.append("dedup.semantic_eps")
    if "alignment" in dedup.keeper:
        left.append("dedup.keeper.alignment")
    dedup = dedup.model_copy(
        update={"semantic_eps": None, "keeper": [k for k in dedup.keeper if k != "alignment"]}
    )
    if pack.nsfw.phrases:
        left.append("nsfw.phrases")
    nsfw = pack.nsfw.model_copy(update={"phrases": []})
    if pack.watermark.visible_min_margin is not None:
        left.append("watermark.visible_min_margin")
    watermark = pack.watermark.model_copy(update={"visible_min_margin": None})
    routes = {}
    for name, route in pack.routes.items():
        if route.phrases or (route.where and reads_model_scores(route.where)):
            left.append(f"routes.{name}")
        else:
            routes[name] = route
    out = pack.model_copy(
        update={
            "alignment": Threshold(),
            "models": models,
            "dedup": dedup,
            "nsfw": nsfw,
            "watermark": watermark,
            "routes": routes,
        }
    )
    return out, left
