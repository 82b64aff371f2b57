"""Decode and quality signals: readable or not, size, aspect, bytes, caption length and
the caption's language (py3langid, the langid.py model shipped in its wheel: 140 labels in
py3langid 0.4)."""

from __future__ import annotations

import functools
import tempfile
from typing import Any

from clipaudit.curate.stages import Batch, Stage, register_stage
from clipaudit.curate.stages.caption_text import caption_width, caption_word_count
from clipaudit.data.decode import Decoded
from clipaudit.data.sample import SOFT_READ_ERRORS, Sample
from clipaudit.errors import ClipauditError
from clipaudit.rights.xmp import clean_text

# Language identification on a caption longer than this reads only its start: enough for
# the language, and a megabyte caption costs no more than a short one.
LANG_MAX_CHARS = 1000


@functools.lru_cache(maxsize=1)
def _identifier() -> Any:
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    try:
        return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    except OSError as exc:
        # py3langid unpacks its 68 MB model into a temporary file first.
        raise ClipauditError(
            f"Cannot unpack the language model into the temporary folder "
            f"{tempfile.gettempdir()!r} ({exc.strerror or exc}); free 70 MB there or point "
            "TMPDIR at a folder with room."
        ) from None


def caption_language(text: str) -> tuple[str | None, float | None]:
    """(ISO 639-1 code, probability) of ``text``'s language; (None, None) without letters."""
    if not any(ch.isalpha() for ch in text):
        return None, None
    lang, prob = _identifier().classify(text[:LANG_MAX_CHARS])
    return str(lang), round(float(prob), 4)


@register_stage("quality")
class QualityStage(Stage):
    columns = (
        "error",
        "error_detail",
        "width",
        "height",
        "min_side",
        "aspect",
        "file_bytes",
        "image_format",
        "color_profile",
        "image_frames",
        "caption_words",
        "caption_chars",
        "caption_width",
        "caption_lang",
        "caption_lang_score",
    )

    def prepare(self, sample: Sample, decoded: Decoded) -> Any:
        return caption_language((sample.caption or "").strip())

    def process(self, batch: Batch) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {c: [] for c in self.columns}
        langs = self.prepared_for(batch)
        for s, d, (lang, score) in zip(batch.samples, batch.decoded, langs, strict=True):
            # A soft reader code (bad_metadata) gives way to a decode error, which is fatal.
            soft = s.error in SOFT_READ_ERRORS
            code = (d.error or s.error) if soft else (s.error or d.error)
            out["error"].append(code)
            # What the decoder said ("7680x4320", PyAV's message, what to install): the code
            # alone does not tell a user which file to fix or how.
            said = clean_text(d.detail) if code is not None and code == d.error else None
            out["error_detail"].append(said[:200] if said else None)
            if d.image is not None:
                # As displayed: after EXIF orientation; a clip's own size, not its sampled
                # frame's (kept at most data.video.MAX_FRAME_SIDE long).
                v = d.video or {}
                w, h = (
                    (v["width"], v["height"])
                    if v.get("width") and v.get("height")
                    else d.image.size
                )
                out["width"].append(w)
                out["height"].append(h)
                out["min_side"].append(min(w, h))
                out["aspect"].append(max(w, h) / max(1, min(w, h)))
            else:
                for c in ("width", "height", "min_side", "aspect"):
                    out[c].append(None)
            out["file_bytes"].append(len(s.image) if s.image is not None else None)
            out["image_format"].append(d.format)
            out["color_profile"].append(d.color_profile)
            out["image_frames"].append((d.animation or {}).get("frames"))
            text = (s.caption or "").strip()
            out["caption_words"].append(caption_word_count(text))
            out["caption_chars"].append(len(text))
            out["caption_width"].append(caption_width(text))
            out["caption_lang"].append(lang)
            out["caption_lang_score"].append(score)
        return out
