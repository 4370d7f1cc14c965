"""Training throughput: xstilts' trainer against the XTREME reference recipe and a tuned HF Trainer.

Same encoder weights, same task head (xstilts' ``TaskModel``, built with the same seed), same
examples (one random subset of ``steps * batch_size`` training features, featurized once by
xstilts), same number of optimizer steps and the same optimizer settings (AdamW lr 2e-5, linear
decay, no warm-up, no weight decay, gradient clipping at 1.0). Only the recipe differs:

* **A** xstilts ``train()`` with the defaults ``xstilts run`` uses for the task: random batches,
  each packed into one padding-free row (:mod:`xstilts.models.packing`; every task kind); fused
  AdamW; sparse embedding gradients on CPU; bf16 autocast on GPUs.
  Variants: **Ar** random batches dynamically padded, not packed; **Ag** length-grouped batches
  (``group_by_length``), not packed; **Abf16** A with bf16 autocast (opt-in on CPU);
* **B** Hugging Face ``Trainer`` with every sequence padded to the maximum length (128 tagging,
  384 QA), as XTREME's ``run_tag.py`` / ``run_squad.py`` do; multiple choice (the intermediate
  tasks CosmosQA and CommonsenseQA: ``--task cosmosqa``) pads every choice to 256, phase 1's
  maximum length, as jiant's featurization does;
* **C** Hugging Face ``Trainer`` with dynamic padding (``DataCollatorForTokenClassification`` /
  ``DataCollatorWithPadding`` / ``DataCollatorForMultipleChoice``) and length grouping
  (``group_by_length``; in transformers 5: ``train_sampling_strategy="group_by_length"``; for
  multiple choice the Trainer's grouping measures the number of choices, so it groups nothing).

Setups run alternated, A B C A B C ..., each in a fresh process (its own peak memory; the same
thread count: ``--threads``, default 1, also exported as OMP_NUM_THREADS). Time is the training
loop only (first step to last), not model loading or the final save.

    python bench/train.py --model multilingual-e5-small --task udpos --steps 8 --reps 3 --json
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

TASK_MAX_LENGTH = {"udpos": 128, "panx": 128, "xquad": 384, "cosmosqa": 256, "commonsenseqa": 256}
# Where a task's training-like examples are in ../shared/data (multiple choice: dev slices only).
TASK_SPLIT = {"xquad": "test", "cosmosqa": "dev", "commonsenseqa": "dev"}
MULTIPLE_CHOICE = ("cosmosqa", "commonsenseqa")
SETUPS = ("A", "Ar", "Ag", "B", "C", "Abf16")  # see the module docstring
RATIOS = (("A", "B"), ("A", "C"), ("A", "Ar"), ("A", "Ag"), ("Abf16", "A"), ("Ar", "B"), ("Ar", "C"), ("Ag", "B"), ("Ag", "C"))
LEARNING_RATE = 2e-5


# --------------------------------------------------------------------------------------------
# data


def read_train_examples(task: str, data: Path) -> list:
    """UDPOS / PAN-X English training sentences; for QA, XQuAD-English question/context pairs
    (XTREME trains QA on SQuAD; XQuAD-en has the same form and is the QA file present here);
    CosmosQA / CommonsenseQA: their dev examples (the files present here)."""
    from xstilts.data.readers import read_examples

    return read_examples(task, data, TASK_SPLIT.get(task, "train"), "en")


def corpus_text(examples: list) -> list[str]:
    out = []
    for ex in examples:
        if hasattr(ex, "tokens"):
            out.append(" ".join(ex.tokens))
        else:
            out.extend([ex.question, ex.context, *getattr(ex, "choices", ())])
    return out


def training_features(task: str, examples: list, tokenizer, n: int, seed: int) -> list[dict]:
    """``n`` features for training (model keys only), a seeded random subset (cycled if short);
    ``n=0``: all of them, shuffled."""
    import numpy as np

    from xstilts.data.features import MODEL_KEYS, featurize

    feats = featurize(
        task, examples, tokenizer, max_length=TASK_MAX_LENGTH[task], for_training=True
    )
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(feats)).tolist()
    n = n or len(order)
    while len(order) < n:
        order += order
    return [{k: f[k] for k in MODEL_KEYS if k in f} for f in (feats[i] for i in order[:n])]


def pad_to(features: list[dict], length: int, pad_id: int) -> list[dict]:
    """Every feature padded to ``length`` (XTREME's pad-to-max-length features)."""
    out = []
    for f in features:
        g = {}
        for k, v in f.items():
            fill = pad_id if k == "input_ids" else -100 if k == "labels" else 0
            if isinstance(v, list) and v and isinstance(v[0], list):  # multiple choice: each choice
                g[k] = [c + [fill] * (length - len(c)) for c in v]
            elif isinstance(v, list):
                g[k] = v + [fill] * (length - len(v))
            else:
                g[k] = v
        out.append(g)
    return out


# --------------------------------------------------------------------------------------------
# the setups


class CountingCollate:
    """Wraps a collate function and counts what reaches the model: rows, real and padded tokens."""

    def __init__(self, fn):
        self.fn = fn
        self.rows = self.real = self.padded = 0

    def __call__(self, features):
        batch = self.fn(features)
        ids, mask = batch["input_ids"], batch.get("attention_mask")
        self.rows += len(features)  # examples (a packed row holds several)
        self.padded += int(ids.numel())
        self.real += int(mask.sum()) if mask is not None else int(ids.numel())  # packed: no padding
        return batch

    def counts(self) -> dict:
        return {"rows": self.rows, "real_tokens": self.real, "padded_tokens": self.padded}


def run_xstilts(
    model, features, tokenizer, *, batch_size, steps, device, seed, out_dir, precision="auto",
    pack=False, **config_overrides,
) -> dict:
    from xstilts.data.features import make_collate
    from xstilts.train.loop import train
    from xstilts.train.train_config import TrainConfig

    config = TrainConfig(
        learning_rate=LEARNING_RATE,
        batch_size=batch_size,
        max_steps=steps,
        seed=seed,
        progress=False,
        tensorboard=False,
        log_every=0,
        cpu=device == "cpu",
        mixed_precision=precision,
        **config_overrides,
    )
    if pack:
        from xstilts.models.packing import packed_collator

        inner = packed_collator(model.encoder)
    else:
        inner = make_collate(tokenizer)
    counter = CountingCollate(inner)
    result = train(model, features, counter, config, out_dir=out_dir)
    return {"seconds": result.train_seconds, "train_loss": result.train_loss, **counter.counts()}


class _DictOutput:
    """Wraps a TaskModel so that HF Trainer gets a plain dict (it indexes outputs[0] otherwise)."""

    @staticmethod
    def wrap(model):
        import torch

        class Wrapped(torch.nn.Module):
            def __init__(self, inner):
                super().__init__()
                self.inner = inner

            def forward(self, **batch):
                out = self.inner(**batch)
                return {"loss": out.loss, "logits": out.logits}

        return Wrapped(model)


def run_hf(
    model, features, tokenizer, *, batch_size, steps, device, seed, out_dir, padded: bool, task
) -> dict:
    import torch
    from transformers import (
        DataCollatorForMultipleChoice,
        DataCollatorForTokenClassification,
        DataCollatorWithPadding,
        Trainer,
        TrainerCallback,
        TrainingArguments,
        default_data_collator,
    )

    class Timer(TrainerCallback):
        t0 = t1 = 0.0

        def on_train_begin(self, args, state, control, **kwargs):
            Timer.t0 = time.perf_counter()

        def on_train_end(self, args, state, control, **kwargs):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            Timer.t1 = time.perf_counter()

    if padded:
        dataset = pad_to(features, TASK_MAX_LENGTH[task], tokenizer.pad_token_id)
        collator = default_data_collator
    else:
        dataset = features
        collator = (
            DataCollatorWithPadding(tokenizer) if task == "xquad"
            else DataCollatorForMultipleChoice(tokenizer) if task in MULTIPLE_CHOICE
            else DataCollatorForTokenClassification(tokenizer)
        )  # fmt: skip
    collator = CountingCollate(collator)
    bf16 = device == "cuda" and torch.cuda.is_bf16_supported()
    args = TrainingArguments(
        output_dir=str(out_dir),
        per_device_train_batch_size=batch_size,
        max_steps=steps,
        learning_rate=LEARNING_RATE,
        lr_scheduler_type="linear",
        warmup_steps=0,
        weight_decay=0.0,
        max_grad_norm=1.0,
        seed=seed,
        train_sampling_strategy="random" if padded else "group_by_length",
        eval_strategy="no",
        save_strategy="no",
        logging_strategy="no",
        report_to="none",
        disable_tqdm=True,
        remove_unused_columns=False,
        use_cpu=device == "cpu",
        bf16=bf16,
        dataloader_drop_last=False,
    )
    trainer = Trainer(
        model=_DictOutput.wrap(model),
        args=args,
        train_dataset=dataset,
        data_collator=collator,
        processing_class=tokenizer,
        callbacks=[Timer()],
    )
    out = trainer.train()
    return {"seconds": Timer.t1 - Timer.t0, "train_loss": out.training_loss, **collator.counts()}


def worker(args) -> None:
    common.set_threads(args.threads)
    import torch

    from xstilts.models.heads import build_model

    device = "cuda" if torch.cuda.is_available() and not args.cpu else "cpu"
    encoder, tokenizer = common.load_encoder(args.model_dir)
    examples = read_train_examples(args.task, common.data_dir(args.data))
    n = args.steps * args.batch_size
    pool = n if args.pool == "same" else 0 if args.pool == "all" else int(args.pool)
    features = training_features(args.task, examples, tokenizer, pool, seed=0)
    torch.manual_seed(0)
    model = build_model(args.task, encoder)
    model.train()
    rss_before = common.current_rss_mib()
    if device == "cuda":
        model.to(device)
        torch.cuda.reset_peak_memory_stats()
    kw: dict[str, Any] = dict(
        batch_size=args.batch_size, steps=args.steps, device=device, seed=args.seed
    )
    with tempfile.TemporaryDirectory(prefix="xstilts-bench-") as tmp:
        if args.worker.startswith("A"):
            precision = "bf16" if args.worker == "Abf16" else "auto"
            pack = args.worker in ("A", "Abf16")  # as xstilts run trains every head kind
            r = run_xstilts(model, features, tokenizer, out_dir=tmp, precision=precision, pack=pack,
                            group_by_length=args.worker == "Ag", **kw, **dict(args.option))  # fmt: skip
        else:
            r = run_hf(
                model, features, tokenizer, out_dir=tmp, padded=args.worker == "B",
                task=args.task, **kw,
            )  # fmt: skip
    # What the model saw (a data loader may collate a batch beyond the last step: scale to n)
    scale = n / r["rows"] if r.get("rows") else 1.0
    real_tokens = r["real_tokens"] * scale
    common.emit(
        {
            "setup": args.worker,
            "rep": args.rep,
            "device": device,
            "seconds": r["seconds"],
            "examples_per_s": n / r["seconds"],
            "real_tokens_per_s": real_tokens / r["seconds"],
            "real_tokens": real_tokens,
            "padding_fraction": 1 - r["real_tokens"] / r["padded_tokens"],
            "rows_collated": r["rows"],
            "pool": len(features),
            "peak_mem_mib": common.peak_memory_mib(device),
            "rss_before_train_mib": rss_before,
            "train_loss": r["train_loss"],
        }
    )


# --------------------------------------------------------------------------------------------


def option(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with a JSON value (true, 4, "x"); a bare word stays a string."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="tiny", help="tiny | multilingual-e5-small | PATH")
    p.add_argument("--task", default="udpos", choices=sorted(TASK_MAX_LENGTH))
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--pool", default="all", help="features each setup draws its batches from: "
                   "all (every training feature; each setup its own draw), same (exactly "
                   "steps*batch-size features, the same for every setup) or a number")
    p.add_argument("--setups", default="A,B,C",
                   help="comma-separated subset of A,Ar,Ag,B,C,Abf16 (Ar: random batches, not packed; "
                   "Ag: length-grouped, not packed; Abf16: A with bf16 autocast)")
    p.add_argument("--option", action="append", default=[], type=option, metavar="KEY=VALUE",
                   help="a TrainConfig setting for the xstilts setups, e.g. sparse_embedding_grads=false")
    p.add_argument("--data", default=None, help="data folder (default ../shared/data)")
    p.add_argument("--cpu", action="store_true", help="stay on CPU even with a GPU")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--worker", choices=SETUPS, help=argparse.SUPPRESS)
    p.add_argument("--rep", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--model-dir", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.worker:
        worker(args)
        return {}
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    setups = [s for s in args.setups.split(",") if s]
    runs: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="xstilts-bench-model-") as tmp:
        examples = read_train_examples(args.task, common.data_dir(args.data))
        model_dir = common.prepare_model(args.model, args.task, Path(tmp), corpus_text(examples))
        info = common.machine_info()
        for rep in range(args.reps):
            for setup in setups:
                wargs = [
                    "--worker", setup, "--rep", str(rep), "--model-dir", model_dir,
                    "--task", args.task, "--steps", str(args.steps),
                    "--batch-size", str(args.batch_size), "--threads", str(args.threads),
                    "--seed", str(args.seed), "--pool", args.pool,
                ]  # fmt: skip
                for key, value in args.option:
                    wargs += ["--option", f"{key}={json.dumps(value)}"]
                if args.data:
                    wargs += ["--data", args.data]
                if args.cpu:
                    wargs.append("--cpu")
                r = common.run_worker(Path(__file__), wargs)
                runs.append(r)
                if not args.json:
                    print(
                        f"rep {rep} {setup}: {r['examples_per_s']:.2f} ex/s, "
                        f"{r['real_tokens_per_s']:.0f} real tok/s, pad {r['padding_fraction']:.0%}, peak {r['peak_mem_mib']:.0f} MiB",
                        flush=True,
                    )
    info["load_avg_end"] = os.getloadavg()
    summary: dict[str, Any] = {
        "config": {
            "model": args.model, "task": args.task, "steps": args.steps, "reps": args.reps,
            "batch_size": args.batch_size, "threads": args.threads, "pool": args.pool,
            "max_length": TASK_MAX_LENGTH[args.task], "command": " ".join(sys.argv),
            "options": dict(args.option),
        },  # fmt: skip
        "machine": info,
        "setups": {},
        "ratios": {},
        "runs": runs,
    }
    for s in setups:
        rs = [r for r in runs if r["setup"] == s]
        summary["setups"][s] = {
            k: common.spread([r[k] for r in rs])
            for k in ("examples_per_s", "real_tokens_per_s", "peak_mem_mib", "padding_fraction")
        }
    for mine, other in RATIOS:
        if mine in setups and other in setups:
            summary["ratios"][f"{mine}/{other}"] = common.spread(
                common.paired_ratios(runs, mine, other, "examples_per_s")
            )
            # with --pool all each setup draws its own batches: compare per real token too
            summary["ratios"][f"{mine}/{other} real tokens"] = common.spread(
                common.paired_ratios(runs, mine, other, "real_tokens_per_s")
            )
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"\n{args.model} {args.task}: {args.steps} steps x batch {args.batch_size}, "
              f"{args.reps} reps, {args.threads} thread(s), load {info['load_avg']}")  # fmt: skip
        for s, d in summary["setups"].items():
            e, t, m = d["examples_per_s"], d["real_tokens_per_s"], d["peak_mem_mib"]
            print(f"  {s}: ex/s {e['median']:.2f} [{e['min']:.2f}-{e['max']:.2f}]  "
                  f"real tok/s {t['median']:.0f}  peak mem {m['median']:.0f} MiB")  # fmt: skip
        for k, d in summary["ratios"].items():
            print(f"  {k}: median {d['median']:.2f} (min {d['min']:.2f}, max {d['max']:.2f})")
    return summary


if __name__ == "__main__":
    main()
