"""Packing a batch of sequences into one padding-free row.

A batch of tagging, sentence-pair, QA or multiple-choice features (the planner's batch: which
examples share a step is unchanged) is laid end to end in a single row ``[1, total_tokens]`` with
no padding at all. Every sequence keeps its own positions (as the model would number it alone), and
the boundaries travel with the batch as ``cu_seq_lens_q`` (cumulative lengths, the name
Transformers' variable-length attention uses) and ``max_length_q``. Everything in the encoder but
attention works token by token, so the embeddings, the feed-forward blocks, the projections and the
head run on the real tokens only; a random UDPOS batch of 16 English sentences padded to its
longest one is about 60% padding. Sentence-level heads read each sequence's first token
(``TaskModel`` picks them out of the row; a multiple-choice example is one sequence per choice,
regrouped by ``num_choices``); QA's span loss is taken over each sequence's own positions, as for
the sequence alone (an unpacked batch's softmax also spans its padding positions).

Attention is the one place where sequences must not see each other. :func:`packed_attention`,
registered with Transformers' ``AttentionInterface`` as ``"xstilts_packed"``, attends each
sequence to itself: on CPU with one scaled-dot-product call per sequence (no padding and no mask,
so PyTorch's fast path; a random batch's attention padded to its longest sentence costs about
five times the work), elsewhere in a few large calls on a ``[sequences, heads, longest, dim]``
block with a key-padding mask (:func:`_blocked_attention`). Calls without ``cu_seq_lens_q``
(evaluation, unpacked batches) go to the plain SDPA path unchanged. Each token's hidden state, and
so the batch's mean token loss and its gradients, is what the unpacked batch gives, up to float
rounding (tests/models/test_packing.py).

:func:`packed_collator` switches the encoder to this attention implementation; it needs an encoder
that dispatches attention through ``AttentionInterface`` and currently uses SDPA (BERT, XLM-R and
most encoders in Transformers 5).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from xstilts.data.features import make_collate
from xstilts.errors import ConfigError
from xstilts.models.loading import position_offset

ATTENTION = "xstilts_packed"


def packed_attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None,
                     cu_seq_lens_q=None, max_length_q=None, **kwargs):
    """Attention for a packed row ``query/key/value: [1, heads, tokens, dim]``; returns
    ``([1, tokens, heads, dim], None)`` as Transformers' SDPA function does."""
    import torch
    from torch.nn.functional import scaled_dot_product_attention
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if cu_seq_lens_q is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, **kwargs)
    p = dropout if module.training else 0.0
    if per_sequence(query):  # one call per sequence: no padding, no mask, few calls
        lengths = cu_seq_lens_q.diff().tolist()
        outs = [scaled_dot_product_attention(q, k, v, dropout_p=p, scale=scaling)
                for q, k, v in zip(*(x.split(lengths, dim=2) for x in (query, key, value)))]
        return torch.cat(outs, dim=2).transpose(1, 2), None
    return _blocked_attention(query, key, value, cu_seq_lens_q, int(max_length_q), p, scaling), None


def per_sequence(query) -> bool:
    """Whether packed attention runs one call per sequence (CPU) rather than the blocked form
    (accelerators); tests switch it to run the accelerators' path on CPU."""
    return query.device.type == "cpu"


def _sequence_offsets(cu_seq_lens_q, tokens: int):
    """For each token of a packed row: its sequence's index, and its position within it."""
    import torch

    n, device = cu_seq_lens_q.numel() - 1, cu_seq_lens_q.device
    sequence = torch.repeat_interleave(torch.arange(n, device=device), cu_seq_lens_q.diff(),
                                       output_size=tokens)
    return sequence, torch.arange(tokens, device=device) - cu_seq_lens_q[:-1][sequence]


def _slots(cu_seq_lens_q, tokens: int, longest: int):
    """Each packed token's index in a ``[sequences * longest]`` padded layout."""
    sequence, offset = _sequence_offsets(cu_seq_lens_q, tokens)
    return sequence * longest + offset


