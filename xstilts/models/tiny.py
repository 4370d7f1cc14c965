"""Tiny random XLM-R models with a locally trained tokenizer, for tests (built in seconds).

The tokenizer is a SentencePiece-style Unigram model (Metaspace ``▁`` pre-tokenizer, as XLM-R
uses), trained on a small built-in multilingual corpus, optionally extended with the caller's
text. Because it shares XLM-R's conventions (a bare ``▁`` piece before some words, special tokens
``<s> <pad> </s> <unk> <mask>`` at XLM-R's ids), code that works with it works with XLM-R.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

# A few sentences in several scripts, so that the vocabulary covers Latin, Cyrillic, Greek,
# Arabic, Devanagari, CJK and Thai text and the model can be run on any XTREME language.
BUILTIN_CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Where was the treaty signed, and by whom?",
    "def add(a, b):\n    return a + b",
    "for i in range(10):\n    print(i)",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "El rápido zorro marrón salta sobre el perro perezoso.",
    "Le renard brun rapide saute par-dessus le chien paresseux.",
    "Быстрая коричневая лиса прыгает через ленивую собаку.",
    "Η γρήγορη καφέ αλεπού πηδάει πάνω από τον τεμπέλη σκύλο.",
    "الثعلب البني السريع يقفز فوق الكلب الكسول.",
    "तेज़ भूरी लोमड़ी आलसी कुत्ते के ऊपर कूदती है।",
    "敏捷的棕色狐狸跳过了懒狗。",
    "素早い茶色の狐がのろまな犬を飛び越える。",
    "빠른 갈색 여우가 게으른 개를 뛰어넘는다.",
    "สุนัขจิ้งจอกสีน้ำตาลกระโดดข้ามสุนัขขี้เกียจ",
    "Hızlı kahverengi tilki tembel köpeğin üzerinden atlar.",
    "Con cáo nâu nhanh nhẹn nhảy qua con chó lười.",
    "Mbweha mwepesi wa kahawia anaruka juu ya mbwa mvivu.",
    "1234567890 !?.,;:()[]{}<>=+-*/%&|^~#@$_'\"`",
]

SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>"]


def build_tiny_tokenizer(
    extra_text: Iterable[str] = (), vocab_size: int = 1000, save_dir: str | Path | None = None
):
    """Train a Unigram tokenizer with XLM-R's special tokens and wrap it as a fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from tokenizers.processors import TemplateProcessing
    from transformers import XLMRobertaTokenizerFast

    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    corpus = list(BUILTIN_CORPUS) + [t for t in extra_text if t]
    # Repeat characters on their own so every character of the corpus gets a piece.
    chars = sorted({c for line in corpus for c in line if not c.isspace()})
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        unk_token="<unk>",
        initial_alphabet=chars,
        shrinking_factor=0.75,
    )
    tok.train_from_iterator(corpus + chars, trainer=trainer)
    tok.model = _canonical_unigram(tok, corpus)
    tok.add_special_tokens(["<mask>"])
    bos, eos = tok.token_to_id("<s>"), tok.token_to_id("</s>")
    tok.post_processor = TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", bos), ("</s>", eos)],
    )
    fast = XLMRobertaTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
        model_max_length=512,
    )
    if save_dir is not None:
        fast.save_pretrained(str(save_dir))
    return fast


def _canonical_unigram(tok, corpus: list[str]):
    """The trained pieces with deterministic scores and ids.

    The Unigram trainer picks the same set of pieces on every run, but its scores (and so the
    ids) vary slightly from process to process. Tests compare runs across processes, so the
    pieces are rescored by their smoothed frequency in the corpus (a unigram estimate) and
    ordered by score, then by text: the same corpus always gives the same tokenizer.
    """
    import json
    import math

    from tokenizers import models

    pieces = [p for p, _ in json.loads(tok.to_str())["model"]["vocab"]]
    words = [
        "▁" + w for line in corpus for w in tok.normalizer.normalize_str(line).split() if w
    ]
    text = " ".join(words)
    total = len(text)
    special = [p for p in SPECIAL_TOKENS if p in pieces]
    scored = []
    for piece in pieces:
        if piece in SPECIAL_TOKENS:
            continue
        # Longer pieces get a bonus so that frequent whole words beat chains of characters.
        score = math.log((text.count(piece) + 1) / (total + 1)) + 0.5 * (len(piece) - 1)
        scored.append((round(score, 6), piece))
    scored.sort(key=lambda sp: (-sp[0], sp[1]))
    vocab = [(p, 0.0) for p in special] + [(p, s) for s, p in scored]
    return models.Unigram(vocab, unk_id=special.index("<unk>"), byte_fallback=False)


def build_tiny_model(
    save_dir: str | Path | None = None,
    *,
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 2,
    intermediate_size: int = 64,
    max_position_embeddings: int = 130,
    extra_text: Iterable[str] = (),
    vocab_size: int = 1000,
    seed: int = 0,
):
    """A random XLM-R encoder (``XLMRobertaModel``) and its tokenizer; saved when ``save_dir`` is given.

    ``max_position_embeddings`` counts XLM-R's padding offset (2), so 130 allows 128 tokens.
    """
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaModel

    tokenizer = build_tiny_tokenizer(extra_text=extra_text, vocab_size=vocab_size)
    config = XLMRobertaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=max_position_embeddings,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        type_vocab_size=1,
    )
    torch.manual_seed(seed)
    model = XLMRobertaModel(config)
    tokenizer.model_max_length = max_position_embeddings - 2
    if save_dir is not None:
        model.save_pretrained(str(save_dir))
        tokenizer.save_pretrained(str(save_dir))
    return model, tokenizer
