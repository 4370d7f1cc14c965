"""Readers for the paper's English NLU intermediate tasks, in their official release formats.

Entry point: :func:`read_nlu_examples` (``xstilts.data.readers.read_examples`` dispatches here
for ``task.family == "nlu"``); :func:`read_nlu_path` parses one file. Files are located with
the XTREME readers' :func:`~xstilts.data.readers.find_files` (a pattern matches any path that
ends with it), so ``available()`` and the readers agree on what is present. One reader per
format, chosen by ``Task.reader``:

- ``nli``: NLI pairs → :class:`SentencePairExample` with labels entailment / neutral /
  contradiction. Each JSONL record is recognised by its fields: ANLI (``uid, premise,
  hypothesis, label`` ∈ e/n/c), MultiNLI / SNLI 1.0 (``pairID, sentence1, sentence2,
  gold_label``; ``gold_label`` "-" means the annotators did not agree, and such pairs are left
  out as every MNLI/SNLI user does, with the count logged) and jiant's JSONL (``premise,
  hypothesis[, label]``). A ``.tsv``/``.txt`` file is read by its header (GLUE's MNLI TSV,
  SNLI's ``.txt``: ``sentence1, sentence2, gold_label``).
- ``anli``: the three ANLI rounds (``R1/R2/R3``) of a split, read together.
- ``anli_plus``: the concatenation of the tasks in ``extra["components"][split]``.
- ``qqp``: GLUE's ``QQP/{train,dev}.tsv`` (``id qid1 qid2 question1 question2 is_duplicate``).
- ``squad``: SQuAD v1.1 / v2.0 JSON through the XTREME readers' SQuAD parser; for v2.0 an
  unanswerable question (``is_impossible``) has no answers (its ``plausible_answers`` are not
  gold) and an answerable one must have some.
- ``hellaswag``: JSONL (``ind, ctx_a, ctx_b`` or ``ctx``, ``endings``, ``label``); as in jiant,
  the context is ``ctx_a`` and each choice is ``ctx_b`` followed by an ending.
- ``cosmosqa``: CSV with a header (``id, context, question, answer0..answer3, label``), quoted
  fields that span lines.
- ``commonsenseqa``: the original JSONL (``question: {stem, choices: [{label, text}]}``,
  ``answerKey``) and the hub schema (``question`` a string, ``choices: {label: [..], text:
  [..]}``), recognised per line.
- ``ccg_auto``: CCGbank's AUTO format (an ``ID=`` line, then the tree on one line; leaves
  ``(<L N/N NNP NNP Pierre N_73/N_73>)``: supertag = 2nd field, word = 5th). A split is one
  AUTO file, or, below a CCGbank release, the sections ``data/AUTO/NN/*.auto`` that
  ``extra["sections"][split]`` lists (the usual 02-21 / 00 / 23).

Every malformed record raises :class:`DataFormatError` (file, 1-based line, what was expected)
or, in collecting mode, is reported to a :class:`~xstilts.data.problems.ProblemSink`.

Hub datasets: each task's ``source`` (:mod:`xstilts.tasks.sources`) says where it lives on the
Hugging Face hub and
:func:`nlu_examples_from_records` turns the hub's records into the same examples.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Union

from xstilts.data.examples import (
    MultipleChoiceExample,
    QAAnswer,
    QAExample,
    SentencePairExample,
    TaggingExample,
)
from xstilts.data.problems import ProblemSink
from xstilts.data.readers import FAMILY_PATH_READERS, FAMILY_READERS, find_files, read_path
from xstilts.data.textio import file_lines, read_text
from xstilts.errors import ConfigError, DataFormatError, MissingDataError
from xstilts.tasks import get_task
from xstilts.tasks.base import Task
from xstilts.tasks.sources import HubTable

log = logging.getLogger(__name__)

NLUExample = Union[SentencePairExample, QAExample, MultipleChoiceExample, TaggingExample]

NLI_LABELS = ("contradiction", "entailment", "neutral")
_NLI_NAMES = {
    "e": "entailment",
    "n": "neutral",
    "c": "contradiction",
    "entailment": "entailment",
    "neutral": "neutral",
    "contradiction": "contradiction",
}
# The hub's NLI datasets (facebook/anli, nyu-mll/multi_nli, stanfordnlp/snli) share this order.
_NLI_HUB_INDEX = ("entailment", "neutral", "contradiction")
_NO_GOLD = "-"

__all__ = [
    "ccg_tag_set",
    "map_unknown_tags",
    "nlu_examples_from_records",
    "nlu_label_set",
    "parse_auto_tree",
    "read_nlu_examples",
    "read_nlu_hub",
    "read_nlu_path",
]


# --------------------------------------------------------------------------- low-level text
def _jsonl(path: Path, sink: ProblemSink) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line, object) per non-blank line; a line that is not a JSON object is a format error."""
    for number, line in file_lines(path):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            sink.add(
                DataFormatError(
                    path, number, "one JSON object per line", f"{exc.msg}: {line[:60]!r}"
                )
            )
            continue
        if not isinstance(record, dict):
            sink.add(DataFormatError(path, number, "a JSON object", type(record).__name__))
            continue
        yield number, record


