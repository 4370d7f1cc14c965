"""Operations per training step, padded against packed rows: a CPU proxy for GPU launch overhead.

On a GPU a step of small batches is host-bound (bench/RESULTS.md: 4.3 s of CPU time against
1.8 s of kernel time over 60 steps), so every extra operator the host dispatches costs time.
This counts the ATen operators of one training step (forward, backward, AdamW) with the
profiler, for one batch of UDPOS-English-like sentence lengths through a 24-layer encoder (XLM-R
Large's depth; the width does not change the count, so it is narrow enough for a CPU):

* ``padded``: the batch padded to its longest sentence (dynamic padding);
* ``blocked``: one packed row, attention in the masked-block form accelerators run;
* ``per-sequence``: one packed row, one attention call per sequence (the CPU form).

"kernels" counts only the operators that launch work on a device (copies, fills, arithmetic,
matmuls, index ops...), "all" every operator including views and allocations.

    python bench/launches.py --json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

# operators that only make views or allocate: no device work of their own
NO_KERNEL = {
    "aten::empty", "aten::empty_strided", "aten::empty_like", "aten::new_empty", "aten::new_empty_strided",
    "aten::view", "aten::_unsafe_view", "aten::reshape", "aten::_reshape_alias", "aten::as_strided",
    "aten::transpose", "aten::t", "aten::permute", "aten::expand", "aten::expand_as", "aten::squeeze",
    "aten::unsqueeze", "aten::select", "aten::slice", "aten::narrow", "aten::detach", "aten::alias",
    "aten::split", "aten::split_with_sizes", "aten::unbind", "aten::resize_", "aten::lift_fresh",
    "aten::view_as", "aten::unflatten", "aten::flatten", "aten::contiguous", "aten::to", "aten::numel",
    "aten::size", "aten::stride", "aten::is_nonzero", "aten::result_type", "aten::_has_compatible_shallow_copy_type",
}  # fmt: skip
# composite operators whose work is counted in the operators they call
COMPOSITE = {
    "aten::linear", "aten::matmul", "aten::dropout", "aten::layer_norm", "aten::scaled_dot_product_attention",
    "aten::cross_entropy_loss", "aten::embedding", "aten::zeros", "aten::zeros_like", "aten::new_zeros",
    "aten::new_full", "aten::full", "aten::ones_like", "aten::_to_copy", "aten::clone", "aten::index_copy",
    "aten::index_put", "aten::nll_loss_nd", "aten::log_softmax", "aten::softmax",
}  # fmt: skip


def count(mode: str, layers: int, batch: int) -> dict:
    import torch
    from gpu_bench import build_encoder, udpos_like_features
    from torch.profiler import ProfilerActivity, profile

    from xstilts.data.features import make_collate
    from xstilts.models import packing
    from xstilts.models.heads import build_model
    from xstilts.models.tiny import build_tiny_tokenizer

    tok = build_tiny_tokenizer(vocab_size=800)
    tok.model_max_length = 512
    feats, _ = udpos_like_features(batch, tok, Path("/nonexistent"))  # synthetic lengths, fixed seed
    shape = dict(vocab_size=1000, hidden_size=64, num_hidden_layers=layers, num_attention_heads=2,
                 intermediate_size=128, max_position_embeddings=514)  # fmt: skip
    model = build_model("tagging", build_encoder(shape, "cpu"), num_labels=17)
    collate = make_collate(tok) if mode == "padded" else packing.packed_collator(model.encoder)
    real = packing.per_sequence
    packing.per_sequence = real if mode == "per-sequence" else (lambda query: False)
    try:
        batch_tensors = collate(feats)
        optimizer = torch.optim.AdamW(model.parameters())

        def step():
            model(**batch_tensors).loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        step()  # the optimizer's state is created in the first step
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            step()
    finally:
        packing.per_sequence = real
    ops = {e.key: e.count for e in prof.key_averages() if e.key.startswith("aten::")}
    kernels = sum(n for k, n in ops.items() if k not in NO_KERNEL and k not in COMPOSITE)
    return {"all": sum(ops.values()), "kernels": kernels, "ops": ops}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--layers", type=int, default=24)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    result = {"layers": args.layers, "batch_size": args.batch_size, "per_step": {}}
    for mode in ("padded", "blocked", "per-sequence"):
        r = count(mode, args.layers, args.batch_size)
        result["per_step"][mode] = r
        print(f"{mode:>13}: {r['kernels']:6d} kernel-launching operators, {r['all']:6d} in all", file=sys.stderr)
    if args.json:
        print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
