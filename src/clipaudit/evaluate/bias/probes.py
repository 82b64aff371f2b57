"""Importing this module fills the probe registry (one module per probe)."""

from clipaudit.evaluate.bias import association, disparity, harmful, skew  # noqa: F401