class _Bad(Exception):
    """One record is malformed; carries the error for the sink."""

    def __init__(self, error: DataFormatError) -> None:
        super().__init__(str(error))
        self.error = error


def _need(
    record: Mapping[str, Any], key: str, path: Path, line: int, kind: type | tuple = str
) -> Any:
    if key not in record:
        raise _Bad(DataFormatError(path, line, f"a field {key!r}", f"fields {sorted(record)}"))
    value = record[key]
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise _Bad(DataFormatError(path, line, f"{key!r} of type {names}", repr(value)[:60]))
    return value


# --------------------------------------------------------------------------- NLI
def _nli_label(raw: object, path: Path, line: int, field: str) -> str | None:
    """The canonical label, or None for a pair without gold ("-": no annotator consensus)."""
    if raw == _NO_GOLD:
        return None
    if isinstance(raw, str) and raw.strip().lower() in _NLI_NAMES:
        return _NLI_NAMES[raw.strip().lower()]
    allowed = "e/n/c or entailment/neutral/contradiction (or '-' for no gold)"
    raise _Bad(DataFormatError(path, line, f"{field!r} in {allowed}", repr(raw)[:60]))


def _nli_record(
    record: dict[str, Any], path: Path, line: int, index: int, prefix: str
) -> SentencePairExample | None:
    """One NLI pair in any of the JSONL schemas; None when the record has no gold label."""
    if "sentence1" in record or "gold_label" in record:  # MultiNLI / SNLI 1.0
        a = _need(record, "sentence1", path, line)
        b = _need(record, "sentence2", path, line)
        label = _nli_label(_need(record, "gold_label", path, line), path, line, "gold_label")
        if label is None:
            return None
        ident = str(record.get("pairID", f"{prefix}{index}"))
        return SentencePairExample(id=ident, text_a=a, text_b=b, label=label)
    a = _need(record, "premise", path, line)
    b = _need(record, "hypothesis", path, line)
    label = None
    if "label" in record:  # ANLI (e/n/c) and jiant (full names); unlabelled test has none
        label = _nli_label(record["label"], path, line, "label")
        if label is None:
            return None
    ident = str(record.get("uid", f"{prefix}{index}"))
    return SentencePairExample(id=ident, text_a=a, text_b=b, label=label)


def _read_nli_tsv(path: Path, split: str, sink: ProblemSink) -> tuple[list[SentencePairExample], int]:
    """GLUE MNLI TSV / SNLI .txt: tab-separated, unquoted, with a header naming the columns."""
    examples: list[SentencePairExample] = []
    dropped = 0
    header: list[str] | None = None
    for number, line in file_lines(path):
        fields = line.split("\t")
        if header is None:
            header = fields
            missing = [c for c in ("sentence1", "sentence2") if c not in header]
            if missing:
                raise DataFormatError(
                    path, number, "a header with sentence1, sentence2[, gold_label]", line[:80]
                )
            continue
        if not line.strip():
            continue
        if len(fields) != len(header):
            sink.add(
                DataFormatError(
                    path,
                    number,
                    f"{len(header)} tab-separated fields as in the header",
                    f"{len(fields)}",
                )
            )
            continue
        row = dict(zip(header, fields))
        try:
            label = (
                _nli_label(row["gold_label"], path, number, "gold_label")
                if "gold_label" in row
                else None
            )
        except _Bad as bad:
            sink.add(bad.error)
            continue
        if "gold_label" in row and label is None:
            dropped += 1
            continue
        ident = row.get("pairID") or row.get("index") or f"{split}-{len(examples)}"
        examples.append(
            SentencePairExample(
                id=ident, text_a=row["sentence1"], text_b=row["sentence2"], label=label
            )
        )
    return examples, dropped


