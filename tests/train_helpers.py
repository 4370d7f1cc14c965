"""Tiny models and synthetic data for the training-loop tests (also run as a subprocess script).

As a script: ``python tests/train_helpers.py OUT_DIR [--slow SECONDS]`` trains a tiny sequence
classifier with checkpoints every 3 steps and writes ``OUT_DIR/final.json`` (metrics and a
hash of the final weights); the kill-and-resume test runs it, kills it, and runs it again.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path

VOCAB = 60
PAD = 1


def tiny_classifier(seed: int = 0, num_labels: int = 2, dropout: float = 0.0):
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification

    config = XLMRobertaConfig(
        vocab_size=VOCAB, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=40, pad_token_id=PAD, bos_token_id=0,
        eos_token_id=2, type_vocab_size=1, num_labels=num_labels,
        hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
    )
    torch.manual_seed(seed)
    return XLMRobertaForSequenceClassification(config)


def synthetic_features(n: int, seed: int = 0) -> list[dict]:
    """Sequences of 3..20 ids; label 1 draws every id from the upper half of the vocabulary,
    label 0 from the lower half (learnable by a tiny model within a few epochs)."""
    import random

    rng = random.Random(seed)
    half = (VOCAB + 5) // 2
    feats = []
    for _ in range(n):
        length = rng.randint(3, 20)
        label = rng.randint(0, 1)
        lo, hi = (half, VOCAB - 1) if label else (5, half - 1)
        ids = [0] + [rng.randint(lo, hi) for _ in range(length)] + [2]
        feats.append({"input_ids": ids, "label": label})
    return feats


def collate(features: list[dict]) -> dict:
    import torch

    width = max(len(f["input_ids"]) for f in features)
    ids = torch.full((len(features), width), PAD, dtype=torch.long)
    mask = torch.zeros((len(features), width), dtype=torch.long)
    for r, f in enumerate(features):
        ids[r, : len(f["input_ids"])] = torch.tensor(f["input_ids"])
        mask[r, : len(f["input_ids"])] = 1
    labels = torch.tensor([f["label"] for f in features], dtype=torch.long)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def accuracy_eval(features: list[dict]):
    def evaluate(model) -> dict[str, float]:
        import torch

        batch = collate(features)
        with torch.no_grad():
            out = model(**batch)
        acc = float((out.logits.argmax(-1) == batch["labels"]).float().mean())
        return {"accuracy": acc, "loss": float(out.loss)}

    return evaluate


def weights_digest(model) -> str:
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def main(argv: list[str]) -> int:
    import torch

    from xstilts.train.loop import train
    from xstilts.train.train_config import TrainConfig

    out = Path(argv[0])
    slow = float(argv[argv.index("--slow") + 1]) if "--slow" in argv else 0.0
    torch.set_num_threads(1)
    model = tiny_classifier(seed=0, dropout=0.1)  # dropout on: resume must restore the RNG
    feats = synthetic_features(96, seed=1)
    dev = synthetic_features(32, seed=2)

    def slow_collate(batch):
        if slow:
            time.sleep(slow)
        return collate(batch)

    cfg = TrainConfig(learning_rate=3e-3, batch_size=8, grad_accum=2, epochs=3, warmup_ratio=0.1,
                      eval_every=4, checkpoint_every=3, metric_for_best="accuracy", seed=5,
                      progress=False, tensorboard=False, log_every=1)
    result = train(model, feats, slow_collate, cfg, eval_fn=accuracy_eval(dev), out_dir=out / "train")
    final = {
        "digest": weights_digest(model),
        "eval_history": result.eval_history,
        "train_loss": result.train_loss,
        "best_metric": result.best_metric,
        "global_step": result.global_step,
        "resumed_from_step": result.resumed_from_step,
    }
    (out / "final.json").write_text(json.dumps(final, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
