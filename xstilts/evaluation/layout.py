"""XTREME's submission layout: where prediction and label files live and what is in them.

Both predictions and gold labels use the layout of XTREME's ``evaluate.py``::

    ROOT/{task}/test-{lang}.tsv    xnli, pawsx: one label per line
                                   udpos, panx: one tag per line, a blank line after each sentence
                                   bucc2018:    ``src_id<TAB>tgt_id`` per line
                                   tatoeba:     one plain integer (target index) per line
    ROOT/{task}/test-{lang}.json   xquad, mlqa, tydiqa: predictions ``{qid: answer text}``;
                                   labels: the SQuAD-format dataset file itself

The file *format* follows the task kind (and, for retrieval, the task's metric), so new tasks of
an existing kind need nothing here. In-memory forms (what :func:`read_predictions` returns and
what :mod:`xstilts.evaluation.scorer` consumes):

=========  ==========================================  =========================================
format     predictions                                 gold
=========  ==========================================  =========================================
label      ``list[str]``                               ``list[str]``
tags       ``list[list[str]]``                         ``list[list[str]]``
qa         ``dict[qid, str]``                          ``list[tuple[qid, list[answer text]]]``
pairs      ``list[tuple[str, str]]``                   ``list[tuple[str, str]]``
index      ``list[int]``                               ``list[int]``
=========  ==========================================  =========================================

Reading replicates ``evaluate.py`` (lines are stripped; in tag files every blank line closes a
sentence, so two blank lines make an empty sentence) but refuses what it would silently
mis-score: blank label lines, labels and tags outside the task's label set (in gold and in
predictions), tag files that mix ``tag`` and ``token<TAB>tag`` lines, BUCC lines without exactly
two fields, Tatoeba lines that are not plain integers, NaN/Infinity in JSON, empty gold files,
questions without answers. Every refusal is a :class:`~xstilts.errors.DataFormatError` naming
file and line (QA JSON: the line of the question id and the id). Files are written whole or not
at all (:func:`xstilts.fileio.write_text_atomic`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from xstilts.data.readers import JsonLineFinder, prevailing_width
from xstilts.data.textio import read_text
from xstilts.errors import DataFormatError
from xstilts.fileio import decode_utf8, read_input_bytes, write_text_atomic
from xstilts.tasks import Task, get_task
from xstilts.tasks.kinds import submission_format

LABEL = "label"
TAGS = "tags"
QA = "qa"
PAIRS = "pairs"
INDEX = "index"

QAGold = list[tuple[str, list[str]]]

_PLAIN_INT = re.compile(r"(?:0|[1-9][0-9]*)")



def file_format(task: Task | str) -> str:
    """The submission format of a task: ``label``, ``tags``, ``qa``, ``pairs`` or ``index``."""
    t = get_task(task)
    fmt = submission_format(t)
    if fmt is None:
        raise ValueError(f"task {t.name!r} of kind {t.kind.value} has no XTREME submission format")
    return fmt


def suffix(task: Task | str) -> str:
    """``json`` for QA tasks, ``tsv`` for the rest (as evaluate.py names them)."""
    return "json" if file_format(task) == QA else "tsv"


def prediction_path(root: str | Path, task: Task | str, lang: str) -> Path:
    """``root/{task}/test-{lang}.{tsv|json}``."""
    t = get_task(task)
    return Path(root) / t.name / f"test-{lang}.{suffix(t)}"


# Label files use exactly the same layout (XTREME's label folder mirrors the prediction folder).
label_path = prediction_path


def languages_in(root: str | Path, task: Task | str) -> list[str]:
    """Languages that have a ``test-{lang}`` file for ``task`` under ``root`` (sorted)."""
    t = get_task(task)
    folder = Path(root) / t.name
    if not folder.is_dir():
        return []
    ext = suffix(t)
    langs = []
    for p in folder.glob(f"test-*.{ext}"):
        langs.append(p.name[len("test-") : -len(ext) - 1])
    return sorted(langs)


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------

_ASCII_SPACE = " \t\r\n\f\v"


def _text_lines(path: Path) -> list[str]:
    """The file's lines, unstripped (a UTF-8 BOM dropped); an unreadable file or a byte that is
    not UTF-8 is a DataFormatError naming the file (and the line)."""
    text = read_text(path)
    # evaluate.py iterates open(...) in text mode: universal newlines (\n, \r\n and a lone \r).
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def _read_lines(path: Path) -> list[str]:
    """The file's lines, stripped as evaluate.py strips them."""
    return [line.strip() for line in _text_lines(path)]


