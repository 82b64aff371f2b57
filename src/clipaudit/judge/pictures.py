"""The picture the judge sends for a sample: the image, or for a clip or an animation a sheet
of frames.

A video's middle frame alone hides what happens before and after it (a caption "a dog
catches a frisbee" over a clip whose middle frame shows the throw), and an animated GIF's
first frame hides the rest of it, the frames a safety review most needs to see. The judge
therefore sends up to ``SHEET_FRAMES`` of the frames the run sampled, spread evenly from first
to last, tiled in reading order on one image. One image, not several: many OpenAI-compatible
servers accept a single image per request (vLLM's default ``--limit-mm-per-prompt``), and the
sheet is downscaled to the same ``--max-side`` as a photo, so a clip costs the tokens of one
picture. The question says what the model is looking at.
"""

from __future__ import annotations

import math

from PIL import Image

SHEET_FRAMES = 4
GUTTER = 4  # px of grey between frames, so the model does not read them as one scene
GUTTER_GREY = (128, 128, 128)


def sheet_indices(n_frames: int, count: int = SHEET_FRAMES) -> list[int]:
    """Up to ``count`` indices into ``n_frames`` sampled frames, first and last included,
    evenly spread, in order."""
    if n_frames <= count:
        return list(range(n_frames))
    return [round(k * (n_frames - 1) / (count - 1)) for k in range(count)]


def contact_sheet(frames: list[Image.Image], max_side: int) -> Image.Image:
    """``frames`` (each RGB) tiled left to right, then top to bottom, on a grid of
    ceil(sqrt(n)) columns, each frame fitted into a cell of the first frame's aspect; the
    sheet's longer side is at most ``max_side``."""
    n = len(frames)
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    fw, fh = frames[0].size
    # Cells share the first frame's shape; the whole sheet fits max_side with its gutters.
    scale = min(
        (max_side - GUTTER * (cols - 1)) / (cols * fw),
        (max_side - GUTTER * (rows - 1)) / (rows * fh),
        1.0,
    )
    cw, ch = max(1, round(fw * scale)), max(1, round(fh * scale))
    sheet = Image.new(
        "RGB", (cols * cw + GUTTER * (cols - 1), rows * ch + GUTTER * (rows - 1)), GUTTER_GREY
    )
    for k, frame in enumerate(frames):
        cell = frame.convert("RGB")
        cell.thumbnail((cw, ch))
        r, c = divmod(k, cols)
        x = c * (cw + GUTTER) + (cw - cell.width) // 2
        y = r * (ch + GUTTER) + (ch - cell.height) // 2
        sheet.paste(cell, (x, y))
    return sheet


def frames_note(n: int, kind: str) -> str:
    """What the model is told before the question when it is shown a sheet of ``n`` frames
    of a ``kind`` ("video" or "animation")."""
    return (
        f"The image shows {n} frames of one {kind}, sampled in order from its start to its "
        "end, left to right then top to bottom, separated by grey lines. Judge the "
        f"{kind} as a whole.\n"
    )