def _read_nli(path: Path, task: Task, split: str, sink: ProblemSink) -> list[SentencePairExample]:
    if path.suffix in (".tsv", ".txt"):
        examples, dropped = _read_nli_tsv(path, split, sink)
    else:
        examples, dropped = [], 0
        prefix = f"{task.name}-{split}-"
        for number, record in _jsonl(path, sink):
            try:
                example = _nli_record(record, path, number, len(examples), prefix)
            except _Bad as bad:
                sink.add(bad.error)
                continue
            if example is None:
                dropped += 1
            else:
                examples.append(example)
    if dropped:
        log.info("%s: left out %d pairs without a gold label ('-')", path, dropped)
    return examples


def _anli_round_files(first: Path, rounds: Sequence[str]) -> list[Path]:
    """ANLI keeps each round in its own folder (``anli_v1.0/R1/train.jsonl``): the other rounds
    of the same split sit next to the first round's folder."""
    base = first.parent.parent
    paths = []
    for name in rounds:
        path = base / name / first.name
        if not path.is_file():
            raise MissingDataError(f"ANLI round {name} not found: {path} (next to {first})")
        paths.append(path)
    return paths


# --------------------------------------------------------------------------- QQP
_QQP_COLUMNS = ("id", "qid1", "qid2", "question1", "question2", "is_duplicate")


def _read_qqp(path: Path, task: Task, split: str, sink: ProblemSink) -> list[SentencePairExample]:
    """GLUE QQP TSV: unquoted tab-separated fields under a header; test has id, q1, q2 only."""
    examples: list[SentencePairExample] = []
    header: list[str] | None = None
    for number, line in file_lines(path):
        fields = line.split("\t")
        if header is None:
            if fields not in (list(_QQP_COLUMNS), ["id", "question1", "question2"]):
                raise DataFormatError(
                    path, number, "the header " + "\\t".join(_QQP_COLUMNS), line[:80]
                )
            header = fields
            continue
        if len(fields) != len(header):
            sink.add(
                DataFormatError(
                    path,
                    number,
                    f"{len(header)} tab-separated fields ({', '.join(header)})",
                    f"{len(fields)}",
                )
            )
            continue
        row = dict(zip(header, fields))
        label = row.get("is_duplicate")
        if label is not None and label not in ("0", "1"):
            sink.add(DataFormatError(path, number, "is_duplicate 0 or 1", repr(label)))
            continue
        examples.append(
            SentencePairExample(
                id=row["id"], text_a=row["question1"], text_b=row["question2"], label=label
            )
        )
    return examples


# --------------------------------------------------------------------------- SQuAD
def _read_squad(path: Path, task: Task, split: str, sink: Any) -> list[QAExample]:
    """SQuAD JSON through the XTREME readers' parser, plus the v2.0 answerability checks."""
    problems = ProblemSink.strict_unless(sink)
    # The SQuAD parser itself belongs to the XTREME readers; the family is set to "xtreme" so
    # that a dispatch of NLU tasks in read_path can never route this call back here.
    as_squad = replace(task, family="xtreme", reader="squad")
    examples: list[QAExample] = read_path(as_squad, path, split, "en", sink=problems)  # type: ignore[assignment]
    version2 = task.metric == "squad_v2"
    checked: list[QAExample] = []
    for ex in examples:
        if ex.is_impossible and ex.answers:
            # SQuAD v2.0 keeps the spans of an unanswerable question in plausible_answers.
            problems.add(
                DataFormatError(
                    path,
                    None,
                    f"no answers for unanswerable question {ex.id}",
                    f"{len(ex.answers)}",
                )
            )
            continue
        if not ex.is_impossible and not ex.answers and split in ("train", "dev"):
            what = (
                "an answer or is_impossible: true"
                if version2
                else "an answer (SQuAD v1.1 has no unanswerable questions)"
            )
            problems.add(DataFormatError(path, None, f"{what} for question {ex.id}", "no answers"))
            continue
        if ex.is_impossible and not version2:
            problems.add(
                DataFormatError(
                    path,
                    None,
                    f"answerable questions only in {task.name}",
                    f"is_impossible {ex.id}",
                )
            )
            continue
        checked.append(ex)
    return checked


