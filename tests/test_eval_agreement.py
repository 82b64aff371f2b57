"""Our zero-shot numbers equal clip-benchmark's on the same model object, images and prompts."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from clip_benchmark.metrics import zeroshot_classification as cb_cls
from clip_benchmark.metrics import zeroshot_retrieval as cb_ret
from PIL import Image

from clipaudit.data import Sample, decode_image, write_dataset
from clipaudit.evaluate import (
    BootstrapSpec,
    build_prompts,
    load_classification,
    load_retrieval,
    load_templates,
    zeroshot_classification,
    zeroshot_retrieval,
)
from clipaudit.evaluate.retrieval import CLIP_BENCHMARK_NAMES
from clipaudit.evaluate.world import world_retrieval_data
from clipaudit.models import load_clip
from clipaudit.world.splits import scenes

TOL = 1e-6
BATCH = 16
NO_BOOT = BootstrapSpec(n=0)


def _cb_accuracy(
    output: torch.Tensor, target: torch.Tensor, topk: tuple[int, ...] = (1,)
) -> list[float]:
    """clip-benchmark 1.6.2's ``accuracy``, line for line, but for ``.item()``: its
    ``float(array_of_shape_1)`` is an error under numpy >= 2.4."""
    pred = output.topk(max(topk), 1, True, True)[1].t()
    correct = pred.eq(target.view(1, -1).expand_as(pred))
    n = len(target)
    return [float(correct[:k].reshape(-1).float().sum(0).item()) / n for k in topk]


@pytest.fixture(autouse=True)
def _numpy2_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cb_cls, "accuracy", _cb_accuracy)


MODELS: dict[str, Any] = {}


def _model(spec: str) -> Any:
    if spec not in MODELS:
        MODELS[spec] = load_clip(spec, device="cpu")
    return MODELS[spec]


@pytest.fixture(params=["random:clipaudit-tiny", "bundled:world-clip"])
def clip(request: pytest.FixtureRequest) -> Any:
    return _model(request.param)


class Images(torch.utils.data.Dataset[tuple[torch.Tensor, Any]]):
    """What clip-benchmark's loaders yield: preprocessed tensors with targets."""

    def __init__(self, files: list[bytes], targets: list[Any], preprocess: Any, classes: Any):
        self.files, self.targets, self.preprocess = files, targets, preprocess
        self.classes = classes

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, Any]:
        im = decode_image(self.files[i]).image
        return self.preprocess(im), self.targets[i]


def _png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def _class_folders(root: Path, key: str, n: int) -> tuple[list[bytes], list[str]]:
    files, labels = [], []
    # Every other scene of the shape × colour × size grid: all shapes and colours appear.
    picked = [next(scenes("eval-objects", 1, seed=3, start=2 * i)) for i in range(n)]
    for i, scene in enumerate(picked):
        label = scene.truth()["objects"][0][key]
        data = _png(scene.render(96))
        (root / label).mkdir(parents=True, exist_ok=True)
        (root / label / f"{i:03d}.png").write_bytes(data)
        files.append(data)
        labels.append(label)
    return files, labels


