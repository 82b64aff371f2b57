"""``load_clip(spec)``: the only place in clipaudit that builds a model.

Spec forms (each a prefix in :data:`SPEC_KINDS`):

* ``bundled:NAME`` — weights shipped inside this package;
* ``random:ARCH`` — a seeded random initialisation of an open_clip or clipaudit config
  (for speed tests and for tests that need no trained weights);
* ``local-dir:DIR`` — a folder with ``open_clip_config.json`` and weights (the layout open_clip
  and the Hugging Face hub use);
* ``hf-hub:ORG/REPO`` — the same layout on the hub (cached copies are used offline);
* ``ARCH:TAG`` or ``ARCH:/path/to/checkpoint`` — an open_clip architecture with a pretrained
  tag or a local checkpoint file.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import re
import socket
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from PIL import Image

from clipaudit.errors import ModelError
from clipaudit.models.batch_preprocess import BatchPreprocess
from clipaudit.models.provenance import ModelProvenance, sha256_file

CONFIG_DIR = Path(__file__).parent / "configs"
BUNDLED_DIR = Path(__file__).parent / "bundled"
HUB_HOST = ("huggingface.co", 443)
SPEC_FORMS = (
    "'bundled:NAME', 'random:ARCH', 'local-dir:/path/to/folder', 'hf-hub:org/repo', "
    "'ARCH:TAG' or 'ARCH:/path/to/checkpoint.pt'"
)


def bundled_names() -> list[str]:
    if not BUNDLED_DIR.is_dir():
        return []
    return sorted(p.name for p in BUNDLED_DIR.iterdir() if (p / "open_clip_config.json").is_file())


def offline_message(spec: str) -> str:
    bundled = ", ".join(f"'bundled:{n}'" for n in bundled_names()) or "'random:clipaudit-tiny'"
    return (
        f"Cannot load model {spec!r}: its weights are not on this machine and cannot be "
        f"downloaded without a network; pass a local checkpoint ('ARCH:/path/to/weights.pt'), "
        f"'local-dir:/path/to/folder', or a model that ships with clipaudit ({bundled})."
    )


# Resize-shortest-side-then-centre-crop keeps only the central square, yet on a 1×100000
# strip the resize alone builds a 64×6,400,000 image (2.8 GB and 25 s at 64 px; at 224 px
# tens of GB, an out-of-memory kill). Beyond this aspect ratio the long side is first
# cut to this many short sides around the centre, which the crop would discard anyway.
MAX_ASPECT = 16


class BoundedAspect:
    """``inner`` (a shortest-side preprocess) behind a centre cut of absurd aspect ratios.

    Images up to :data:`MAX_ASPECT`:1 pass untouched; a longer one gives the same pixels up
    to resampling at the cut and a sub-pixel shift of the crop, at bounded memory.
    """

    def __init__(self, inner: Callable[[Image.Image], torch.Tensor], max_aspect: int) -> None:
        self.inner = inner
        self.max_aspect = max_aspect
        self.transforms = getattr(inner, "transforms", [])

    def cut(self, im: Image.Image) -> Image.Image:
        """The centre cut alone (batch preprocessing runs it before the PIL steps)."""
        w, h = im.size
        short, long = min(w, h), max(w, h)
        if short > 0 and long > self.max_aspect * short:
            keep = self.max_aspect * short
            off = (long - keep) // 2
            im = im.crop((off, 0, off + keep, h) if w > h else (0, off, w, off + keep))
        return im

    def __call__(self, im: Image.Image) -> torch.Tensor:
        return self.inner(self.cut(im))

    def __repr__(self) -> str:
        return f"BoundedAspect(max_aspect={self.max_aspect}, {self.inner!r})"


@dataclass
class LoadedClip:
    """A model ready to embed, with what it takes to reproduce its numbers."""

    model: Any
    preprocess: Callable[[Image.Image], torch.Tensor]
    tokenizer: Callable[..., torch.Tensor]
    provenance: ModelProvenance
    device: torch.device
    _batch_preprocess: BatchPreprocess | None = field(default=None, init=False, repr=False)
    _fast_visual: Any = field(default=None, init=False, repr=False)

    def __iter__(self) -> Iterator[Any]:
        # Allows ``model, preprocess, tokenizer, provenance = load_clip(spec)``.
        return iter((self.model, self.preprocess, self.tokenizer, self.provenance))

    @torch.inference_mode()
    def encode_images(self, images: Sequence[Image.Image], batch_size: int = 64) -> np.ndarray:
        """L2-normalised float32 embeddings, one row per image."""
        out = [np.zeros((0, self.provenance.embed_dim), np.float32)]
        for i in range(0, len(images), batch_size):
            out.append(self._encode_pixels(self.preprocess_batch(images[i : i + batch_size])))
        return np.concatenate(out)

    def preprocess_batch(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """``preprocess`` of each image stacked into one (N, C, H, W) tensor, equal bit for bit
        to ``torch.stack([preprocess(im) for im in images])`` at less per-image overhead."""
        if self._batch_preprocess is None or self._batch_preprocess.preprocess is not (
            self.preprocess
        ):
            self._batch_preprocess = BatchPreprocess(self.preprocess)
        return self._batch_preprocess(images)

    @torch.inference_mode()
    def encode_pixels(self, pixels: torch.Tensor) -> np.ndarray:
        """Embed an already preprocessed batch (N, C, H, W)."""
        return self._encode_pixels(pixels)

    def _encode_pixels(self, pixels: torch.Tensor) -> np.ndarray:
        visual = self._channels_last_visual()
        if visual is None:
            feats = self.model.encode_image(pixels.to(self.device), normalize=True)
        else:
            x = pixels.to(self.device).contiguous(memory_format=torch.channels_last)
            feats = torch.nn.functional.normalize(visual(x), dim=-1)
        return feats.float().cpu().numpy().astype(np.float32, copy=False)

    def _channels_last_visual(self) -> Any:
        """A channels-last copy of a convolutional image tower on CPU, used in place of the
        model's own: oneDNN runs its convolutions ~30% faster in that layout (the bundled
        ResNet: 4.0 -> 2.9 ms an image on one thread). Embeddings move by about 1e-6, the
        same for every batch; a transformer tower (one conv) or another device is left as
        it is, and so is ``self.model`` for callers that use it directly."""
        if self._fast_visual is None:
            self._fast_visual = False
            visual = getattr(self.model, "visual", None)
            if (
                isinstance(visual, torch.nn.Module)
                and self.device.type == "cpu"
                and sum(isinstance(m, torch.nn.Conv2d) for m in visual.modules()) > 1
                and type(self.model).encode_image is open_clip_encode_image()
            ):
                self._fast_visual = copy.deepcopy(visual).to(memory_format=torch.channels_last)
        return self._fast_visual or None

    @torch.inference_mode()
    def encode_texts(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """L2-normalised float32 embeddings, one row per text."""
        out = [np.zeros((0, self.provenance.embed_dim), np.float32)]
        for i in range(0, len(texts), batch_size):
            tokens = self.tokenizer(list(texts[i : i + batch_size])).to(self.device)
            feats = self.model.encode_text(tokens, normalize=True)
            out.append(feats.float().cpu().numpy().astype(np.float32, copy=False))
        return np.concatenate(out)


Resolver = Callable[[str, str], "Resolved"]
R = TypeVar("R", bound=Resolver)
SPEC_KINDS: dict[str, Resolver] = {}


def spec_kind(prefix: str) -> Callable[[R], R]:
    def deco(fn: R) -> R:
        SPEC_KINDS[prefix] = fn
        return fn

    return deco


@dataclass
class Resolved:
    """What open_clip needs to build the model, decided before anything heavy runs."""

    model_name: str
    pretrained: str | None
    source: str
    weights: Path | None
    seed: int | None = None


def _network_available(timeout: float = 3.0) -> bool:
    if os.environ.get("CLIPAUDIT_OFFLINE") or os.environ.get("HF_HUB_OFFLINE") not in (None, "0"):
        return False
    try:
        with socket.create_connection(HUB_HOST, timeout=timeout):
            return True
    except OSError:
        return False


@spec_kind("bundled")
def _bundled(spec: str, rest: str) -> Resolved:
    folder = BUNDLED_DIR / rest
    if not (folder / "open_clip_config.json").is_file():
        names = ", ".join(bundled_names()) or "none yet"
        raise ModelError(f"No bundled model {rest!r}; the bundled models are: {names}.")
    weights = next(iter(sorted(folder.glob("*.safetensors"))), None)
    return Resolved(f"local-dir:{folder}", None, "bundled", weights)


@spec_kind("random")
def _random(spec: str, rest: str) -> Resolved:
    import open_clip

    name = rest
    if (CONFIG_DIR / f"{rest}.json").is_file():
        open_clip.add_model_config(CONFIG_DIR / f"{rest}.json")
    if name not in open_clip.list_models():
        ours = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.json")))
        raise ModelError(
            f"Unknown architecture {rest!r} in {spec!r}; use an open_clip name such as "
            f"'ViT-B-32' or one of clipaudit's: {ours}."
        )
    return Resolved(name, None, "random", None, seed=0)


@spec_kind("local-dir")
def _local_dir(spec: str, rest: str) -> Resolved:
    folder = Path(rest).expanduser()
    if not (folder / "open_clip_config.json").is_file():
        raise ModelError(
            f"The folder {rest!r} has no open_clip_config.json; point local-dir: at a folder "
            "holding open_clip_config.json and its weights."
        )
    weights = next(
        (
            p
            for pat in ("*.safetensors", "*.bin", "*.pth", "*.pt")
            for p in sorted(folder.glob(pat))
        ),
        None,
    )
    if weights is None:
        raise ModelError(f"The folder {rest!r} holds a config but no weights file.")
    return Resolved(f"local-dir:{folder}", None, "local-dir", weights)


@spec_kind("hf-hub")
def _hf_hub(spec: str, rest: str) -> Resolved:
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(rest, "open_clip_config.json")
    if not isinstance(cached, str) and not _network_available():
        raise ModelError(offline_message(spec))
    return Resolved(f"hf-hub:{rest}", None, "hf-hub", None)


def _arch_tag(spec: str, arch: str, tag: str) -> Resolved:
    import open_clip
    from open_clip.pretrained import get_pretrained_cfg, list_pretrained_tags_by_model

    if arch not in open_clip.list_models():
        raise ModelError(
            f"Unknown model spec {spec!r}: {arch!r} is not an open_clip architecture; "
            f"use one of the forms {SPEC_FORMS}."
        )
    if Path(tag).expanduser().is_file():
        return Resolved(arch, str(Path(tag).expanduser()), "checkpoint", Path(tag).expanduser())
    cfg = get_pretrained_cfg(arch, tag)
    if not cfg:
        tags = ", ".join(list_pretrained_tags_by_model(arch)) or "none"
        raise ModelError(
            f"{tag!r} is neither a pretrained tag of {arch!r} nor a checkpoint file; "
            f"its tags are: {tags}."
        )
    if not _tag_cached(cfg) and not _network_available():
        raise ModelError(offline_message(spec))
    return Resolved(arch, tag, "pretrained-tag", None)


def _tag_cached(cfg: dict[str, Any]) -> bool:
    from huggingface_hub import try_to_load_from_cache

    hub = cfg.get("hf_hub", "")
    if hub:
        repo_id = "/".join(hub.strip("/").split("/")[:2])
        for name in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"):
            if isinstance(try_to_load_from_cache(repo_id, name), str):
                return True
    url = cfg.get("url", "")
    if url:
        cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "clip"
        return (cache / os.path.basename(url)).is_file()
    return False


def resolve_spec(spec: str) -> Resolved:
    """Map a spec string to a build recipe, or raise one clear ModelError."""
    if not isinstance(spec, str) or not spec.strip():
        raise ModelError(f"Empty model spec; use one of the forms {SPEC_FORMS}.")
    prefix, sep, rest = spec.partition(":")
    if sep and prefix in SPEC_KINDS:
        if not rest:
            raise ModelError(
                f"The model spec {spec!r} names no model after {prefix + ':'!r}; use one of "
                f"the forms {SPEC_FORMS}."
            )
        return SPEC_KINDS[prefix](spec, rest)
    if sep and rest:
        return _arch_tag(spec, prefix, rest)
    raise ModelError(f"Unknown model spec {spec!r}; use one of the forms {SPEC_FORMS}.")


def _state_sha256(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def pick_device(device: str | None) -> torch.device:
    """The device to use: ``device`` checked (one ModelError naming it), else cuda or cpu."""
    if not device:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise ModelError(
            f"Unknown device {device!r}; pass cpu, cuda or cuda:N, or leave --device out to "
            "use a GPU when there is one."
        ) from None
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise ModelError(
                f"The device {device!r} is not available: this machine has no usable CUDA "
                "GPU; pass --device cpu or leave --device out."
            )
        if dev.index is not None and dev.index >= n:
            raise ModelError(
                f"The device {device!r} does not exist: this machine has {n} CUDA GPU"
                + (f"s (cuda:0 to cuda:{n - 1})" if n > 1 else " (cuda:0)")
                + "; pass one of those."
            )
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise ModelError(
            f"The device {device!r} is not available on this machine; pass --device cpu or "
            "leave --device out."
        )
    return dev


def open_clip_encode_image() -> Any:
    """open_clip's own ``CLIP.encode_image`` (visual tower, then L2 norm): only a model
    that encodes images exactly so may have its tower swapped for a faster copy."""
    from open_clip.model import CLIP

    return CLIP.encode_image


def load_clip(spec: str, device: str | None = None) -> LoadedClip:
    """Build the model named by ``spec``; see the module docstring for the forms."""
    import open_clip
    from open_clip.model import get_model_preprocess_cfg

    resolved = resolve_spec(spec)
    dev = pick_device(device)
    precision = "fp32"
    # open_clip logs a warning for every random init; a random: spec asks for exactly that.
    quiet = resolved.seed is not None
    if quiet:
        logging.disable(logging.WARNING)
    try:
        # A seeded init must not reseed the caller's global RNG, hence the fork.
        with torch.random.fork_rng(devices=[]):
            if resolved.seed is not None:
                torch.manual_seed(resolved.seed)
            model, _, preprocess = open_clip.create_model_and_transforms(
                resolved.model_name,
                pretrained=resolved.pretrained,
                device=dev,
                precision=precision,
            )
    except (OSError, RuntimeError, ValueError) as exc:
        if "download" in str(exc).lower() or "connect" in str(exc).lower():
            raise ModelError(offline_message(spec)) from exc
        text = str(exc)
        if "state_dict" in text and ("Missing key" in text or "Unexpected key" in text):
            # torch lists every mismatched key (17 KB for a ViT checkpoint given as RN50).
            missing = re.findall(r'"([^"]+)"', text.partition("Unexpected key")[0])
            unexpected = re.findall(r'"([^"]+)"', text.partition("Unexpected key")[2])
            raise ModelError(
                f"The weights in {spec!r} do not fit the architecture {spec.partition(':')[0]!r}: "
                f"{len(missing)} of its keys are missing (e.g. {missing[:1]}) and "
                f"{len(unexpected)} are unexpected (e.g. {unexpected[:1]}); name the "
                "architecture the checkpoint was trained with."
            ) from exc
        raise ModelError(f"Could not build model {spec!r}: {text[:500]}") from exc
    finally:
        if quiet:
            logging.disable(logging.NOTSET)
    model.eval()
    tokenizer = open_clip.get_tokenizer(resolved.model_name)
    pcfg = get_model_preprocess_cfg(model)
    size = pcfg.get("size", 224)
    size_list = [int(s) for s in size] if isinstance(size, (list, tuple)) else [int(size)] * 2
    cfg = _model_cfg(resolved.model_name)
    weights_sha = sha256_file(resolved.weights) if resolved.weights else _state_sha256(model)
    prov = ModelProvenance(
        spec=spec,
        source=resolved.source,
        arch=resolved.model_name
        if not resolved.model_name.startswith("local-dir:")
        else str(cfg.get("_name", Path(resolved.model_name[10:]).name)),
        pretrained=resolved.pretrained,
        weights_sha256=weights_sha,
        embed_dim=int(cfg.get("embed_dim") or _probe_dim(model, tokenizer, dev)),
        image_size=size_list,
        mean=[float(x) for x in pcfg.get("mean", ())],
        std=[float(x) for x in pcfg.get("std", ())],
        interpolation=str(pcfg.get("interpolation", "bicubic")),
        resize_mode=str(pcfg.get("resize_mode", "shortest")),
        quick_gelu=bool(cfg.get("quick_gelu", False)),
        logit_scale=float(model.logit_scale.exp().item()),
        context_length=int(getattr(model, "context_length", 77)),
        device=str(dev),
        precision=precision,
        preprocess=" | ".join(
            str(t).replace("\n", " ") for t in getattr(preprocess, "transforms", [])
        ),
    )
    if prov.resize_mode == "shortest":
        preprocess = BoundedAspect(preprocess, MAX_ASPECT)
        prov.preprocess = f"centre cut to {MAX_ASPECT}:1 at most | {prov.preprocess}"
    return LoadedClip(model, preprocess, tokenizer, prov, dev)


def _probe_dim(model: Any, tokenizer: Callable[..., torch.Tensor], dev: torch.device) -> int:
    with torch.inference_mode():
        return int(model.encode_text(tokenizer([""]).to(dev)).shape[-1])


def _model_cfg(model_name: str) -> dict[str, Any]:
    import open_clip

    if model_name.startswith("local-dir:"):
        cfg = json.loads((Path(model_name[10:]) / "open_clip_config.json").read_text())
        return dict(cfg.get("model_cfg", cfg))
    if model_name.startswith("hf-hub:"):
        return {}
    return dict(open_clip.get_model_config(model_name) or {})
