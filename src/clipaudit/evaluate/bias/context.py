"""What every probe sees: unit image embeddings, label columns, prompt sets and settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from clipaudit.errors import ClipauditError
from clipaudit.evaluate.bias.promptsets import PromptSet
from clipaudit.evaluate.bootstrap import BootstrapSpec, interval

TextEncoder = Any  # a callable list[str] -> (n, D) unit rows (LoadedClip.encode_texts)


@dataclass
class Groups:
    """One label column as integer codes, groups in sorted order."""

    column: str
    names: list[str]
    codes: np.ndarray

    @classmethod
    def of(cls, column: str, values: list[str]) -> Groups:
        names = sorted(set(values))
        index = {v: i for i, v in enumerate(names)}
        return cls(column, names, np.array([index[v] for v in values], np.int64))

    @property
    def base_rate(self) -> np.ndarray:
        return np.bincount(self.codes, minlength=len(self.names)) / len(self.codes)


@dataclass
class BiasContext:
    emb: np.ndarray  # (N, D) unit rows of the images that decoded
    ids: list[str]
    columns: dict[str, list[str]]
    group_columns: list[str]
    encode_texts: TextEncoder
    prompts: dict[str, PromptSet]
    boot: BootstrapSpec = field(default_factory=BootstrapSpec)
    k: int = 100
    ks: tuple[int, ...] | None = None
    permutations: int = 1000
    min_group_size: int = 30
    tau: float = 0.8
    label_column: str | None = None
    _heads: dict[tuple[str, ...], np.ndarray] = field(default_factory=dict)

    def groups(self, column: str) -> Groups:
        if column not in self.columns:
            raise ClipauditError(
                f"There is no group column {column!r}; the dataset's columns are "
                f"{', '.join(sorted(self.columns))}."
            )
        return Groups.of(column, self.columns[column])

    def prompt_set(self, role: str) -> PromptSet:
        if role not in self.prompts:
            raise ClipauditError(f"No {role!r} prompt set was given; pass one for this probe.")
        return self.prompts[role]

    def head(self, texts: list[str]) -> np.ndarray:
        """Unit mean of unit text embeddings (CLIP's zero-shot class vector), cached."""
        key = tuple(texts)
        if key not in self._heads:
            mean = np.asarray(self.encode_texts(texts), np.float64).mean(axis=0)
            self._heads[key] = (mean / np.linalg.norm(mean)).astype(np.float32)
        return self._heads[key]

    def text_rows(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self.encode_texts(texts), np.float32)


def ci_block(value: float, dist: np.ndarray, confidence: float) -> dict[str, Any]:
    return {"value": float(value), "ci": interval(np.asarray(dist, np.float64), confidence)}


def excludes_zero(ci: list[float] | None) -> bool:
    return bool(ci is not None and (ci[0] > 0 or ci[1] < 0))
