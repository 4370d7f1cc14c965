"""Zero-shot prediction throughput: xstilts' prediction path against a plain padded loop.

* **UDPOS** test files: :func:`xstilts.evaluation.predict.predict_examples` with its defaults
  (features sorted by length, batches of at most 1024 padded tokens on CPU, a quarter of the
  plain loop's, and 16384 on GPUs, each run as one padding-free packed row, only the label
  positions' argmax leaves the model) against a plain loop that pads every feature to 128
  tokens and runs batches of ``--batch-size`` (32) in file order. Both start from the
  same examples and include featurization and decoding into tags; both run under
  ``torch.no_grad`` with the same model.
* **Tatoeba**: :func:`xstilts.evaluation.retrieval.embed` (length-sorted, dynamic padding, the
  same token bound) against a plain loop padding every sentence to 128 tokens, both
  mean-pooling the same layer.

``--x-max-tokens 0`` gives xstilts batches of ``--batch-size`` sentences instead (its default
before 2026-11-27).

The setups alternate X P X P ... in one process (same threads). As a check that speed costs
nothing, the script compares the two setups' outputs: identical tags, embeddings within 1e-4.

    python bench/predict.py --model multilingual-e5-small --reps 3 --json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

MAX_LENGTH = 128


def plain_tagging(model, tokenizer, examples, batch_size: int, device=None) -> list[list[str]]:
    """The reference loop: features padded to MAX_LENGTH, batches in file order."""
    import torch

    from xstilts.data.features import featurize

    feats = featurize("udpos", examples, tokenizer, max_length=MAX_LENGTH, labels=model.labels)
    pad = tokenizer.pad_token_id
    tags: list[list[str | None]] = [[None] * len(ex.tokens) for ex in examples]
    model.eval()
    with torch.no_grad():
        for start in range(0, len(feats), batch_size):
            chunk = feats[start : start + batch_size]
            ids = torch.tensor([f["input_ids"] + [pad] * (MAX_LENGTH - len(f["input_ids"])) for f in chunk])
            mask = torch.tensor([[1] * len(f["input_ids"]) + [0] * (MAX_LENGTH - len(f["input_ids"])) for f in chunk])
            if device is not None:
                ids, mask = ids.to(device), mask.to(device)
            logits = model(input_ids=ids, attention_mask=mask).logits
            pred = logits.detach().cpu().numpy().argmax(-1)  # one copy per batch, as XTREME's loop
            for row, f in enumerate(chunk):
                for pos, w in f["word_positions"]:
                    tags[f["example_index"]][w] = model.labels[int(pred[row, pos])]
    return tags  # type: ignore[return-value]


def plain_embed(encoder, tokenizer, sentences, layer: int, batch_size: int, device=None):
    """Mean-pooled, L2-normalised embeddings, every sentence padded to MAX_LENGTH."""
    import numpy as np
    import torch

    out = []
    encoder.eval()
    with torch.no_grad():
        for start in range(0, len(sentences), batch_size):
            enc = tokenizer(
                list(sentences[start : start + batch_size]), truncation=True,
                max_length=MAX_LENGTH, padding="max_length", return_tensors="pt",
            )  # fmt: skip
            if device is not None:
                enc = enc.to(device)
            states = encoder(**enc, output_hidden_states=True).hidden_states[layer]
            mask = enc["attention_mask"].unsqueeze(-1).to(states.dtype)
            pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1)
            pooled = torch.nn.functional.normalize(pooled.float(), dim=-1)
            out.append(pooled.cpu().numpy())  # one copy per batch
    return np.concatenate(out).astype(np.float32)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="tiny", help="tiny | multilingual-e5-small | PATH")
    p.add_argument("--udpos-langs", default="all", help="comma-separated, or all present")
    p.add_argument("--tatoeba-langs", default="de,ja")
    p.add_argument("--tatoeba-max", type=int, default=300, help="sentences per side and language")
    p.add_argument("--batch-size", type=int, default=32, help="the plain loop's batch (XTREME's)")
    p.add_argument("--x-max-tokens", type=int, default=None,
                   help="xstilts' token bound per batch (default: its own for the device; 0: --batch-size sentences)")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data", default=None)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    common.set_threads(args.threads)
    import numpy as np
    import torch

    from xstilts.data.readers import read_examples
    from xstilts.evaluation.predict import PredictOptions, predict_examples
    from xstilts.evaluation.retrieval import embed, resolve_layer
    from xstilts.models.heads import build_model

    data = common.data_dir(args.data)
    if args.udpos_langs == "all":
        from xstilts.data.readers import available

        args.udpos_langs = ",".join(available("udpos", data).get("test", []))
    udpos = {
        lang: read_examples("udpos", data, "test", lang)
        for lang in args.udpos_langs.split(",") if lang
    }  # fmt: skip
    sentences: list[str] = []
    for lang in [x for x in args.tatoeba_langs.split(",") if x]:
        bitext = read_examples("tatoeba", data, "test", lang)[0]
        sentences += list(bitext.source.values())[: args.tatoeba_max]
        sentences += list(bitext.target.values())[: args.tatoeba_max]
    corpus = [" ".join(ex.tokens) for exs in udpos.values() for ex in exs] + sentences
    with tempfile.TemporaryDirectory(prefix="xstilts-bench-") as tmp:
        model_dir = common.prepare_model(args.model, "udpos", Path(tmp), corpus)
        encoder, tokenizer = common.load_encoder(model_dir)
    torch.manual_seed(0)
    model = build_model("udpos", encoder).eval()
    layer = resolve_layer(encoder, None)
    n_sent = sum(len(v) for v in udpos.values())
    info = common.machine_info()

    # X: xstilts' defaults, or batches of --batch-size sentences with --x-max-tokens 0
    x_bounds = {} if args.x_max_tokens is None else {"max_tokens": args.x_max_tokens, "batch_size": args.batch_size}
    runs: list[dict[str, Any]] = []
    checks: dict[str, Any] = {}
    for rep in range(args.reps):
        # --- UDPOS
        t = time.perf_counter()
        fast = {
            lang: predict_examples("udpos", model, tokenizer, exs,
                                   PredictOptions(device=None if torch.cuda.is_available() else "cpu", **x_bounds))
            for lang, exs in udpos.items()
        }  # fmt: skip
        tx = time.perf_counter() - t
        t = time.perf_counter()
        slow = {lang: plain_tagging(model, tokenizer, exs, args.batch_size) for lang, exs in udpos.items()}
        tp = time.perf_counter() - t
        runs.append({"rep": rep, "setup": "X", "data": "udpos", "sentences_per_s": n_sent / tx})
        runs.append({"rep": rep, "setup": "P", "data": "udpos", "sentences_per_s": n_sent / tp})
        if rep == 0:
            checks["udpos_same_tags"] = fast == slow
        # --- Tatoeba
        if sentences:
            t = time.perf_counter()
            e_fast = embed(encoder, tokenizer, sentences, layer=layer, max_length=MAX_LENGTH, progress=False,
                           **x_bounds)  # fmt: skip
            tx = time.perf_counter() - t
            t = time.perf_counter()
            e_slow = plain_embed(encoder, tokenizer, sentences, layer, args.batch_size)
            tp = time.perf_counter() - t
            runs.append({"rep": rep, "setup": "X", "data": "tatoeba", "sentences_per_s": len(sentences) / tx})
            runs.append({"rep": rep, "setup": "P", "data": "tatoeba", "sentences_per_s": len(sentences) / tp})
            if rep == 0:
                checks["tatoeba_max_abs_diff"] = float(np.abs(e_fast - e_slow).max())
        if not args.json:
            last = runs[-4:] if sentences else runs[-2:]
            print(f"rep {rep}: " + ", ".join(
                f"{r['data']} {r['setup']} {r['sentences_per_s']:.1f} sent/s" for r in last), flush=True)  # fmt: skip

    info["load_avg_end"] = os.getloadavg()
    summary: dict[str, Any] = {
        "config": {"model": args.model, "udpos_langs": args.udpos_langs, "udpos_sentences": n_sent,
                   "tatoeba_langs": args.tatoeba_langs, "tatoeba_sentences": len(sentences),
                   "batch_size": args.batch_size, "x_bounds": x_bounds or "xstilts defaults", "reps": args.reps, "threads": args.threads,
                   "command": " ".join(sys.argv)},  # fmt: skip
        "machine": info,
        "checks": checks,
        "results": {},
        "runs": runs,
    }
    for data_name in ("udpos", "tatoeba"):
        rs = [r for r in runs if r["data"] == data_name]
        if not rs:
            continue
        summary["results"][data_name] = {
            "X_sentences_per_s": common.spread([r["sentences_per_s"] for r in rs if r["setup"] == "X"]),
            "P_sentences_per_s": common.spread([r["sentences_per_s"] for r in rs if r["setup"] == "P"]),
            "X/P": common.spread(common.paired_ratios(rs, "X", "P", "sentences_per_s")),
        }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"\n{args.model}: {args.reps} reps, {args.threads} thread(s), checks {checks}")
        for name, d in summary["results"].items():
            x, pp, r = d["X_sentences_per_s"], d["P_sentences_per_s"], d["X/P"]
            print(f"  {name}: xstilts {x['median']:.1f} sent/s, padded loop {pp['median']:.1f} sent/s, "
                  f"X/P median {r['median']:.2f} (min {r['min']:.2f}, max {r['max']:.2f})")  # fmt: skip
    return summary


if __name__ == "__main__":
    main()
