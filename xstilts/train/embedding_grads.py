"""Large embedding tables' gradients as rows added into one buffer kept across steps (CPU).

The gradient of a word-embedding table is zero except in the rows of the batch's tokens, yet
PyTorch's dense embedding backward allocates and zero-fills the whole table every step: for
XLM-R's vocabulary at width 384 that is 384 MB of fresh memory, and on CPU (no caching allocator)
the first touch of those pages cost 137 ms a step here, about 12% of a multilingual-e5-small
tagging step. :class:`KeptEmbeddingGrads` switches such tables to sparse backward (the batch's
rows only) and gives each a dense ``.grad`` buffer that lives across steps: autograd adds the
sparse rows into it in place, and the fused AdamW reads it as any dense gradient. A hook notes
which rows each backward touched, so that gradient clipping measures and scales those rows only
and the buffer is zeroed row by row after the step (a dense gradient reaching the same table,
as from a tied output layer, makes every row count). The optimizer sees exactly the gradient it
saw before, up to float rounding in the clipping norm (tests/test_speed.py), so this is a speed
switch only (``sparse_embedding_grads``; on by default for a single CPU process, where the
allocation is the cost: accelerators keep freed memory in a cache, and DDP's gradient buckets
expect dense gradients).
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
        self.buffers: dict[int, Any] = {}  # id(weight) -> the dense gradient buffer
        self.rows: dict[int, list | None] = {}  # id(weight) -> touched row indices; None: all rows
        self.hooks = []
        for m in self.modules:
            m.sparse = True
            w = m.weight
            self.buffers[id(w)] = torch.zeros_like(w)
            self.rows[id(w)] = None
            self.hooks.append(w.register_hook(self._noting(id(w))))
        self.reset()

    def _noting(self, key: int):
        def note(grad):
            rows = self.rows[key]
            if grad.is_sparse and rows is not None:
                rows.append(grad._indices()[0])
            else:
                self.rows[key] = None  # a dense gradient: any row may be non-zero

        return note

    def _touched(self, key: int):
        import torch

        rows = self.rows[key]
        return None if rows is None else torch.cat(rows).unique() if rows else rows

    def clip_grad_norm_(self, parameters, max_norm: float):
        """``torch.nn.utils.clip_grad_norm_`` (2-norm over all gradients, the same coefficient),
        reading and scaling only the touched rows of the kept buffers."""
        import torch
        from torch.nn.utils import clip_grads_with_norm_, get_total_norm

        params = [p for p in parameters if p.grad is not None]
        whole = [p for p in params if id(p) not in self.buffers]
        parts = [p.grad for p in whole]
        sparse = []
        for p in params:
            if id(p) in self.buffers:
                rows = self._touched(id(p))
                if rows is None:
                    whole.append(p)
                    parts.append(p.grad)
                elif len(rows):
                    sparse.append((p.grad, rows))
                    parts.append(p.grad.index_select(0, rows))
        total = get_total_norm(parts)
        clip_grads_with_norm_(whole, max_norm, total)
        coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
        for grad, rows in sparse:
            grad.index_copy_(0, rows, grad.index_select(0, rows) * coef)
        return total

    def reset(self) -> None:
        """Zero the buffers (the touched rows) and give them back to their tables; after
        ``optimizer.zero_grad``."""
        for m in self.modules:
            key = id(m.weight)
            buffer, rows = self.buffers[key], self._touched(key)
            if rows is None:
                buffer.zero_()
            elif len(rows):
                buffer.index_fill_(0, rows, 0.0)
            self.rows[key] = []
            m.weight.grad = buffer

    def close(self) -> None:
        """Dense backward again, no gradient left behind."""
        for h in self.hooks:
            h.remove()
        for m in self.modules:
            m.sparse = False
            m.weight.grad = None
        self.modules, self.buffers, self.rows, self.hooks = [], {}, {}, []
