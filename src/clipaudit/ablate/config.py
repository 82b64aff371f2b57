"""What an ablation run takes, validated before any work starts."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from clipaudit.errors import ClipauditError

RAW_ARM = "raw"
# The world benchmarks each arm is scored on: every one the world offers.
BENCHMARK_SIZES: dict[str, int] = {
    "eval-objects": 960,
    "eval-people": 2000,
    "eval-retrieval": 1000,
}


@dataclass
class AblateConfig:
    pool: str
    out: str
    rules: list[str] = field(default_factory=lambda: ["default", "keep-all"])
    steps: int = 600
    seeds: int = 2
    batch_size: int = 128
    arch: str = "clipaudit-ablate"
    lr: float = 1e-3
    warmup: int | None = None  # None: a tenth of the steps, at most 100
    curate_model: str = "bundled:world-clip"
    format: str | None = None
    # Scenes per world benchmark split (eval-objects, eval-people, eval-retrieval).
    eval_sizes: dict[str, int] = field(default_factory=lambda: dict(BENCHMARK_SIZES))
    eval_seed: int = 1
    bootstrap: int = 1000
    workers: int = 2

    def arm_names(self) -> list[str]:
        """``raw`` then one arm per pack, named after the pack (its file stem for a path)."""
        names = [RAW_ARM]
        for ref in self.rules:
            stem = re.sub(r"\.ya?ml$", "", ref.replace("\\", "/").rsplit("/", 1)[-1])
            name = re.sub(r"[^A-Za-z0-9_.-]", "_", stem) or "pack"
            base, k = name, 2
            while name in names:
                name, k = f"{base}-{k}", k + 1
            names.append(name)
        return names

    def validate(self) -> None:
        if not self.rules:
            raise ClipauditError("Give at least one rules pack with --rules NAME_OR_FILE.")
        if self.steps < 1:
            raise ClipauditError(f"--steps must be at least 1, got {self.steps}.")
        if self.seeds < 1:
            raise ClipauditError(f"--seeds must be at least 1, got {self.seeds}.")
        if self.batch_size < 2:
            raise ClipauditError(f"--batch-size must be at least 2, got {self.batch_size}.")
        if self.bootstrap < 1:
            raise ClipauditError(f"--bootstrap must be at least 1, got {self.bootstrap}.")
        for split, n in self.eval_sizes.items():
            if split not in BENCHMARK_SIZES:
                raise ClipauditError(
                    f"Unknown benchmark split {split!r}; use: {', '.join(BENCHMARK_SIZES)}."
                )
            if n < 2:
                raise ClipauditError(f"The {split} benchmark needs at least 2 scenes, got {n}.")
