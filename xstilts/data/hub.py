"""XTREME target tasks from the Hugging Face hub, converted into xstilts examples.

With ``datasets`` 4+/5.x hub datasets are parquet files (loading scripts are gone), so one
generic loader serves every task; what differs per task is declared on the task itself
(``Task.source``, a :class:`~xstilts.tasks.sources.HubTable`): the dataset id, the config name
per language, the split names and which column holds which field.
Passing ``data_files`` reads local parquet files through the same conversion (that is how the
tests exercise it without a network).

BUCC 2018 has no hub copy with its distractor sentences (the hub versions keep only the gold
pairs, which makes mining trivial), so it is read from the BUCC files only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xstilts.data.examples import (
    BitextExample,
    QAAnswer,
    QAExample,
    SentencePairExample,
    TaggingExample,
)
from xstilts.data.nlu_readers import read_nlu_hub
from xstilts.errors import ConfigError, DataFormatError
from xstilts.tasks import get_task
from xstilts.tasks.base import Task, TaskKind
from xstilts.tasks.kinds import kind_ops
from xstilts.tasks.sources import HubTable


def hub_spec(task: Task | str, split: str = "test") -> HubTable:
    """The hub dataset (``Task.source``) that ``split`` of a task is read from."""
    task = get_task(task)
    source = task.source.for_split(split) if task.source is not None else None
    if not isinstance(source, HubTable):
        raise ConfigError(f"no hub dataset is declared for task {task.name!r} ({split})")
    return source


def load_hub(
    task: Task | str,
    split: str,
    lang: str,
    *,
    data_files: str | Path | Sequence[str | Path] | None = None,
    config: str | None = None,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
) -> list[Any]:
    """Load (task, split, lang) from the hub (or from local parquet ``data_files``) as examples.

    Malformed rows raise :class:`DataFormatError` naming ``hub:ID/CONFIG[SPLIT]`` (or the
    parquet file) and the 1-based row.
    """
    import datasets  # heavy; only commands that load hub data pay for it

    task = get_task(task)
    if task.family == "nlu":  # the NLU intermediate tasks convert their own records
        return read_nlu_hub(
            task, split, data_files=data_files, revision=revision, cache_dir=cache_dir
        )
    spec = hub_spec(task, split)
    if split not in spec.splits:
        known = ", ".join(spec.splits)
        raise ConfigError(f"{task.name} has no hub split for {split!r}; hub splits: {known}")
    hub_split = spec.splits[split][0]
    if data_files is not None:
        if isinstance(data_files, (str, Path)):
            files = [str(data_files)]
        else:
            files = [str(f) for f in data_files]
        dataset = datasets.load_dataset(
            "parquet",
            data_files={hub_split: files},
            split=hub_split,
            cache_dir=str(cache_dir) if cache_dir else None,
        )
        source = files[0] if len(files) == 1 else f"{files[0]} (+{len(files) - 1})"
    else:
        name = config or spec.config_for(lang)
        dataset = datasets.load_dataset(
            spec.repo,
            name,
            split=hub_split,
            revision=revision or spec.revision,
            cache_dir=str(cache_dir) if cache_dir else None,
        )
        source = f"hub:{spec.repo}/{name}[{hub_split}]"
    return convert_rows(task, spec, dataset, split, lang, source=source)


def _names_of(features: Any, column: str) -> list[str] | None:
    """ClassLabel names of a column (or of a list column's items), when the features carry them."""
    if features is None or column not in features:
        return None
    feature = features[column]
    feature = getattr(feature, "feature", feature)
    names = getattr(feature, "names", None)
    return list(names) if names else None


def _label_text(value: Any, names: Sequence[str] | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        return str(value)
    if value < 0:
        return None  # datasets' convention for a missing label
    if names is None:
        return str(value)
    return names[value] if value < len(names) else str(value)


@dataclass
class HubRows:
    """One hub table being converted: what every kind's converter needs besides the rows."""

    task: Task
    spec: HubTable
    split: str
    lang: str
    source: str  # named in errors
    names: tuple[str, ...] | None  # label names of the label / tag column (ClassLabel order)
    labels: frozenset[str]  # the task's labels (empty: any)

    def problem(self, row: int, expected: str, found: str | None) -> DataFormatError:
        return DataFormatError(self.source, row, expected, found)

    def column(self, row_number: int, row: Mapping[str, Any], field_name: str) -> Any:
        name = self.spec.columns[field_name]
        if name not in row:
            raise self.problem(row_number, f"a column {name!r} ({field_name})", ", ".join(row))
        return row[name]


def convert_rows(
    task: Task, spec: HubTable, rows: Any, split: str, lang: str, *, source: str = "hub"
) -> list[Any]:
    """Turn hub rows (a ``datasets.Dataset`` or any iterable of dicts) into the kind's examples
    (the kind's ``hub_examples`` operation)."""
    features = getattr(rows, "features", None)
    cols = spec.columns
    names = spec.label_names
    if "label" in cols:
        names = tuple(_names_of(features, cols["label"]) or names or ()) or None
    if "tags" in cols:
        names = tuple(_names_of(features, cols["tags"]) or names or ()) or None
    ops = kind_ops(task)
    if not ops.has("hub_examples"):
        raise ConfigError(f"no hub conversion for task kind {task.kind.value}")
    return ops.hub_examples(HubRows(task, spec, split, lang, source, names, frozenset(task.labels or ())), rows)


def _row_by_row(convert_one: Any) -> Any:
    """A table converter from a one-row converter ``(table, number, row, row_id) -> example``,
    skipping the rows whose id lacks the language's prefix (``HubTable.id_prefix``)."""

    def convert(table: HubRows, rows: Any) -> list[Any]:
        cols, prefix = table.spec.columns, table.spec.id_prefix.get(table.lang)
        examples: list[Any] = []
        for i, row in enumerate(rows):
            has_id = "id" in cols and cols["id"] in row
            row_id = str(row[cols["id"]]) if has_id else f"{table.split}-{table.lang}-{i}"
            if prefix is not None and not row_id.startswith(prefix):
                continue
            examples.append(convert_one(table, i + 1, row, row_id))
        return examples

    return convert


@kind_ops(TaskKind.RETRIEVAL).implements("hub_examples")
def _bitext(table: HubRows, rows: Any) -> list[Any]:
    """The whole table is one bitext: row i's source and target sentences are a gold pair."""
    src: dict[str, str] = {}
    tgt: dict[str, str] = {}
    for i, row in enumerate(rows):
        src[str(i)] = str(table.column(i + 1, row, "source")).strip()
        tgt[str(i)] = str(table.column(i + 1, row, "target")).strip()
    gold = {(k, k) for k in src}
    return [BitextExample(id=f"{table.task.name}-{table.split}-{table.lang}", source=src, target=tgt, gold=gold)]


def _sentence_pair(table: HubRows, number: int, row: Mapping[str, Any], row_id: str) -> SentencePairExample:
    cols, labels = table.spec.columns, table.labels
    label = _label_text(table.column(number, row, "label"), table.names) if "label" in cols else None
    if label is not None and labels and label not in labels:
        raise table.problem(number, f"a label in {{{', '.join(sorted(labels))}}}", repr(label))
    return SentencePairExample(
        id=row_id,
        text_a=str(table.column(number, row, "text_a")),
        text_b=str(table.column(number, row, "text_b")),
        label=label,
    )


def _tagged_sentence(table: HubRows, number: int, row: Mapping[str, Any], row_id: str) -> TaggingExample:
    labels = table.labels
    tokens = [str(t) for t in table.column(number, row, "tokens")]
    tags = [_label_text(t, table.names) for t in table.column(number, row, "tags")]
    if len(tags) != len(tokens):
        raise table.problem(number, f"one tag per token ({len(tokens)})", f"{len(tags)} tags")
    for tag in tags:
        if labels and tag not in labels:
            raise table.problem(number, f"a tag in {{{', '.join(sorted(labels))}}}", repr(tag))
    return TaggingExample(id=row_id, tokens=tokens, tags=[str(g) for g in tags])


def _question(table: HubRows, number: int, row: Mapping[str, Any], row_id: str) -> QAExample:
    cols = table.spec.columns
    context = str(table.column(number, row, "context"))
    answers_raw = table.column(number, row, "answers") or {}
    texts = list(answers_raw.get("text", []))
    starts = list(answers_raw.get("answer_start", []))
    if len(texts) != len(starts):
        raise table.problem(number, "as many answer starts as answer texts", f"{len(starts)} and {len(texts)}")
    answers = []
    for text, start in zip(texts, starts):
        if context[start : start + len(text)] != text:
            raise table.problem(
                number,
                f"answer {text!r} of question {row_id} at context[{start}:{start + len(text)}]",
                repr(context[start : start + len(text)]),
            )
        answers.append(QAAnswer(text=text, answer_start=int(start)))
    return QAExample(
        id=row_id,
        question=str(table.column(number, row, "question")),
        context=context,
        answers=answers,
        title=str(row.get(cols.get("title", ""), "") or ""),
    )


kind_ops(TaskKind.SENTENCE_PAIR).implements("hub_examples")(_row_by_row(_sentence_pair))
kind_ops(TaskKind.TAGGING).implements("hub_examples")(_row_by_row(_tagged_sentence))
kind_ops(TaskKind.QA).implements("hub_examples")(_row_by_row(_question))
