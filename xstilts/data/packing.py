"""Packing several token-labelled sequences into one row, each attending only to itself.

A batch of tagging features (the planner's batch: which examples share a step is unchanged) is
laid out in rows of at most ``row_length`` tokens, first-fit by decreasing length. Every
sequence keeps its own positions (as the model would number it alone) and a block-diagonal
attention mask confines attention to it, so each token's hidden state, and therefore the batch's
mean token loss, is what the unpacked batch gives, up to float rounding (tests/test_packing.py).
What changes is the padding: a random batch padded to its longest sentence is mostly padding
(60% for UDPOS English at batch 16); packed rows are nearly full.

The mask is a boolean ``[rows, 1, length, length]`` tensor (True: may attend), which the
Transformers models pass unchanged to PyTorch's scaled-dot-product attention; the encoder must
use ``attn_implementation="sdpa"`` (eager attention adds masks instead). Padding positions attend
to themselves only, so no row of the mask is empty.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from xstilts.data.features import IGNORE_INDEX
from xstilts.errors import ConfigError
from xstilts.models.loading import position_offset


def check_packable(encoder: Any) -> None:
    impl = getattr(encoder.config, "_attn_implementation", None)
    if impl != "sdpa":
        raise ConfigError(
            f"pack_sequences needs an encoder with attn_implementation='sdpa' (this one uses {impl!r})"
        )


def plan_rows(lengths: Sequence[int], row_length: int) -> list[list[int]]:
    """Indices grouped into rows of at most ``row_length`` tokens, first-fit decreasing."""
    rows: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda k: -lengths[k]):
        n = lengths[i]
        if n > row_length:
            raise ConfigError(f"a feature of {n} tokens does not fit a packed row of {row_length}")
        for r, free in enumerate(room):
            if n <= free:
                rows[r].append(i)
                room[r] -= n
                break
        else:
            rows.append([i])
            room.append(row_length - n)
    return rows


class PackedCollator:
    """``collate(features) -> batch`` with packed rows (see the module docstring)."""

    def __init__(self, pad_id: int, row_length: int, first_position: int) -> None:
        self.pad_id = pad_id
        self.row_length = row_length
        self.first_position = first_position

    def __call__(self, features: Sequence[dict]) -> dict:
        import torch

        if not features:
            raise ValueError("cannot collate an empty batch")
        lengths = [len(f["input_ids"]) for f in features]
        rows = plan_rows(lengths, self.row_length)
        width = max(sum(lengths[i] for i in row) for row in rows)
        n = len(rows)
        ids = torch.full((n, width), self.pad_id, dtype=torch.long)
        positions = torch.full((n, width), self.first_position, dtype=torch.long)
        labels = torch.full((n, width), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((n, 1, width, width), dtype=torch.bool)
        has_labels = "labels" in features[0]
        for r, row in enumerate(rows):
            start = 0
            for i in row:
                f, end = features[i], start + lengths[i]
                ids[r, start:end] = torch.tensor(f["input_ids"])
                positions[r, start:end] = torch.arange(lengths[i]) + self.first_position
                if has_labels:
                    labels[r, start:end] = torch.tensor(f["labels"])
                mask[r, 0, start:end, start:end] = True
                start = end
            idle = torch.arange(start, width)
            mask[r, 0, idle, idle] = True  # padding attends to itself: no empty softmax row
        batch = {"input_ids": ids, "attention_mask": mask, "position_ids": positions}
        if has_labels:
            batch["labels"] = labels
        return batch


def packed_collator(tokenizer: Any, encoder: Any, row_length: int) -> PackedCollator:
    check_packable(encoder)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return PackedCollator(pad, row_length, position_offset(encoder.config))
