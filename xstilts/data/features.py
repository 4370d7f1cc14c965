"""Featurization per task kind: examples → token features (lists) → padded batches.

One entry point, :func:`featurize`, runs the kind's featurizer (each registers itself as its
kind's ``featurize`` operation, :mod:`xstilts.tasks.kinds`); :func:`collate` pads a list of
features to the longest one in the batch (dynamic padding: never to ``max_length``).

A feature is a plain ``dict``. The keys in :data:`MODEL_KEYS` are what the model consumes
(``collate`` turns them into tensors); every other key is bookkeeping that prediction needs to map
outputs back to examples (``example_index``, ``word_positions``, ``offset_mapping``...) and that
``collate`` leaves out.

Conventions, by kind:

* **sentence pair**: ``tokenizer(text_a, text_b, truncation="longest_first")``.
* **tagging**: the label of a word sits on the first sub-word *that carries characters of the
  word*. XLM-R's SentencePiece tokenizer often emits a bare ``▁`` piece first (most Chinese and
  Japanese words): that piece is the shared word-boundary marker, identical for every such word,
  so labelling it throws the word's identity away. Sentences longer than ``max_length`` are cut
  into windows of whole words with some context on each side; every word is *owned* (labelled
  and predicted) by exactly one window. A word that produces no pieces at all (an empty string,
  characters the normalizer deletes) is fed to the model as the unknown token, so it still gets a
  prediction from the model, in context, and predictions always line up one-to-one with words.
* **extractive QA**: question + context windows that advance by ``doc_stride`` tokens through
  the context (XTREME's and BERT's meaning of doc stride, with a question cut to
  ``max_query_length`` tokens), offsets into the original context for every context token, the
  "max context" flag of BERT's ``token_is_max_context`` (a token is decoded only from the window
  where it has the most context on both sides), and for training start/end token positions (the
  CLS position when the answer is not entirely inside the window).
* **multiple choice**: one ``(context + question, choice)`` pair per choice; the feature's
  ``input_ids`` is a list of rows, one per choice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from xstilts.errors import ConfigError
from xstilts.tasks import Task, TaskKind
from xstilts.tasks.kinds import kind_ops, resolve_kind

# What the model consumes; everything else in a feature is bookkeeping for prediction.
MODEL_KEYS = (
    "input_ids",
    "attention_mask",
    "token_type_ids",
    "labels",
    "start_positions",
    "end_positions",
)

DEFAULT_DOC_STRIDE = 128
DEFAULT_MAX_QUERY_LENGTH = 64

# Pieces that only mark a word boundary: SentencePiece's ``▁`` (XLM-R, mT5...) and byte-level
# BPE's ``Ġ`` (RoBERTa, GPT-2). A piece made only of these carries no character of the word.
BOUNDARY_MARKS = frozenset("▁Ġ")

IGNORE_INDEX = -100


@dataclass(frozen=True)
class FeatureSettings:
    """What every kind's featurizer receives besides the examples and the tokenizer."""

    max_length: int
    labels: list[str] | None  # label names in id order (sentence pair, tagging)
    for_training: bool
    doc_stride: int = DEFAULT_DOC_STRIDE  # QA
    max_query_length: int = DEFAULT_MAX_QUERY_LENGTH  # QA


def default_max_length(kind: TaskKind, tokenizer: Any | None = None) -> int:
    """The kind's default maximum length, no longer than the tokenizer allows."""
    n = kind_ops(kind).max_length or 128
    limit = getattr(tokenizer, "model_max_length", None) if tokenizer is not None else None
    if isinstance(limit, int) and 0 < limit < n:
        n = limit
    return n


