"""Fresh training pairs for the visible-watermark detector, and where each mark was drawn.

Drawing a pair (a view, a mark, JPEG) costs about 10 ms of one core, as much as the small
net's training step on two. In the loop (``workers=0``, the shipped recipe) the pairs come
from the loop's own random stream. With workers, forked processes draw them ahead of the
loop, each training step's pairs from a stream of its own (seed, step): the weights then
depend on the seed alone, not on how many workers drew them, and a GPU is fed by the cores
of its machine instead of waiting for one.
"""

from __future__ import annotations

import multiprocessing
import random
from collections import deque
from collections.abc import Generator
from multiprocessing.pool import AsyncResult
from typing import Any

import numpy as np
import torch

from clipaudit.safety.visible import data as vd

Pair = tuple[np.ndarray, np.ndarray]

CELL = 16  # input pixels per cell of the last feature map (stride 2, then three 2x pools)
MARK_DIFF = 8.0  # mean absolute RGB difference that counts a pixel as marked
MARK_PIXELS = 4  # marked pixels that make a cell a mark cell
PREFETCH_PER_WORKER = 3  # steps of pairs drawn ahead per worker (bounds the memory held)


def mark_cells(pairs: list[Pair]) -> torch.Tensor:
    """Where each pair's mark was drawn, one 0/1 per CELL² cell: pixels whose marked and
    clean inputs differ by more than MARK_DIFF (both halves were degraded alike, so the
    difference is the mark and its JPEG ringing)."""
    c = np.stack([p[0] for p in pairs]).astype(np.int16)
    m = np.stack([p[1] for p in pairs]).astype(np.int16)
    marked = np.abs(m - c).mean(-1) > MARK_DIFF
    n, h, w = marked.shape
    counts = marked.reshape(n, h // CELL, CELL, w // CELL, CELL).sum((2, 4))
    return torch.from_numpy((counts >= MARK_PIXELS).astype(np.float32))


def fresh_pair(rng: random.Random, bank: vd.Bank, photo_share: float, visible_only: bool) -> Pair:
    """One training pair over a photo (``photo_share`` of the time) or a world scene."""
    for _attempt in range(4):
        src = "photo" if rng.random() < photo_share else "world"
        c, m, _ = bank.pairs(rng, 1, "train", src)
        # A mark too faint to change any pixel visibly is a wrong label, not a hard
        # example: it teaches the net to doubt the marks it can see.
        if not visible_only or mark_cells([(c[0], m[0])]).any():
            break
    return c[0], m[0]


def step_pairs(
    bank: vd.Bank, seed: int, step: int, n: int, photo_share: float, visible_only: bool
) -> list[Pair]:
    """The ``n`` fresh pairs of training step ``step``: a function of (seed, step) alone."""
    rng = random.Random(f"visible-train:{seed}:step:{step}")
    return [fresh_pair(rng, bank, photo_share, visible_only) for _ in range(n)]


# The forked workers' bank and settings: inherited through fork, never pickled (the bank
# holds thousands of decoded photos).
_WORKER: dict[str, Any] = {}


def _init_worker(bank: vd.Bank, settings: dict[str, Any]) -> None:
    torch.set_num_threads(1)
    _WORKER.update(bank=bank, **settings)


def _draw(step: int) -> list[Pair]:
    w = _WORKER
    return step_pairs(w["bank"], w["seed"], step, w["n"], w["photo_share"], w["visible_only"])


def worker_pairs(
    bank: vd.Bank,
    steps: list[int],
    workers: int,
    *,
    seed: int,
    n: int,
    photo_share: float,
    visible_only: bool,
) -> Generator[list[Pair], None, None]:
    """The fresh pairs of each of ``steps`` in order, drawn by ``workers`` forked processes
    at most ``PREFETCH_PER_WORKER`` steps each ahead of the consumer."""
    settings = {"seed": seed, "n": n, "photo_share": photo_share, "visible_only": visible_only}
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(workers, initializer=_init_worker, initargs=(bank, settings)) as pool:
        pending: deque[AsyncResult[list[Pair]]] = deque()
        todo = iter(steps)
        for s in todo:
            pending.append(pool.apply_async(_draw, (s,)))
            if len(pending) >= workers * PREFETCH_PER_WORKER:
                break
        while pending:
            pairs = pending.popleft().get()
            nxt = next(todo, None)
            if nxt is not None:
                pending.append(pool.apply_async(_draw, (nxt,)))
            yield pairs