# Colours with the world's per-class prompts, shapes with open_clip's "simple" template
# list: two datasets and both prompt shapes; the random model is checked on retrieval.
@pytest.mark.parametrize(
    ("spec", "key", "templates"),
    [("bundled:world-clip", "color", "world-colors"), ("bundled:world-clip", "shape", "simple")],
    ids=["colors", "shapes"],
)
def test_classification_matches_clip_benchmark(
    spec: str, tmp_path: Path, key: str, templates: str
) -> None:
    clip = _model(spec)
    _class_folders(tmp_path, key, 48)
    data = load_classification(str(tmp_path))
    prompts = build_prompts(data.classnames, load_templates(templates), templates)
    ours = zeroshot_classification(clip, data, prompts, boot=NO_BOOT, batch_size=BATCH)

    # clip-benchmark reads the same files in the order our reader did.
    files = [(tmp_path / i).read_bytes() for i in data.images.ids]
    cb_templates = load_templates(templates)
    loader = torch.utils.data.DataLoader(
        Images(files, torch.as_tensor(data.labels).tolist(), clip.preprocess, data.classnames),
        batch_size=BATCH,
    )
    theirs = cb_cls.evaluate(
        clip.model, loader, clip.tokenizer, data.classnames, cb_templates, "cpu", amp=False
    )
    assert len(data.classnames) >= 5  # so acc5 exists on both sides
    for name in ("acc1", "acc5", "mean_per_class_recall"):
        assert abs(ours["metrics"][name]["value"] - theirs[name]) <= TOL, name
    assert ours["dataset"]["n"] == 48
    assert sorted(data.classnames) == data.classnames  # torchvision's sorted folder order


def _multi_caption_parquet(root: Path, n: int) -> tuple[list[bytes], list[list[str]]]:
    """Each image stored once per caption (identical bytes): the grouping our reader does."""
    world = world_retrieval_data(n, seed=5, size=96)
    samples, files, texts = [], [], []
    for i, scene in enumerate(scenes("eval-retrieval", n, seed=5)):
        caps = [c for c, j in zip(world.captions, world.caption_image, strict=True) if j == i]
        if not caps:
            continue
        data = _png(scene.render(96))
        files.append(data)
        texts.append(caps)
        samples += [Sample(f"s{i}-{k}", data, c) for k, c in enumerate(caps)]
    write_dataset(samples, root, "parquet")
    return files, texts


def _collate(batch: list[tuple[torch.Tensor, list[str]]]) -> tuple[torch.Tensor, list[list[str]]]:
    return torch.stack([b[0] for b in batch]), [b[1] for b in batch]


def test_retrieval_matches_clip_benchmark(clip: Any, tmp_path: Path) -> None:
    files, texts = _multi_caption_parquet(tmp_path / "ds", 30)
    data = load_retrieval(str(tmp_path / "ds"))
    assert len(data.images.ids) == len(files)
    assert len(data.captions) == sum(map(len, texts)) > len(files)  # several captions an image
    ours = zeroshot_retrieval(clip, data, boot=NO_BOOT, batch_size=BATCH)

    loader = torch.utils.data.DataLoader(
        Images(files, texts, clip.preprocess, None), batch_size=BATCH, collate_fn=_collate
    )
    theirs = cb_ret.evaluate(
        clip.model, loader, clip.tokenizer, "cpu", amp=False, recall_k_list=[1, 5, 10]
    )
    for name, cb_name in CLIP_BENCHMARK_NAMES.items():
        assert abs(ours["metrics"][name]["value"] - theirs[cb_name]) <= TOL, name
    # Not all trivially 1: the check compares real numbers.
    values = [ours["metrics"][k]["value"] for k in CLIP_BENCHMARK_NAMES]
    assert min(values) < 1.0
    assert np.all(
        np.diff([ours["metrics"][f"text_to_image_recall@{k}"]["value"] for k in (1, 5, 10)]) >= 0
    )


def _cb_scores(clip: Any, files: list[bytes], texts: list[list[str]]) -> tuple[Any, Any]:
    """clip-benchmark's score and positive-pair matrices, built as its ``evaluate`` does."""
    loader = torch.utils.data.DataLoader(
        Images(files, texts, clip.preprocess, None), batch_size=BATCH, collate_fn=_collate
    )
    imgs, txts, index = [], [], []
    with torch.no_grad():
        for i, (batch, caps) in enumerate(loader):
            imgs.append(torch.nn.functional.normalize(clip.model.encode_image(batch), dim=-1))
            flat = [t for c in caps for t in c]
            txts.append(
                torch.nn.functional.normalize(clip.model.encode_text(clip.tokenizer(flat)), dim=-1)
            )
            index += [i * BATCH + j for j, c in enumerate(caps) for _ in c]
    scores = torch.cat(txts) @ torch.cat(imgs).t()
    positive = torch.zeros_like(scores, dtype=torch.bool)
    positive[torch.arange(len(scores)), index] = True
    return scores, positive


