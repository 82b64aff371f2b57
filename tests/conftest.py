"""Shared fixtures: a zoo of real image encodings made with Pillow, sample sets, and world
pools curated into runs."""

from __future__ import annotations

import dataclasses
import io
import json
import os
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from PIL import Image

from clipaudit.data import Sample

if TYPE_CHECKING:
    from clipaudit.curate.pipeline import CurateConfig

# Tests never touch the network: the loader must refuse at once instead of probing.
os.environ.setdefault("CLIPAUDIT_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _no_proxy_from_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests' servers listen on the loopback interface, and the opt-out fetcher and the
    judge use the proxy the environment names: one set on the machine running the tests must
    not come between them (the proxy tests set their own)."""
    for var in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
        monkeypatch.delenv(var.upper(), raising=False)


def photo_like(w: int = 120, h: int = 80, seed: int = 0) -> np.ndarray:
    """Smooth gradients plus noise: compresses like a photograph, not like flat colour."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    r = xx * 255 / max(w - 1, 1)
    g = yy * 255 / max(h - 1, 1)
    b = 128 + 100 * np.sin(xx / 7.0) * np.cos(yy / 5.0)
    arr = np.stack([r, g, b], -1) + rng.normal(0, 12, (h, w, 3))
    return arr.clip(0, 255).astype(np.uint8)


def _save(im: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def image_zoo() -> dict[str, tuple[bytes, str]]:
    """name → (encoded bytes, extension) for the kinds of file web data holds."""
    rgb = Image.fromarray(photo_like())
    rgba = rgb.copy()
    alpha = Image.new("L", rgb.size, 255)
    alpha.paste(0, (0, 0, 40, 40))  # a fully transparent corner
    rgba.putalpha(alpha)
    pal = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    pal.info["transparency"] = 0
    arr16 = (np.asarray(rgb.convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
    im16 = Image.fromarray(arr16)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    zoo = {
        "jpeg": (_save(rgb, "JPEG", quality=90), "jpg"),
        "progressive": (_save(rgb, "JPEG", quality=85, progressive=True), "jpg"),
        "cmyk": (_save(rgb.convert("CMYK"), "JPEG"), "jpg"),
        "png_alpha": (_save(rgba, "PNG"), "png"),
        "palette": (_save(pal, "PNG", transparency=0), "png"),
        "png16": (_save(im16, "PNG"), "png"),
        "gray": (_save(rgb.convert("L"), "PNG"), "png"),
        "webp": (_save(rgb, "WEBP", quality=80), "webp"),
        "exif_rotated": (_save(rgb, "JPEG", exif=exif.tobytes()), "jpg"),
    }
    good = zoo["jpeg"][0]
    zoo["truncated"] = (good[: len(good) // 2], "jpg")
    zoo["corrupt"] = (good[:200] + bytes(range(256)) * 8, "jpg")
    return zoo


@pytest.fixture(scope="session")
def zoo() -> dict[str, tuple[bytes, str]]:
    return image_zoo()


@pytest.fixture()
def zoo_samples(zoo: dict[str, tuple[bytes, str]]) -> list[Sample]:
    out = []
    for i, (name, (data, ext)) in enumerate(sorted(zoo.items())):
        out.append(
            Sample(
                id=f"s{i:03d}_{name}",
                image=data,
                caption=f"caption for {name} – ünïcode ✓",
                url=f"https://example.org/{name}.{ext}",
                meta={
                    "kind": name,
                    "headers": {"x-robots-tag": "noai"} if i % 2 else {},
                    "width": 120,
                    "n": i,
                },
                image_ext=ext,
            )
        )
    # A sample without a caption and one without a url must survive every format too.
    out[0].caption = None
    out[1].url = None
    return out


# ---- world pools and their runs ---------------------------------------------------------

# The keywords of world_run that are write_world's; the rest are CurateConfig's.
WORLD_SETTINGS = frozenset({"split", "seed", "size", "shard_size", "format"})


@dataclasses.dataclass(frozen=True)
class WorldRun:
    """A world written under ``root / "w"`` (its rules pack, if any, at ``pack``) and, once
    curated, its run at ``root / "run"`` with curate's ``stats`` (empty before a run)."""

    root: Path
    pack: Path | None = None
    stats: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def world(self) -> Path:
        return self.root / "w"

    @property
    def data(self) -> Path:
        return self.world / "data"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @cached_property
    def labels(self) -> list[dict[str, Any]]:
        """The world's answer key, labels.jsonl, one dict a sample in the world's order."""
        text = (self.world / "labels.jsonl").read_text(encoding="utf-8")
        return [json.loads(line) for line in text.splitlines()]

    def labels_by_id(self) -> dict[str, dict[str, Any]]:
        return {x["id"]: x for x in self.labels}

    def config(self, out: str = "run", **config: Any) -> CurateConfig:
        """A CurateConfig over the world's data into ``root / out``; the pack is the rules
        unless ``config`` names others."""
        from clipaudit.curate.pipeline import CurateConfig  # torch: only for tests that curate

        if self.pack is not None:
            config.setdefault("rules", str(self.pack))
        return CurateConfig(dataset=str(self.data), out=str(self.root / out), **config)

    def curate(self, **config: Any) -> WorldRun:
        """Curate the world into ``run``: this WorldRun with the run's stats."""
        from clipaudit.curate.pipeline import curate

        return dataclasses.replace(self, stats=curate(self.config("run", **config)))


def write_pool(
    root: Path,
    *,
    n: int,
    rates: dict[str, float] | None = None,
    pack_yaml: str | None = None,
    **world: Any,
) -> WorldRun:
    """Write ``n`` world samples (webdataset unless ``format`` says otherwise; ``world``: the
    other write_world settings) and, given its text, a rules pack beside them."""
    from clipaudit.world import write_world

    world.setdefault("format", "webdataset")
    write_world(root / "w", n=n, rates=rates, **world)
    pack = None
    if pack_yaml is not None:
        pack = root / "pack.yaml"
        pack.write_text(pack_yaml, encoding="utf-8")
    return WorldRun(root, pack)


def world_run(
    root: Path,
    *,
    n: int,
    rates: dict[str, float] | None = None,
    pack_yaml: str | None = None,
    **settings: Any,
) -> WorldRun:
    """write_pool, then curate it into ``root / "run"``. ``settings``: write_world's split,
    seed, size, shard_size and format; everything else goes to CurateConfig."""
    world = {k: v for k, v in settings.items() if k in WORLD_SETTINGS}
    config = {k: v for k, v in settings.items() if k not in WORLD_SETTINGS}
    return write_pool(root, n=n, rates=rates, pack_yaml=pack_yaml, **world).curate(**config)


WorldRuns = Callable[..., WorldRun]


@pytest.fixture(scope="session")
def world_runs(tmp_path_factory: pytest.TempPathFactory) -> WorldRuns:
    """``world_runs(name, **world_run settings)``: a world_run in a new folder named ``name``
    (for module-scoped fixtures that build one run and share it)."""

    def make(name: str, **settings: Any) -> WorldRun:
        return world_run(tmp_path_factory.mktemp(name), **settings)

    return make


_CLI_BATCH = """
import contextlib, io, json, sys, traceback
from clipaudit.cli import main
out = []
for args in json.loads(sys.argv[1]):
    so, se = io.StringIO(), io.StringIO()
    sys.argv = ["clipaudit", *args]
    code = 0
    with contextlib.redirect_stdout(so), contextlib.redirect_stderr(se):
        try:
            main()
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except BaseException:
            traceback.print_exc()
            code = 1
    out.append([code, so.getvalue(), se.getvalue()])
sys.__stdout__.write(json.dumps(out))
"""


def cli_batch(commands: list[tuple[str, ...]]) -> list[tuple[int, str, str]]:
    """Run clipaudit commands through the real entry point (``main()``: its exit codes and
    one-line errors), all in one fresh interpreter, which saves an interpreter start and the
    library imports per command: (exit code, stdout, stderr) for each."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _CLI_BATCH, json.dumps([list(c) for c in commands])],
        capture_output=True,
        text=True,
        check=True,
    )
    return [(int(c), o, e) for c, o, e in json.loads(done.stdout)]