# --------------------------------------------------------------------------- multiple choice
def _choice_label(raw: object, n: int, path: Path, line: int, field: str) -> int:
    try:
        value = int(raw) if not isinstance(raw, bool) else None  # type: ignore[arg-type]
    except (TypeError, ValueError):
        value = None
    if value is None or not 0 <= value < n or (isinstance(raw, str) and raw.strip() != str(value)):
        raise _Bad(DataFormatError(path, line, f"{field!r} an integer 0..{n - 1}", repr(raw)[:40]))
    return value


def _hellaswag_record(
    record: dict[str, Any], path: Path, line: int, n_choices: int
) -> MultipleChoiceExample:
    endings = _need(record, "endings", path, line, list)
    if len(endings) != n_choices or not all(isinstance(e, str) for e in endings):
        raise _Bad(
            DataFormatError(
                path, line, f"'endings' a list of {n_choices} strings", repr(endings)[:80]
            )
        )
    if "ctx_a" in record:
        # As jiant (the paper's code): ctx_a is the prompt, and ctx_b - the start of the sentence
        # an ending completes - goes with each ending, so that every choice is a whole sentence.
        context = _need(record, "ctx_a", path, line)
        lead = _need(record, "ctx_b", path, line).strip()
        endings = [f"{lead} {e}" if lead else e for e in endings]
    else:
        context = _need(record, "ctx", path, line)
    label = None
    if record.get("label") not in (None, ""):
        label = _choice_label(record["label"], n_choices, path, line, "label")
    ident = str(record.get("ind", record.get("id", line)))
    return MultipleChoiceExample(
        id=ident, context=context, question="", choices=list(endings), label=label
    )


_COSMOS_COLUMNS = ("id", "context", "question", "answer0", "answer1", "answer2", "answer3", "label")


def _read_cosmosqa(path: Path, task: Task, split: str, sink: ProblemSink) -> list[MultipleChoiceExample]:
    """CosmosQA CSV. Quoted fields span lines, so a record's line is where it starts."""
    text = read_text(path)
    reader = csv.reader(io.StringIO(text, newline=""))
    examples: list[MultipleChoiceExample] = []
    header: list[str] | None = None
    end_of_previous = 0
    n = task.extra.get("num_choices", 4)
    while True:
        start = end_of_previous + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise DataFormatError(path, start, "a well-formed CSV record", str(exc)) from None
        end_of_previous = reader.line_num
        if header is None:
            header = row
            if tuple(row[:7]) != _COSMOS_COLUMNS[:7]:
                raise DataFormatError(
                    path, start, "the header " + ",".join(_COSMOS_COLUMNS), ",".join(row)[:80]
                )
            continue
        if not row:
            continue
        if len(row) != len(header):
            sink.add(
                DataFormatError(
                    path,
                    start,
                    f"{len(header)} CSV fields ({','.join(header)})",
                    f"{len(row)} fields",
                )
            )
            continue
        record = dict(zip(header, row))
        try:
            label = (
                _choice_label(record["label"], n, path, start, "label")
                if "label" in record
                else None
            )
        except _Bad as bad:
            sink.add(bad.error)
            continue
        choices = [record[f"answer{i}"] for i in range(n)]
        examples.append(
            MultipleChoiceExample(
                id=record["id"],
                context=record["context"],
                question=record["question"],
                choices=choices,
                label=label,
            )
        )
    return examples


