from __future__ import annotations

import numpy as np
import pytest

from clipaudit.curate.decide import quality_reasons
from clipaudit.curate.stages import Batch
from clipaudit.curate.stages.quality import QualityStage, caption_language
from clipaudit.data.decode import decode_image
from clipaudit.data.sample import Sample
from clipaudit.errors import ClipauditError
from clipaudit.rules.schema import load_pack


@pytest.mark.parametrize(
    ("text", "lang"),
    [
        ("A black cat sleeping on a wooden table next to the window", "en"),
        ("Un chat noir qui dort sur une table en bois près de la fenêtre", "fr"),
        ("Eine schwarze Katze schläft auf einem Holztisch neben dem Fenster", "de"),
        ("Un gato negro durmiendo sobre una mesa de madera junto a la ventana", "es"),
        ("窓のそばの木のテーブルの上で眠っている黒い猫", "ja"),
    ],
)
def test_caption_language(text: str, lang: str) -> None:
    got, score = caption_language(text)
    # 0.8 is the packs' default bar for a confident guess.
    assert got == lang and score is not None and score >= 0.8


def test_no_letters_no_language() -> None:
    assert caption_language("") == (None, None)
    assert caption_language("12345 -- 2024.jpg"[:10]) == (None, None)
    # A megabyte caption is read from its start only and stays fast.
    lang, _ = caption_language("the quick brown fox jumps over the lazy dog " * 25_000)
    assert lang == "en"


def test_stage_columns_and_pack_rule() -> None:
    caps = [
        "A dog running on the beach at sunset",
        "Ein Hund rennt bei Sonnenuntergang am Strand",
        "",
        "ok",
    ]
    samples = [Sample(id=str(i), caption=c, image=None) for i, c in enumerate(caps)]
    batch = Batch(samples=samples, decoded=[decode_image(None) for _ in samples])
    out = QualityStage().process(batch)
    assert out["caption_lang"][:3] == ["en", "de", None]
    sig = {k: np.array(v, dtype=object) for k, v in out.items()}
    sig["id"] = np.array([s.id for s in samples], dtype=object)
    sig["error"] = np.array([None] * 4, dtype=object)  # judge the captions only
    reasons, _ = quality_reasons(sig, load_pack("datacomp"), None)
    assert ["wrong_language" in r for r in reasons] == [False, True, False, False]
    reasons, _ = quality_reasons(sig, load_pack("default"), None)
    assert not any("wrong_language" in r for r in reasons)
    del sig["caption_lang"]
    with pytest.raises(ClipauditError, match=r"quality\.languages"):
        quality_reasons(sig, load_pack("datacomp"), None)
