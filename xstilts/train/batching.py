"""Which examples go into which batch, per epoch: a pure function of (seed, epoch).

Because the plan of an epoch is recomputed from the seed and the epoch number, exact resume
only needs the epoch and the number of batches already consumed: there is no iterator state to
save. Length grouping keeps padding small without sorting the whole epoch (which would make
every batch the same length class in the same order): the shuffled indices are cut into
mega-batches, each mega-batch is sorted by length and cut into batches, and the order of the
batches is then shuffled.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np


class BatchPlanner(Protocol):
    """Anything that says, for an epoch, which feature indices form each batch."""

    def plan(self, epoch: int) -> list[list[int]]: ...

    def describe(self) -> dict: ...


def feature_length(feature: dict) -> int:
    """The number of tokens a feature takes (its ``input_ids``), used for length grouping."""
    ids = feature.get("input_ids") if isinstance(feature, dict) else None
    if ids is None:
        return 0
    if ids and isinstance(ids[0], (list, tuple)):  # multiple choice: one row per choice
        return max(len(r) for r in ids)
    return len(ids)


def epoch_rng(seed: int, epoch: int, salt: int = 0) -> np.random.Generator:
    """The random generator of one epoch; independent of anything consumed before."""
    return np.random.default_rng([seed, epoch, salt])


class LengthGroupedPlanner:
    """Batches of ``batch_size`` indices; every index appears exactly once per epoch.

    With ``world_size`` > 1 the number of batches is cut to a multiple of it (the last few
    batches of an epoch are dropped) so that every process does the same number of steps;
    process ``rank`` takes batches ``rank, rank + world_size, ...``.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        *,
        seed: int,
        group_by_length: bool = True,
        shuffle: bool = True,
        mega_batch_mult: int = 50,
        world_size: int = 1,
        rank: int = 0,
        salt: int = 0,
    ) -> None:
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.batch_size = batch_size
        self.seed = seed
        self.group_by_length = group_by_length
        self.shuffle = shuffle
        self.mega_batch_mult = mega_batch_mult
        self.world_size = world_size
        self.rank = rank
        self.salt = salt

    def __len__(self) -> int:
        n = -(-len(self.lengths) // self.batch_size)
        if self.world_size > 1:
            n = (n // self.world_size) * self.world_size
        return n // self.world_size

    def global_plan(self, epoch: int) -> list[list[int]]:
        """The batches of every process, in order (before the split across processes)."""
        n = len(self.lengths)
        rng = epoch_rng(self.seed, epoch, self.salt)
        order = rng.permutation(n) if self.shuffle else np.arange(n)
        if self.group_by_length:
            mega = self.batch_size * self.mega_batch_mult
            grouped: list[np.ndarray] = []
            for start in range(0, n, mega):
                chunk = order[start : start + mega]
                # stable sort, longest first, so ties keep the shuffled order
                chunk = chunk[np.argsort(-self.lengths[chunk], kind="stable")]
                grouped.append(chunk)
            order = np.concatenate(grouped) if grouped else order
        batches = [order[i : i + self.batch_size].tolist() for i in range(0, n, self.batch_size)]
        if self.group_by_length and self.shuffle and len(batches) > 1:
            # Shuffle the batch order so long batches are not all at the start of each window,
            # but keep the single short remainder batch last: it is what makes DDP truncation
            # and accumulation windows predictable.
            full, last = batches[:-1], batches[-1]
            perm = rng.permutation(len(full))
            batches = [full[i] for i in perm] + [last]
        if self.world_size > 1:
            batches = batches[: (len(batches) // self.world_size) * self.world_size]
        return batches

    def plan(self, epoch: int) -> list[list[int]]:
        batches = self.global_plan(epoch)
        if self.world_size > 1:
            batches = batches[self.rank :: self.world_size]
        return batches

    def describe(self) -> dict:
        return {
            "kind": "length-grouped" if self.group_by_length else "plain",
            "num_examples": int(len(self.lengths)),
            "batch_size": self.batch_size,
            "seed": self.seed,
            "shuffle": self.shuffle,
            "mega_batch_mult": self.mega_batch_mult,
            "world_size": self.world_size,
        }


class _Indexed:
    """A list of features as a map-style dataset (what a DataLoader's batch_sampler indexes)."""

    def __init__(self, features: Sequence) -> None:
        self.features = features

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, i: int):
        return self.features[i]


def collated_batches(
    features: Sequence,
    batches: Sequence[Sequence[int]],
    collate_fn,
    *,
    workers: int = 0,
    pin_memory: bool = False,
):
    """The collated ``batches`` in order: in-line, or prepared ahead by ``workers`` processes.

    The batches and their order are the planner's either way, so the choice changes when the
    collation work happens, never what the model sees.
    """
    if workers <= 0 and not pin_memory:
        for idx in batches:
            yield collate_fn([features[j] for j in idx])
        return
    from torch.utils.data import DataLoader

    loader = DataLoader(
        _Indexed(features),
        batch_sampler=[list(b) for b in batches],
        collate_fn=collate_fn,
        num_workers=workers,
        pin_memory=pin_memory,
        persistent_workers=False,
    )
    yield from loader
