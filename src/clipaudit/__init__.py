"""clipaudit: curate image-caption datasets, evaluate CLIP-style models, report on both."""

import os

# onnxruntime (nudenet, the visible-watermark detector) sends usage telemetry from a
# background thread on import (DNS lookups of a Microsoft events host) and writes a device
# id under ~/.cache: a curation run must not go online or write outside its folders. Set
# before any import of onnxruntime; a user who sets the variable keeps their value.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

from clipaudit.errors import ClipauditError

__version__ = "0.1.0"
__all__ = ["ClipauditError", "__version__"]
