"""clipaudit: curate image-caption datasets, evaluate CLIP-style models, report on both."""

from clipaudit.errors import ClipauditError

__version__ = "0.1.0"
__all__ = ["ClipauditError", "__version__"]
