"""The visible-watermark detector's backbone kind: a small trained head over the first stages
of nudenet's detector, frozen.

The CNN trained from nothing (``detector.VisibleNet``) underfits on two CPU cores: it misses
large, plainly visible words. nudenet's wheel (MIT) ships a YOLOv8n-style detector trained
on real photographs, and its first stages are generic image features. ``cut`` keeps its graph
up to the stride-8 and stride-16 stages (P3: 64×40×40 and P4: 128×20×20 at 320 px) and the
package ships that cut (``backbone.onnx``, 1.4 MB, pinned by sha256 in the detector's
config): a later nudenet release with other weights cannot silently change the features the
head was trained on. Only ``cut`` needs the ``onnx`` package; scoring needs onnxruntime,
which nudenet already brings.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from clipaudit.safety.visible.detector import conv_block  # conv 3x3, batch norm, ReLU

BACKBONE = "backbone.onnx"
INPUT_SIZE = 320  # nudenet's own input size: the stages were trained at this scale
OUTPUTS = ("/model.4/cv2/act/Mul_output_0", "/model.6/cv2/act/Mul_output_0")  # P3, P4
P3_SHAPE = (64, 40, 40)
P4_SHAPE = (128, 20, 20)
P2_OUTPUT = "/model.2/cv2/act/Mul_output_0"  # stride 4: 32×80×80, what the stride-8 stage reads
# The name a training cache stores each output under.
KEYS = {OUTPUTS[0]: "p3", OUTPUTS[1]: "p4", P2_OUTPUT: "p2"}


def cut(out: Path) -> str:
    """Write nudenet's 320n.onnx cut after P3 and P4 to ``out``; returns its sha256."""
    try:
        import nudenet
        import onnx  # noqa: F401  (sub_cut needs it: fail here with the install hint)
    except ImportError as e:
        raise SystemExit(
            f"cutting the backbone needs {e.name}: pip install 'clipaudit[bench]'"
        ) from None
    return sub_cut(Path(nudenet.__file__).with_name("320n.onnx"), list(OUTPUTS), out)


def sub_cut(src: Path, outputs: list[str], out: Path) -> str:
    """``src`` (nudenet's graph, or a cut of it, maybe with tuned stages) cut to ``outputs``,
    written to ``out``; returns its sha256."""
    import onnx
    from onnx.utils import Extractor

    model = Extractor(onnx.load(str(src))).extract_model(["images"], outputs)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    onnx.save(model, str(tmp))
    tmp.rename(out)
    return hashlib.sha256(out.read_bytes()).hexdigest()


class Backbone:
    """The cut graph in onnxruntime; ``run`` is thread-safe, so one instance serves all."""

    def __init__(self, path: Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def named(self, x: np.ndarray, batch_size: int = 32) -> dict[str, np.ndarray]:
        """uint8 NHWC at INPUT_SIZE → each output of the graph as float16 (how training caches
        them), under its ``KEYS`` name."""
        if x.shape[1:] != (INPUT_SIZE, INPUT_SIZE, 3):
            raise ValueError(f"backbone input {x.shape[1:]} is not {INPUT_SIZE}x{INPUT_SIZE}x3")
        keys = [KEYS.get(o.name, o.name) for o in self.session.get_outputs()]
        got: dict[str, list[np.ndarray]] = {k: [] for k in keys}
        for i in range(0, len(x), batch_size):
            b = np.ascontiguousarray(x[i : i + batch_size].transpose(0, 3, 1, 2), np.float32)
            out = self.session.run(None, {"images": b / np.float32(255.0)})
            for k, a in zip(keys, out, strict=True):
                got[k].append(a.astype(np.float16))
        return {k: np.concatenate(v) for k, v in got.items()}

    def features(self, x: np.ndarray, batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
        """uint8 NHWC at INPUT_SIZE → (P3, P4) float16."""
        f = self.named(x, batch_size)
        return f["p3"], f["p4"]


class Head(nn.Module):
    """P3 brought to stride 16 and stacked on P4, three convolutions, max and mean pooling
    (the max keeps a small corner credit from being averaged away), one logit."""

    def __init__(self, width: int = 128) -> None:
        super().__init__()
        self.down = conv_block(P3_SHAPE[0], P3_SHAPE[0], 2)
        self.a = conv_block(P3_SHAPE[0] + P4_SHAPE[0], width)
        self.b = conv_block(width, width)
        self.pool = nn.MaxPool2d(2)
        self.c = conv_block(width, width)
        self.fc = nn.Linear(2 * width, 1)

    def last_map(self, p3: torch.Tensor, p4: torch.Tensor) -> torch.Tensor:
        """The last convolution's map, before pooling (width × 10 × 10 at 320 px)."""
        f = torch.cat([self.down(p3), p4], 1)
        return self.c(self.pool(self.b(self.a(f))))

    def read(self, f: torch.Tensor) -> torch.Tensor:
        """One logit per map: max and mean pooling, then the linear layer."""
        return self.fc(torch.cat([f.amax((2, 3)), f.mean((2, 3))], 1)).squeeze(1)

    def forward(self, p3: torch.Tensor, p4: torch.Tensor) -> torch.Tensor:
        return self.read(self.last_map(p3, p4))


def head_logits(head: Head, p3: np.ndarray, p4: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """The head's logits over cached features (eval mode, no gradients)."""
    head.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(p3), batch_size):
            a = torch.from_numpy(p3[i : i + batch_size].astype(np.float32))
            b = torch.from_numpy(p4[i : i + batch_size].astype(np.float32))
            out.append(head(a, b).numpy())
    return np.concatenate(out) if out else np.zeros(0, np.float32)


class BackboneHead:
    """Scores uint8 NHWC inputs at INPUT_SIZE: backbone features, then the head's sigmoid."""

    def __init__(self, backbone: Backbone, head: Head) -> None:
        self.backbone, self.head = backbone, head

    def score(self, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
        if len(x) == 0:
            return np.zeros(0, np.float32)
        p3, p4 = self.backbone.features(x, min(batch_size, 32))
        return (1.0 / (1.0 + np.exp(-head_logits(self.head, p3, p4)))).astype(np.float32)


def state(head: Head) -> dict[str, Any]:
    return {k: v.contiguous() for k, v in head.state_dict().items()}