@pytest.mark.parametrize("n_images", [3, 7])
def test_small_retrieval_reports_only_defined_recalls_and_matches_clip_benchmark(
    clip: Any, tmp_path: Path, n_images: int
) -> None:
    """Fewer images than 5 or 10, two captions each: recall@k is reported for k below the
    number of candidates only (k ≥ it is 1 by construction; clip-benchmark's topk fails
    above it), each equal to clip-benchmark's; the old code crashed on 3 images × 2
    captions and reported text→image recall@10 = 1 on 7."""
    world = world_retrieval_data(2 * n_images, seed=5, size=96)
    picked = [i for i in range(2 * n_images) if np.sum(world.caption_image == i) >= 2]
    picked = picked[:n_images]
    samples, files, texts = [], [], []
    for i, scene in enumerate(scenes("eval-retrieval", 2 * n_images, seed=5)):
        if i not in picked:
            continue
        caps = [c for c, j in zip(world.captions, world.caption_image, strict=True) if j == i][:2]
        data = _png(scene.render(96))
        files.append(data)
        texts.append(caps)
        samples += [Sample(f"s{i}-{k}", data, c) for k, c in enumerate(caps)]
    assert len(files) == n_images
    write_dataset(samples, tmp_path / "ds", "parquet")
    ours = zeroshot_retrieval(
        clip, load_retrieval(str(tmp_path / "ds")), boot=BootstrapSpec(n=20), batch_size=BATCH
    )
    n_caps = 2 * n_images
    want = [f"text_to_image_recall@{k}" for k in (1, 5, 10) if k < n_images] + [
        f"image_to_text_recall@{k}" for k in (1, 5, 10) if k < n_caps
    ]
    assert list(ours["metrics"]) == want
    assert list(ours["clip_benchmark_names"]) == want
    left_out = [k for k in (1, 5, 10) if k >= n_images]
    note = next(n for n in ours["notes"] if n.startswith("text→image"))
    assert f"there are {n_images} images" in note and all(f"@{k}" in note for k in left_out)
    assert any(n.startswith("image→text recall@10") for n in ours["notes"]) == (n_caps <= 10)
    # Per-sample rows: each direction's top list holds min(5, its candidates) entries.
    rows = ours["per_sample"]
    widths = {d: len(t) for d, t in zip(rows["direction"], rows["top5"], strict=True)}
    assert widths == {"text_to_image": min(5, n_images), "image_to_text": min(5, n_caps)}

    scores, positive = _cb_scores(clip, files, texts)
    for name, cb_name in CLIP_BENCHMARK_NAMES.items():
        if name not in ours["metrics"]:
            continue
        k = int(name.rsplit("@", 1)[1])
        s, p = (scores, positive) if name.startswith("text_to_image") else (scores.T, positive.T)
        theirs = (cb_ret.batchify(cb_ret.recall_at_k, s, p, BATCH, "cpu", k=k) > 0).float()
        assert abs(ours["metrics"][name]["value"] - theirs.mean().item()) <= TOL, cb_name
    # Where both directions are defined, clip-benchmark's own evaluate() agrees too.
    loader = torch.utils.data.DataLoader(
        Images(files, texts, clip.preprocess, None), batch_size=BATCH, collate_fn=_collate
    )
    both = [k for k in (1, 5, 10) if k < n_images]
    full = cb_ret.evaluate(clip.model, loader, clip.tokenizer, "cpu", amp=False, recall_k_list=both)
    for k in both:
        for d in ("text_to_image", "image_to_text"):
            name = f"{d}_recall@{k}"
            assert abs(ours["metrics"][name]["value"] - full[CLIP_BENCHMARK_NAMES[name]]) <= TOL
