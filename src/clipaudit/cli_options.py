"""The dataset options that several commands share, declared once.

A command takes ``*, data: DatasetArgs`` and is decorated with :func:`dataset_options`:
typer then sees ``--format`` and the column options where ``data`` stands in the signature
(same names, help and ``None`` defaults on every command), and the command gets them back
as one :class:`DatasetArgs`.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from clipaudit.data import Dataset, ReadOptions


@dataclass(frozen=True)
class DatasetArgs:
    """How to read the dataset a command was given; ``None`` means detect."""

    format: str | None = None
    image_column: str | None = None
    path_column: str | None = None
    caption_column: str | None = None
    id_column: str | None = None
    url_column: str | None = None
    split: str | None = None
    follow_symlinks: bool = False

    def read_options(self) -> ReadOptions:
        from clipaudit.data import ReadOptions

        return ReadOptions(
            id_column=self.id_column,
            image_column=self.image_column,
            path_column=self.path_column,
            caption_column=self.caption_column,
            url_column=self.url_column,
            split=self.split,
            # In ``extra`` only when given: runs read without it keep their fingerprint.
            extra={"follow_symlinks": True} if self.follow_symlinks else {},
        )

    def open(self, path: str) -> Dataset:
        from clipaudit.data import open_dataset

        return open_dataset(path, format=self.format, options=self.read_options())


FormatOpt = Annotated[
    str | None,
    typer.Option(
        "--format", "-f", help="webdataset, parquet, imagefolder or hf (default: detect)."
    ),
]
# The column options in their usual order, with their help.
COLUMNS: dict[str, str] = {
    "image_column": "Column holding image bytes.",
    "path_column": "Column holding image file paths.",
    "caption_column": "Column or field holding the caption.",
    "id_column": "Column holding sample ids.",
    "url_column": "Column holding source urls.",
    "split": "Split of a saved DatasetDict.",
}

# Reading switches, off unless given.
FLAGS: dict[str, str] = {
    "follow_symlinks": "Read an image folder's symbolic links that point out of it (a Hugging "
    "Face hub snapshot, a DVC or git-annex checkout); without it they are unsafe_path.",
}

Command = Callable[..., None]


def _parameter(name: str, described: bool) -> inspect.Parameter:
    if name in FLAGS:
        flag = Annotated[bool, typer.Option(help=FLAGS[name] if described else None)]
        return inspect.Parameter(
            name, inspect.Parameter.KEYWORD_ONLY, default=False, annotation=flag
        )
    annotation: Any = (
        FormatOpt
        if name == "format"
        else Annotated[str | None, typer.Option(help=COLUMNS[name] if described else None)]
    )
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation
    )


def dataset_options(*columns: str, described: bool = True) -> Callable[[Command], Command]:
    """Put ``--format`` and the options of ``columns`` (default: all of :data:`COLUMNS`, in
    that order) into the command's signature where its keyword-only ``data`` parameter
    stands, and call the command with them as ``data=DatasetArgs(...)``. ``described=False``
    leaves the column options without help text."""
    names = ("format", *(columns or (*COLUMNS, *FLAGS)))
    unknown = set(names) - {"format", *COLUMNS, *FLAGS}
    if unknown:
        raise TypeError(f"dataset_options: unknown options {sorted(unknown)}")

    def decorate(fn: Command) -> Command:
        # Annotations evaluated here (the modules use postponed annotations): typer reads
        # the wrapper's signature and annotations as they are.
        sig = inspect.signature(fn, eval_str=True)
        spot = sig.parameters.get("data")
        if spot is None or spot.kind is not inspect.Parameter.KEYWORD_ONLY:
            raise TypeError(f"{fn.__name__}: dataset_options needs a keyword-only `data`")
        params: list[inspect.Parameter] = []
        for p in sig.parameters.values():
            params += [_parameter(n, described) for n in names] if p is spot else [p]

        @functools.wraps(fn)
        def command(**kwargs: Any) -> None:
            data = DatasetArgs(**{n: kwargs.pop(n) for n in names})
            fn(**kwargs, data=data)

        command.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        command.__annotations__["return"] = sig.return_annotation
        return command

    return decorate


# How a video sample's frames are sampled (data/video.py), for the commands that read video.
VideoSamplingOpt = Annotated[
    str,
    typer.Option(
        help="Frames of a video sample: uniform:N (N evenly spaced), fps:F, keyframes or "
        "scenes (one a shot). Recorded in the output.",
    ),
]

BatchMegapixelsOpt = Annotated[
    int,
    typer.Option(
        min=1,
        help="A batch also ends at this many megapixels of images (as their headers declare), "
        "so a batch of large photos holds no more pixels than one of small ones.",
    ),
]
