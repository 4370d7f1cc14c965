"""Masked language modelling on raw text: phase 0, and the "+MLM" co-training of phase 1.

The MLM model wraps the *same* encoder object that the task heads use (``AutoModelForMaskedLM``
built from the encoder's config, its base model replaced by the encoder, output embeddings
re-tied), so MLM steps and task steps update one set of encoder weights. The LM head's weights
are loaded from the encoder's checkpoint when it has them (XLM-R, mBERT); otherwise the head is
fresh (e.g. the E5 encoders, which ship without one).

Masking follows BERT: 15% of the non-special tokens are chosen; of these 80% become the mask
token, 10% a random token, 10% stay. It draws from torch's global generator, whose state the
training checkpoints save, so masked batches are identical after a resume.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from xstilts.errors import ConfigError, DataFormatError, MissingDataError


def read_raw_text(path: str | Path, max_lines: int | None = None) -> list[str]:
    """Non-empty lines of a text file, or of every ``*.txt`` file below a folder (sorted)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.txt") if p.is_file())
        if not files:
            raise MissingDataError(f"no .txt files below {path} for masked-LM training")
    elif path.is_file():
        files = [path]
    else:
        raise MissingDataError(f"raw text for masked-LM training not found: {path}")
    lines: list[str] = []
    for f in files:
        try:
            text = f.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            line = f.read_bytes()[: exc.start].count(b"\n") + 1
            raise DataFormatError(f, line, "UTF-8 text", "undecodable bytes") from None
        lines.extend(s.strip() for s in text.splitlines() if s.strip())
        if max_lines is not None and len(lines) >= max_lines:
            return lines[:max_lines]
    return lines


def mlm_features(texts: Sequence[str], tokenizer: Any, max_length: int) -> list[dict]:
    """One feature per text (truncated to ``max_length`` tokens, special tokens included)."""
    enc = tokenizer(list(texts), truncation=True, max_length=max_length, add_special_tokens=True,
                    return_special_tokens_mask=True)
    return [
        {"input_ids": list(ids), "special_tokens_mask": list(special)}
        for ids, special in zip(enc["input_ids"], enc["special_tokens_mask"])
        if len(ids) > 2
    ]


class MLMCollator:
    """Pads a batch and masks it (BERT's 80/10/10 scheme) with torch's global generator."""

    def __init__(self, tokenizer: Any, mask_probability: float = 0.15) -> None:
        if tokenizer.mask_token_id is None:
            raise ConfigError("the tokenizer of this encoder has no mask token: cannot do masked-LM training")
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.mask_id = tokenizer.mask_token_id
        self.vocab_size = len(tokenizer)
        self.mask_probability = mask_probability

    def __call__(self, features: Sequence[dict]) -> dict:
        import torch

        width = max(len(f["input_ids"]) for f in features)
        ids = torch.full((len(features), width), self.pad_id, dtype=torch.long)
        special = torch.ones((len(features), width), dtype=torch.bool)
        attention = torch.zeros((len(features), width), dtype=torch.long)
        for r, f in enumerate(features):
            n = len(f["input_ids"])
            ids[r, :n] = torch.tensor(f["input_ids"])
            special[r, :n] = torch.tensor(f["special_tokens_mask"], dtype=torch.bool)
            attention[r, :n] = 1
        labels = ids.clone()
        probability = torch.full(ids.shape, self.mask_probability)
        probability.masked_fill_(special, 0.0)
        chosen = torch.bernoulli(probability).bool()
        # at least one masked token per row, so every row contributes to the loss
        for r in range(len(features)):
            if not chosen[r].any():
                candidates = (~special[r]).nonzero().flatten()
                if len(candidates):
                    chosen[r, candidates[torch.randint(len(candidates), (1,))]] = True
        labels[~chosen] = -100
        replace = torch.bernoulli(torch.full(ids.shape, 0.8)).bool() & chosen
        ids[replace] = self.mask_id
        randomize = torch.bernoulli(torch.full(ids.shape, 0.5)).bool() & chosen & ~replace
        ids[randomize] = torch.randint(self.vocab_size, ids.shape, dtype=torch.long)[randomize]
        return {"input_ids": ids, "attention_mask": attention, "labels": labels}


