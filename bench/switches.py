"""Same metrics with every speed switch on and with all of them off (UDPOS, several seeds).

On: length-grouped batches, dynamic padding, fused AdamW, sparse embedding gradients (on one CPU
process), SDPA attention, length-sorted prediction with dynamic padding; ``--pack``: packed
batches instead of grouped ones. Off: plain shuffled batches, every sequence padded to 128, the
per-tensor AdamW loop, dense embedding gradients, eager attention, and the padded plain
prediction loop of
bench/predict.py. Each run fine-tunes the same encoder on UDPOS English training sentences and
scores zero-shot UDPOS test files with xstilts' scorer (the XTREME metric); the script reports
each setting's per-seed average over languages, their mean and standard deviation, and how far
apart the two means are in seed standard deviations.

    python bench/switches.py --model tiny --seeds 1,2,3 --epochs 3 --json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

SWITCHES = ("group_by_length", "dynamic_padding", "fused_optimizer", "sparse_embedding_grads", "sdpa",
            "sorted_prediction")


def run_one(model_dir, on: bool, seed: int, args, train_ex, test_sets) -> dict:
    # which switches the "off" run turns off (all by default; --off group_by_length: that one)
    if on:
        off: set[str] = set()
    else:
        off = set(SWITCHES) if args.off == "all" else set(args.off.split(","))

    def enabled(name: str) -> bool:
        return name not in off

    import torch
    from predict import plain_tagging
    from transformers import AutoModel

    from xstilts.data.features import featurize, make_collate
    from xstilts.evaluation.predict import PredictOptions, predict_examples
    from xstilts.evaluation.scorer import score_language
    from xstilts.models.heads import build_model
    from xstilts.train.loop import train
    from xstilts.train.train_config import TrainConfig

    encoder = AutoModel.from_pretrained(model_dir, attn_implementation="sdpa" if enabled("sdpa") else "eager")
    _, tokenizer = common.load_encoder(model_dir)
    torch.manual_seed(seed)
    model = build_model("udpos", encoder)
    feats = featurize("udpos", train_ex, tokenizer, max_length=128, for_training=True)
    collate = make_collate(tokenizer)
    if not enabled("dynamic_padding"):
        pad = tokenizer.pad_token_id

        def collate(fs, _inner=collate):  # noqa: F811 - padded to 128 when the switch is off
            b = _inner(fs)
            w = 128 - b["input_ids"].shape[1]
            return {k: torch.nn.functional.pad(v, (0, w), value=pad if k == "input_ids"
                                               else -100 if k == "labels" else 0)
                    for k, v in b.items()}  # fmt: skip

    if on and args.pack:  # the on run packs its random batches instead of grouping by length
        from xstilts.models.packing import packed_collator

        collate = packed_collator(encoder)
        off = off | {"group_by_length"}
    config = TrainConfig(
        learning_rate=args.lr, batch_size=args.batch_size, epochs=args.epochs, seed=seed,
        warmup_ratio=0.1, group_by_length=enabled("group_by_length"), mega_batch_mult=args.mega_batch_mult,
        fused_optimizer=enabled("fused_optimizer"), progress=False,
        sparse_embedding_grads=None if enabled("sparse_embedding_grads") else False,
        tensorboard=False, log_every=0, cpu=True, mixed_precision=args.mixed_precision if on else "no",
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        train(model, feats, collate, config, out_dir=tmp)
        train_s = time.perf_counter() - t
    model.eval()
    scores = {}
    t = time.perf_counter()
    for lang, exs in test_sets.items():
        if enabled("sorted_prediction"):
            pred = predict_examples("udpos", model, tokenizer, exs, PredictOptions(device="cpu"))
        else:
            pred = plain_tagging(model, tokenizer, exs, 32)
        scores[lang] = next(iter(score_language("udpos", lang, exs, pred).values()))
    return {
        "on": on, "off_switches": sorted(off), "seed": seed, "train_s": train_s, "predict_s": time.perf_counter() - t,
        "scores": scores, "average": statistics.mean(scores.values()),
    }  # fmt: skip


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="tiny")
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--train-sentences", type=int, default=1000)
    p.add_argument("--langs", default="en,af,es,fr,it,nl,pt")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data", default=None)
    p.add_argument("--off", default="all", help="switches the off run turns off: all, or "
                   "comma-separated of " + ",".join(SWITCHES))
    p.add_argument("--mega-batch-mult", type=int, default=50,
                   help="length groups are formed within windows of this many batches (TrainConfig's)")
    p.add_argument("--runs", default="on,off", help="which settings to run: on,off | on | off")
    p.add_argument("--pack", action="store_true", help="the on run packs each random batch into one "
                   "padding-free row (xstilts.models.packing) instead of grouping by length")
    p.add_argument("--mixed-precision", default="no", choices=("no", "bf16"),
                   help="the on run's training precision (bf16: autocast on CPU; prediction stays fp32)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    unknown = set(args.off.split(",")) - set(SWITCHES) if args.off != "all" else set()
    if unknown:
        p.error(f"--off: unknown switch(es) {', '.join(sorted(unknown))}; known: {', '.join(SWITCHES)}")
    common.set_threads(args.threads)
    from xstilts.data.readers import read_examples

    data = common.data_dir(args.data)
    train_ex = read_examples("udpos", data, "train", "en")[: args.train_sentences]
    test_sets = {lang: read_examples("udpos", data, "test", lang) for lang in args.langs.split(",")}
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        corpus = [" ".join(e.tokens) for e in train_ex]
        model_dir = common.prepare_model(args.model, "udpos", Path(tmp), corpus)
        for seed in [int(s) for s in args.seeds.split(",")]:
            for on in [x == "on" for x in args.runs.split(",")]:
                r = run_one(model_dir, on, seed, args, train_ex, test_sets)
                runs.append(r)
                if not args.json:
                    print(f"seed {seed} {'on ' if on else 'off'}: average {r['average']:.2f} "
                          f"(train {r['train_s']:.1f} s, predict {r['predict_s']:.1f} s)", flush=True)  # fmt: skip
    summary = {"config": vars(args) | {"command": " ".join(sys.argv)},
               "machine": common.machine_info(), "runs": runs}  # fmt: skip
    for on in {r["on"] for r in runs}:
        avgs = [r["average"] for r in runs if r["on"] == on]
        summary["on" if on else "off"] = {
            "mean": statistics.mean(avgs),
            "sd": statistics.stdev(avgs) if len(avgs) > 1 else float("nan"),
            "train_s": statistics.mean(r["train_s"] for r in runs if r["on"] == on),
        }
    if "on" in summary and "off" in summary:
        sd = max(summary["on"]["sd"], summary["off"]["sd"])
        summary["difference"] = summary["on"]["mean"] - summary["off"]["mean"]
        summary["difference_in_sd"] = summary["difference"] / sd if sd and sd == sd else None
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        for k in ("on", "off"):
            if k in summary:
                d = summary[k]
                print(f"{k:>3}: mean {d['mean']:.2f} sd {d['sd']:.2f} (train {d['train_s']:.1f} s/run)")
        if "difference" in summary:
            print(f"difference {summary['difference']:+.2f} = {summary['difference_in_sd']} seed sd")
    return summary


if __name__ == "__main__":
    main()
