"""Training several tasks at once on one encoder: the model, the sampling rates, the batches.

Every batch comes from one task. The task of each batch slot of an epoch is drawn with fixed
probabilities (uniform, proportional to the number of training examples, or proportional to
``size ** (1 / T)``: temperature sampling, as in multilingual MT and T5's mixtures); each task
serves its batches (random, or length-grouped with ``group_by_length``) in order and reshuffles
when it runs out. The whole plan is a pure function of (seed, epoch), as for single-task
training, so resume stays exact.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from xstilts.errors import ConfigError
from xstilts.train.batching import LengthGroupedPlanner, epoch_rng


def mixture_probabilities(
    sizes: Mapping[str, int],
    sampling: str = "proportional",
    temperature: float = 2.0,
    weights: Mapping[str, float | None] | None = None,
) -> dict[str, float]:
    """Sampling probability of each task; explicit ``weights`` multiply the rule's rates."""
    if not sizes:
        raise ConfigError("a mixture needs at least one task")
    if sampling == "uniform":
        raw = {k: 1.0 for k in sizes}
    elif sampling == "proportional":
        raw = {k: float(n) for k, n in sizes.items()}
    elif sampling == "temperature":
        if temperature <= 0:
            raise ConfigError(f"temperature must be > 0, got {temperature}")
        raw = {k: float(n) ** (1.0 / temperature) for k, n in sizes.items()}
    else:
        raise ConfigError(f"sampling must be uniform, proportional or temperature; got {sampling!r}")
    for k, w in (weights or {}).items():
        if w is not None:
            raw[k] *= float(w)
    total = sum(raw.values())
    if total <= 0:
        raise ConfigError(f"mixture rates sum to zero: {raw}")
    return {k: v / total for k, v in raw.items()}


class MixturePlanner:
    """Batches for a mixture of tasks whose features are concatenated in task order.

    ``lengths[t]`` are the token counts of task ``t``'s features; features of task ``t`` sit at
    ``offsets[t] + i`` in the concatenated list. ``batches_per_epoch`` slots are filled per epoch
    (default: the number of batches one pass over every task takes).
    """

    def __init__(
        self,
        lengths: Sequence[Sequence[int]],
        batch_size: int,
        probabilities: Sequence[float],
        *,
        seed: int,
        batches_per_epoch: int | None = None,
        group_by_length: bool = False,
        mega_batch_mult: int = 50,
        world_size: int = 1,
        rank: int = 0,
        names: Sequence[str] | None = None,
    ) -> None:
        if len(lengths) != len(probabilities):
            raise ValueError("one probability per task is needed")
        self.planners = [
            LengthGroupedPlanner(l, batch_size, seed=seed, group_by_length=group_by_length,
                                 mega_batch_mult=mega_batch_mult, salt=t + 1)
            for t, l in enumerate(lengths)
        ]
        self.offsets = np.cumsum([0] + [len(l) for l in lengths[:-1]]).tolist()
        self.probabilities = np.asarray(probabilities, dtype=np.float64)
        self.probabilities = self.probabilities / self.probabilities.sum()
        self.seed = seed
        self.batch_size = batch_size
        natural = sum(math.ceil(len(l) / batch_size) for l in lengths)
        self.batches_per_epoch = int(batches_per_epoch or natural)
        self.world_size = world_size
        self.rank = rank
        self.names = list(names) if names else [str(i) for i in range(len(lengths))]

    def __len__(self) -> int:
        return (self.batches_per_epoch // self.world_size) if self.world_size > 1 else self.batches_per_epoch

    def global_plan(self, epoch: int) -> list[list[int]]:
        rng = epoch_rng(self.seed, epoch, 0)
        choice = rng.choice(len(self.planners), size=self.batches_per_epoch, p=self.probabilities)
        streams: list[list[list[int]]] = [[] for _ in self.planners]
        cycles = [0] * len(self.planners)
        plan: list[list[int]] = []
        for t in choice.tolist():
            if not streams[t]:
                # a fresh pass over task t: its own reshuffle, keyed by (epoch, pass number)
                streams[t] = self.planners[t].global_plan(epoch * 100_003 + cycles[t])[::-1]
                cycles[t] += 1
            batch = streams[t].pop()
            plan.append([self.offsets[t] + i for i in batch])
        if self.world_size > 1:
            plan = plan[: (len(plan) // self.world_size) * self.world_size]
        return plan

    def plan(self, epoch: int) -> list[list[int]]:
        batches = self.global_plan(epoch)
        return batches[self.rank :: self.world_size] if self.world_size > 1 else batches

    def describe(self) -> dict:
        return {
            "kind": "mixture",
            "tasks": self.names,
            "sizes": [len(p.lengths) for p in self.planners],
            "probabilities": [round(float(p), 12) for p in self.probabilities],
            "batch_size": self.batch_size,
            "batches_per_epoch": self.batches_per_epoch,
            "group_by_length": self.planners[0].group_by_length if self.planners else False,
            "mega_batch_mult": self.planners[0].mega_batch_mult if self.planners else None,
            "seed": self.seed,
            "world_size": self.world_size,
        }


class TaskTagged(dict):
    """A feature with the name of its task (``task``) and the feature itself (``feature``)."""


def tag_features(name: str, features: Sequence[Any]) -> list[TaskTagged]:
    return [TaskTagged(task=name, feature=f) for f in features]


def mixture_collate(collates: Mapping[str, Callable[[list[Any]], dict]]) -> Callable[[list[Any]], dict]:
    """Collate a one-task batch of tagged features with that task's own collate function."""

    def collate(batch: list[TaskTagged]) -> dict:
        task = batch[0]["task"]
        if any(b["task"] != task for b in batch):
            raise ValueError("a mixture batch mixes tasks")
        out = dict(collates[task]([b["feature"] for b in batch]))
        out["task"] = task
        return out

    return collate


def build_multitask_model(encoder: Any, members: Mapping[str, Any]):
    """One module holding the shared encoder and every task's model (which all use it)."""
    import torch
    from torch import nn

    class MultiTaskModel(nn.Module):
        """``forward(task=NAME, **batch)`` runs task NAME's model; all share ``self.encoder``."""

        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder
            self.members = nn.ModuleDict(dict(members))
            for name, m in self.members.items():
                shared = getattr(m, "encoder", None) or getattr(m, getattr(m, "base_model_prefix", ""), None)
                if shared is not None and shared is not encoder:
                    raise ConfigError(f"task model {name!r} does not share the encoder")

        def forward(self, task: str, **batch: Any):
            return self.members[task](**batch)

    del torch
    return MultiTaskModel()