def _csqa_record(
    record: dict[str, Any], path: Path, line: int, n_choices: int
) -> MultipleChoiceExample:
    """One CommonsenseQA question, original schema or hub schema."""
    ident = str(_need(record, "id", path, line))
    question = _need(record, "question", path, line, (str, dict))
    if isinstance(question, dict):  # original: {"stem", "choices": [{"label", "text"}]}
        stem = _need(question, "stem", path, line)
        raw = _need(question, "choices", path, line, list)
        if not all(
            isinstance(c, dict)
            and isinstance(c.get("label"), str)
            and isinstance(c.get("text"), str)
            for c in raw
        ):
            raise _Bad(
                DataFormatError(path, line, "choices as {label, text} objects", repr(raw)[:80])
            )
        labels, texts = [c["label"] for c in raw], [c["text"] for c in raw]
    else:  # hub: question is the stem; choices = {"label": [...], "text": [...]}
        stem = question
        choices = _need(record, "choices", path, line, dict)
        labels, texts = choices.get("label"), choices.get("text")
        if not isinstance(labels, list) or not isinstance(texts, list) or len(labels) != len(texts):
            raise _Bad(
                DataFormatError(
                    path,
                    line,
                    "choices {label: [...], text: [...]} of equal length",
                    repr(choices)[:80],
                )
            )
    if len(texts) != n_choices:
        raise _Bad(DataFormatError(path, line, f"{n_choices} choices", f"{len(texts)}"))
    label = None
    key = record.get("answerKey")
    if key not in (None, ""):
        if key not in labels:
            raise _Bad(DataFormatError(path, line, f"answerKey one of {labels}", repr(key)))
        label = labels.index(key)
    return MultipleChoiceExample(
        id=ident, context="", question=stem, choices=list(texts), label=label
    )


def _read_jsonl_mc(path: Path, task: Task, sink: ProblemSink, parse) -> list[MultipleChoiceExample]:
    n = int(task.extra.get("num_choices", 4))  # type: ignore[call-overload]
    examples: list[MultipleChoiceExample] = []
    for number, record in _jsonl(path, sink):
        try:
            examples.append(parse(record, path, number, n))
        except _Bad as bad:
            sink.add(bad.error)
    return examples


# --------------------------------------------------------------------------- CCG (AUTO)
def parse_auto_tree(
    tree: str, path: Path | str = "<string>", line: int | None = None
) -> tuple[list[str], list[str]]:
    """Words and supertags of one CCGbank AUTO tree, left to right.

    A leaf is ``(<L CAT MPOS OPOS WORD PRED-ARG-CAT>)``: six space-separated fields counting the
    ``L``. A word never contains a space, so the leaf ends at the first ``>)`` after its fields.
    """
    words: list[str] = []
    tags: list[str] = []
    position = 0
    while True:
        start = tree.find("(<L ", position)
        if start < 0:
            break
        end = tree.find(">)", start)
        if end < 0:
            raise DataFormatError(path, line, "a leaf closed by '>)'", tree[start : start + 60])
        fields = tree[start + 2 : end].split(" ")
        if len(fields) != 6 or not all(fields):
            raise DataFormatError(
                path,
                line,
                "a leaf (<L CAT POS POS WORD PRED-ARG-CAT>) with 6 fields",
                tree[start : end + 2],
            )
        tags.append(fields[1])
        words.append(fields[4])
        position = end + 2
    if not words:
        raise DataFormatError(
            path, line, "a derivation with at least one leaf (<L ...>)", tree[:60]
        )
    return words, tags


def _read_auto(path: Path, task: Task, split: str, sink: ProblemSink) -> list[TaggingExample]:
    examples: list[TaggingExample] = []
    pending: tuple[int, str] | None = None  # (line, ID) waiting for its tree
    for number, line in file_lines(path):
        text = line.strip()
        if not text:
            continue
        if text.startswith("ID="):
            if pending is not None:
                sink.add(
                    DataFormatError(
                        path, number, f"the tree of {pending[1]} (line {pending[0]})", text[:60]
                    )
                )
            ident = text.split()[0][3:]
            pending = (number, ident)
            continue
        if pending is None:
            sink.add(DataFormatError(path, number, "an 'ID=...' line before each tree", text[:60]))
            continue
        if not text.startswith("(<"):
            sink.add(
                DataFormatError(path, number, "a derivation tree '(<T ...' or '(<L ...'", text[:60])
            )
            pending = None
            continue
        try:
            words, tags = parse_auto_tree(text, path, number)
        except DataFormatError as error:
            sink.add(error)
            pending = None
            continue
        examples.append(TaggingExample(id=pending[1], tokens=words, tags=tags))
        pending = None
    if pending is not None:
        sink.add(
            DataFormatError(path, pending[0], f"a tree after {pending[1]}", "the end of the file")
        )
    return examples


