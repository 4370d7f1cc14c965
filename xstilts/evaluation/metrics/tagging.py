"""seqeval's chunk-level precision/recall/F1 for tagging (UDPOS, PAN-X), in two behaviours.

XTREME's ``evaluate.py`` calls ``seqeval.metrics.f1_score(labels, predictions)`` on the list of
sentences. seqeval flattens the sentences, putting an ``O`` after each, and reads chunks with a
BIOES state machine: ``tag`` is the first character of a label, ``type`` the rest. Applied to
UPOS tags (which have no BIO prefix) every run of one tag becomes a chunk, and tags whose first
letter is a prefix letter (``SCONJ``/``SYM`` start with S, ``INTJ`` with I) behave specially.

The two seqeval behaviours differ only in how a label's *type* is taken:

``legacy`` (seqeval 0.0.12, the release on PyPI from June 2019 to September 2020, which
XTREME's install script installed unpinned in 2020 and which produced the published UDPOS
numbers; 0.0.13 chunks the same way; the default)
    ``type = label.split('-')[-1]``: ``X`` has type ``X`` and ``O`` has type ``O``.
``v1`` (seqeval 0.0.16 and later, including 1.2.2; 0.0.14/0.0.15 reject non-BIO tags outright)
    ``type = label[1:].split('-', 1)[-1] or '_'``: both ``X`` and ``O`` get type ``_``.
    So an ``X`` that follows a sentence boundary (the ``O`` that flattening inserts, after the
    first sentence) does not start a chunk, and an ``X`` that ends a sentence is never closed:
    scores for UDPOS files with ``X`` change. ``CCONJ``/``SCONJ`` also share the type ``CONJ``.

For BIO tag sets (PAN-X) both behaviours give the same chunks. Both are implemented here from
their published definitions; the tests check ``v1`` against the installed seqeval 1.2.2 and
``legacy`` against an independent reading of 0.0.12's rules for UPOS tags.
"""

from __future__ import annotations

from collections.abc import Sequence

SEQEVAL_MODES = ("legacy", "v1")
DEFAULT_SEQEVAL_MODE = "legacy"

_ENDS_AFTER = {("B", "B"), ("B", "S"), ("B", "O"), ("I", "B"), ("I", "S"), ("I", "O")}
_STARTS_AT = {("E", "E"), ("E", "I"), ("S", "E"), ("S", "I"), ("O", "E"), ("O", "I")}


def _type_legacy(label: str) -> str:
    return label.split("-")[-1]


def _type_v1(label: str) -> str:
    return label[1:].split("-", 1)[-1] or "_"


def _chunk_ends(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    """Whether a chunk closed between the previous label and this one."""
    if prev_tag in ("E", "S") or (prev_tag, tag) in _ENDS_AFTER:
        return True
    return prev_tag not in ("O", ".") and prev_type != type_


def _chunk_starts(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    """Whether a chunk opens at this label."""
    if tag in ("B", "S") or (prev_tag, tag) in _STARTS_AT:
        return True
    return tag not in ("O", ".") and prev_type != type_


def get_entities(
    sentences: Sequence[Sequence[str]], mode: str = DEFAULT_SEQEVAL_MODE
) -> list[tuple[str, int, int]]:
    """Chunks ``(type, first, last)`` over the flattened sentences (offsets count the ``O``
    inserted after every sentence), exactly as seqeval's ``get_entities`` of that mode."""
    if mode not in SEQEVAL_MODES:
        raise ValueError(f"seqeval mode must be one of {SEQEVAL_MODES}, got {mode!r}")
    type_of = _type_legacy if mode == "legacy" else _type_v1
    flat: list[str] = []
    for sentence in sentences:
        flat.extend(sentence)
        flat.append("O")
    flat.append("O")
    chunks = []
    prev_tag, prev_type, begin = "O", "", 0
    for i, label in enumerate(flat):
        tag, type_ = label[0], type_of(label)
        if _chunk_ends(prev_tag, tag, prev_type, type_):
            chunks.append((prev_type, begin, i - 1))
        if _chunk_starts(prev_tag, tag, prev_type, type_):
            begin = i
        prev_tag, prev_type = tag, type_
    return chunks


def seqeval_scores(
    gold: Sequence[Sequence[str]],
    predictions: Sequence[Sequence[str]],
    mode: str = DEFAULT_SEQEVAL_MODE,
) -> dict[str, float]:
    """Micro-averaged chunk ``f1``, ``precision``, ``recall`` ×100 (0 where undefined).

    Sentence counts and lengths must agree (the scorer checks and names the file first).
    """
    if len(gold) != len(predictions):
        raise ValueError(f"{len(predictions)} predicted sentences for {len(gold)} gold sentences")
    for k, (g, p) in enumerate(zip(gold, predictions)):
        if len(g) != len(p):
            raise ValueError(f"sentence {k + 1}: {len(p)} predicted tags for {len(g)} gold tags")
    true_chunks = set(get_entities(gold, mode))
    pred_chunks = set(get_entities(predictions, mode))
    n_correct = len(true_chunks & pred_chunks)
    precision = n_correct / len(pred_chunks) if pred_chunks else 0.0
    recall = n_correct / len(true_chunks) if true_chunks else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {"f1": f1 * 100, "precision": precision * 100, "recall": recall * 100}