def featurize(
    task: Task | str | TaskKind,
    examples: Sequence[Any],
    tokenizer: Any,
    *,
    max_length: int | None = None,
    doc_stride: int = DEFAULT_DOC_STRIDE,
    for_training: bool = False,
    labels: Sequence[str] | None = None,
    max_query_length: int = DEFAULT_MAX_QUERY_LENGTH,
) -> list[dict]:
    """Features for ``examples`` of one task (see the module docstring for each kind).

    ``labels`` overrides the task's label list (needed when a kind, not a task, is given).
    With ``for_training`` every example must carry a known label; without it, gold labels are
    still attached when present and known (so an evaluation loss can be computed) and ignored
    otherwise.
    """
    kind, t = resolve_kind(task)
    if max_length is None:
        max_length = default_max_length(kind, tokenizer)
    label_list = (
        list(labels) if labels is not None else (list(t.labels) if t and t.labels else None)
    )
    ops = kind_ops(kind)
    if not ops.has("featurize"):
        raise ConfigError(
            f"no featurizer for task kind {kind.value!r} (retrieval and generation have their own)"
        )
    return ops.featurize(
        examples, tokenizer,
        FeatureSettings(max_length, label_list, for_training, doc_stride, max_query_length),
    )


# --------------------------------------------------------------------------------------------
# collate


def collate(features: Sequence[dict], tokenizer: Any) -> dict:
    """Pad a batch to its longest feature and return tensors for the keys in :data:`MODEL_KEYS`.

    ``input_ids`` are padded with the tokenizer's pad id, ``labels`` of tagging features with
    -100 (ignored by the loss), everything else with 0. Multiple-choice features (rows per choice)
    give ``[batch, choices, length]`` tensors.
    """
    import torch

    if not features:
        raise ValueError("cannot collate an empty batch")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    batch: dict[str, Any] = {}
    for key in MODEL_KEYS:
        if key not in features[0]:
            continue
        values = [f[key] for f in features]
        first = values[0]
        if isinstance(first, (list, tuple)) and first and isinstance(first[0], (list, tuple)):
            # multiple choice: [batch][choice][token]
            width = max(len(row) for v in values for row in v)
            pad = pad_id if key == "input_ids" else 0
            batch[key] = torch.tensor(
                [[list(row) + [pad] * (width - len(row)) for row in v] for v in values],
                dtype=torch.long,
            )
        elif isinstance(first, (list, tuple)):
            width = max(len(v) for v in values)
            pad = pad_id if key == "input_ids" else IGNORE_INDEX if key == "labels" else 0
            batch[key] = torch.tensor(
                [list(v) + [pad] * (width - len(v)) for v in values], dtype=torch.long
            )
        else:
            batch[key] = torch.tensor(values, dtype=torch.long)
    return batch


def make_collate(tokenizer: Any):
    """``collate`` bound to a tokenizer: a one-argument function for a DataLoader."""

    def _collate(features: Sequence[dict]) -> dict:
        return collate(features, tokenizer)

    return _collate


def _label_id(
    label: str | None, label_to_id: dict[str, int] | None, strict: bool, what: str
) -> int | None:
    if label is None:
        if strict:
            raise ConfigError(f"{what}: a training example has no label")
        return None
    if label_to_id is None:
        raise ConfigError(f"{what}: the task has no label list; pass labels=...")
    if label not in label_to_id:
        if strict:
            allowed = ", ".join(label_to_id)
            raise ConfigError(f"{what}: label {label!r} is not in the label set ({allowed})")
        return None
    return label_to_id[label]


def _model_inputs(enc: Any, i: int | None = None) -> dict:
    """input_ids / attention_mask / token_type_ids of one encoding (as plain lists)."""
    out = {}
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        if key in enc:
            value = enc[key] if i is None else enc[key][i]
            out[key] = list(value)
    return out


# --------------------------------------------------------------------------------------------
# sentence pair


@kind_ops(TaskKind.SENTENCE_PAIR).implements("featurize")
def _sentence_pair_features(examples, tokenizer, s: FeatureSettings):
    max_length, label_list, for_training = s.max_length, s.labels, s.for_training
    label_to_id = {name: i for i, name in enumerate(label_list)} if label_list else None
    enc = tokenizer(
        [ex.text_a for ex in examples],
        [ex.text_b for ex in examples],
        truncation="longest_first",
        max_length=max_length,
    )
    features = []
    for i, ex in enumerate(examples):
        f = _model_inputs(enc, i)
        f["example_index"] = i
        lid = _label_id(ex.label, label_to_id, for_training, f"example {ex.id}")
        if lid is not None:
            f["labels"] = lid
        features.append(f)
    return features


# --------------------------------------------------------------------------------------------
# tagging


