"""Large embedding tables' gradients as rows added into one buffer kept across steps (CPU).

The gradient of a word-embedding table is zero except in the rows of the batch's tokens, yet
PyTorch's dense embedding backward allocates and zero-fills the whole table every step: for
XLM-R's vocabulary at width 384 that is 384 MB of fresh memory, and on CPU (no caching allocator)
the first touch of those pages cost 137 ms a step here, about 12% of a multilingual-e5-small
tagging step. :class:`KeptEmbeddingGrads` switches such tables to sparse backward (the batch's
rows only) and gives each a dense ``.grad`` buffer that lives across steps: autograd adds the
sparse rows into it in place, clipping and the fused AdamW read it as any dense gradient, and
after each optimizer step it is zeroed in place (19 ms). The optimizer sees exactly the gradient
it saw before (tests/test_speed.py), so this is a speed switch only (``sparse_embedding_grads``;
on by default for a single CPU process, where the allocation is the cost; accelerators keep
freed memory in a cache, and DDP's gradient buckets expect dense gradients).
"""

from __future__ import annotations

from typing import Any

MIN_ROWS = 32768  # smaller tables (positions, token types, a test vocabulary) are left dense


class KeptEmbeddingGrads:
    def __init__(self, model: Any, min_rows: int | None = None) -> None:
        import torch

        min_rows = MIN_ROWS if min_rows is None else min_rows
        self.modules = [
            m for m in model.modules()
            if isinstance(m, torch.nn.Embedding) and not m.sparse and m.weight.requires_grad
            and m.num_embeddings >= min_rows
        ]  # fmt: skip
        self.buffers = {}
        for m in self.modules:
            m.sparse = True
            self.buffers[m.weight] = torch.zeros_like(m.weight)
        self.reset()

    def reset(self) -> None:
        """Give the tables their (zeroed) buffers back, after ``optimizer.zero_grad``."""
        for weight, buffer in self.buffers.items():
            weight.grad = buffer.zero_()

    def close(self) -> None:
        """Dense backward again, no gradient left behind."""
        for m in self.modules:
            m.sparse = False
            m.weight.grad = None
        self.modules, self.buffers = [], {}
