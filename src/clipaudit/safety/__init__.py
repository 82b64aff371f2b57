"""Safety signals: NSFW (nudenet, CLIP policy phrases, caption words) and watermarks
(imwatermark's SD v1 / SDXL marks, a CLIP phrase score for visible ones)."""