@dataclass
class _Template:
    """The special tokens a tokenizer puts around one sequence (e.g. ``<s> … </s>``)."""

    prefix: list[int]
    suffix: list[int]


def _single_template(tokenizer) -> _Template:
    probe = tokenizer(["x"], is_split_into_words=True, add_special_tokens=True)
    ids, word_ids = probe["input_ids"], probe.word_ids()
    first = word_ids.index(0)
    last = len(word_ids) - 1 - word_ids[::-1].index(0)
    return _Template(prefix=list(ids[:first]), suffix=list(ids[last + 1 :]))


def is_boundary_piece(piece: str) -> bool:
    """True for a piece that is only a word-boundary mark (a bare ``▁``), no character of a word."""
    return bool(piece) and all(c in BOUNDARY_MARKS for c in piece)


@dataclass
class WordPieces:
    """The pieces of one word and which of them carries the word's label."""

    ids: list[int]
    label_offset: int  # index into ``ids`` of the first piece with characters of the word
    substituted: bool = False  # the word produced no pieces and is fed as the unknown token


def word_pieces(words: Sequence[str], tokenizer) -> list[WordPieces]:
    """Pieces of every word (without special tokens), with the piece each word's label sits on.

    The label sits on the first piece that carries characters of the word, skipping bare ``▁``
    pieces; a word whose only piece is a bare ``▁`` (a whitespace-only word) keeps it. Words
    that produce no piece at all are replaced by the unknown token.
    """
    words = list(words)
    result: list[WordPieces | None] = [None] * len(words)
    if words:
        # verbose=False: the whole sentence may exceed max_length here; windows come later
        enc = tokenizer(words, is_split_into_words=True, add_special_tokens=False, verbose=False)
        grouped: dict[int, list[int]] = {}
        for tid, wid in zip(enc["input_ids"], enc.word_ids()):
            if wid is not None:
                grouped.setdefault(wid, []).append(tid)
        for wid, ids in grouped.items():
            pieces = tokenizer.convert_ids_to_tokens(ids)
            offset = next((k for k, p in enumerate(pieces) if not is_boundary_piece(p)), 0)
            result[wid] = WordPieces(ids=ids, label_offset=offset)
    unk = tokenizer.unk_token_id
    for wid, wp in enumerate(result):
        if wp is None:
            if unk is None:
                raise ConfigError("the tokenizer has no unknown token to stand for an empty word")
            result[wid] = WordPieces(ids=[unk], label_offset=0, substituted=True)
    return result  # type: ignore[return-value]


