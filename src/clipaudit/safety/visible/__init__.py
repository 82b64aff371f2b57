"""The visible-watermark detector: overlay synthesis (``marks``), training data (``data``),
the small CNN and its inference (``detector``), and its training run (``train``)."""
