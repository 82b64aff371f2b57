"""What decide does with a run whose model does not know its data (``run.json`` →
``model_fit``, written by curate from ``clipaudit.models.domain.model_fit``). Kept apart from
``clipaudit.models``, whose package imports torch: re-deciding loads no model."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from clipaudit.rules.schema import Pack


def alignment_skip(record: dict[str, Any]) -> str | None:
    """Why the run's alignment scores must not decide anything, or None where they may: a
    world-trained model on other data scores at chance (on real photos with their own
    class names as captions: AUROC 0.51 against shuffled captions, 98.5% of the right
    captions under its 0.48 cut), so low_alignment would drop nearly every sample."""
    fit = record.get("model_fit")
    if not isinstance(fit, dict) or fit.get("fits_data") is not False:
        return None
    return (
        f"not applied: {fit.get('model')} was trained only on the synthetic world and this "
        "run's data was not made by `clipaudit world`; curate again with --model set to a "
        "CLIP trained on real images to check alignment"
    )


def without_alignment(pack: Pack) -> Pack:
    """``pack`` with no alignment threshold, its per-model ones included."""
    from clipaudit.rules.schema import Threshold

    models = {k: v.model_copy(update={"alignment": Threshold()}) for k, v in pack.models.items()}
    return pack.model_copy(update={"alignment": Threshold(), "models": models})
