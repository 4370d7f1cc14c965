"""The ways an encoder learns code (phase 1 on a code task), each an ``nn.Module`` whose
``forward(**batch)`` returns ``{"loss": ..., ...}`` and whose ``.encoder`` is the shared Hugging
Face encoder (the only part carried to phase 2):

- ``generate``  :class:`CodeGenerator`: the encoder + a small randomly initialised Transformer
  decoder (default 6 layers of the encoder's width), teacher-forced cross-entropy; greedy and beam
  decoding. The decoder reads and writes the encoder's own word embeddings (tied), restricted to a
  *shortlist*: the token ids that occur in the training targets (plus specials). With XLM-R's
  250k-piece vocabulary a full softmax per target token would dominate CPU training; the
  shortlist keeps it at the size of the code vocabulary actually used (a few thousand).
- ``contrastive`` :class:`CodeContrastive`: NL ↔ code bi-encoder (one shared encoder, masked
  mean pooling, L2-normalised), InfoNCE over in-batch negatives in both directions, temperature
  settable.
- ``match`` :func:`build_match_model`: NL–code pair classification (match / no match) with the
  sentence-pair head of :mod:`xstilts.models.heads`; negatives are sampled codes of other
  examples (``negatives`` per positive, seeded).
- ``infill`` :class:`CodeInfill`: masked LM on ``NL </s></s> code`` with masks on code tokens only,
  through the encoder's LM head (:func:`xstilts.models.mlm.build_mlm_model`).

**Whitespace.** XLM-R's SentencePiece normaliser collapses every run of whitespace to one space,
which would erase Python's newlines and indentation. :class:`WhitespaceCodec` rewrites code
before tokenising — each whitespace run other than a single inner space becomes marker strings
(``<@n>`` newline, ``<@t>`` tab, ``<@sK>`` K spaces), a literal ``<@`` is escaped as ``<@@>`` —
and undoes it after decoding, exactly. It is switched on only for tokenizers that lose
whitespace (:func:`tokenizer_keeps_whitespace`).
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from xstilts.errors import ConfigError
from xstilts.models.heads import build_model
from xstilts.models.mlm import build_mlm_model
from xstilts.tasks import TaskKind

# --------------------------------------------------------------------------- whitespace codec

_WS_RUN = re.compile(r"[ \t\r\n\f\v]+")
_DECODE = re.compile(r"<@@>| ?<@(n|t|r|s\d+)> ?")
_PROBE = "def f(a):\n    if a:\n\treturn  a\n"


def tokenizer_keeps_whitespace(tokenizer: Any) -> bool:
    """Whether newlines, indentation and double spaces survive encode → decode unchanged."""
    ids = tokenizer(_PROBE, add_special_tokens=False)["input_ids"]
    return tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False) == _PROBE


@dataclass(frozen=True)
class WhitespaceCodec:
    """Code ↔ text that a whitespace-normalising tokenizer preserves (see the module docstring).

    ``enabled=False`` is the identity (for tokenizers that keep whitespace themselves).
    """

    enabled: bool = True

    @classmethod
    def for_tokenizer(cls, tokenizer: Any) -> "WhitespaceCodec":
        return cls(enabled=not tokenizer_keeps_whitespace(tokenizer))

    def encode(self, code: str) -> str:
        if not self.enabled:
            return code
        code = code.replace("<@", "<@@>")

        def run(m: re.Match) -> str:
            ws = m.group(0)
            inner = 0 < m.start() and m.end() < len(code)
            if ws == " " and inner and code[m.start() - 1] != "\n":
                return " "
            marks = []
            for part in re.findall(r" +|\t|\n|\r|[\f\v]", ws):
                if part == "\n":
                    marks.append("<@n>")
                elif part == "\t":
                    marks.append("<@t>")
                elif part == "\r":
                    marks.append("<@r>")
                elif part[0] == " ":
                    marks.append(f"<@s{len(part)}>")
                else:  # form feed / vertical tab: rare, kept as one space
                    marks.append("<@s1>")
            return " " + " ".join(marks) + " "

        return _WS_RUN.sub(run, code)

    def decode(self, text: str) -> str:
        if not self.enabled:
            return text

        def back(m: re.Match) -> str:
            if m.group(0) == "<@@>":
                return "<@"
            tag = m.group(1)
            if tag == "n":
                return "\n"
            if tag == "t":
                return "\t"
            if tag == "r":
                return "\r"
            return " " * int(tag[1:])

        return _DECODE.sub(back, text.strip(" "))


# --------------------------------------------------------------------------- shared helpers


def _encode_hidden(encoder: nn.Module, input_ids, attention_mask) -> torch.Tensor:
    out = encoder(input_ids=input_ids, attention_mask=attention_mask)
    return out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)


def _pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(1, max((len(r) for r in rows), default=1))
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        if r:
            ids[i, : len(r)] = torch.tensor(list(r), dtype=torch.long)
            mask[i, : len(r)] = 1
    return ids, mask


def _code_ids(tokenizer: Any, codec: WhitespaceCodec, codes: Sequence[str], max_length: int) -> list[list[int]]:
    enc = tokenizer([codec.encode(c) for c in codes], add_special_tokens=False, truncation=True, max_length=max_length)
    return [list(ids) for ids in enc["input_ids"]]


@torch.no_grad()
def mean_loss(model: nn.Module, features: Sequence[dict], collate, batch_size: int = 32) -> float:
    """The average of ``model(**batch)["loss"]`` over ``features`` (weighted by batch size)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    try:
        for start in range(0, len(features), batch_size):
            chunk = list(features[start : start + batch_size])
            batch = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in collate(chunk).items()}
            out = model(**batch)
            loss = out["loss"] if isinstance(out, dict) else out.loss
            total += float(loss) * len(chunk)
            count += len(chunk)
    finally:
        model.train(was_training)
    return total / count if count else float("nan")


