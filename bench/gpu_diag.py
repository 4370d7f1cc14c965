"""GPU diagnosis (one device call): where xstilts' training step spends its time on a GPU.

Runs the XLM-R-Large-shaped tagging model of ``gpu_bench.py`` on variable-length batches with
xstilts ``train()`` under several settings (each after the HF ``Trainer`` has warmed the GPU),
then profiles a few steps with ``torch.profiler`` and prints the kernels that take the most GPU
time. ``--smoke`` runs it on CPU with the tiny model.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gpu_bench as gb  # noqa: E402
import train as tb  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    import torch
    from torch.profiler import ProfilerActivity, profile

    from xstilts.models.tiny import build_tiny_tokenizer

    device = "cpu" if args.smoke else "cuda"
    shape = gb.TINY if args.smoke else gb.LARGE
    steps, bs = (2, 4) if args.smoke else (args.steps, 32)
    tok = build_tiny_tokenizer(vocab_size=800)
    feats, _ = gb.udpos_like_features(bs * steps, tok, Path("/nonexistent"))
    results = {}

    def timed(name, fn):
        model = gb.tagging_model(shape, device)
        with tempfile.TemporaryDirectory() as tmp:
            r = fn(model, tmp)
        results[name] = bs * steps / r["seconds"]
        print(f"{name}: {results[name]:.1f} ex/s  ({r.get('padded_tokens')} padded tokens)", flush=True)
        del model
        if device == "cuda":
            torch.cuda.empty_cache()

    kw = dict(batch_size=bs, steps=steps, device=device, seed=1)
    timed("C hf grouped", lambda m, t: tb.run_hf(m, feats, tok, out_dir=t, padded=False, task="udpos", **kw))
    timed("A", lambda m, t: tb.run_xstilts(m, feats, tok, out_dir=t, **kw))
    timed("A again", lambda m, t: tb.run_xstilts(m, feats, tok, out_dir=t, **kw))
    timed("A pin_memory=False", lambda m, t: tb.run_xstilts(m, feats, tok, out_dir=t, pin_memory=False, **kw))
    timed("A group_by_length=False", lambda m, t: tb.run_xstilts(m, feats, tok, out_dir=t, group_by_length=False, **kw))
    timed("A fused_optimizer=False", lambda m, t: tb.run_xstilts(m, feats, tok, out_dir=t, fused_optimizer=False, **kw))
    timed("A max_grad_norm=None", lambda m, t: tb.run_xstilts(m, feats, tok, out_dir=t, max_grad_norm=None, **kw))

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    sort = "self_cuda_time_total" if device == "cuda" else "self_cpu_time_total"
    for name, fe, b in (("variable", feats, bs), ("fixed128x64", gb.fixed_features(64 * 12, 128, shape["vocab_size"]), 64)):
        model = gb.tagging_model(shape, device)
        n = len(fe) // b
        with tempfile.TemporaryDirectory() as tmp:
            tb.run_xstilts(model, fe[: b * 2], tok, out_dir=Path(tmp) / "w", batch_size=b, steps=2, device=device, seed=1)
            with profile(activities=acts) as prof:
                t = time.perf_counter()
                r = tb.run_xstilts(model, fe, tok, out_dir=Path(tmp) / "p", batch_size=b, steps=n, device=device, seed=1)
                wall = time.perf_counter() - t
        print(f"\n=== profile {name}: {n} steps, train {r['seconds']:.3f}s, call {wall:.3f}s", flush=True)
        print(prof.key_averages().table(sort_by=sort, row_limit=30, max_name_column_width=70), flush=True)
        del model
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
