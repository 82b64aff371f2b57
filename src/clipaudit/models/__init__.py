"""Model loading (the single door to a model) and provenance records."""

from clipaudit.models.loader import SPEC_KINDS, LoadedClip, load_clip, resolve_spec
from clipaudit.models.provenance import ModelProvenance

__all__ = ["SPEC_KINDS", "LoadedClip", "ModelProvenance", "load_clip", "resolve_spec"]
