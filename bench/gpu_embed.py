"""Image-embedding throughput of an open_clip ViT-B-32 through clipaudit's decode path.

On the lent GPU machine (no network, no open_clip or ftfy installed; torch, torchvision,
pillow, numpy present), from the repository root, with the wheels in .whl/ carried along
(`python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 ... -d .whl
open_clip_torch ftfy wcwidth tqdm`). Designed to finish in under 4 minutes:

    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && \
    export PYTHONPATH=/tmp/site:src && \
    python3 bench/gpu_embed.py --device cuda --n 30000 --batch-size 256 --workers 14 \
        --autocast fp16 --channels-last --out-dir "$OUT"

What is timed: JPEG files on disk (256x256, written first by this script) → read bytes →
``clipaudit.data.decode.decode_image`` (the curate decoder: EXIF, modes, bomb guard) → the
model's own preprocess (resize 224 bicubic, centre crop, normalise), batched as curate
batches it (``clipaudit.models.batch_preprocess``) in DataLoader workers → the image
tower on the device (random weights: ``open_clip.create_model('ViT-B-32')``, nothing
downloaded; speed does not depend on the weights). Also timed alone: the loader without
the model (the decode ceiling) and the model on a resident tensor (the model ceiling).
The published reference is clip-retrieval's 100M images in 20 h on one RTX 3080
(≈ 1,400 images/s). Writes gpu_embed_<device>.json into --out-dir (bench/results/).

Only ``src/clipaudit/data/decode.py`` and ``src/clipaudit/models/batch_preprocess.py`` are
imported from clipaudit, without their packages' ``__init__`` (which pull in readers that
need datasets/pandas, absent on that machine).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import tempfile
import time
import types
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

REFERENCE_IMAGES_PER_S = 100_000_000 / (20 * 3600)  # clip-retrieval, RTX 3080: ≈ 1,389


def _light_packages() -> None:
    """Make ``clipaudit.data`` and ``clipaudit.models`` importable as bare namespaces, so
    their small modules load without the readers and loaders their ``__init__`` imports."""
    src = Path(__file__).resolve().parents[1] / "src" / "clipaudit"
    for name in ("data", "models"):
        full = f"clipaudit.{name}"
        if full not in sys.modules:
            mod = types.ModuleType(full)
            mod.__path__ = [str(src / name)]
            sys.modules[full] = mod


_light_packages()

from clipaudit.data.decode import decode_image  # noqa: E402

try:  # curate's batched preprocess; per-image preprocess where this tree lacks it
    from clipaudit.models.batch_preprocess import BatchPreprocess
except ImportError:  # pragma: no cover
    BatchPreprocess = None  # type: ignore[assignment,misc]


def _photo(seed: int, side: int) -> bytes:
    """A smooth gradient with a few shapes and noise, saved as a quality-90 JPEG: decodes
    like a web photo (a flat picture would decode unrealistically fast)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
    f = rng.uniform(3, 12, 3)
    arr = np.stack(
        [
            128 + 100 * np.sin(xx / f[0] + rng.uniform(0, 6)),
            128 + 100 * np.cos(yy / f[1] + rng.uniform(0, 6)),
            128 + 100 * np.sin((xx + yy) / f[2]),
        ],
        -1,
    )
    for _ in range(3):
        x0, y0 = rng.integers(0, side // 2, 2)
        arr[y0 : y0 + side // 3, x0 : x0 + side // 4] = rng.uniform(0, 255, 3)
    arr += rng.normal(0, 10, arr.shape)
    buf = io.BytesIO()
    Image.fromarray(arr.clip(0, 255).astype(np.uint8)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _write_chunk(args: tuple[str, int, int, int]) -> int:
    folder, start, stop, side = args
    for i in range(start, stop):
        Path(folder, f"{i:07d}.jpg").write_bytes(_photo(i, side))
    return stop - start


def write_jpegs(folder: Path, n: int, side: int, procs: int) -> float:
    """``n`` distinct JPEG files; returns the seconds it took."""
    t0 = time.perf_counter()
    step = max(1, n // (procs * 4))
    chunks = [(str(folder), s, min(n, s + step), side) for s in range(0, n, step)]
    with ProcessPoolExecutor(procs) as pool:
        assert sum(pool.map(_write_chunk, chunks)) == n
    return time.perf_counter() - t0


class JpegBatches(torch.utils.data.Dataset):
    """Index = a list of file indices (a batch); returns the preprocessed batch tensor,
    built in the worker exactly as curate builds it: decode, then batch preprocess."""

    def __init__(self, files: list[Path], preprocess: Callable[[Image.Image], torch.Tensor]):
        self.files = files
        self.preprocess = preprocess
        self.batch = BatchPreprocess(preprocess) if BatchPreprocess is not None else None

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, idx: list[int]) -> torch.Tensor:
        images = []
        for i in idx:
            d = decode_image(self.files[i].read_bytes())
            assert d.image is not None, d.error
            images.append(d.image)
        if self.batch is not None:
            return self.batch(images)
        return torch.stack([self.preprocess(im) for im in images])


def _loader(ds: JpegBatches, batch_size: int, workers: int, pin: bool) -> Any:
    sampler = torch.utils.data.BatchSampler(
        torch.utils.data.SequentialSampler(range(len(ds))), batch_size, drop_last=False
    )
    return torch.utils.data.DataLoader(
        ds,
        sampler=sampler,
        batch_size=None,
        num_workers=workers,
        pin_memory=pin,
        persistent_workers=False,
        prefetch_factor=4 if workers else None,
    )


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--n", type=int, default=30000, help="JPEG files to embed")
    ap.add_argument("--side", type=int, default=256, help="JPEG side in pixels")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 2))
    ap.add_argument("--autocast", choices=["none", "fp16", "bf16"], default="fp16")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--warmup", type=int, default=3, help="batches run before timing")
    ap.add_argument("--out-dir", default=str(Path(__file__).parent / "results"))
    ap.add_argument("--data-dir", default=None, help="reuse/keep JPEGs here (default: temp)")
    args = ap.parse_args()

    import open_clip  # from the carried wheel on the GPU machine

    device = torch.device(args.device)
    if device.type == "cpu" and args.autocast == "fp16":
        args.autocast = "none"  # fp16 autocast on CPU is not a speed path
    # Files first: the writer processes fork before CUDA is initialised.
    tmp = None
    if args.data_dir:
        folder = Path(args.data_dir)
        folder.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="gpu_embed_")
        folder = Path(tmp.name)
    files = sorted(folder.glob("*.jpg"))[: args.n]
    gen_s = 0.0
    if len(files) < args.n:
        gen_s = write_jpegs(folder, args.n, args.side, max(1, os.cpu_count() or 1))
        files = sorted(folder.glob("*.jpg"))[: args.n]
    mean_bytes = float(np.mean([f.stat().st_size for f in files[:500]]))

    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = True
    model, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32", pretrained=None)
    visual = model.visual.to(device).eval()
    if args.channels_last:
        visual = visual.to(memory_format=torch.channels_last)
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(args.autocast)

    def encode(x: torch.Tensor) -> torch.Tensor:
        x = x.to(device, non_blocking=True)
        if args.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with (
            torch.inference_mode(),
            torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None),
        ):
            e = visual(x)
            return torch.nn.functional.normalize(e.float(), dim=-1)

    ds = JpegBatches(files, preprocess)
    pin = device.type == "cuda"
    warm_n = min(len(files), args.warmup * args.batch_size)

    # 1. Model ceiling: the same batches resident on the device, no decoding.
    x = ds[list(range(min(args.batch_size, len(files))))]
    for _ in range(max(1, args.warmup)):
        encode(x)
    _sync(device)
    reps = max(3, min(50, args.n // args.batch_size))
    xd = x.to(device)
    t0 = time.perf_counter()
    for _ in range(reps):
        out = encode(xd)
    _sync(device)
    model_ips = reps * len(x) / (time.perf_counter() - t0)

    # 2. Loader ceiling: decode + preprocess in the workers, no model.
    t0 = time.perf_counter()
    seen = 0
    for i, batch in enumerate(_loader(ds, args.batch_size, args.workers, pin)):
        if i == args.warmup:
            t0, seen = time.perf_counter(), 0
        seen += len(batch)
    loader_ips = seen / (time.perf_counter() - t0)

    # 3. End to end: files → embeddings on the host (what a run writes).
    t0 = time.perf_counter()
    seen = 0
    checksum = 0.0
    for i, batch in enumerate(_loader(ds, args.batch_size, args.workers, pin)):
        if i == args.warmup:
            _sync(device)
            t0, seen = time.perf_counter(), 0
        out = encode(batch)
        emb = out.cpu().numpy()
        checksum += float(emb[:, 0].sum())
        seen += len(emb)
    _sync(device)
    wall = time.perf_counter() - t0
    e2e_ips = seen / wall
    assert emb.shape[1] == 512 and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-2)

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name()
    result = {
        "benchmark": "gpu_embed",
        "model": "open_clip ViT-B-32, random weights (create_model_and_transforms, no download)",
        "path": "JPEG file → clipaudit decode_image → model preprocess (batched as curate) → "
        "image tower → L2-normalised embedding on the host",
        "device": str(device),
        "device_name": name,
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "open_clip": getattr(open_clip, "__version__", "?"),
        "batch_preprocess": BatchPreprocess is not None,
        "settings": {
            "n": len(files),
            "timed_images": seen,
            "warmup_images": warm_n,
            "jpeg_side": args.side,
            "jpeg_mean_bytes": round(mean_bytes),
            "batch_size": args.batch_size,
            "workers": args.workers,
            "autocast": args.autocast,
            "channels_last": args.channels_last,
        },
        "jpeg_write_seconds": round(gen_s, 2),
        "images_per_s": round(e2e_ips, 1),
        "loader_only_images_per_s": round(loader_ips, 1),
        "model_only_images_per_s": round(model_ips, 1),
        "bound_by": "decode" if loader_ips < model_ips else "model",
        "reference": {
            "source": "clip-retrieval: 100M images in 20 h on one RTX 3080",
            "images_per_s": round(REFERENCE_IMAGES_PER_S, 1),
        },
        "vs_reference": round(e2e_ips / REFERENCE_IMAGES_PER_S, 3),
        "embedding_checksum": round(checksum, 4),
        "heavy_modules_imported": sorted(
            m for m in ("datasets", "pandas", "pyarrow", "clipaudit.curate") if m in sys.modules
        ),
    }
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"gpu_embed_{device.type}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    if tmp is not None:
        tmp.cleanup()
    print(
        f"gpu_embed {device.type} ({name}): {e2e_ips:,.0f} images/s end to end "
        f"(loader {loader_ips:,.0f}, model {model_ips:,.0f}; {args.autocast}, bs "
        f"{args.batch_size}, {args.workers} workers) = {e2e_ips / REFERENCE_IMAGES_PER_S:.2f}x "
        f"clip-retrieval's ≈1,389/s → {path}"
    )


if __name__ == "__main__":
    main()
