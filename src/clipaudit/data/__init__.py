"""Samples, dataset readers and writers: one module per format, all behind one registry."""

from clipaudit.data import hfdataset, imagefolder, parquet, webdataset  # noqa: F401  (register)
from clipaudit.data.decode import DECODE_ERRORS, Decoded, decode_image
from clipaudit.data.formats import (
    FORMATS,
    Dataset,
    ReadOptions,
    detect_format,
    open_dataset,
    write_dataset,
)
from clipaudit.data.sample import Sample

__all__ = [
    "DECODE_ERRORS",
    "FORMATS",
    "Dataset",
    "Decoded",
    "ReadOptions",
    "Sample",
    "decode_image",
    "detect_format",
    "open_dataset",
    "write_dataset",
]
