"""Built-in benchmarks on the synthetic world's held-out splits, runnable by name.

Defaults match :func:`clipaudit.world.measure.world_card_metrics` (seed 1, 256 px, 960
object scenes, 2000 people, 1000 retrieval scenes), so ``world-colors`` acc1 is the card's
``color_acc1`` and so on; these add acc5 where defined, mean per-class recall, intervals
and per-sample rows. ``world-retrieval`` supersedes the card's matched-vs-mismatched check
with CLIP-style recall@k over several captions per image.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from clipaudit.errors import ClipauditError
from clipaudit.evaluate.bootstrap import BootstrapSpec
from clipaudit.evaluate.prompts import TEMPLATE_SETS, Prompts, build_prompts
from clipaudit.world.captions import objects_caption, person_caption
from clipaudit.world.splits import scenes

if TYPE_CHECKING:
    from clipaudit.evaluate.classdata import ClassificationData
    from clipaudit.evaluate.heads import HeadCache
    from clipaudit.evaluate.images import Embedded, ImageSet
    from clipaudit.evaluate.retrievaldata import RetrievalData
    from clipaudit.models.loader import LoadedClip

# The modules that embed (and import torch) load inside the functions that run a benchmark:
# the CLI registers these benchmarks by name in every command, decide included, which
# promises to start without torch.

DEFAULT_SEED = 1
DEFAULT_SIZE = 256
CAPTIONS_PER_IMAGE = 3


def world_images(split: str, n: int, seed: int, size: int) -> ImageSet:
    """Scenes are rebuilt from (seed, split, i) on every read, so nothing is kept in memory."""
    from clipaudit.evaluate.images import ImageSet

    def read() -> Iterator[tuple[Image.Image | None, str | None]]:
        for scene in scenes(split, n, seed=seed):
            yield scene.render(size), None

    return ImageSet([f"{split}:{seed}:{i}" for i in range(n)], read)


def _classification(
    split: str, label: Callable[[dict[str, Any]], str], prompt_set: str
) -> Callable[[int, int, int], tuple[ClassificationData, Prompts]]:
    def build(n: int, seed: int, size: int) -> tuple[ClassificationData, Prompts]:
        from clipaudit.evaluate.classdata import ClassificationData

        per_class = TEMPLATE_SETS[prompt_set]()
        assert isinstance(per_class, dict)
        names = list(per_class)
        truth = [label(s.truth()) for s in scenes(split, n, seed=seed)]
        labels = np.array([names.index(t) for t in truth], np.int64)
        info = {"source": f"world split {split!r}", "format": "world", "seed": seed, "size": size}
        data = ClassificationData(
            f"world:{split}", world_images(split, n, seed, size), labels, names, info
        )
        return data, build_prompts(names, per_class, prompt_set)

    return build


def world_retrieval_data(n: int, seed: int, size: int) -> RetrievalData:
    """Each scene's caption plus two more from the world's grammar (own seeded stream);
    a caption text that several images share is dropped, so every caption names one image."""
    from clipaudit.evaluate.retrievaldata import RetrievalData

    texts: list[list[str]] = []
    for i, scene in enumerate(scenes("eval-retrieval", n, seed=seed)):
        own = [scene.caption]
        for k in range(1, CAPTIONS_PER_IMAGE):
            rng = random.Random(f"clipaudit-eval:{seed}:eval-retrieval:{i}:{k}")
            if scene.person is not None:
                own.append(person_caption(scene.person, rng))
            else:
                own.append(objects_caption(scene.objects, rng))
        texts.append(list(dict.fromkeys(own)))
    owners: dict[str, int] = {}
    for own in texts:
        for t in own:
            owners[t] = owners.get(t, 0) + 1
    images = world_images("eval-retrieval", n, seed, size)
    captions, ids, image_of = [], [], []
    for i, own in enumerate(texts):
        for k, t in enumerate(own):
            if owners[t] == 1:
                captions.append(t)
                ids.append(f"{images.ids[i]}#{k}")
                image_of.append(i)
    info = {
        "source": "world split 'eval-retrieval'",
        "format": "world",
        "seed": seed,
        "size": size,
        "grouping": f"up to {CAPTIONS_PER_IMAGE} distinct captions per scene; shared texts dropped",
        "shared_caption_texts_dropped": sum(1 for c in owners.values() if c > 1),
    }
    return RetrievalData(
        "world:eval-retrieval", images, captions, ids, np.asarray(image_of, np.int64), info
    )


@dataclass(frozen=True)
class WorldBenchmark:
    name: str
    task: str
    split: str
    default_n: int
    build: Callable[[int, int, int], tuple[Any, Prompts | None]]
    description: str


WORLD_BENCHMARKS: dict[str, WorldBenchmark] = {}


def world_benchmark(
    name: str, task: str, split: str, default_n: int, description: str
) -> Callable[[Callable[[int, int, int], tuple[Any, Prompts | None]]], Any]:
    def deco(fn: Callable[[int, int, int], tuple[Any, Prompts | None]]) -> Any:
        WORLD_BENCHMARKS[name] = WorldBenchmark(name, task, split, default_n, fn, description)
        return fn

    return deco


world_benchmark(
    "world-colors",
    "zeroshot_classification",
    "eval-objects",
    960,
    "colour of the one object in each eval-objects scene (8 classes)",
)(_classification("eval-objects", lambda t: t["objects"][0]["color"], "world-colors"))
world_benchmark(
    "world-shapes",
    "zeroshot_classification",
    "eval-objects",
    960,
    "shape of the one object in each eval-objects scene (6 classes)",
)(_classification("eval-objects", lambda t: t["objects"][0]["shape"], "world-shapes"))
world_benchmark(
    "world-occupations",
    "zeroshot_classification",
    "eval-people",
    2000,
    "occupation of the person in each eval-people scene (5 classes, groups balanced)",
)(_classification("eval-people", lambda t: t["occupation"], "world-occupations"))


@world_benchmark(
    "world-retrieval",
    "zeroshot_retrieval",
    "eval-retrieval",
    1000,
    "text↔image recall@1/5/10 on eval-retrieval scenes, up to 3 captions each",
)
def _retrieval(n: int, seed: int, size: int) -> tuple[Any, Prompts | None]:
    return world_retrieval_data(n, seed, size), None


def get_world_benchmark(name: str) -> WorldBenchmark:
    try:
        return WORLD_BENCHMARKS[name]
    except KeyError:
        raise ClipauditError(
            f"Unknown world benchmark {name!r}; use one of: {', '.join(sorted(WORLD_BENCHMARKS))}."
        ) from None


def run_world_benchmark(
    name: str,
    clip: LoadedClip,
    *,
    n: int | None = None,
    seed: int = DEFAULT_SEED,
    size: int = DEFAULT_SIZE,
    boot: BootstrapSpec | None = None,
    heads: HeadCache | None = None,
    embedded: dict[tuple[str, ...], Embedded] | None = None,
) -> dict[str, Any]:
    """Build the benchmark's data from the world and run its task; images are embedded
    once per (model, split, n, seed, size) when ``embedded`` is shared between calls."""
    from clipaudit.evaluate.classification import zeroshot_classification
    from clipaudit.evaluate.heads import model_fingerprint
    from clipaudit.evaluate.images import embed_images
    from clipaudit.evaluate.retrieval import zeroshot_retrieval

    bench = get_world_benchmark(name)
    n = n or bench.default_n
    if n < 1:
        raise ClipauditError(f"A world benchmark needs at least 1 scene, got n={n}.")
    data, prompts = bench.build(n, seed, size)
    cache = embedded if embedded is not None else {}
    key = (model_fingerprint(clip), bench.split, str(n), str(seed), str(size))
    if key not in cache:
        cache[key] = embed_images(clip, data.images)
    if bench.task == "zeroshot_retrieval":
        result = zeroshot_retrieval(clip, data, boot=boot, embedded=cache[key])
    else:
        assert prompts is not None
        result = zeroshot_classification(
            clip, data, prompts, boot=boot, heads=heads, embedded=cache[key]
        )
    result["dataset"]["benchmark"] = name
    return result


def world_benchmark_metrics(
    clip: LoadedClip,
    seed: int = DEFAULT_SEED,
    n_objects: int = 960,
    n_people: int = 2000,
    n_retrieval: int = 1000,
    size: int = DEFAULT_SIZE,
    boot: BootstrapSpec | None = None,
) -> dict[str, Any]:
    """Every world benchmark's headline metrics, flat for a model card's metrics.json:
    ``{"world-colors": {"n": …, "acc1": …, "acc1_ci": [lo, hi], …}, …, "eval": {…}}``."""
    from clipaudit.evaluate.heads import HeadCache

    boot = boot or BootstrapSpec()
    sizes = {"eval-objects": n_objects, "eval-people": n_people, "eval-retrieval": n_retrieval}
    shared: dict[tuple[str, ...], Embedded] = {}
    heads = HeadCache()
    out: dict[str, Any] = {}
    for name, bench in WORLD_BENCHMARKS.items():
        result = run_world_benchmark(
            name,
            clip,
            n=sizes[bench.split],
            seed=seed,
            size=size,
            boot=boot,
            heads=heads,
            embedded=shared,
        )
        entry: dict[str, Any] = {"n": result["dataset"]["n"]}
        for metric, v in result["metrics"].items():
            entry[metric] = v["value"]
            entry[f"{metric}_ci"] = v["ci"]
        out[name] = entry
    out["eval"] = {"seed": seed, "image_size": size, "bootstrap": boot.describe("sample")}
    return out