def _ccgbank_sections(task: Task, data_dir: Path, split: str) -> list[Path]:
    """``*.auto`` files of a CCGbank release's sections for the split (data/AUTO/NN/)."""
    sections = task.extra.get("sections", {}).get(split)  # type: ignore[union-attr]
    if not sections:
        return []
    for current, dirs, _ in os.walk(data_dir):
        dirs.sort()
        if Path(current).name == "AUTO" and any(d.isdigit() for d in dirs):
            files: list[Path] = []
            for section in sections:
                folder = Path(current) / f"{int(section):02d}"
                files.extend(sorted(folder.glob("*.auto")))
            if files:
                return files
    return []


def ccg_tag_set(
    examples: Iterable[TaggingExample], *, top_k: int | None = None, min_count: int = 1
) -> list[str]:
    """The supertags of (training) examples, most frequent first (ties by name).

    CCGbank's training sections hold about 1,300 categories, half of them seen once or twice;
    ``top_k`` or ``min_count`` keep the frequent ones (the supertagging literature uses the 425
    seen at least 10 times), the rest map to an unknown tag with :func:`map_unknown_tags`.
    """
    counts = Counter(tag for ex in examples for tag in (ex.tags or ()))
    ranked = sorted((t for t, c in counts.items() if c >= min_count), key=lambda t: (-counts[t], t))
    return ranked[:top_k] if top_k is not None else ranked


def map_unknown_tags(
    examples: Iterable[TaggingExample], tag_set: Sequence[str], unknown: str = "<UNK>"
) -> list[TaggingExample]:
    """Copies of the examples with every tag outside ``tag_set`` replaced by ``unknown``.

    For training only: score against the original tags, so a rare gold tag counts as an error.
    """
    keep = set(tag_set)
    return [
        replace(ex, tags=[t if t in keep else unknown for t in ex.tags])
        if ex.tags is not None
        else ex
        for ex in examples
    ]


def nlu_label_set(task: Task | str, data_dir: str | Path | None = None) -> list[str]:
    """The label set a head needs: the registry's, or for CCG the training file's tags
    (``extra["top_k"]``/``extra["min_count"]`` applied, plus the unknown tag when some are cut)."""
    task = get_task(task)
    if task.labels is not None:
        return list(task.labels)
    if task.reader == "ccg_auto":
        if data_dir is None:
            raise ConfigError(
                f"{task.name}: its tag set comes from the training data; give a data directory"
            )
        train = read_nlu_examples(task, data_dir, "train", "en")
        full = ccg_tag_set(train)  # type: ignore[arg-type]
        kept = ccg_tag_set(
            train,  # type: ignore[arg-type]
            top_k=task.extra.get("top_k"),  # type: ignore[arg-type]
            min_count=int(task.extra.get("min_count", 1)),  # type: ignore[call-overload]
        )
        if len(kept) < len(full):
            kept.append(str(task.extra.get("unknown_tag", "<UNK>")))
        return kept
    raise ConfigError(f"{task.name}: no label set")


# --------------------------------------------------------------------------- dispatch
def read_nlu_path(
    task: Task | str, path: str | Path, split: str = "train", *, sink: Any = None
) -> list[NLUExample]:
    """Parse one file of an NLU task (the format follows ``task.reader`` and, for NLI, the suffix)."""
    task = get_task(task)
    path = Path(path)
    if not path.is_file():
        raise MissingDataError(f"file not found: {path}")
    try:
        return _read_one(task, path, split, sink)
    except DataFormatError as error:
        if sink is None:
            raise
        sink.add(error)  # a problem after which the file cannot be read on (header, encoding)
        return []


# Reader name (``Task.reader``) -> reader(path, task, split, sink) of one file.
FILE_READERS: dict[str, Callable[..., Iterable[NLUExample]]] = {
    "nli": _read_nli,
    "anli": _read_nli,
    "qqp": _read_qqp,
    "squad": _read_squad,
    "hellaswag": lambda path, task, split, sink: _read_jsonl_mc(path, task, sink, _hellaswag_record),
    "cosmosqa": _read_cosmosqa,
    "commonsenseqa": lambda path, task, split, sink: _read_jsonl_mc(path, task, sink, _csqa_record),
    "ccg_auto": _read_auto,
}
# Readers given the caller's sink as it is; the others get a strict one unless the caller collects.
_OWN_SINK_POLICY = frozenset({"squad"})


