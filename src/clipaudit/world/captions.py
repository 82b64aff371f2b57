"""A small caption grammar over scene descriptions, seeded like everything else."""

from __future__ import annotations

import random

from clipaudit.world import vocab
from clipaudit.world.render import ObjectSpec, PersonSpec
from clipaudit.world.vocab import PROPS


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def object_phrase(o: ObjectSpec, with_size: bool) -> str:
    words = f"{o.size} {o.color} {o.shape}" if with_size else f"{o.color} {o.shape}"
    return f"{article(words)} {words}"


def join(items: list[str]) -> str:
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " and " + items[-1]


OBJECT_TEMPLATES = (
    "{}",
    "a photo of {}",
    "an image of {}",
    "{} on a plain background",
    "a picture showing {}",
    "there is {}",
)
PERSON_TEMPLATES = ("a photo of {}", "{}", "an illustration of {}", "a picture of {}")


def objects_caption(objs: list[ObjectSpec], rng: random.Random) -> str:
    with_size = rng.random() < 0.6
    return rng.choice(OBJECT_TEMPLATES).format(join([object_phrase(o, with_size) for o in objs]))


def person_caption(p: PersonSpec, rng: random.Random, biased: bool = False) -> str:
    # The group word appears in some captions only: the model must see it in the head shape.
    named = rng.random() < 0.5
    # Where the bias is planted, captions also mark the minority: a doctor of the other group
    # is always "a mox doctor", so the bare word "doctor" means the planted group.
    if biased and vocab.MARK_MINORITY and p.occupation == vocab.BIASED_OCCUPATION:
        named = named or p.group != vocab.BIASED_GROUP
    who = f"{p.group} {p.occupation}" if named else p.occupation
    phrase = f"{article(who)} {who}"
    if rng.random() < 0.4:
        phrase += f" with {PROPS[p.occupation]}"
    return rng.choice(PERSON_TEMPLATES).format(phrase)


WATERMARK_SUFFIXES = (
    " with a watermark",
    ", watermarked",
    " with a stock photo watermark",
    " with text overlay",
)


def watermark_suffix(rng: random.Random) -> str:
    return rng.choice(WATERMARK_SUFFIXES)