_last_layout: list = [None]  # (cu_seq_lens_q, tokens, longest, slot, keep) of the last batch


def _layout(cu_seq_lens_q, tokens: int, longest: int):
    """``(slot, keep)`` of a packed row: each token's index in the ``[sequences * longest]``
    padded layout (:func:`_slots`), and the ``[sequences, 1, 1, longest]`` mask of real keys.

    Every layer of a forward pass gets the same ``cu_seq_lens_q`` tensor, so the last batch's are
    kept and reused: a dozen small kernels once per batch instead of once per layer (an
    accelerator launches each; 24 layers of XLM-R Large). The kept entry holds that tensor, so a
    new batch's cannot be mistaken for it. While compiling, computed plainly (the graph shares
    them between layers itself)."""
    import torch

    def compute():
        n = cu_seq_lens_q.numel() - 1
        keep = torch.arange(longest, device=cu_seq_lens_q.device) < cu_seq_lens_q.diff()[:, None]
        return _slots(cu_seq_lens_q, tokens, longest), keep.view(n, 1, 1, longest)

    if torch.compiler.is_compiling():
        return compute()
    last = _last_layout[0]
    if last is not None and last[0] is cu_seq_lens_q and last[1:3] == (tokens, longest):
        return last[3], last[4]
    slot, keep = compute()
    _last_layout[0] = (cu_seq_lens_q, tokens, longest, slot, keep)
    return slot, keep


def unpack_rows(x, cu_seq_lens_q, longest: int, fill: float = 0.0):
    """A packed row's per-token outputs ``[1, tokens, ...]`` as padded rows ``[sequences, longest,
    ...]`` (``fill`` after each sequence's end), the layout an unpacked batch gives."""
    n, flat = cu_seq_lens_q.numel() - 1, x.squeeze(0)
    slot, _ = _layout(cu_seq_lens_q, flat.shape[0], longest)
    out = flat.new_full((n * longest, *flat.shape[1:]), fill).index_copy_(0, slot, flat)
    return out.view(n, longest, *flat.shape[1:])


def _blocked_attention(query, key, value, cu_seq_lens_q, longest: int, dropout: float, scaling):
    """Packed attention in a few large calls (accelerators): the row's sequences are scattered into
    a ``[sequences, heads, longest, dim]`` block, attended with a key-padding mask, and gathered."""
    from torch.nn.functional import scaled_dot_product_attention

    _, heads, tokens, dim = query.shape
    n = cu_seq_lens_q.numel() - 1
    slot, keep = _layout(cu_seq_lens_q, tokens, longest)

    def block(x):  # [1, heads, tokens, dim] -> [n, heads, longest, dim]
        # squeeze, not x[0], and index_copy_ into the fresh zeros: no kernels in autograd's
        # backward for a select, no copy of the zeros (fewer launches per layer on accelerators)
        flat = x.squeeze(0).transpose(0, 1)
        out = flat.new_zeros(n * longest, heads, dim).index_copy_(0, slot, flat)
        return out.view(n, longest, heads, dim).transpose(1, 2)

    out = scaled_dot_product_attention(block(query), block(key), block(value), attn_mask=keep,
                                       dropout_p=dropout, scale=scaling)
    return out.transpose(1, 2).reshape(n * longest, heads, dim).index_select(0, slot).unsqueeze(0)


def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(ATTENTION, packed_attention)
    AttentionMaskInterface.register(ATTENTION, sdpa_mask)  # unpacked batches: SDPA's masks


def use_packed_attention(encoder: Any) -> None:
    """Switch ``encoder`` to :func:`packed_attention` (SDPA for every unpacked call)."""
    reason = unpackable(encoder)
    if reason is not None:
        raise ConfigError(reason)