def _read_one(task: Task, path: Path, split: str, sink: Any) -> list[NLUExample]:
    name = task.reader or ""
    reader = FILE_READERS.get(name)
    if reader is None:
        raise ConfigError(f"task {task.name}: no NLU reader {task.reader!r} for {path}")
    return list(reader(path, task, split, sink if name in _OWN_SINK_POLICY else ProblemSink.strict_unless(sink)))


def read_nlu_examples(
    task: Task | str, data_dir: str | Path, split: str, lang: str = "en", *, sink: Any = None
) -> list[NLUExample]:
    """The examples of an NLU task's split below ``data_dir``, in file order (English only)."""
    task = get_task(task)
    if lang != "en":
        raise ConfigError(f"{task.name} is an English intermediate task; no language {lang!r}")
    if split not in task.splits:
        raise ConfigError(
            f"task {task.name} has no split {split!r}; its splits: {', '.join(task.splits)}"
        )
    if task.reader == "anli_plus":
        components = task.extra["components"][split]  # type: ignore[index]
        examples: list[NLUExample] = []
        for name in components:
            examples.extend(read_nlu_examples(name, data_dir, split, lang, sink=sink))
        return examples
    paths = find_files(task, data_dir, split, lang) if split in task.files else []
    if task.reader == "anli" and paths:
        paths = _anli_round_files(paths[0], task.extra.get("rounds", ("R1", "R2", "R3")))  # type: ignore[arg-type]
    if not paths and task.reader == "ccg_auto":
        paths = _ccgbank_sections(task, Path(data_dir), split)
    if not paths:
        patterns = ", ".join(task.files.get(split, ()))
        raise MissingDataError(
            f"no {task.name} {split} file below {data_dir} (looked for a path ending in: {patterns})"
        )
    examples = []
    for path in paths:
        examples.extend(read_nlu_path(task, path, split, sink=sink))
    return examples


# --------------------------------------------------------------------------- hub datasets
def _nli_hub_record(task: Task, record: Mapping[str, Any], path: Path, line: int) -> SentencePairExample | None:
    raw = record.get("label")
    if raw == -1:
        return None  # no gold
    if not isinstance(raw, int) or not 0 <= raw < 3:
        raise _Bad(DataFormatError(path, line, "label 0, 1 or 2", repr(raw)))
    ident = str(record.get("uid", record.get("pairID", f"{task.name}-{line - 1}")))
    return SentencePairExample(
        id=ident,
        text_a=_need(record, "premise", path, line),
        text_b=_need(record, "hypothesis", path, line),
        label=_NLI_HUB_INDEX[raw],
    )


def _qqp_hub_record(task: Task, record: Mapping[str, Any], path: Path, line: int) -> SentencePairExample:
    raw = record.get("label")
    label = None if raw == -1 else str(raw)
    if label not in (None, "0", "1"):
        raise _Bad(DataFormatError(path, line, "label 0 or 1", repr(raw)))
    return SentencePairExample(
        id=str(record.get("idx", line - 1)),
        text_a=_need(record, "question1", path, line),
        text_b=_need(record, "question2", path, line),
        label=label,
    )


def _squad_hub_record(task: Task, record: Mapping[str, Any], path: Path, line: int) -> QAExample:
    answers = _need(record, "answers", path, line, dict)
    texts, starts = answers.get("text", []), answers.get("answer_start", [])
    if len(texts) != len(starts):
        raise _Bad(DataFormatError(path, line, "answers with as many starts as texts", repr(answers)[:80]))
    return QAExample(
        id=str(_need(record, "id", path, line)),
        question=_need(record, "question", path, line),
        context=_need(record, "context", path, line),
        answers=[QAAnswer(text=t, answer_start=int(s)) for t, s in zip(texts, starts)],
        title=str(record.get("title", "")),
        is_impossible=task.metric == "squad_v2" and not texts,
    )


def _cosmosqa_hub_record(task: Task, record: Mapping[str, Any], path: Path, line: int) -> MultipleChoiceExample:
    n = int(task.extra.get("num_choices", 4))  # type: ignore[call-overload]
    label = record.get("label")
    return MultipleChoiceExample(
        id=str(_need(record, "id", path, line)),
        context=_need(record, "context", path, line),
        question=_need(record, "question", path, line),
        choices=[_need(record, f"answer{i}", path, line) for i in range(n)],
        label=None if label in (None, -1) else _choice_label(label, n, path, line, "label"),
    )


