"""MLQA exact match and F1 with MLQA's own multilingual normalisation (mlqa_evaluation_v1.py).

Differences from SQuAD v1.1:

* punctuation is every character whose Unicode category starts with ``P`` (plus ASCII
  ``string.punctuation``), not only ASCII punctuation;
* articles are removed per answer language: en a/an/the; es un/una/unos/unas/el/la/los/las;
  de ein/eine/einen/einem/eines/einer/der/die/das/den/dem/des; vi của/là/cái/chiếc/những
  (whole words); ar every occurrence of ``ال`` (the official pattern ``\\sال^|ال`` can only match
  its second branch, so the prefix is cut even inside words); hi and zh none;
* tokens: whitespace for en es de ar hi vi; for zh "mixed segmentation": every CJK character
  (U+4E00–U+9FA5) and punctuation mark is its own token, other runs are split on whitespace.

Any other language is an error, as in the official script.
"""

from __future__ import annotations

import functools
import re
import string
import sys
import unicodedata
from collections.abc import Mapping, Sequence

from xstilts.evaluation.metrics.squad import QAGold, qa_scores, token_f1

WHITESPACE_LANGS = frozenset({"en", "es", "hi", "vi", "de", "ar"})
MIXED_SEGMENTATION_LANGS = frozenset({"zh"})
MLQA_LANGUAGES = WHITESPACE_LANGS | MIXED_SEGMENTATION_LANGS

_ARTICLES = {
    "en": re.compile(r"\b(a|an|the)\b"),
    "es": re.compile(r"\b(un|una|unos|unas|el|la|los|las)\b"),
    "vi": re.compile(r"\b(của|là|cái|chiếc|những)\b"),
    "de": re.compile(r"\b(ein|eine|einen|einem|eines|einer|der|die|das|den|dem|des)\b"),
    "ar": re.compile(r"\sال^|ال"),
}
_CJK = re.compile(r"[\u4e00-\u9fa5]")


@functools.cache
def punctuation() -> frozenset[str]:
    """Unicode punctuation (categories P*) over code points 0..sys.maxunicode-1, plus ASCII's.

    Built once on first use (it scans the whole code space); the range mirrors the official
    ``range(sys.maxunicode)``.
    """
    chars = {chr(i) for i in range(sys.maxunicode) if unicodedata.category(chr(i)).startswith("P")}
    return frozenset(chars | set(string.punctuation))


def _check_lang(lang: str) -> None:
    if lang not in MLQA_LANGUAGES:
        raise ValueError(f"MLQA normalisation knows {sorted(MLQA_LANGUAGES)}, not {lang!r}")


def mixed_segmentation(text: str) -> list[str]:
    """CJK characters and punctuation one by one; whitespace-split runs of everything else."""
    punct = punctuation()
    tokens: list[str] = []
    run = ""
    for ch in text:
        if _CJK.search(ch) or ch in punct:
            if run:
                tokens.extend(run.split())
                run = ""
            tokens.append(ch)
        else:
            run += ch
    if run:
        tokens.extend(run.split())
    return tokens


def normalize_answer(text: str, lang: str) -> str:
    """MLQA's normalisation for answer language ``lang``."""
    _check_lang(lang)
    punct = punctuation()
    text = "".join(ch for ch in text.lower() if ch not in punct)
    if lang in _ARTICLES:
        text = _ARTICLES[lang].sub(" ", text)
    tokens = mixed_segmentation(text) if lang in MIXED_SEGMENTATION_LANGS else text.split()
    return " ".join(t for t in tokens if t.strip() != "")


def exact_match_score(prediction: str, gold: str, lang: str) -> bool:
    return normalize_answer(prediction, lang) == normalize_answer(gold, lang)


def f1_score(prediction: str, gold: str, lang: str) -> float:
    return token_f1(
        normalize_answer(prediction, lang).split(), normalize_answer(gold, lang).split()
    )


def mlqa_scores(
    gold: QAGold | Mapping[str, Sequence[str]], predictions: Mapping[str, str], lang: str
) -> dict[str, float]:
    """MLQA ``exact_match`` and ``f1`` ×100 for answer language ``lang`` (missing questions score 0)."""
    _check_lang(lang)
    return qa_scores(
        gold,
        predictions,
        lambda p, g: exact_match_score(p, g, lang),
        lambda p, g: f1_score(p, g, lang),
    )
