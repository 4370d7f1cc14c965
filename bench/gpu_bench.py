"""GPU benchmark (run by bench/gpu.sh): XLM-R-Large shapes, bf16, sequence length 128.

Sections, each timed on its own and recorded even when another fails:

1. ``mfu``: xstilts ``train()`` (A) and the Hugging Face ``Trainer`` (HF) on fixed-length
   128-token sequences: tokens/s and model FLOPs utilisation. FLOPs per token are ``6 * N``
   with N the non-embedding parameters (an embedding lookup is no matmul); ``mfu_with_attn``
   adds the attention score/value matmuls, ``12 * layers * seq * width`` per token.
2. ``tagging``: A (batches packed into padding-free rows, as ``xstilts run`` trains tagging),
   Ar (random batches dynamically padded) and Ag (length-grouped, dynamically padded) against
   HF with dynamic padding and length grouping (C) and HF padded to 128 (B) on
   UDPOS-English-shaped sentences (the real file if the data folder is there, otherwise random
   ids with the same length distribution), examples/s and real tokens/s.
3. ``predict``: xstilts' prediction path (its defaults: bf16 autocast on GPUs, batches of at
   most 16384 padded tokens there; the same in float32; at 4096 tokens, the padded loop's
   memory; and in batches of 32 sentences, its default before 2026-11-27) against XTREME's loop
   padding batches of 32 to 128 in float32,
   sentences/s, and the share of words tagged as that loop tags them; and Tatoeba's retrieval
   embeddings (bf16 by default, and float32) against the same kind of padded loop in float32.
4. ``compile``: A as in ``mfu`` with ``compile=True`` (last: its first steps compile the model).

Random weights; a locally trained tokenizer (XLM-R conventions) feeds ids below the 250k vocab.
``--smoke`` runs the same code on CPU with a tiny model and 2 steps (to test the script).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

# bf16 dense peak (no sparsity), TFLOP/s, by device-name substring (first match wins)
PEAK_BF16_TFLOPS = [
    ("H100 PCIe", 756.0),
    ("H100", 989.4),
    ("H200", 989.4),
    ("GH200", 989.4),
    ("A100", 312.0),
    ("L40S", 362.0),
]

LARGE = dict(vocab_size=250002, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
             intermediate_size=4096, max_position_embeddings=514)  # fmt: skip
TINY = dict(vocab_size=1000, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=128, max_position_embeddings=514)  # fmt: skip
NUM_TAGS = 17


def peak_tflops(name: str) -> float | None:
    for key, value in PEAK_BF16_TFLOPS:
        if key in name:
            return value
    return None


def build_encoder(shape: dict, device: str, seed: int = 0):
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaModel

    config = XLMRobertaConfig(**shape, pad_token_id=1, bos_token_id=0, eos_token_id=2,
                              type_vocab_size=1, attn_implementation="sdpa")  # fmt: skip
    torch.manual_seed(seed)
    with torch.device(device):
        model = XLMRobertaModel(config, add_pooling_layer=False)
    return model


def tagging_model(shape, device, seed=0):
    import torch

    from xstilts.models.heads import build_model

    encoder = build_encoder(shape, device, seed)
    torch.manual_seed(seed)
    return build_model("tagging", encoder, num_labels=NUM_TAGS).to(device)


def non_embedding_params(model) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if "embeddings" not in n)


def fixed_features(n: int, length: int, vocab: int, seed: int = 0) -> list[dict]:
    import random

    rng = random.Random(seed)
    feats = []
    for _ in range(n):
        ids = [0] + [rng.randrange(5, vocab) for _ in range(length - 2)] + [2]
        labels = [-100] + [rng.randrange(NUM_TAGS) for _ in range(length - 2)] + [-100]
        feats.append({"input_ids": ids, "attention_mask": [1] * length, "labels": labels})
    return feats


def udpos_like_features(n: int, tokenizer, data: Path, seed: int = 0) -> tuple[list[dict], str]:
    """Features of real UDPOS English sentences if present, else random ids of matching lengths."""
    import random

    try:
        from xstilts.data.features import MODEL_KEYS, featurize
        from xstilts.data.readers import read_examples

        examples = read_examples("udpos", data, "train", "en")
        feats = featurize("udpos", examples, tokenizer, max_length=128, for_training=True)
        feats = [{k: f[k] for k in MODEL_KEYS if k in f} for f in feats]
        source = f"udpos train-en ({data})"
    except Exception as exc:  # noqa: BLE001 - any missing piece: fall back to synthetic
        rng = random.Random(seed)
        feats = []
        for _ in range(1000):  # UDPOS-en-like: mean ~31 pieces, long tail to 128
            length = max(4, min(128, int(rng.lognormvariate(3.25, 0.55))))
            feats.append(fixed_features(1, length, 1000, rng.randrange(10**6))[0])
        source = f"synthetic lengths ({type(exc).__name__}: {exc})"
    rng = random.Random(seed)
    order = list(range(len(feats)))
    rng.shuffle(order)
    while len(order) < n:
        order += order
    return [feats[i] for i in order[:n]], source


def sync():
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def section_mfu(args, device, out: dict, setups=("A", "HF"), compile_a: bool = False) -> None:
    import torch
    import train as tb  # bench/train.py

    seq, bs, steps = 128, args.mfu_batch_size, args.steps
    feats = fixed_features(bs * steps, seq, args.shape["vocab_size"])
    feats_warm = fixed_features(bs * args.warmup, seq, args.shape["vocab_size"], seed=1)
    tok = args.tokenizer
    name = torch.cuda.get_device_name(0) if device == "cuda" else "cpu"
    peak = peak_tflops(name) if device == "cuda" else None
    out["batch_size"] = bs
    for setup in setups:
        model = tagging_model(args.shape, device)
        n_params = non_embedding_params(model)
        layers, width = args.shape["num_hidden_layers"], args.shape["hidden_size"]
        kw = dict(batch_size=bs, device=device, seed=1)
        a_kw = {"compile": True} if compile_a else {}
        with tempfile.TemporaryDirectory() as tmp:
            t_warm = time.perf_counter()
            if args.warmup:  # the compile, when on, happens here
                run = tb.run_xstilts if setup == "A" else tb.run_hf
                extra = a_kw if setup == "A" else {"padded": False, "task": "udpos"}
                run(model, feats_warm, tok, steps=args.warmup, out_dir=Path(tmp) / "w", **kw, **extra)
            warm_s = time.perf_counter() - t_warm
            if device == "cuda":
                torch.cuda.reset_peak_memory_stats()
            if setup == "A":
                r = tb.run_xstilts(model, feats, tok, steps=steps, out_dir=Path(tmp) / "m", **kw, **a_kw)
            else:
                r = tb.run_hf(model, feats, tok, steps=steps, out_dir=Path(tmp) / "m",
                              padded=False, task="udpos", **kw)  # fmt: skip
        tokens_s = bs * steps * seq / r["seconds"]
        flops = 6 * n_params * tokens_s
        flops_attn = flops + 12 * layers * seq * width * tokens_s
        out[setup] = {
            "tokens_per_s": tokens_s,
            "seconds": r["seconds"],
            "warmup_seconds": warm_s,
            "non_embedding_params": n_params,
            "model_tflops_per_s": flops / 1e12,
            "mfu": flops / (peak * 1e12) if peak else None,
            "mfu_with_attn": flops_attn / (peak * 1e12) if peak else None,
            "peak_mem_mib": common.peak_memory_mib(device),
            "train_loss": r["train_loss"],
        }
        del model
        if device == "cuda":
            torch.cuda.empty_cache()
        print(f"mfu {setup}: {out[setup]}", flush=True)
    out["peak_bf16_tflops"] = peak
    out["device_name"] = name
    if out.get("A") and out.get("HF"):
        out["A/HF"] = out["A"]["tokens_per_s"] / out["HF"]["tokens_per_s"]


def section_compile(args, device, out: dict) -> None:
    """A with ``compile=True`` (torch.compile of the forward pass), same shapes as ``mfu``."""
    section_mfu(args, device, out, setups=("A",), compile_a=True)


def section_tagging(args, device, out: dict) -> None:
    import torch
    import train as tb

    bs, steps = args.batch_size, args.steps
    feats, source = udpos_like_features(bs * steps, args.tokenizer, args.data)
    out["data"] = source
    real = sum(len(f["input_ids"]) for f in feats)
    # A packs its batches (xstilts run's tagging default); Ag: length-grouped batches, unpacked,
    # to tell whether packing's extra host-side work pays on this device against grouping
    for setup in ("A", "Ar", "Ag", "C", "B"):
        model = tagging_model(args.shape, device)
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        kw = dict(batch_size=bs, steps=steps, device=device, seed=1)
        # Each setup first runs once untimed over the same batches: the first time a GPU meets a
        # sequence length it builds attention plans and allocator blocks for it, and without
        # this pass whichever setup runs first pays that for all the others (2x, measured).
        for _pass in ("untimed", "timed"):
            with tempfile.TemporaryDirectory() as tmp:
                if setup in ("A", "Ar", "Ag"):
                    r = tb.run_xstilts(model, feats, args.tokenizer, out_dir=tmp, pack=setup == "A",
                                       group_by_length=setup == "Ag", **kw)  # fmt: skip
                else:
                    r = tb.run_hf(model, feats, args.tokenizer, out_dir=tmp, padded=setup == "B",
                                  task="udpos", **kw)  # fmt: skip
        out[setup] = {
            "examples_per_s": bs * steps / r["seconds"],
            "real_tokens_per_s": real / r["seconds"],
            "peak_mem_mib": common.peak_memory_mib(device),
        }
        del model
        if device == "cuda":
            torch.cuda.empty_cache()
        print(f"tagging {setup}: {out[setup]}", flush=True)
    out["A/Ag"] = out["A"]["examples_per_s"] / out["Ag"]["examples_per_s"]
    for mine in ("A", "Ar", "Ag"):
        for other in ("B", "C"):
            out[f"{mine}/{other}"] = out[mine]["examples_per_s"] / out[other]["examples_per_s"]


def section_predict(args, device, out: dict) -> None:
    import random

    import predict as pb  # bench/predict.py

    from xstilts.data.examples import TaggingExample
    from xstilts.evaluation.predict import PredictOptions, predict_examples

    examples = []
    try:
        from xstilts.data.readers import available, read_examples

        for lang in available("udpos", args.data).get("test", []):
            examples += read_examples("udpos", args.data, "test", lang)
        out["data"] = f"udpos test, all languages present ({args.data})"
    except Exception as exc:  # noqa: BLE001
        out["data"] = f"synthetic sentences ({type(exc).__name__})"
    if not examples:
        from xstilts.models.tiny import BUILTIN_CORPUS

        words = " ".join(BUILTIN_CORPUS).split()
        rng = random.Random(0)
        for i in range(1920):
            toks = [rng.choice(words) for _ in range(max(2, int(rng.lognormvariate(2.9, 0.5))))]
            examples.append(TaggingExample(id=str(i), tokens=toks, tags=None))
    model = tagging_model(args.shape, device).eval()
    model.labels = [f"T{i}" for i in range(NUM_TAGS)]
    predict_examples("udpos", model, args.tokenizer, examples[:64], PredictOptions(device=device))  # warm-up
    predict_examples("udpos", model, args.tokenizer, examples[:64], PredictOptions(device=device, precision="no"))
    # X: `xstilts predict`'s defaults (packed rows, bf16 autocast on GPUs, batches of at most
    # 16384 padded tokens); Xf: the same in float32; X4096: X in batches of at most 32 x 128
    # tokens, P's memory; X32: X in batches of 32 sentences (the default before 2026-11-27);
    # P: XTREME's loop, batches of 32 padded to 128.
    setups = {
        "X": lambda: predict_examples("udpos", model, args.tokenizer, examples, PredictOptions(device=device)),
        "Xf": lambda: predict_examples("udpos", model, args.tokenizer, examples,
                                       PredictOptions(device=device, precision="no")),
        "X4096": lambda: predict_examples("udpos", model, args.tokenizer, examples,
                                          PredictOptions(max_tokens=4096, device=device)),
        "X32": lambda: predict_examples("udpos", model, args.tokenizer, examples,
                                        PredictOptions(batch_size=32, max_tokens=0, device=device)),
        "P": lambda: pb.plain_tagging(model, args.tokenizer, examples, 32, device=device),
    }
    tags = timed_setups(setups, len(examples), out, "predict")
    out["sentences"] = len(examples)
    for setup in ("X", "Xf", "X4096", "X32"):
        out[f"{setup}/P"] = out[setup]["sentences_per_s"] / out["P"]["sentences_per_s"]
        words = [(a == b) for x, y in zip(tags[setup], tags["P"]) for a, b in zip(x, y)]
        out[f"{setup}_same_tags_as_P"] = sum(words) / max(1, len(words))
    out["retrieval"] = retrieval_throughput(model.encoder, args.tokenizer, examples, args.data)


def timed_setups(setups: dict, sentences: int, out: dict, label: str) -> dict:
    """Run each setup once, timed between device synchronisations; ``out[setup]`` gets its
    sentences/s, and the setups' outputs are returned by name."""
    outputs = {}
    for setup, run in setups.items():
        sync()
        t = time.perf_counter()
        outputs[setup] = run()
        sync()
        out[setup] = {"sentences_per_s": sentences / (time.perf_counter() - t)}
        print(f"{label} {setup}: {out[setup]}", flush=True)
    return outputs