def _label_set(task: Task) -> str:
    return "{" + ", ".join(sorted(task.labels or ())) + "}"


def _check_label(value: str, task: Task, path: Path, line: int, what: str) -> None:
    """A label or tag outside the task's label set would be scored as a plain miss (or, for
    gold, silently lower every score): it is an error naming the allowed ones."""
    if task.labels and value not in task.labels:
        expected = f"a {what} in {_label_set(task)} (the {task.name} {what}s)"
        raise DataFormatError(path, line, expected, repr(value))


def _read_labels_tsv(path: Path, task: Task) -> list[str]:
    out = []
    for i, line in enumerate(_read_lines(path), 1):
        if not line:
            raise DataFormatError(path, i, "one label per line", "an empty line")
        _check_label(line, task, path, i, "label")
        out.append(line)
    return out


def _read_tags(path: Path, task: Task) -> list[list[str]]:
    """Sentences of tags. A line holds a tag alone (XTREME's label and prediction files) or
    ``token<TAB>tag`` (its download files), one or the other in the whole file: what most of
    its lines hold, so that the odd line out is the one named."""
    lines = _text_lines(path)
    # evaluate.py's strip() decides what is blank; fields are split after stripping only ASCII
    # blanks, so that a token such as U+3000 (Japanese UD) stays a token.
    fields_of = [line.strip(_ASCII_SPACE).split("\t") if line.strip() else None for line in lines]
    width, width_line = prevailing_width(
        ((i, len(fields)) for i, fields in enumerate(fields_of, 1) if fields is not None), (1, 2)
    )
    sentences: list[list[str]] = []
    current: list[str] = []
    for i, fields in enumerate(fields_of, 1):
        if fields is None:
            sentences.append(current)  # every blank line closes a sentence, as in evaluate.py
            current = []
            continue
        if len(fields) != width:
            if width is None:
                expected = "a tag, or token<TAB>tag"
            else:
                shape = "token<TAB>tag" if width == 2 else "a tag alone"
                expected = f"{shape} as on line {width_line} (and most lines of the file)"
            found = f"{len(fields)} tab-separated field{'s' if len(fields) != 1 else ''}"
            raise DataFormatError(path, i, expected, f"{found}: {lines[i - 1].strip()!r}")
        tag = fields[-1].strip()
        _check_label(tag, task, path, i, "tag")
        current.append(tag)
    if current:
        sentences.append(current)
    return sentences


def _read_pairs(path: Path) -> list[tuple[str, str]]:
    out = []
    for i, line in enumerate(_read_lines(path), 1):
        fields = line.split("\t")
        if len(fields) != 2 or not fields[0] or not fields[1]:
            raise DataFormatError(path, i, "'source_id<TAB>target_id'", repr(line))
        out.append((fields[0], fields[1]))
    return out


def _read_indices(path: Path) -> list[int]:
    out = []
    for i, line in enumerate(_read_lines(path), 1):
        if not _PLAIN_INT.fullmatch(line):
            raise DataFormatError(
                path, i, "a plain non-negative integer (target index)", repr(line)
            )
        out.append(int(line))
    return out


class _NotJson(ValueError):
    """NaN, Infinity or -Infinity: Python's json accepts them, JSON does not."""


def _refuse_constant(name: str) -> Any:
    raise _NotJson(name)


def _load_json(path: Path) -> tuple[Any, str]:
    """The parsed file and its text (for line look-ups)."""
    text = decode_utf8(read_input_bytes(path), path)
    try:
        return json.loads(text, parse_constant=_refuse_constant), text
    except json.JSONDecodeError as exc:
        raise DataFormatError(path, exc.lineno, "valid JSON", exc.msg) from None
    except _NotJson as exc:
        line = text.count("\n", 0, max(text.find(str(exc)), 0)) + 1
        raise DataFormatError(path, line, "valid JSON (a number or a string)", str(exc)) from None


def _read_qa_predictions(path: Path) -> dict[str, str]:
    data, text = _load_json(path)
    if not isinstance(data, dict):
        raise DataFormatError(
            path, None, "a JSON object {question id: answer text}", type(data).__name__
        )
    finder = JsonLineFinder(text)
    for qid, answer in data.items():
        if not isinstance(answer, str):
            raise DataFormatError(
                path, finder.line_of(qid), "a string answer", _short(answer), at=f"question {qid}"
            )
    return data