# --------------------------------------------------------------------------- generate


class CodeGenerator(nn.Module):
    """Encoder + Transformer decoder over a token shortlist; see the module docstring.

    ``shortlist`` holds full-vocabulary token ids; position 0..3 of the shortlist are the
    tokenizer's pad, bos (decoder start), eos and unk tokens.
    """

    def __init__(
        self,
        encoder: nn.Module,
        shortlist: Sequence[int],
        *,
        num_layers: int = 6,
        num_heads: int | None = None,
        ffn_size: int | None = None,
        dropout: float = 0.1,
        max_target_length: int = 256,
        decoder_lr_scale: float = 1.0,
        embeddings: str = "copy",
        copy_attention: bool = True,
    ) -> None:
        super().__init__()
        cfg = encoder.config
        hidden = cfg.hidden_size
        heads = num_heads or getattr(cfg, "num_attention_heads", max(1, hidden // 64))
        if hidden % heads:
            raise ConfigError(f"decoder heads ({heads}) must divide the encoder width ({hidden})")
        self.encoder = encoder
        self.register_buffer("shortlist", torch.tensor(list(shortlist), dtype=torch.long), persistent=True)
        self.pad_index, self.bos_index, self.eos_index, self.unk_index = 0, 1, 2, 3
        self.max_target_length = max_target_length
        self.positions = nn.Embedding(max_target_length + 1, hidden)
        layer = nn.TransformerDecoderLayer(
            d_model=hidden,
            nhead=heads,
            dim_feedforward=ffn_size or getattr(cfg, "intermediate_size", 4 * hidden),
            dropout=dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.decoder = nn.TransformerDecoder(layer, num_layers=num_layers, norm=nn.LayerNorm(hidden))
        self.embed_norm = nn.LayerNorm(hidden)
        self.output_bias = nn.Parameter(torch.zeros(len(shortlist)))
        if embeddings not in ("copy", "tied"):
            raise ConfigError(f"decoder embeddings must be 'copy' or 'tied', got {embeddings!r}")
        # "copy": the decoder's own (input and output) embedding table, initialised from the
        # encoder's rows for the shortlist, so it starts in the encoder's space but trains at the
        # decoder's rate; "tied": the encoder's rows themselves (they then move at the encoder's
        # small rate, which left the output layer nearly fixed and learning slow on CPU budgets).
        self.token_embeddings: nn.Embedding | None = None
        if embeddings == "copy":
            rows = encoder.get_input_embeddings().weight.detach().index_select(0, self.shortlist)
            self.token_embeddings = nn.Embedding.from_pretrained(rows.clone(), freeze=False)
        # Copy attention (a pointer-generator, See et al. 2017): the next token's distribution is
        # a gated mixture of the shortlist softmax and an attention over the source tokens, whose
        # weights go to those tokens' shortlist positions. Django and CoNaLa copy most identifiers
        # and literals from the NL; generating them from the softmax alone took far more steps
        # than a CPU budget gives (greedy output stayed unconditioned after 60-100 steps).
        self.copy_key: nn.Linear | None = None
        self.copy_gate: nn.Linear | None = None
        if copy_attention:
            self.copy_key = nn.Linear(hidden, hidden)
            self.copy_gate = nn.Linear(hidden, 1)
            vocab = max(int(getattr(cfg, "vocab_size", 0) or 0), int(self.shortlist.max()) + 1)
            table = torch.full((vocab,), self.unk_index, dtype=torch.long)
            table[self.shortlist] = torch.arange(len(shortlist), dtype=torch.long)
            # Derived from the shortlist: not saved.
            self.register_buffer("vocab_to_short", table, persistent=False)
        # The fresh decoder-side modules may train faster than the encoder (the training loop
        # reads ``lr_scale`` when it builds the optimizer's parameter groups).
        decoder_side = (self.decoder, self.positions, self.embed_norm, self.token_embeddings, self.copy_key, self.copy_gate)
        for module in decoder_side:
            if module is not None:
                module.lr_scale = float(decoder_lr_scale)
        self.decoder_config = {
            "num_layers": num_layers, "num_heads": heads, "ffn_size": ffn_size, "dropout": dropout,
            "max_target_length": max_target_length, "decoder_lr_scale": decoder_lr_scale,
            "embeddings": embeddings, "copy_attention": copy_attention,
        }  # fmt: skip
        std = getattr(cfg, "initializer_range", 0.02)
        for name, p in self.named_parameters():
            if name.startswith(("decoder.", "positions.")) and p.dim() > 1:
                nn.init.normal_(p, std=std)

    # The decoder's embeddings over the shortlist (its own copy, or the encoder's rows when tied).
    def _short_embeddings(self) -> torch.Tensor:
        if self.token_embeddings is not None:
            return self.token_embeddings.weight
        return self.encoder.get_input_embeddings().weight.index_select(0, self.shortlist)

    def encode(self, input_ids, attention_mask) -> torch.Tensor:
        return _encode_hidden(self.encoder, input_ids, attention_mask)

    def _decode(
        self, memory, memory_mask, decoder_input, emb: torch.Tensor, source_ids=None, last_only: bool = False
    ) -> torch.Tensor:
        """Next-token scores over the shortlist: logits, or with copy attention the log of the
        mixture's probabilities (cross-entropy, argmax and log-softmax treat both alike).
        ``last_only``: for the last position only (decoding), sparing the output layer's work."""
        length = decoder_input.size(1)
        pos = torch.arange(length, device=decoder_input.device).clamp(max=self.max_target_length)
        x = self.embed_norm(emb[decoder_input] + self.positions(pos)[None])
        causal = torch.triu(torch.ones(length, length, dtype=torch.bool, device=x.device), diagonal=1)
        h = self.decoder(
            x,
            memory,
            tgt_mask=causal,
            tgt_key_padding_mask=decoder_input.eq(self.pad_index) & (torch.arange(length, device=x.device) > 0),
            memory_key_padding_mask=~memory_mask.bool(),
        )
        if last_only:
            h, length = h[:, -1:], 1
        logits = h @ emb.t() + self.output_bias
        if self.copy_key is None or source_ids is None:
            return logits
        keys = self.copy_key(memory)  # (B, S, H)
        scores = (h @ keys.transpose(1, 2)) / (h.size(-1) ** 0.5)  # (B, T, S)
        scores = scores.masked_fill(~memory_mask.bool()[:, None, :], float("-inf"))
        attn = torch.softmax(scores, dim=-1)
        where = self.vocab_to_short[source_ids.clamp(max=self.vocab_to_short.numel() - 1)]
        copy_p = torch.zeros_like(logits).scatter_add(2, where[:, None, :].expand(-1, length, -1), attn)
        gate = self.copy_gate(h)  # log p(generate) = logsigmoid(gate), log p(copy) = logsigmoid(-gate)
        return torch.logaddexp(
            nn.functional.logsigmoid(gate) + torch.log_softmax(logits, -1),
            nn.functional.logsigmoid(-gate) + copy_p.clamp(min=1e-20).log(),
        )

    def forward(self, input_ids, attention_mask, decoder_input_ids, labels=None, **_: Any) -> dict:
        memory = self.encode(input_ids, attention_mask)
        logits = self._decode(memory, attention_mask, decoder_input_ids, self._short_embeddings(), input_ids)
        out = {"logits": logits}
        if labels is not None:
            out["loss"] = nn.functional.cross_entropy(
                logits.reshape(-1, logits.size(-1)), labels.reshape(-1), ignore_index=-100
            )
        return out

    def to_full_ids(self, short_ids: Sequence[int]) -> list[int]:
        """Shortlist positions → tokenizer ids, up to (not including) the first eos."""
        out = []
        table = self.shortlist.tolist()
        for i in short_ids:
            if i == self.eos_index:
                break
            if i in (self.pad_index, self.bos_index):
                continue
            out.append(table[i])
        return out

    @torch.no_grad()
    def generate(
        self, input_ids, attention_mask, *, max_length: int = 128, num_beams: int = 1, length_penalty: float = 1.0
    ) -> list[list[int]]:
        """Token ids (tokenizer vocabulary, without specials) per input: greedy when
        ``num_beams == 1``, else beam search with scores divided by ``length ** length_penalty``."""
        max_length = min(max_length, self.max_target_length)
        memory = self.encode(input_ids, attention_mask)
        emb = self._short_embeddings()
        if num_beams <= 1:
            return self._greedy(memory, attention_mask, emb, max_length, input_ids)
        return [
            self._beam(memory[i : i + 1], attention_mask[i : i + 1], emb, max_length, num_beams, length_penalty,
                       input_ids[i : i + 1])
            for i in range(memory.size(0))
        ]

    def _greedy(self, memory, mask, emb, max_length, source_ids=None) -> list[list[int]]:
        batch = memory.size(0)
        seq = torch.full((batch, 1), self.bos_index, dtype=torch.long, device=memory.device)
        done = torch.zeros(batch, dtype=torch.bool, device=memory.device)
        for _ in range(max_length):
            logits = self._decode(memory, mask, seq, emb, source_ids, last_only=True)[:, -1]
            logits[:, self.pad_index] = logits[:, self.bos_index] = float("-inf")
            nxt = logits.argmax(-1).masked_fill(done, self.pad_index)
            seq = torch.cat([seq, nxt[:, None]], dim=1)
            done |= nxt.eq(self.eos_index)
            if bool(done.all()):
                break
        return [self.to_full_ids(row[1:].tolist()) for row in seq]

    def _beam(self, memory, mask, emb, max_length, beams, length_penalty, source_ids=None) -> list[int]:
        device = memory.device
        alive = [([self.bos_index], 0.0)]
        finished: list[tuple[list[int], float]] = []
        for _ in range(max_length):
            seqs = torch.tensor([s for s, _ in alive], dtype=torch.long, device=device)
            logp = torch.log_softmax(
                self._decode(memory.expand(len(alive), -1, -1), mask.expand(len(alive), -1), seqs, emb,
                             None if source_ids is None else source_ids.expand(len(alive), -1), last_only=True)[:, -1],
                -1,
            )
            logp[:, self.pad_index] = logp[:, self.bos_index] = float("-inf")
            totals = logp + torch.tensor([score for _, score in alive], device=device)[:, None]
            top = torch.topk(totals.flatten(), k=min(2 * beams, totals.numel()))
            candidates = []
            for value, index in zip(top.values.tolist(), top.indices.tolist()):
                row, tok = divmod(index, totals.size(1))
                seq = alive[row][0] + [tok]
                if tok == self.eos_index:
                    finished.append((seq, value / (len(seq) - 1) ** length_penalty))
                else:
                    candidates.append((seq, value))
                if len(candidates) == beams:
                    break
            alive = candidates
            # Stop once the best finished hypothesis beats every live one (a heuristic, as in
            # Hugging Face's beam search: a longer live beam could still win after normalisation).
            if not alive or (
                len(finished) >= beams
                and max(f for _, f in finished) >= max(s / (len(q)) ** length_penalty for q, s in alive)
            ):
                break
        if not finished:
            finished = [(s, v / max(1, len(s) - 1) ** length_penalty) for s, v in alive]
        best = max(finished, key=lambda item: item[1])[0]
        return self.to_full_ids(best[1:])


def build_shortlist(tokenizer: Any, target_rows: Sequence[Sequence[int]]) -> list[int]:
    """pad, bos, eos, unk first (their fixed shortlist positions), then every id in the targets."""
    specials = [tokenizer.pad_token_id, tokenizer.bos_token_id or tokenizer.cls_token_id,
                tokenizer.eos_token_id or tokenizer.sep_token_id, tokenizer.unk_token_id]  # fmt: skip
    if any(s is None for s in specials):
        raise ConfigError("code generation needs a tokenizer with pad, bos/cls, eos/sep and unk tokens")
    seen = set(specials)
    extra = sorted({i for row in target_rows for i in row} - seen)
    return specials + extra


@dataclass
class GenerationFeaturizer:
    """Source (NL) → encoder ids; target (code, through the codec) → shortlist positions."""

    tokenizer: Any
    codec: WhitespaceCodec
    max_source_length: int = 128
    max_target_length: int = 128

    def source_ids(self, sources: Sequence[str]) -> list[list[int]]:
        enc = self.tokenizer(list(sources), truncation=True, max_length=self.max_source_length)
        return [list(ids) for ids in enc["input_ids"]]

    def target_ids(self, targets: Sequence[str]) -> list[list[int]]:
        # One position is kept for eos.
        return _code_ids(self.tokenizer, self.codec, targets, self.max_target_length - 1)

    @staticmethod
    def source_text(example: Any) -> str:
        """What the model reads: the dataset's prompt when it has one (MBPP: the problem with
        its tests, as Austin et al. prompt, so the function name is known), else the NL source."""
        return getattr(example, "prompt", None) or example.source

    def features(self, examples: Sequence[Any], shortlist: Sequence[int]) -> list[dict]:
        index = {tok: i for i, tok in enumerate(shortlist)}
        srcs = self.source_ids([self.source_text(ex) for ex in examples])
        tgts = self.target_ids([ex.target for ex in examples])
        return [
            {"input_ids": s, "target": [index.get(t, 3) for t in tg]} for s, tg in zip(srcs, tgts)
        ]

    def decode(self, full_ids: Sequence[int]) -> str:
        text = self.tokenizer.decode(list(full_ids), skip_special_tokens=True, clean_up_tokenization_spaces=False)
        return self.codec.decode(text)


class GenerationCollator:
    """Pads sources; builds ``decoder_input_ids`` = bos + target and ``labels`` = target + eos."""

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = pad_token_id

    def __call__(self, features: Sequence[dict]) -> dict:
        ids, mask = _pad([f["input_ids"] for f in features], self.pad_token_id)
        batch = {"input_ids": ids, "attention_mask": mask}
        if "target" in features[0]:
            dec, _ = _pad([[1] + list(f["target"]) for f in features], 0)
            lab, lab_mask = _pad([list(f["target"]) + [2] for f in features], 0)
            lab[lab_mask == 0] = -100
            batch["decoder_input_ids"] = dec
            batch["labels"] = lab
        return batch


def generate_code(
    model: CodeGenerator,
    featurizer: GenerationFeaturizer,
    sources: Sequence[str],
    *,
    batch_size: int = 32,
    num_beams: int = 1,
    max_length: int | None = None,
) -> list[str]:
    """Decode code for each NL source (the codec is undone, so newlines come back)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out: list[str] = []
    collate = GenerationCollator(featurizer.tokenizer.pad_token_id)
    try:
        srcs = featurizer.source_ids(sources)
        for start in range(0, len(srcs), batch_size):
            batch = collate([{"input_ids": s} for s in srcs[start : start + batch_size]])
            rows = model.generate(
                batch["input_ids"].to(device), batch["attention_mask"].to(device),
                max_length=max_length or featurizer.max_target_length, num_beams=num_beams,
            )  # fmt: skip
            out.extend(featurizer.decode(r) for r in rows)
    finally:
        model.train(was_training)
    return out


class CodeContrastive(nn.Module):
    """NL ↔ code bi-encoder with in-batch negatives (symmetric InfoNCE, ``temperature``)."""

    def __init__(self, encoder: nn.Module, temperature: float = 0.05) -> None:
        super().__init__()
        if temperature <= 0:
            raise ConfigError(f"temperature must be > 0, got {temperature}")
        self.encoder = encoder
        self.temperature = temperature

    def embed(self, input_ids, attention_mask) -> torch.Tensor:
        pooled = mean_pool(_encode_hidden(self.encoder, input_ids, attention_mask), attention_mask)
        return nn.functional.normalize(pooled, dim=-1)

    def forward(self, input_ids, attention_mask, code_input_ids, code_attention_mask, **_: Any) -> dict:
        q = self.embed(input_ids, attention_mask)
        c = self.embed(code_input_ids, code_attention_mask)
        logits = q @ c.t() / self.temperature
        target = torch.arange(q.size(0), device=q.device)
        loss = (nn.functional.cross_entropy(logits, target) + nn.functional.cross_entropy(logits.t(), target)) / 2
        return {"loss": loss, "logits": logits}


def contrastive_features(examples, tokenizer, codec: WhitespaceCodec, max_length: int = 128) -> list[dict]:
    nl = tokenizer([ex.source for ex in examples], truncation=True, max_length=max_length)["input_ids"]
    code = tokenizer([codec.encode(ex.target) for ex in examples], truncation=True, max_length=max_length)["input_ids"]
    return [{"input_ids": list(a), "code_input_ids": list(b)} for a, b in zip(nl, code)]


class ContrastiveCollator:
    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = pad_token_id

    def __call__(self, features: Sequence[dict]) -> dict:
        ids, mask = _pad([f["input_ids"] for f in features], self.pad_token_id)
        cids, cmask = _pad([f["code_input_ids"] for f in features], self.pad_token_id)
        return {"input_ids": ids, "attention_mask": mask, "code_input_ids": cids, "code_attention_mask": cmask}


# --------------------------------------------------------------------------- match


def match_features(
    examples, tokenizer, codec: WhitespaceCodec, *, negatives: int = 1, seed: int = 1, max_length: int = 256
) -> list[dict]:
    """One positive (label 1) and ``negatives`` sampled negatives (label 0) per example: the
    code of another example whose code differs, drawn with a seeded generator."""
    if len(examples) < 2 and negatives:
        raise ConfigError("match needs at least two examples to sample negatives from")
    rng = random.Random(seed)
    pairs: list[tuple[str, str, int]] = []
    for i, ex in enumerate(examples):
        pairs.append((ex.source, ex.target, 1))
        for _ in range(negatives):
            for _attempt in range(10):
                j = rng.randrange(len(examples) - 1)
                j = j + 1 if j >= i else j
                if examples[j].target != ex.target:
                    break
            pairs.append((ex.source, examples[j].target, 0))
    enc = tokenizer([p[0] for p in pairs], [codec.encode(p[1]) for p in pairs], truncation=True, max_length=max_length)
    return [{"input_ids": list(ids), "labels": label} for ids, (_, _, label) in zip(enc["input_ids"], pairs)]


class MatchCollator:
    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = pad_token_id

    def __call__(self, features: Sequence[dict]) -> dict:
        ids, mask = _pad([f["input_ids"] for f in features], self.pad_token_id)
        batch = {"input_ids": ids, "attention_mask": mask}
        if "labels" in features[0]:
            batch["labels"] = torch.tensor([f["labels"] for f in features], dtype=torch.long)
        return batch


def build_match_model(encoder: nn.Module):
    """The sentence-pair head (2 labels: no-match, match) on the shared encoder."""

    return build_model(TaskKind.SENTENCE_PAIR, encoder, labels=["no-match", "match"])


# --------------------------------------------------------------------------- infill


class CodeInfill(nn.Module):
    """Masked LM over ``NL </s></s> code`` whose masks fall on code tokens only."""

    def __init__(self, encoder: nn.Module, encoder_source: Any = None) -> None:
        super().__init__()

        self.mlm, self.head_loaded = build_mlm_model(encoder, encoder_source)
        self.encoder = encoder

    def forward(self, input_ids, attention_mask, labels=None, **_: Any) -> dict:
        out = self.mlm(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
        result = {"logits": out.logits}
        if labels is not None:
            result["loss"] = out.loss
        return result


def infill_features(examples, tokenizer, codec: WhitespaceCodec, max_length: int = 256) -> list[dict]:
    """``input_ids`` of the NL/code pair and ``code_mask`` (1 on code tokens, the maskable ones)."""
    enc = tokenizer(
        [ex.source for ex in examples], [codec.encode(ex.target) for ex in examples],
        truncation="longest_first", max_length=max_length, return_special_tokens_mask=True,
    )  # fmt: skip
    feats = []
    for i, ids in enumerate(enc["input_ids"]):
        seq = enc.sequence_ids(i)
        special = enc["special_tokens_mask"][i]
        code_mask = [int(s == 1 and not sp) for s, sp in zip(seq, special)]
        if any(code_mask):
            feats.append({"input_ids": list(ids), "code_mask": code_mask})
    return feats


class InfillCollator:
    """BERT's 80/10/10 masking, restricted to code positions; at least one mask per row. Draws
    from torch's global generator (which the training checkpoints save and restore)."""

    def __init__(self, tokenizer: Any, mask_probability: float = 0.15) -> None:
        if tokenizer.mask_token_id is None:
            raise ConfigError("infill needs a tokenizer with a mask token")
        self.pad_id = tokenizer.pad_token_id
        self.mask_id = tokenizer.mask_token_id
        self.vocab_size = len(tokenizer)
        self.mask_probability = mask_probability

    def __call__(self, features: Sequence[dict]) -> dict:
        ids, attention = _pad([f["input_ids"] for f in features], self.pad_id)
        code, _ = _pad([f["code_mask"] for f in features], 0)
        code = code.bool()
        chosen = torch.bernoulli(torch.full(ids.shape, self.mask_probability)).bool() & code
        for r in range(ids.size(0)):
            if not chosen[r].any():
                where = code[r].nonzero().flatten()
                chosen[r, where[torch.randint(len(where), (1,))]] = True
        labels = ids.masked_fill(~chosen, -100)
        replace = torch.bernoulli(torch.full(ids.shape, 0.8)).bool() & chosen
        randomize = torch.bernoulli(torch.full(ids.shape, 0.5)).bool() & chosen & ~replace
        ids = ids.clone()
        ids[replace] = self.mask_id
        ids[randomize] = torch.randint(self.vocab_size, ids.shape, dtype=torch.long)[randomize]
        return {"input_ids": ids, "attention_mask": attention, "labels": labels}


OBJECTIVES = ("generate", "contrastive", "match", "infill")


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


__all__ = [
    "OBJECTIVES", "CodeContrastive", "CodeGenerator", "CodeInfill", "ContrastiveCollator",
    "GenerationCollator", "GenerationFeaturizer", "InfillCollator", "MatchCollator", "WhitespaceCodec",
    "build_match_model", "build_shortlist", "contrastive_features", "count_parameters",
    "generate_code", "infill_features", "match_features", "mean_pool",
    "tokenizer_keeps_whitespace",
]  # fmt: skip