def retrieval_throughput(encoder, tokenizer, examples, data) -> dict:
    """Tatoeba's prediction: :func:`xstilts.evaluation.retrieval.embed` (X, its defaults: bf16
    autocast on GPUs, longest first, dynamic padding, 16384 tokens per batch there; Xf, the same
    in float32) against bench/predict.py's float32 loop padding batches of 32 to 128 (P);
    sentences/s, the largest embedding difference and the smallest cosine to P's embedding."""
    import numpy as np
    import predict as pb  # bench/predict.py

    from xstilts.evaluation.retrieval import embed, resolve_layer

    sentences, source = [], "tatoeba test, all languages present, both sides"
    try:
        from xstilts.data.readers import available, read_examples

        for lang in available("tatoeba", data).get("test", []):
            bitext = read_examples("tatoeba", data, "test", lang)[0]
            sentences += list(bitext.source.values()) + list(bitext.target.values())
    except Exception as exc:  # noqa: BLE001
        source = f"unavailable ({type(exc).__name__})"
    if len(sentences) > 4000:  # an even sample of every language, to keep the section short
        sentences = sentences[:: len(sentences) // 4000][:4000]
        source += ", 4000 sampled evenly"
    if not sentences:  # Tatoeba's sentences are short: the tagging sentences' first ten words
        sentences = [" ".join(e.tokens[:10]) for e in examples]
        source = "the predict section's sentences, cut to 10 words"
    layer = resolve_layer(encoder, None)
    embed(encoder, tokenizer, sentences[:64], layer=layer, progress=False)  # warm-up
    out: dict = {"data": source, "sentences": len(sentences), "layer": layer}
    got = timed_setups({
        "X": lambda: embed(encoder, tokenizer, sentences, layer=layer, max_length=pb.MAX_LENGTH, progress=False),
        "Xf": lambda: embed(encoder, tokenizer, sentences, layer=layer, max_length=pb.MAX_LENGTH, progress=False,
                            precision="no"),
        "P": lambda: pb.plain_embed(encoder, tokenizer, sentences, layer, 32, device=encoder.device),
    }, len(sentences), out, "predict retrieval")  # fmt: skip
    for setup in ("X", "Xf"):
        out[f"{setup}/P"] = out[setup]["sentences_per_s"] / out["P"]["sentences_per_s"]
        out[f"{setup}_max_abs_diff"] = float(np.abs(got[setup] - got["P"]).max())
        out[f"{setup}_min_cosine"] = float((got[setup] * got["P"]).sum(axis=1).min())
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true", help="tiny model on CPU, 2 steps")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=32, help="tagging and predict sections")
    p.add_argument("--mfu-batch-size", type=int, default=256,
                   help="mfu and compile sections: sequences of 128 tokens per step (on an H200, "
                   "batch 64 left the step host- and overhead-bound: 22.6%% MFU against 33.4%% at 256)")
    p.add_argument("--sections", default="mfu,tagging,predict,compile")
    p.add_argument("--data", default=None)
    p.add_argument("--out", default=None, help="JSON file to write")
    args = p.parse_args(argv)
    import torch

    from xstilts.models.tiny import build_tiny_tokenizer

    if args.smoke:
        args.steps, args.warmup, args.batch_size, args.mfu_batch_size = 2, 1, 4, 4
        args.shape = TINY
        device = "cpu"
    else:
        args.shape = LARGE
        device = "cuda" if torch.cuda.is_available() else "cpu"
    common.set_threads(int(os.environ.get("OMP_NUM_THREADS", "1")) if device == "cpu" else os.cpu_count() or 1)
    args.data = common.data_dir(args.data)
    args.tokenizer = build_tiny_tokenizer(vocab_size=800)
    args.tokenizer.model_max_length = 512
    result: dict[str, Any] = {
        "machine": common.machine_info(),
        "device": device,
        "shape": args.shape,
        "smoke": args.smoke,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "seq_len": 128,
        "precision": "bf16 autocast" if device == "cuda" else "fp32",
        "sections": {},
    }
    for name in [s for s in args.sections.split(",") if s]:
        out: dict[str, Any] = {}
        t = time.perf_counter()
        try:
            {"mfu": section_mfu, "tagging": section_tagging, "predict": section_predict,
             "compile": section_compile}[name](
                args, device, out
            )
        except Exception as exc:  # noqa: BLE001 - record and go on with the next section
            out["error"] = f"{type(exc).__name__}: {exc}"
            out["traceback"] = traceback.format_exc()[-3000:]
            print(out["traceback"], file=sys.stderr, flush=True)
        out["wall_s"] = time.perf_counter() - t
        result["sections"][name] = out
        if args.out:  # after every section, so a timeout still leaves what was measured
            Path(args.out).write_text(json.dumps(result, indent=2, default=str))
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=2, default=str))
    return result


if __name__ == "__main__":
    main()