def _read_qa_gold(path: Path) -> QAGold:
    """(qid, answer texts) for every question of a SQuAD-format file, in file order.

    Like evaluate.py's ``read_squad`` it takes ``{"data": [...]}`` or the bare article list.
    """
    data, text = _load_json(path)
    finder = JsonLineFinder(text)
    articles = data.get("data") if isinstance(data, dict) else data
    if not isinstance(articles, list):
        raise DataFormatError(
            path, None, "SQuAD-format JSON with a 'data' list of articles", type(articles).__name__
        )
    gold: QAGold = []
    for a, article in enumerate(articles):
        paragraphs = article.get("paragraphs") if isinstance(article, dict) else None
        if not isinstance(paragraphs, list):
            raise DataFormatError(
                path, None, f"a 'paragraphs' list in article {a}", _short(article)
            )
        for p, paragraph in enumerate(paragraphs):
            qas = paragraph.get("qas") if isinstance(paragraph, dict) else None
            if not isinstance(qas, list):
                raise DataFormatError(
                    path, None, f"a 'qas' list in article {a} paragraph {p}", _short(paragraph)
                )
            for qa in qas:
                qid = qa.get("id") if isinstance(qa, dict) else None
                if not isinstance(qid, str):
                    raise DataFormatError(
                        path, None, f"a question with an 'id' in article {a} paragraph {p}", _short(qa)
                    )
                at, line = f"question {qid}", finder.line_of(qid)
                answers = qa.get("answers")
                if answers is None:
                    raise DataFormatError(path, line, "answers", "none", at=at)
                if not isinstance(answers, list):
                    raise DataFormatError(path, line, "an answers list", _short(answers), at=at)
                texts = []
                for ans in answers:
                    if not isinstance(ans, dict) or not isinstance(ans.get("text"), str):
                        raise DataFormatError(path, line, "answers with a 'text' string", _short(ans), at=at)
                    texts.append(ans["text"])
                if not texts:
                    # evaluate.py would crash on max([]): a test question needs at least one answer.
                    raise DataFormatError(path, line, "at least one gold answer", "none", at=at)
                gold.append((qid, texts))
    return gold


def _short(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)[:100]


def read_predictions(path: str | Path, task: Task | str) -> Any:
    """Read one prediction file in the task's format (see the module docstring). Labels and
    tags outside the task's label set are errors naming the file, the line and the allowed set."""
    path = Path(path)
    t = get_task(task)
    fmt = file_format(t)
    if fmt == LABEL:
        return _read_labels_tsv(path, t)
    if fmt == TAGS:
        return _read_tags(path, t)
    if fmt == QA:
        return _read_qa_predictions(path)
    if fmt == PAIRS:
        return _read_pairs(path)
    return _read_indices(path)


_GOLD_UNIT = {LABEL: "label", TAGS: "sentence", QA: "question", PAIRS: "gold pair", INDEX: "target index"}


def read_labels(path: str | Path, task: Task | str) -> Any:
    """Read one XTREME gold-label file into the scorer's in-memory gold form, validated as a
    reader validates data: the task's label set, and at least one item (an empty gold file
    would score its language 0 inside the task's average)."""
    path = Path(path)
    t = get_task(task)
    fmt = file_format(t)
    gold = _read_qa_gold(path) if fmt == QA else read_predictions(path, t)
    if not (any(gold) if fmt == TAGS else gold):  # no item, or only empty sentences
        raise DataFormatError(path, None, f"at least one {_GOLD_UNIT[fmt]}", "an empty file")
    return gold


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def _write_text(path: Path, lines: Iterable[str]) -> None:
    # Complete or not at all: a full disk leaves an earlier file as it was (OutputError).
    write_text_atomic(path, "".join(line + "\n" for line in lines))


def _check_field(value: str, what: str) -> str:
    value = str(value)
    if not value.strip() or value != value.strip() or "\n" in value or "\t" in value:
        raise ValueError(f"{what} {value!r} cannot be written as one field of a line")
    return value


def _tag_lines(sentences: Sequence[Sequence[str]]) -> Iterable[str]:
    for sentence in sentences:
        for tag in sentence:
            yield _check_field(tag, "tag")
        yield ""


