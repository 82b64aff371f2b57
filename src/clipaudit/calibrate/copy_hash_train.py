"""Trains the crop-robust copy hash (``clipaudit.curate.stages.copyhash``) on real photographs.

``python -m clipaudit.calibrate.copy_hash_train --photos ../shared/photos`` reads the
calibration part of the photos only (``photo_split``; the held-out part measures it in
``bench/real_photos.py``), squashes each to 128x128 and trains the network so that two
random views of one photo agree and views of different photos do not (a symmetric InfoNCE
loss on tanh outputs at temperature 0.1, a batch of 256 photos, plus terms that push each
output towards ±1 and each bit towards balance). A view keeps 78-100% of each side at a
random offset, is resized to 64x64 (area), scaled in brightness by 0.7-1.4 (clipped) and
gets faint noise. Mirrors and borders are left to their own searches. Seeded: the same
photos give the same weights on the same torch build. 25 epochs took 19 minutes on the
2-core development machine (sharing it with other jobs). Needs torch (a dev dependency;
the hash itself runs in NumPy).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from clipaudit.calibrate.photo_split import photos

SQUASH = 128
SIDE = 64
NAMES = {"c.0": "c0", "c.2": "c1", "c.4": "c2", "c.6": "c3", "f": "f"}


def train(folder: Path, out: Path, epochs: int = 25, batch: int = 256, seed: int = 0) -> None:
    import torch
    import torch.nn.functional as F
    from PIL import Image
    from torch import nn

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    cal = photos(folder, "calibration")
    t0 = time.time()
    x = np.stack(
        [
            np.asarray(Image.open(p).convert("RGB").resize((SQUASH, SQUASH), Image.Resampling.BOX))
            for p in cal
        ]
    )
    xt = torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255

    def view(b: torch.Tensor) -> torch.Tensor:
        n = len(b)
        out = torch.empty(n, 3, SIDE, SIDE)
        sc = rng.uniform(0.78, 1.0, n)
        for i in range(n):
            cw = int(SQUASH * sc[i])
            ch = int(SQUASH * rng.uniform(max(0.78, sc[i] - 0.05), min(1, sc[i] + 0.05)))
            x0 = rng.integers(0, SQUASH - cw + 1)
            y0 = rng.integers(0, SQUASH - ch + 1)
            crop = b[i : i + 1, :, y0 : y0 + ch, x0 : x0 + cw]
            out[i] = F.interpolate(crop, size=(SIDE, SIDE), mode="area")[0]
        gain = torch.from_numpy(rng.uniform(0.7, 1.4, (n, 1, 1, 1))).float()
        out = (out * gain).clamp(0, 1)
        return out + torch.randn_like(out) * 0.01

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c = nn.Sequential(
                nn.Conv2d(3, 24, 3, 2, 1), nn.ReLU(),
                nn.Conv2d(24, 48, 3, 2, 1), nn.ReLU(),
                nn.Conv2d(48, 64, 3, 2, 1), nn.ReLU(),
                nn.Conv2d(64, 64, 3, 2, 1), nn.ReLU(),
            )  # fmt: skip
            self.f = nn.Linear(64 * 4, 64)

        def forward(self, v: torch.Tensor) -> torch.Tensor:
            h = self.c((v - 0.45) / 0.25)
            return self.f(F.adaptive_avg_pool2d(h, 2).flatten(1))

    net = Net()
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    for ep in range(epochs):
        perm = rng.permutation(len(xt))
        total = 0.0
        for k in range(0, len(perm) - batch + 1, batch):
            b = xt[perm[k : k + batch]]
            t1, t2 = torch.tanh(net(view(b))), torch.tanh(net(view(b)))
            logits = F.normalize(t1, dim=1) @ F.normalize(t2, dim=1).T / 0.1
            lab = torch.arange(len(b))
            loss = (F.cross_entropy(logits, lab) + F.cross_entropy(logits.T, lab)) / 2
            loss = loss + 0.1 * ((1 - t1.abs()) ** 2).mean() + 0.1 * (t1.mean(0) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item()
        print(f"epoch {ep}: loss {total:.3f}, {time.time() - t0:.0f} s", flush=True)
    weights: dict[str, np.ndarray] = {}
    for key, v in net.state_dict().items():
        prefix, suffix = key.rsplit(".", 1)
        weights[f"{NAMES[prefix]}.{suffix}"] = v.numpy().astype(np.float32)
    np.savez_compressed(out, **weights)  # type: ignore[arg-type]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=Path, required=True)
    ap.add_argument(
        "--out", type=Path, default=Path(__file__).parents[1] / "curate" / "stages" / "copyhash.npz"
    )
    ap.add_argument("--epochs", type=int, default=25)
    a = ap.parse_args()
    train(a.photos, a.out, a.epochs)


if __name__ == "__main__":
    main()