def plan_windows(lengths: Sequence[int], budget: int) -> list[tuple[int, int, int, int]]:
    """Cut words with ``lengths`` pieces each into windows of at most ``budget`` pieces.

    Returns ``(start, owned_start, owned_end, end)`` word ranges: the window feeds words
    ``start:end`` to the model and owns (labels, predicts) words ``owned_start:owned_end``. The
    owned ranges partition all words, so each word is predicted exactly once. The owned core of a
    window takes at most half the budget; the rest is context split over both sides. A word longer
    than the budget gets a window of its own (the caller truncates its pieces).
    """
    n = len(lengths)
    if n == 0:
        return [(0, 0, 0, 0)]
    if sum(lengths) <= budget:
        return [(0, 0, n, n)]
    core_budget = max(1, budget // 2)
    windows = []
    i = 0
    while i < n:
        j, used = i, 0
        while j < n and (j == i or used + lengths[j] <= core_budget):
            used += lengths[j]
            j += 1
        # context: alternate left and right one word at a time while it fits
        start, end, total = i, j, used
        grew = True
        while grew:
            grew = False
            if start > 0 and total + lengths[start - 1] <= budget:
                start -= 1
                total += lengths[start]
                grew = True
            if end < n and total + lengths[end] <= budget:
                total += lengths[end]
                end += 1
                grew = True
        windows.append((start, i, j, end))
        i = j
    return windows


@kind_ops(TaskKind.TAGGING).implements("featurize")
def _tagging_features(examples, tokenizer, s: FeatureSettings):
    max_length, label_list, for_training = s.max_length, s.labels, s.for_training
    label_to_id = {name: i for i, name in enumerate(label_list)} if label_list else None
    template = _single_template(tokenizer)
    budget = max_length - len(template.prefix) - len(template.suffix)
    if budget < 1:
        raise ConfigError(f"max_length {max_length} leaves no room for tokens")
    features = []
    for ei, ex in enumerate(examples):
        pieces = word_pieces(ex.tokens, tokenizer)
        # A word longer than the whole budget keeps its first pieces (its label piece among them).
        for wp in pieces:
            if len(wp.ids) > budget:
                keep = max(budget, wp.label_offset + 1)
                wp.ids = wp.ids[: min(keep, budget)]
                wp.label_offset = min(wp.label_offset, budget - 1)
        tag_ids: list[int | None] = [None] * len(pieces)
        if ex.tags is not None:
            if len(ex.tags) != len(ex.tokens):
                raise ConfigError(
                    f"example {ex.id}: {len(ex.tokens)} words but {len(ex.tags)} tags"
                )
            tag_ids = [_label_id(t, label_to_id, for_training, f"example {ex.id}") for t in ex.tags]
        elif for_training:
            raise ConfigError(f"example {ex.id}: a training example has no tags")
        for start, own_start, own_end, end in plan_windows([len(wp.ids) for wp in pieces], budget):
            ids = list(template.prefix)
            positions: list[tuple[int, int]] = []  # (token position, word index) of owned words
            for w in range(start, end):
                if own_start <= w < own_end:
                    positions.append((len(ids) + pieces[w].label_offset, w))
                ids.extend(pieces[w].ids)
            ids.extend(template.suffix)
            f: dict[str, Any] = {
                "input_ids": ids,
                "attention_mask": [1] * len(ids),
                "example_index": ei,
                "word_positions": positions,
            }
            if "token_type_ids" in tokenizer.model_input_names:
                f["token_type_ids"] = [0] * len(ids)
            if any(tag_ids[w] is not None for _, w in positions):
                labels = [IGNORE_INDEX] * len(ids)
                for pos, w in positions:
                    if tag_ids[w] is not None:
                        labels[pos] = tag_ids[w]
                f["labels"] = labels
            features.append(f)
    return features


# --------------------------------------------------------------------------------------------
# extractive QA


def _truncate_question(question: str, tokenizer, max_query_length: int) -> str:
    """The question cut to ``max_query_length`` tokens (by character offset, so text stays text)."""
    enc = tokenizer(question, add_special_tokens=False, return_offsets_mapping=True)
    if len(enc["input_ids"]) <= max_query_length:
        return question
    return question[: enc["offset_mapping"][max_query_length - 1][1]]


@kind_ops(TaskKind.QA).implements("featurize")
def _qa_features(examples, tokenizer, s: FeatureSettings):
    max_length, doc_stride, max_query_length, for_training = s.max_length, s.doc_stride, s.max_query_length, s.for_training
    if doc_stride < 1:
        raise ConfigError(f"doc_stride must be positive, got {doc_stride}")
    pad_right = tokenizer.padding_side == "right"
    if not pad_right:
        raise ConfigError("QA featurization expects a tokenizer that pads on the right")
    n_special = tokenizer.num_special_tokens_to_add(pair=True)
    questions = [
        _truncate_question(ex.question.lstrip(), tokenizer, max_query_length) for ex in examples
    ]
    q_lens = (
        [len(ids) for ids in tokenizer(questions, add_special_tokens=False)["input_ids"]]
        if questions
        else []
    )
    # The tokenizer's ``stride`` is the overlap between windows; windows advance by doc_stride
    # tokens, so the overlap depends on the question length: group examples by it.
    groups: dict[int, list[int]] = {}
    for i, q_len in enumerate(q_lens):
        context_budget = max_length - q_len - n_special
        if context_budget < 1:
            raise ConfigError(
                f"max_length {max_length} leaves no room for the context of example {examples[i].id}"
            )
        overlap = max(0, context_budget - doc_stride)
        groups.setdefault(overlap, []).append(i)
    per_example: dict[int, list[dict]] = {}
    for overlap, indices in groups.items():
        enc = tokenizer(
            [questions[i] for i in indices],
            [examples[i].context for i in indices],
            truncation="only_second",
            max_length=max_length,
            stride=overlap,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
        )
        sample_map = enc["overflow_to_sample_mapping"]
        for k in range(len(enc["input_ids"])):
            ei = indices[sample_map[k]]
            ex = examples[ei]
            seq_ids = enc.sequence_ids(k)
            offsets = [
                tuple(o) if s == 1 else None for o, s in zip(enc["offset_mapping"][k], seq_ids)
            ]
            f = _model_inputs(enc, k)
            f["example_index"] = ei
            f["offset_mapping"] = offsets
            if for_training:
                f.update(_answer_positions(ex, f["input_ids"], offsets, tokenizer))
            per_example.setdefault(ei, []).append(f)
    features: list[dict] = []
    for ei in sorted(per_example):
        windows = per_example[ei]
        _mark_max_context(windows)
        features.extend(windows)
    return features


def _answer_positions(ex, input_ids, offsets, tokenizer) -> dict:
    """Start/end token positions of the example's first answer, or the CLS position if absent."""
    cls = input_ids.index(tokenizer.cls_token_id) if tokenizer.cls_token_id in input_ids else 0
    if ex.is_impossible or not ex.answers:
        return {"start_positions": cls, "end_positions": cls}
    ans = ex.answers[0]
    start_char = ans.answer_start
    end_char = start_char + len(ans.text)
    ctx = [i for i, o in enumerate(offsets) if o is not None]
    if not ctx or offsets[ctx[0]][0] > start_char or offsets[ctx[-1]][1] < end_char:
        return {"start_positions": cls, "end_positions": cls}
    # last token starting at or before the answer start; first token ending at or after its end
    # (a bare "▁" piece can share the offsets of the character after it; taking the *last*
    # token that starts at or before the answer lands on the character, not on the mark)
    start = max(i for i in ctx if offsets[i][0] <= start_char)
    end = min(i for i in ctx if i >= start and offsets[i][1] >= end_char)
    return {"start_positions": start, "end_positions": end}


def _mark_max_context(windows: list[dict]) -> None:
    """Set each window's ``max_context`` flags: is this the window where a token has most context?

    As BERT's ``_check_is_max_context``: a token's score in a window is the smaller of its left
    and right context plus 0.01 × the window length; a token is decoded only from the window
    where its score is highest. Tokens are identified by their character offsets, so tokens
    repeated across overlapping windows match up.
    """
    best: dict[tuple[int, int], tuple[float, int]] = {}
    for w, f in enumerate(windows):
        ctx = [i for i, o in enumerate(f["offset_mapping"]) if o is not None]
        n = len(ctx)
        for rank, i in enumerate(ctx):
            score = min(rank, n - 1 - rank) + 0.01 * n
            key = f["offset_mapping"][i]
            if key not in best or score > best[key][0]:
                best[key] = (score, w)
    for w, f in enumerate(windows):
        f["max_context"] = [o is not None and best[o][1] == w for o in f["offset_mapping"]]


# --------------------------------------------------------------------------------------------
# multiple choice


@kind_ops(TaskKind.MULTIPLE_CHOICE).implements("featurize")
def _multiple_choice_features(examples, tokenizer, s: FeatureSettings):
    max_length, for_training = s.max_length, s.for_training
    features = []
    for ei, ex in enumerate(examples):
        if not ex.choices:
            raise ConfigError(f"example {ex.id}: no choices")
        first = " ".join(p for p in (ex.context.strip(), ex.question.strip()) if p)
        enc = tokenizer(
            [first] * len(ex.choices),
            list(ex.choices),
            truncation="longest_first",
            max_length=max_length,
        )
        f: dict[str, Any] = {
            key: [list(r) for r in enc[key]]
            for key in ("input_ids", "attention_mask", "token_type_ids")
            if key in enc
        }
        f["example_index"] = ei
        if ex.label is not None:
            if not 0 <= ex.label < len(ex.choices):
                raise ConfigError(
                    f"example {ex.id}: label {ex.label} outside 0..{len(ex.choices) - 1}"
                )
            f["labels"] = int(ex.label)
        elif for_training:
            raise ConfigError(f"example {ex.id}: a training example has no label")
        features.append(f)
    return features