def write_predictions(root: str | Path, task: Task | str, lang: str, predictions: Any) -> Path:
    """Write one language's predictions at :func:`prediction_path`; returns the path."""
    t = get_task(task)
    path = prediction_path(root, t, lang)
    fmt = file_format(t)
    if fmt == LABEL:
        _write_text(path, (_check_field(p, "label") for p in predictions))
    elif fmt == TAGS:
        _write_text(path, _tag_lines(predictions))
    elif fmt == QA:
        if not isinstance(predictions, dict):
            raise TypeError("QA predictions must be a dict {question id: answer text}")
        answers = {str(k): str(v) for k, v in predictions.items()}
        write_text_atomic(path, json.dumps(answers, ensure_ascii=False, indent=1) + "\n")
    elif fmt == PAIRS:
        _write_text(
            path, (f"{_check_field(s, 'id')}\t{_check_field(g, 'id')}" for s, g in predictions)
        )
    else:
        out = []
        for p in predictions:
            if isinstance(p, bool) or int(p) != p or int(p) < 0:
                raise ValueError(f"Tatoeba predictions are non-negative integers, got {p!r}")
            out.append(str(int(p)))
        _write_text(path, out)
    return path


def gold_from_examples(task: Task | str, examples: Sequence[Any]) -> Any:
    """The scorer's in-memory gold for the examples a reader returned (see the module table).

    Retrieval tasks take the one-element list of a :class:`BitextExample` that the readers give
    (or the example itself). Tatoeba gold is the position of the gold target in the example's
    target order: predictions index the same order.
    """
    t = get_task(task)
    fmt = file_format(t)
    if fmt == LABEL:
        gold = []
        for ex in examples:
            label = ex.label
            if label is None:
                raise ValueError(f"example {ex.id} has no gold label")
            gold.append(str(label))
        return gold
    if fmt == TAGS:
        out = []
        for ex in examples:
            if ex.tags is None:
                raise ValueError(f"example {ex.id} has no gold tags")
            out.append(list(ex.tags))
        return out
    if fmt == QA:
        return [(ex.id, [a.text for a in ex.answers]) for ex in examples]
    bitext = _one_bitext(examples)
    if fmt == PAIRS:
        return sorted(bitext.gold)
    position = {tid: i for i, tid in enumerate(bitext.target)}
    gold_of: dict[str, int] = {}
    for src, tgt in bitext.gold:
        if tgt not in position:
            raise ValueError(f"gold target {tgt!r} is not among the targets of {bitext.id}")
        gold_of[src] = position[tgt]
    missing = [s for s in bitext.source if s not in gold_of]
    if missing:
        raise ValueError(
            f"{len(missing)} Tatoeba sources have no gold target (first: {missing[0]!r})"
        )
    return [gold_of[s] for s in bitext.source]


def _one_bitext(examples: Any) -> Any:
    if hasattr(examples, "source") and hasattr(examples, "gold"):
        return examples
    if len(examples) != 1:
        raise ValueError(
            f"retrieval tasks have one BitextExample per language, got {len(examples)}"
        )
    return examples[0]


def write_labels(root: str | Path, task: Task | str, lang: str, examples: Sequence[Any]) -> Path:
    """Write XTREME gold-label files (the layout of XTREME's label folder); returns the path.

    QA labels are written as a SQuAD v1.1 dataset (consecutive examples with the same title
    and context share an article/paragraph), which is what evaluate.py reads.
    """
    t = get_task(task)
    path = label_path(root, t, lang)
    fmt = file_format(t)
    if fmt != QA:
        gold = gold_from_examples(t, examples)
        return write_predictions(root, t, lang, gold)
    articles: list[dict[str, Any]] = []
    for ex in examples:
        if not articles or articles[-1]["title"] != ex.title:
            articles.append({"title": ex.title, "paragraphs": []})
        paragraphs = articles[-1]["paragraphs"]
        if not paragraphs or paragraphs[-1]["context"] != ex.context:
            paragraphs.append({"context": ex.context, "qas": []})
        paragraphs[-1]["qas"].append(
            {
                "id": ex.id,
                "question": ex.question,
                "answers": [{"text": a.text, "answer_start": a.answer_start} for a in ex.answers],
            }
        )
    write_text_atomic(path, json.dumps({"version": "1.1", "data": articles}, ensure_ascii=False) + "\n")
    return path


__all__ = [
    "INDEX",
    "LABEL",
    "PAIRS",
    "QA",
    "QAGold",
    "TAGS",
    "file_format",
    "gold_from_examples",
    "label_path",
    "languages_in",
    "prediction_path",
    "read_labels",
    "read_predictions",
    "suffix",
    "write_labels",
    "write_predictions",
]
