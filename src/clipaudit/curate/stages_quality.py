"""Decode and quality signals: readable or not, size, aspect, bytes, caption length."""

from __future__ import annotations

from typing import Any

from clipaudit.curate.stage import Batch, Stage, register_stage


@register_stage("quality")
class QualityStage(Stage):
    columns = (
        "error",
        "width",
        "height",
        "min_side",
        "aspect",
        "file_bytes",
        "image_format",
        "caption_words",
        "caption_chars",
    )

    def process(self, batch: Batch) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {c: [] for c in self.columns}
        for s, d in zip(batch.samples, batch.decoded, strict=True):
            out["error"].append(s.error or d.error)
            if d.image is not None:
                w, h = d.image.size  # as displayed, after EXIF orientation
                out["width"].append(w)
                out["height"].append(h)
                out["min_side"].append(min(w, h))
                out["aspect"].append(max(w, h) / max(1, min(w, h)))
            else:
                for c in ("width", "height", "min_side", "aspect"):
                    out[c].append(None)
            out["file_bytes"].append(len(s.image) if s.image is not None else None)
            out["image_format"].append(d.format)
            text = (s.caption or "").strip()
            out["caption_words"].append(len(text.split()))
            out["caption_chars"].append(len(text))
        return out
