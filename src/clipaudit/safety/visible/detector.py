"""The project's visible-watermark detector, shipped as package data with its card and
held-out metrics. Two kinds load through ``ARCHS`` (the folder's config names one):
``BackboneHead``, the shipped one (a head over nudenet's frozen first stages,
``visible.backbone``, trained by ``visible.head_train``), and ``VisibleNet``, a small CNN
trained from nothing (``visible.train``).

``score`` returns a probability-like score per image; it is a "suspect" flag to compare with
a threshold chosen at a false-positive rate on clean held-out images, not a verdict.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from clipaudit.safety.visible.data import INPUT_SIZE, to_input

if TYPE_CHECKING:
    from clipaudit.safety.visible.backbone import Backbone, Head

BUNDLED_DIR = Path(__file__).resolve().parents[2] / "models" / "bundled" / "watermark-detector"
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
METRICS = "metrics.json"
DEFAULT_WIDTHS = (16, 32, 48, 64, 96)
DEFAULT_DEPTHS = (1, 1, 1, 1, 1)


def conv_block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class Residual(nn.Module):
    """``x + block(x)``: the extra convolutions of a stage learn a correction, which keeps a
    deeper stack as easy to train as the shallow one."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.block = conv_block(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class VisibleNet(nn.Module):
    """Strided stem, three conv+maxpool stages, one more conv, then max and mean pooling:
    the max keeps a small corner mark from being averaged away by a clean frame.
    ``depths[k]`` convolutions at stage k (the extra ones residual, same width).

    ``cells`` is a 1×1 convolution over the last feature map (one logit per 16-px cell of
    the input): training supervises it with where the mark was drawn, which teaches the
    features far faster than one label per image; scoring uses the image head only."""

    def __init__(
        self, widths: Sequence[int] = DEFAULT_WIDTHS, depths: Sequence[int] = DEFAULT_DEPTHS
    ) -> None:
        super().__init__()
        w, d = list(widths), list(depths)
        if len(d) != len(w) or min(d) < 1:
            raise ValueError(f"depths {d} must give at least one conv to each of {len(w)} stages")
        layers: list[nn.Module] = [conv_block(3, w[0], stride=2)]
        layers += [Residual(w[0]) for _ in range(d[0] - 1)]
        for k in range(1, len(w)):
            layers.append(conv_block(w[k - 1], w[k]))
            layers += [Residual(w[k]) for _ in range(d[k] - 1)]
            if k < len(w) - 1:
                layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(2 * w[-1], 1)
        self.cells = nn.Conv2d(w[-1], 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_both(x)[0]

    def forward_both(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(image logits [N], cell logits [N, H/16, W/16])."""
        f = self.features(x)
        pooled = torch.cat([f.amax(dim=(2, 3)), f.mean(dim=(2, 3))], dim=1)
        return self.head(pooled).squeeze(1), self.cells(f).squeeze(1)


def to_tensor(arrays: np.ndarray) -> torch.Tensor:
    """uint8 NHWC → float NCHW in [-0.5, 0.5]."""
    x = torch.from_numpy(np.ascontiguousarray(arrays)).permute(0, 3, 1, 2).float()
    return x / 255.0 - 0.5


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run with ``n`` intra-op threads, restoring the process setting afterwards."""
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def cnn_scores(net: VisibleNet, arrays: np.ndarray, batch_size: int = 128) -> np.ndarray:
    """The CNN's sigmoid scores over uint8 NHWC inputs, in batches, without gradients."""
    out = []
    with torch.inference_mode():
        for i in range(0, len(arrays), batch_size):
            out.append(torch.sigmoid(net(to_tensor(arrays[i : i + batch_size]))).numpy())
    return np.concatenate(out) if out else np.zeros(0, np.float32)


# (uint8 NHWC inputs, batch size) → scores in [0, 1]
Scorer = Callable[[np.ndarray, int], np.ndarray]
# (folder, config) → (scorer, the weights file whose sha256 names the detector)
ARCHS: dict[str, Callable[[Path, dict[str, Any]], tuple[Scorer, Path]]] = {}


def register_arch(
    name: str,
) -> Callable[
    [Callable[[Path, dict[str, Any]], tuple[Scorer, Path]]],
    Callable[[Path, dict[str, Any]], tuple[Scorer, Path]],
]:
    """Register how a detector folder whose config says ``"arch": name`` is loaded."""

    def deco(
        fn: Callable[[Path, dict[str, Any]], tuple[Scorer, Path]],
    ) -> Callable[[Path, dict[str, Any]], tuple[Scorer, Path]]:
        ARCHS[name] = fn
        return fn

    return deco


@register_arch("VisibleNet")
def _load_cnn(folder: Path, config: dict[str, Any]) -> tuple[Scorer, Path]:
    from safetensors.torch import load_file

    net = VisibleNet(config.get("widths", DEFAULT_WIDTHS), config.get("depths", DEFAULT_DEPTHS))
    net.load_state_dict(load_file(str(folder / WEIGHTS)))
    net.eval()

    return functools.partial(cnn_scores, net), folder / WEIGHTS


def backbone_and_head(
    folder: Path, threads: int | None = None, config: dict[str, Any] | None = None
) -> tuple[Backbone, Head]:
    """A BackboneHead folder's two parts, the cut graph checked against the sha256 its head
    was trained on (for trials that read the features or logits themselves); ``config`` is
    the folder's, where the caller has read it already."""
    from safetensors.torch import load_file

    from clipaudit.safety.visible.backbone import BACKBONE, Backbone, Head

    config = config if config is not None else json.loads((folder / CONFIG).read_text())
    cut = folder / BACKBONE
    want = config.get("backbone_sha256")
    if want and sha256_file(cut) != want:
        raise ValueError(f"{cut} does not match the sha256 its head was trained on; reinstall")
    head = Head(int(config.get("width", 128)))
    head.load_state_dict(load_file(str(folder / WEIGHTS)))
    return Backbone(cut, threads), head


@register_arch("BackboneHead")
def _load_backbone_head(folder: Path, config: dict[str, Any]) -> tuple[Scorer, Path]:
    from clipaudit.safety.visible.backbone import BackboneHead

    return BackboneHead(*backbone_and_head(folder, config=config)).score, folder / WEIGHTS


@dataclass
class Detector:
    scorer: Scorer
    config: dict[str, Any]
    metrics: dict[str, Any]
    sha256: str
    path: Path

    @property
    def input_size(self) -> int:
        return int(self.config.get("input_size", INPUT_SIZE))

    def to_input(self, im: Image.Image) -> np.ndarray:
        """This detector's input: the whole frame squashed to its input size (uint8 HWC)."""
        return to_input(im, self.input_size)

    def score_arrays(
        self, arrays: np.ndarray, batch_size: int = 64, threads: int | None = None
    ) -> np.ndarray:
        """Scores for preprocessed inputs (``to_input`` output, N×size×size×3 uint8)."""
        if len(arrays) == 0:
            return np.zeros(0, np.float32)
        with torch_threads(threads):
            return self.scorer(arrays, batch_size).astype(np.float32)

    def score(
        self, images: Sequence[Image.Image], batch_size: int = 64, threads: int | None = None
    ) -> np.ndarray:
        """One score in [0, 1] per image (whole frame resized to the input size)."""
        if not images:
            return np.zeros(0, np.float32)
        x = np.stack([self.to_input(im) for im in images])
        return self.score_arrays(x, batch_size, threads)

    def threshold_at(self, fpr: float) -> float:
        """The card's threshold at a held-out false-positive rate (0.01 or 0.05)."""
        return float(self.metrics["thresholds"][f"fpr_{fpr:g}"])

    def provenance(self) -> dict[str, Any]:
        m = self.metrics
        # The backbone kind's cut graph is trained too (stage_train): a run names both.
        cut = self.config.get("backbone_sha256")
        return {
            "arch": self.config.get("arch"),
            "weights": str(self.path.name),
            "weights_sha256": self.sha256,
            **({"backbone_sha256": cut} if cut else {}),
            "input_size": self.input_size,
            "thresholds": m.get("thresholds"),
            "heldout": {
                k: m["heldout"][k] for k in ("world", "photo", "all") if k in m.get("heldout", {})
            },
            "real_photos_auroc": m.get("real_photos", {}).get("auroc"),
            "recipe": m.get("recipe", {}).get("command"),
        }


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_from(folder: Path) -> Detector:
    config = json.loads((folder / CONFIG).read_text())
    arch = config.get("arch", "VisibleNet")
    if arch not in ARCHS:
        raise ValueError(f"{folder / CONFIG} names arch {arch!r}; known: {sorted(ARCHS)}")
    scorer, weights = ARCHS[arch](folder, config)
    metrics_path = folder / METRICS
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    return Detector(scorer, config, metrics, sha256_file(weights), weights)


@functools.lru_cache(maxsize=4)
def load_detector(folder: str | None = None) -> Detector:
    """The shipped detector (or one in ``folder``), loaded once per process."""
    return load_from(Path(folder) if folder else BUNDLED_DIR)


def score(images: Sequence[Image.Image], threads: int | None = None) -> np.ndarray:
    """Scores of the shipped detector: batched, deterministic (eval mode, fixed weights)."""
    return load_detector().score(images, threads=threads)
