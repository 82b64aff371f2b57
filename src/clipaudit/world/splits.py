"""The world's splits: what each holds, sample by sample, from one seed.

* ``train``: 55% object scenes (1–3 objects), 45% people with the planted bias; 30%
  watermarked, 80% of those captions say so.
* ``eval-objects``: one object an image, cycling through every shape × colour × size.
* ``eval-people``: people balanced over group × occupation (no planted bias).
* ``eval-watermark``: mixed scenes, every other one watermarked, captions silent about it.
* ``eval-retrieval``: mixed scenes with their captions, no watermarks.

Every split draws from its own seed stream, so held-out scenes are never training scenes.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterator

from clipaudit.world.scenes import Scene, add_watermark, objects_scene, person_scene, rng_for
from clipaudit.world.vocab import COLORS, GROUPS, OCCUPATIONS, SHAPES, SIZES

SceneMaker = Callable[[random.Random, int], Scene]
SPLITS: dict[str, SceneMaker] = {}


def split(name: str) -> Callable[[SceneMaker], SceneMaker]:
    def deco(fn: SceneMaker) -> SceneMaker:
        SPLITS[name] = fn
        return fn

    return deco


@split("train")
def _train(rng: random.Random, i: int) -> Scene:
    scene = objects_scene(rng) if rng.random() < 0.55 else person_scene(rng, biased=True)
    if rng.random() < 0.3:
        add_watermark(scene, rng, mention_rate=0.8)
    return scene


OBJECT_GRID = list(itertools.product(SHAPES, sorted(COLORS), sorted(SIZES)))
PEOPLE_GRID = list(itertools.product(sorted(GROUPS), OCCUPATIONS))


@split("eval-objects")
def _eval_objects(rng: random.Random, i: int) -> Scene:
    return objects_scene(rng, wanted=[OBJECT_GRID[i % len(OBJECT_GRID)]])


@split("eval-people")
def _eval_people(rng: random.Random, i: int) -> Scene:
    group, occ = PEOPLE_GRID[i % len(PEOPLE_GRID)]
    return person_scene(rng, group=group, occupation=occ)


@split("eval-watermark")
def _eval_watermark(rng: random.Random, i: int) -> Scene:
    scene = objects_scene(rng) if rng.random() < 0.55 else person_scene(rng)
    if i % 2 == 1:
        add_watermark(scene, rng, mention_rate=0.0)
    return scene


@split("eval-retrieval")
def _eval_retrieval(rng: random.Random, i: int) -> Scene:
    return objects_scene(rng) if rng.random() < 0.55 else person_scene(rng)


def scenes(name: str, n: int, seed: int = 0, start: int = 0) -> Iterator[Scene]:
    """``n`` scenes of split ``name``; scene i depends only on (seed, name, i)."""
    try:
        maker = SPLITS[name]
    except KeyError:
        from clipaudit.errors import ClipauditError

        raise ClipauditError(
            f"Unknown world split {name!r}; use one of: {', '.join(sorted(SPLITS))} or pool."
        ) from None
    for i in range(start, start + n):
        yield maker(rng_for(seed, name, i), i)