# Reader name -> one hub record as an example (None: a record without gold, left out).
HUB_RECORD_READERS: dict[str, Callable[[Task, Mapping[str, Any], Path, int], NLUExample | None]] = {
    "nli": _nli_hub_record,
    "anli": _nli_hub_record,
    "qqp": _qqp_hub_record,
    "squad": _squad_hub_record,
    "hellaswag": lambda task, record, path, line: _hellaswag_record(
        dict(record), path, line, int(task.extra.get("num_choices", 4))),  # type: ignore[call-overload]
    "cosmosqa": _cosmosqa_hub_record,
    "commonsenseqa": lambda task, record, path, line: _csqa_record(
        dict(record), path, line, int(task.extra.get("num_choices", 5))),  # type: ignore[call-overload]
}


def nlu_examples_from_records(
    task: Task | str, records: Iterable[Mapping[str, Any]], source: str = "<hub>"
) -> list[NLUExample]:
    """The hub's records of an NLU task as examples, validated like the files.

    The NLI datasets give labels as integers (0 entailment, 1 neutral, 2 contradiction; -1 = no
    gold, left out); SQuAD gives ``answers: {text: [...], answer_start: [...]}``; HellaSwag's
    label is a string; CommonsenseQA's hub schema is the one its reader already knows.
    """
    task = get_task(task)
    path = Path(source)
    sink = ProblemSink()
    out: list[NLUExample] = []
    convert = HUB_RECORD_READERS.get(task.reader or "")
    if convert is None:
        raise ConfigError(f"task {task.name} has no hub records reader")
    for index, record in enumerate(records):
        try:
            example = convert(task, record, path, index + 1)
            if example is not None:
                out.append(example)
        except _Bad as bad:
            sink.add(bad.error)
    return out


def read_nlu_hub(
    task: Task | str,
    split: str,
    *,
    data_files: str | Path | Sequence[str | Path] | None = None,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
) -> list[NLUExample]:
    """A task's split from the Hugging Face hub (network or a filled cache), or from local
    parquet ``data_files`` holding the hub's columns (how the tests read it offline)."""
    task = get_task(task)
    if task.reader == "anli_plus":
        if data_files is not None:
            raise ConfigError(
                "anli_plus reads its components (anli, mnli, snli) one by one; give no data_files"
            )
        components = task.extra["components"][split]  # type: ignore[index]
        return [
            ex
            for name in components
            for ex in read_nlu_hub(name, split, revision=revision, cache_dir=cache_dir)
        ]
    spec = task.source.for_split(split) if task.source is not None else None
    if not isinstance(spec, HubTable) or spec.hub_splits(split) is None:
        raise ConfigError(f"{task.name}: no hub dataset for split {split!r}")
    import datasets  # heavy; only when the hub is asked for

    cache = str(cache_dir) if cache_dir else None
    if data_files is not None:
        files = (
            [str(data_files)]
            if isinstance(data_files, (str, Path))
            else [str(f) for f in data_files]
        )
        data = datasets.load_dataset(
            "parquet", data_files={"data": files}, split="data", cache_dir=cache
        )
        return nlu_examples_from_records(task, data, source=files[0])
    examples: list[NLUExample] = []
    for hub_split in spec.hub_splits(split) or ():
        try:
            data = datasets.load_dataset(
                spec.repo, spec.config, split=hub_split, revision=revision or spec.revision,
                cache_dir=cache,
            )
        except Exception as exc:  # offline, unknown id, ...: one readable line
            raise MissingDataError(
                f"could not load {spec.repo} ({hub_split}) from the hub: {exc}"
            ) from None
        examples.extend(
            nlu_examples_from_records(task, data, source=f"hub:{spec.repo}[{hub_split}]")
        )
    return examples


FAMILY_READERS["nlu"] = lambda task, data_dir, split, lang, sink: read_nlu_examples(
    task, data_dir, split, lang, sink=sink
)
FAMILY_PATH_READERS["nlu"] = lambda task, path, split, sink: read_nlu_path(task, path, split, sink=sink)