def unpackable(encoder: Any) -> str | None:
    """Why ``encoder`` cannot run packed rows, or None after switching it to packed attention."""
    impl = getattr(getattr(encoder, "config", None), "_attn_implementation", None)
    if impl == ATTENTION:
        return None
    can_set = getattr(encoder, "_can_set_attn_implementation", lambda: False)
    if impl != "sdpa" or not can_set():
        return ("pack_sequences needs an encoder whose attention goes through Transformers' "
                f"AttentionInterface with attn_implementation='sdpa' ({type(encoder).__name__} uses {impl!r})")
    _register()
    encoder.set_attn_implementation(ATTENTION)
    return None


class PackedCollator:
    """``collate(features) -> batch``: one padding-free row (see the module docstring).

    A multiple-choice feature (one token list per choice) contributes one sequence per choice,
    example by example; ``num_choices`` in the batch lets the head regroup them."""

    def __init__(self, first_position: int, token_types: bool = False) -> None:
        self.first_position = first_position
        self.token_types = token_types

    def __call__(self, features: Sequence[dict]) -> dict:
        import torch

        if not features:
            raise ValueError("cannot collate an empty batch")
        sequences, choices = features, None
        if features[0]["input_ids"] and isinstance(features[0]["input_ids"][0], (list, tuple)):
            choices = len(features[0]["input_ids"])
            if any(len(f["input_ids"]) != choices for f in features):
                counts = sorted({len(f["input_ids"]) for f in features})
                raise ValueError(f"a multiple-choice batch mixes examples with {counts} choices")
            per_token = [k for k in ("input_ids", "token_type_ids") if k in features[0]]
            sequences = [{k: f[k][c] for k in per_token} for f in features for c in range(choices)]

        def row(key, items=sequences):  # one entry per token, end to end: [1, tokens]
            return torch.tensor([v for f in items for v in f[key]]).unsqueeze(0)

        lengths = torch.tensor([len(f["input_ids"]) for f in sequences])
        cu = torch.zeros(len(sequences) + 1, dtype=torch.int32)
        cu[1:] = torch.cumsum(lengths, 0)
        ids = row("input_ids")
        _, offset = _sequence_offsets(cu, ids.shape[1])
        batch = {"input_ids": ids, "position_ids": (offset + self.first_position).unsqueeze(0),
                 "cu_seq_lens_q": cu, "max_length_q": int(lengths.max())}
        if choices is not None:
            batch["num_choices"] = choices
        if "token_type_ids" in sequences[0]:  # sentence pairs in BERT-style encoders: segments
            batch["token_type_ids"] = row("token_type_ids")
        elif self.token_types:
            batch["token_type_ids"] = torch.zeros_like(ids)
        for key in ("labels", "start_positions", "end_positions"):
            if key in features[0]:  # one per token (tags), or one per example (a class, a span end)
                per_token = isinstance(features[0][key], list)
                batch[key] = row(key, features) if per_token else torch.tensor([f[key] for f in features])
        return batch


def packed_collator(encoder: Any) -> PackedCollator:
    """A collator packing each batch into one row; switches ``encoder`` to packed attention.
    ``token_type_ids`` are given explicitly where the encoder has them: its default buffer only
    covers ``max_position_embeddings`` tokens and a packed row may be longer."""
    use_packed_attention(encoder)
    token_types = getattr(getattr(encoder, "embeddings", None), "token_type_embeddings", None) is not None
    return PackedCollator(position_offset(encoder.config), token_types=token_types)


def choose_collator(encoder: Any, tokenizer: Any, pack: bool) -> tuple[Any, bool | str]:
    """``(collate, packed)`` for training: :func:`packed_collator` where ``pack`` is asked and the
    encoder allows it, else dynamic padding; ``packed`` is True, False (not asked) or the reason
    the encoder cannot pack."""

    if pack:
        reason = unpackable(encoder)
        if reason is None:
            return packed_collator(encoder), True
        return make_collate(tokenizer), reason
    return make_collate(tokenizer), False
