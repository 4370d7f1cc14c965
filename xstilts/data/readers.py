"""Readers for the XTREME target tasks: find a task's files below a data directory and parse them.

Files are located by the task's ``files`` patterns (see :class:`xstilts.tasks.base.Task`): a
pattern matches any file whose path *ends* with it, so ``xquad/xquad.{lang}.json`` finds
``DIR/xquad/xquad.de.json`` as well as ``DIR/mirror/xquad/xquad.de.json``. The first pattern
of a split that matches wins (the registry lists XTREME's preprocessed layout before the source
layouts). A pattern may use ``*`` for one path segment's characters (raw UD CoNLL-U treebanks:
every treebank of a language is read, as XTREME merges them).

Formats read (each validated; a malformed record raises :class:`DataFormatError` naming the file,
the 1-based line and what was expected):

* sentence pairs (XNLI, PAWS-X) — XTREME's ``{split}-{lang}.tsv``:
  ``text_a<TAB>text_b[<TAB>label]`` written by ``csv.writer`` (fields with ``"`` are quoted);
  test files carry no label.
* tagging (UDPOS, PAN-X) — ``token<TAB>tag`` per line, a blank line between sentences; files
  without tags (XTREME's unlabelled test files) give ``tags=None``. Raw UD ``*.conllu`` too.
* extractive QA (XQuAD, MLQA, TyDiQA-GoldP, SQuAD) — SQuAD v1.1/v2.0 JSON.
* retrieval — BUCC 2018 (``{lg}-en.{split}.{lg|en}`` with ``id<TAB>sentence`` lines and a
  ``.gold`` file of ``src_id<TAB>tgt_id``) and Tatoeba (LASER's ``tatoeba.{xxx}-eng.{xxx|eng}``,
  line i ↔ line i; or XTREME's ``{lg}-en.{lg|en}`` with its gold in ``test-{lg}.tsv``).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

from xstilts.data.examples import (
    BitextExample,
    MultipleChoiceExample,
    QAAnswer,
    QAExample,
    SentencePairExample,
    TaggingExample,
)
from xstilts.data.problems import ProblemSink
from xstilts.data.textio import read_text, split_lines
from xstilts.errors import ConfigError, DataFormatError, MissingDataError
from xstilts.languages import TATOEBA_ISO3
from xstilts.tasks import get_task
from xstilts.tasks.base import Task
from xstilts.tasks.kinds import kind_ops

Example = Union[SentencePairExample, TaggingExample, QAExample, BitextExample, MultipleChoiceExample]

__all__ = [
    "Example",
    "ProblemSink",
    "available",
    "find_file",
    "find_files",
    "prevailing_width",
    "read_examples",
    "read_path",
    "count_unit",
]

# --------------------------------------------------------------------------------------------
# Locating files
# --------------------------------------------------------------------------------------------

_SKIP_DIRS = {".git", "__pycache__", ".venv", "node_modules", ".ipynb_checkpoints"}


@dataclass
class _Listing:
    """All files below one data directory, as ``/``-joined paths that start with the directory's
    own name (so a pattern ``mlqa/test-{lang}.json`` still matches when DIR itself is ``mlqa``)."""

    root: Path
    dir_mtimes: dict[str, int]
    files: list[str]
    by_name: dict[str, list[str]] = field(default_factory=dict)
    by_ext: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for rel in self.files:
            name = rel.rsplit("/", 1)[-1]
            self.by_name.setdefault(name, []).append(rel)
            self.by_ext.setdefault(name.rsplit(".", 1)[-1], []).append(rel)

    def still_valid(self) -> bool:
        """True when no directory changed since the listing was made (a new or removed file or
        sub-directory changes its parent's mtime), so the cached listing can be reused."""
        for directory, mtime in self.dir_mtimes.items():
            try:
                if os.stat(directory).st_mtime_ns != mtime:
                    return False
            except OSError:
                return False
        return True


@dataclass(frozen=True)
class _Tree:
    """A cached listing seen from the data directory as the caller spelled it: returned paths
    start with the caller's ``data_dir`` (not its resolved form), so messages name the paths
    the user typed."""

    listing: _Listing
    base: Path

    @property
    def files(self) -> list[str]:
        return self.listing.files

    @property
    def by_name(self) -> dict[str, list[str]]:
        return self.listing.by_name

    @property
    def by_ext(self) -> dict[str, list[str]]:
        return self.listing.by_ext

    def path(self, rel: str) -> Path:
        return self.base.joinpath(*rel.split("/")[1:])


def _walk(root: Path) -> _Listing:
    """List every file below ``root``; symlinked folders are followed (data trees are often
    assembled from links), each real folder once."""
    prefix = root.name
    dir_mtimes: dict[str, int] = {}
    files: list[str] = []
    seen: set[str] = set()
    for current, dirs, names in os.walk(root, followlinks=True):
        real = os.path.realpath(current)
        if real in seen:  # a link back up the tree, or a second link to the same folder
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS)
        dir_mtimes[current] = os.stat(current).st_mtime_ns
        rel_dir = os.path.relpath(current, root)
        base = prefix if rel_dir == "." else f"{prefix}/{rel_dir.replace(os.sep, '/')}"
        files.extend(f"{base}/{name}" for name in sorted(names))
    return _Listing(root=root, dir_mtimes=dir_mtimes, files=files)


class _ListingCache:
    """Keeps the listing of the few data directories a process reads, re-walking a tree only
    when one of its directories changed. A full XTREME download has thousands of files and
    ``available`` asks for hundreds of (split, language) pairs: walking once matters."""

    def __init__(self, size: int = 8) -> None:
        self.size = size
        self.entries: dict[Path, _Listing] = {}

    def get(self, data_dir: Path) -> _Tree:
        root = data_dir.resolve()
        listing = self.entries.get(root)
        if listing is None or not listing.still_valid():
            if not root.is_dir():
                raise MissingDataError(f"data directory not found: {data_dir}")
            listing = _walk(root)
            self.entries.pop(root, None)
            self.entries[root] = listing
            while len(self.entries) > self.size:
                self.entries.pop(next(iter(self.entries)))
        return _Tree(listing=listing, base=data_dir)


_LISTINGS = _ListingCache()


def _expand(pattern: str, split: str, lang: str) -> str | None:
    """Fill ``{lang}``, ``{lang3}`` and ``{split}``; None when a code is unknown for ``lang``."""
    values = {"lang": lang, "split": split}
    if "{lang3}" in pattern:
        code = TATOEBA_ISO3.get(lang)
        if code is None:
            return None
        values["lang3"] = code
    try:
        return pattern.format(**values)
    except (KeyError, IndexError) as exc:
        raise ConfigError(f"file pattern {pattern!r} uses an unknown placeholder {exc}") from None


def _suffix_regex(pattern: str) -> re.Pattern[str]:
    body = "".join(
        "[^/]*" if ch == "*" else "[^/]" if ch == "?" else re.escape(ch) for ch in pattern
    )
    return re.compile(rf"(?:^|/){body}$")


def _match(listing: _Tree, pattern: str) -> list[str]:
    """Paths in the listing that end with ``pattern`` (closest to the root first)."""
    last = pattern.rsplit("/", 1)[-1]
    ext = last.rsplit(".", 1)[-1]
    if "*" not in last and "?" not in last:
        candidates: Iterable[str] = listing.by_name.get(last, ())
    elif "." in last and "*" not in ext and "?" not in ext:
        candidates = listing.by_ext.get(ext, ())  # e.g. only the *.conllu files
    else:
        candidates = listing.files
    regex = _suffix_regex(pattern)
    hits = [rel for rel in candidates if regex.search(rel)]
    return sorted(hits, key=lambda rel: (rel.count("/"), rel))


def _patterns(task: Task, split: str) -> tuple[str, ...]:
    if split not in task.files:
        known = ", ".join(task.files) or "none"
        raise ConfigError(f"task {task.name} has no split {split!r}; its splits: {known}")
    return task.files[split]


def _locate(task: Task, listing: _Tree, split: str, lang: str) -> list[Path]:
    for pattern in _patterns(task, split):
        expanded = _expand(pattern, split, lang)
        if expanded is None:
            continue
        hits = _match(listing, expanded)
        if hits:
            if _is_multi_file(expanded):
                return [listing.path(rel) for rel in sorted(hits)]
            return [listing.path(hits[0])]
    return []


def _is_multi_file(pattern: str) -> bool:
    """Raw UD treebanks: every ``{lang}_*-ud-{split}.conllu`` of a language is read together."""
    return pattern.endswith(".conllu") and "*" in pattern


def find_files(task: Task | str, data_dir: str | Path, split: str, lang: str) -> list[Path]:
    """All files that make up (task, split, lang): one, or several raw UD treebanks."""
    task = get_task(task)
    return _locate(task, _LISTINGS.get(Path(data_dir)), split, lang)


def find_file(task: Task | str, data_dir: str | Path, split: str, lang: str) -> Path | None:
    """The file holding (task, split, lang) below ``data_dir``, or None when absent."""
    found = find_files(task, data_dir, split, lang)
    return found[0] if found else None


def available(task: Task | str, data_dir: str | Path) -> dict[str, list[str]]:
    """Split → the registry's languages of that split whose files are below ``data_dir``."""
    task = get_task(task)
    listing = _LISTINGS.get(Path(data_dir))
    present: dict[str, list[str]] = {}
    for split, langs in task.splits.items():
        if split not in task.files:
            continue
        found = [lang for lang in langs if _locate(task, listing, split, lang)]
        if found:
            present[split] = found
    return present


def has_split(task: Task | str, data_dir: str | Path, split: str, lang: str) -> bool:
    """Whether (split, lang) of ``task`` has a file below ``data_dir`` (the rule for optional
    inputs such as English dev, and for translated copies that keep the English file name)."""
    task = get_task(task)
    return split in task.splits and lang in available(task, data_dir).get(split, [])


# --------------------------------------------------------------------------------------------
# Problems: raise at the first one (reading) or collect them all (``xstilts data check``)
# --------------------------------------------------------------------------------------------


def _report(
    sink: ProblemSink, path: Path, line: int | None, expected: str, found: str | None = None
) -> None:
    sink.add(DataFormatError(path, line, expected, found))


def _report_at(
    sink: ProblemSink, path: Path, line: int | None, at: str, expected: str, found: str | None
) -> None:
    sink.add(DataFormatError(path, line, expected, found, at=at))


class _FatalFileError(Exception):
    """A problem after which the rest of a file cannot be read (bad JSON, bad encoding)."""


def _fatal(sink: ProblemSink, error: DataFormatError) -> _FatalFileError:
    sink.add(error)
    return _FatalFileError()


def _read_text(path: Path, sink: ProblemSink) -> str:
    """The whole file as text (a UTF-8 BOM dropped); a file that cannot be read (absent, a
    folder) or a byte that is not UTF-8 (with its line number) is reported, fatally."""
    try:
        return read_text(path)
    except DataFormatError as error:
        raise _fatal(sink, error) from None


def _require_records(
    path: Path,
    records: int,
    unit: str,
    sink: ProblemSink,
    text: str | None = None,
    *,
    found: str | None = None,
) -> None:
    """An input with no record at all (an empty file, only blank lines) is a problem: read for
    evaluation it would score a language at 0 inside the average instead of failing."""
    if records:
        return
    if found is None:
        found = "an empty file (only blank lines)" if text and text.strip() == "" else "an empty file"
    _report(sink, path, None, f"at least one {unit}", found)


def prevailing_width(
    widths: Iterable[tuple[int, int]], allowed: Collection[int]
) -> tuple[int | None, int]:
    """The field count that most lines of a file have among ``allowed`` (on a tie, the one that
    comes first) and the first line with it; ``(None, 0)`` when no line has an allowed count.

    ``widths`` holds (line number, field count). A file's format is what most of its lines
    say, so the odd line out is blamed, not every line after a bad first one."""
    counts: dict[int, int] = {}
    first: dict[int, int] = {}
    for number, width in widths:
        if width in allowed:
            counts[width] = counts.get(width, 0) + 1
            first.setdefault(width, number)
    if not counts:
        return None, 0
    best = max(counts, key=lambda w: (counts[w], -first[w]))
    return best, first[best]


# --------------------------------------------------------------------------------------------
# Sentence pairs: XNLI, PAWS-X
# --------------------------------------------------------------------------------------------

_LABEL_ALIASES = {"contradictory": "contradiction"}  # XNLI's raw spelling; XTREME renames it


def _unquote(field: str) -> str:
    """Undo ``csv.writer``'s minimal quoting of one field (XTREME writes its TSVs with it)."""
    if len(field) >= 2 and field[0] == '"' and field[-1] == '"':
        return field[1:-1].replace('""', '"')
    return field


def _read_pair_tsv(
    path: Path, task: Task, split: str, lang: str, sink: ProblemSink
) -> list[SentencePairExample]:
    labels = set(task.labels or ())
    examples: list[SentencePairExample] = []
    width: int | None = 3 if split in ("train", "dev") else None
    width_line = 0
    text = _read_text(path, sink)
    lines = list(split_lines(text))
    _require_records(path, len(lines), "sentence pair (text_a<TAB>text_b[<TAB>label])", sink, text)
    for number, line in lines:
        if not line.strip():
            _report(sink, path, number, "text_a<TAB>text_b<TAB>label", "an empty line")
            continue
        fields = line.split("\t")
        if width is None and len(fields) in (2, 3):
            width, width_line = len(fields), number
        if len(fields) != width:
            if width == 3 and width_line == 0:
                expected = f"3 tab-separated fields (text_a, text_b, label) in a {split} file"
            elif width is None:
                expected = "2 or 3 tab-separated fields (text_a, text_b[, label])"
            else:
                expected = f"{width} tab-separated fields, as on line {width_line}"
            _report(sink, path, number, expected, f"{len(fields)}")
            continue
        label: str | None = None
        if width == 3:
            label = _LABEL_ALIASES.get(fields[2].strip(), fields[2].strip())
            if labels and label not in labels:
                allowed = ", ".join(sorted(labels))
                _report(sink, path, number, f"a label in {{{allowed}}}", repr(label))
                continue
        examples.append(
            SentencePairExample(
                id=f"{split}-{lang}-{len(examples)}",
                text_a=_unquote(fields[0]),
                text_b=_unquote(fields[1]),
                label=label,
            )
        )
    return examples


# --------------------------------------------------------------------------------------------
# Tagging: UDPOS, PAN-X (XTREME TSV) and raw UD CoNLL-U
# --------------------------------------------------------------------------------------------


def _check_tag(
    tag: str, labels: set[str], path: Path, number: int, sink: ProblemSink
) -> bool:
    if labels and tag not in labels:
        _report(sink, path, number, f"a tag in {{{', '.join(sorted(labels))}}}", repr(tag))
        return False
    return True


def _read_tag_tsv(
    path: Path, task: Task, split: str, lang: str, sink: ProblemSink
) -> list[TaggingExample]:
    labels = set(task.labels or ())
    examples: list[TaggingExample] = []
    tokens: list[str] = []
    tags: list[str] = []

    def separates(line: str) -> bool:
        # Only ASCII blanks make a separator line: a token may be U+3000 or another Unicode space.
        return not line.strip(" \t") or line.startswith("-DOCSTART-")

    text = _read_text(path, sink)
    lines = list(split_lines(text))
    records = [(number, line) for number, line in lines if not separates(line)]
    _require_records(path, len(records), "sentence (token<TAB>tag lines)", sink, text)
    # Labelled (token<TAB>tag) or not (a token alone) is what most lines say: a first line that
    # lost its tag is the one blamed, not every line after it.
    width, width_line = prevailing_width(((n, len(line.split("\t"))) for n, line in records), (1, 2))

    def flush() -> None:
        if tokens:
            examples.append(
                TaggingExample(
                    id=f"{split}-{lang}-{len(examples)}",
                    tokens=list(tokens),
                    tags=list(tags) if width == 2 else None,
                )
            )
        tokens.clear()
        tags.clear()

    for number, line in lines:
        if separates(line):
            flush()
            continue
        fields = line.split("\t")
        if len(fields) != width:
            expected = (
                f"{width} tab-separated field{'s' if width == 2 else ''} "
                f"(token{'<TAB>tag' if width == 2 else ''}) as on line {width_line}"
                if width
                else "token<TAB>tag (or a token alone in an unlabelled file)"
            )
            shown = f"{len(fields)} field{'s' if len(fields) != 1 else ''}: {line!r}"
            _report(sink, path, number, expected, shown)
            continue
        token = fields[0]  # kept as written, as XTREME's utils_tag.py reads it
        if not token.strip(" "):
            _report(sink, path, number, "a non-empty token", repr(line))
            continue
        if width == 2:
            tag = fields[1].strip()
            if not _check_tag(tag, labels, path, number, sink):
                continue
            tags.append(tag)
        tokens.append(token)
    flush()
    return examples


def _read_conllu(
    path: Path, task: Task, split: str, lang: str, sink: ProblemSink, start: int = 0
) -> list[TaggingExample]:
    """UD CoNLL-U: FORM and UPOS of each word line. Comment lines, multiword-token ranges
    (``1-2``) and empty nodes (``1.1``) are skipped. Like XTREME's ``udpos_preprocess``, spaces
    and ZWNJ (U+200C) inside a form are removed, and sentences whose forms are all (or all but
    one) ``_`` — treebanks distributed without their text — are left out."""
    labels = set(task.labels or ())
    examples: list[TaggingExample] = []
    tokens: list[str] = []
    tags: list[str] = []

    def flush() -> None:
        if tokens:
            empty = sum(token == "_" for token in tokens)
            if empty == 0 or empty < len(tokens) - 1:
                examples.append(
                    TaggingExample(
                        id=f"{split}-{lang}-{start + len(examples)}",
                        tokens=list(tokens),
                        tags=list(tags),
                    )
                )
        tokens.clear()
        tags.clear()

    text = _read_text(path, sink)
    lines = list(split_lines(text))
    # A treebank without its text (every form "_") gives no sentence and is fine; a file
    # without a single word or comment line is not.
    records = sum(1 for _, line in lines if line.strip())
    _require_records(path, records, "sentence (CoNLL-U word lines)", sink, text)
    for number, line in lines:
        if not line.strip():
            flush()
            continue
        if line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != 10:
            sink.add(
                DataFormatError(
                    path, number, "10 tab-separated CoNLL-U columns", f"{len(fields)}: {line!r}"
                )
            )
            continue
        word_id = fields[0]
        if "-" in word_id or "." in word_id:
            continue
        if not word_id.isdigit():
            _report(sink, path, number, "a word ID (1, 2, ...) in column 1", repr(word_id))
            continue
        form = "".join(fields[1].replace("\u200c", "").split(" "))
        tag = fields[3].strip()
        if not _check_tag(tag, labels, path, number, sink):
            continue
        tokens.append(form)
        tags.append(tag)
    flush()
    return examples


# --------------------------------------------------------------------------------------------
# Extractive QA: SQuAD-format JSON (XQuAD, MLQA, TyDiQA-GoldP, SQuAD v1.1 / v2.0)
# --------------------------------------------------------------------------------------------


class JsonLineFinder:
    """Maps a question id to the line where it appears in the raw JSON text, so structural
    problems (an answer that does not match its context) still name a line. Only called for a
    problem: a search per question would make reading SQuAD's 87k questions quadratic."""

    def __init__(self, text: str) -> None:
        self.text = text

    def line_of(self, value: str) -> int | None:
        for needle in (json.dumps(value), json.dumps(value, ensure_ascii=False)):
            pos = self.text.find(needle)
            if pos >= 0:
                return self.text.count("\n", 0, pos) + 1
        return None


def _read_squad(
    path: Path, task: Task, split: str, lang: str, sink: ProblemSink
) -> list[QAExample]:
    text = _read_text(path, sink)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _fatal(
            sink,
            DataFormatError(path, exc.lineno, "valid JSON", f"{exc.msg} at column {exc.colno}"),
        ) from None
    finder = JsonLineFinder(text)
    articles = data.get("data") if isinstance(data, dict) else None
    if not isinstance(articles, list):
        expected = 'a SQuAD JSON object with a "data" list'
        raise _fatal(sink, DataFormatError(path, 1, expected, type(data).__name__))
    examples: list[QAExample] = []
    questions = 0
    for a_index, article in enumerate(articles):
        paragraphs = article.get("paragraphs") if isinstance(article, dict) else None
        if not isinstance(paragraphs, list):
            _report(sink, path, None, f'data[{a_index}] with a "paragraphs" list', None)
            continue
        title = str(article.get("title", ""))
        for p_index, paragraph in enumerate(paragraphs):
            where = f"data[{a_index}].paragraphs[{p_index}]"
            if not isinstance(paragraph, dict) or not isinstance(paragraph.get("context"), str):
                _report(sink, path, None, f'{where} with a "context" string', None)
                continue
            qas = paragraph.get("qas")
            if not isinstance(qas, list):
                _report(sink, path, None, f'{where} with a "qas" list', None)
                continue
            context = paragraph["context"]
            for qa in qas:
                questions += 1
                example = _qa_example(qa, context, title, path, where, finder, sink)
                if example is not None:
                    examples.append(example)
    _require_records(path, questions, "question", sink, found='no question in "data"')
    return examples


def _qa_example(
    qa: object,
    context: str,
    title: str,
    path: Path,
    where: str,
    finder: JsonLineFinder,
    sink: ProblemSink,
) -> QAExample | None:
    if not isinstance(qa, dict) or "id" not in qa or not isinstance(qa.get("question"), str):
        _report(sink, path, None, f'each question in {where} with "id" and "question"', None)
        return None
    qid = str(qa["id"])
    answers: list[QAAnswer] = []
    if "answers" not in qa:  # SQuAD v1.1 and v2.0 both give every question a list (maybe [])
        _report_at(sink, path, finder.line_of(qid), f"question {qid}", "answers", "none")
        return None
    raw_answers = qa["answers"]
    if not isinstance(raw_answers, list):
        found = type(raw_answers).__name__
        _report(sink, path, finder.line_of(qid), f'an "answers" list for question {qid}', found)
        return None
    for answer in raw_answers:
        if (
            not isinstance(answer, dict)
            or not isinstance(answer.get("text"), str)
            or not isinstance(answer.get("answer_start"), int)
        ):
            expected = f'answers of question {qid} with "text" and integer "answer_start"'
            _report(sink, path, finder.line_of(qid), expected, repr(answer))
            return None
        start, answer_text = answer["answer_start"], answer["text"]
        if answer_text == "":
            continue  # XTREME blanks test answers ({"answer_start": 0, "text": ""}): no gold
        span = context[start : start + len(answer_text)] if start >= 0 else None
        if span != answer_text:
            end = start + len(answer_text)
            expected = f"answer {answer_text!r} of question {qid} at context[{start}:{end}]"
            _report(sink, path, finder.line_of(qid), expected, repr(span))
            return None
        answers.append(QAAnswer(text=answer_text, answer_start=start))
    return QAExample(
        id=qid,
        question=qa["question"],
        context=context,
        answers=answers,
        title=title,
        is_impossible=bool(qa.get("is_impossible", False)),
    )


# --------------------------------------------------------------------------------------------
# Retrieval: BUCC 2018 and Tatoeba
# --------------------------------------------------------------------------------------------

_BUCC_NAME = re.compile(r"^(?P<stem>(?P<src>[a-z]{2})-en\.(?P<part>[a-z]+))\.(?P=src)$")


def _read_id_sentences(path: Path, sink: ProblemSink) -> dict[str, str]:
    sentences: dict[str, str] = {}
    text = _read_text(path, sink)
    lines = list(split_lines(text))
    _require_records(path, sum(1 for _, line in lines if line.strip()), "id<TAB>sentence line", sink, text)
    for number, line in lines:
        fields = line.split("\t", 1)
        if len(fields) != 2 or not fields[0].strip():
            _report(sink, path, number, "id<TAB>sentence", repr(line))
            continue
        key = fields[0].strip()
        if key in sentences:
            _report(sink, path, number, "a sentence id not seen before", repr(key))
            continue
        sentences[key] = fields[1].strip()
    return sentences


def _read_gold_pairs(
    path: Path, sink: ProblemSink, source: dict[str, str] | None, target: dict[str, str] | None
) -> set[tuple[str, str]]:
    gold: set[tuple[str, str]] = set()
    for number, line in split_lines(_read_text(path, sink)):
        if not line.strip():
            continue
        fields = line.strip().split("\t")
        if len(fields) != 2:
            _report(sink, path, number, "src_id<TAB>tgt_id", f"{len(fields)} fields: {line!r}")
            continue
        src, tgt = fields[0].strip(), fields[1].strip()
        if source is not None and src not in source:
            _report(sink, path, number, "a source id present in the source file", repr(src))
            continue
        if target is not None and tgt not in target:
            _report(sink, path, number, "a target id present in the English file", repr(tgt))
            continue
        gold.add((src, tgt))
    return gold


def _read_bucc(
    path: Path, task: Task, split: str, lang: str, sink: ProblemSink, listing: _Tree | None
) -> list[BitextExample]:
    match = _BUCC_NAME.match(path.name)
    stem = match.group("stem") if match else path.name.rsplit(".", 1)[0]
    english = path.with_name(f"{stem}.en")
    if not english.is_file():
        raise MissingDataError(f"BUCC English side not found: {english} (next to {path})")
    source = _read_id_sentences(path, sink)
    target = _read_id_sentences(english, sink)
    gold: set[tuple[str, str]] = set()
    gold_file = path.with_name(f"{stem}.gold")
    if not gold_file.is_file() and listing is not None and split == "test":
        # XTREME deletes the test gold; a labels folder holds it as bucc2018/test-{lang}.tsv.
        hits = _match(listing, f"bucc2018/test-{lang}.tsv")
        gold_file = listing.path(hits[0]) if hits else gold_file
    if gold_file.is_file():
        gold = _read_gold_pairs(gold_file, sink, source, target)
    name = f"{task.name}-{split}-{lang}"
    return [BitextExample(id=name, source=source, target=target, gold=gold)]


def _plain_lines(path: Path, sink: ProblemSink) -> list[str]:
    return [line.strip() for _, line in split_lines(_read_text(path, sink))]


def _read_tatoeba(
    path: Path, task: Task, split: str, lang: str, sink: ProblemSink, listing: _Tree | None
) -> list[BitextExample]:
    name = path.name
    if name.startswith("tatoeba.") and "-eng." in name:
        english = path.with_name(name.rsplit(".", 1)[0] + ".eng")  # LASER: tatoeba.deu-eng.eng
        aligned = True
    else:
        english = path.with_name(name.rsplit(".", 1)[0] + ".en")  # XTREME: de-en.en (sorted)
        aligned = False
    if not english.is_file():
        raise MissingDataError(f"Tatoeba English side not found: {english} (next to {path})")
    source_lines = _plain_lines(path, sink)
    target_lines = _plain_lines(english, sink)
    for side, side_lines in ((path, source_lines), (english, target_lines)):
        _require_records(side, sum(1 for line in side_lines if line), "sentence", sink)
    source = {str(i): s for i, s in enumerate(source_lines)}
    target = {str(i): s for i, s in enumerate(target_lines)}
    gold: set[tuple[str, str]] = set()
    if aligned:
        if len(source_lines) != len(target_lines):
            sink.add(
                DataFormatError(
                    english,
                    None,
                    f"{len(source_lines)} lines, one per line of {path.name}",
                    f"{len(target_lines)} lines",
                )
            )
        gold = {(str(i), str(i)) for i in range(min(len(source_lines), len(target_lines)))}
    elif listing is not None:
        # XTREME sorts the English side; the gold index of each line is in test-{lang}.tsv.
        hits = _match(listing, f"tatoeba/test-{lang}.tsv")
        if hits:
            gold_path = listing.path(hits[0])
            for number, line in split_lines(_read_text(gold_path, sink)):
                value = line.strip()
                if not value.isdigit() or int(value) >= len(target_lines):
                    expected = f"an index 0..{len(target_lines) - 1} into {english.name}"
                    _report(sink, gold_path, number, expected, repr(value))
                    continue
                gold.add((str(number - 1), str(int(value))))
    name = f"{task.name}-{split}-{lang}"
    return [BitextExample(id=name, source=source, target=target, gold=gold)]


# --------------------------------------------------------------------------------------------
# Multiple choice: COPA / XCOPA JSONL
# --------------------------------------------------------------------------------------------

# How a COPA premise is asked about, as the two alternatives answer it.
COPA_QUESTIONS = {"cause": "What was the cause?", "effect": "What happened as a result?"}


def _read_copa_jsonl(
    path: Path, task: Task, split: str, lang: str, sink: ProblemSink
) -> list[MultipleChoiceExample]:
    """COPA's JSONL (SuperGLUE's COPA, XCOPA): premise, choice1, choice2, question
    (cause|effect), label 0/1 (absent in an unlabelled test file), idx."""
    text = _read_text(path, sink)
    lines = [(n, line) for n, line in split_lines(text) if line.strip()]
    _require_records(path, len(lines), "COPA record (a JSON object per line)", sink, text)
    examples: list[MultipleChoiceExample] = []
    for number, line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            _report(sink, path, number, "one JSON object per line", f"{exc.msg}: {line[:60]!r}")
            continue
        if not isinstance(record, dict):
            _report(sink, path, number, "a JSON object", type(record).__name__)
            continue
        fields = [record.get(k) for k in ("premise", "choice1", "choice2")]
        if not all(isinstance(f, str) for f in fields):
            missing = [k for k, f in zip(("premise", "choice1", "choice2"), fields) if not isinstance(f, str)]
            _report(sink, path, number, "premise, choice1 and choice2 as strings", f"no string {missing[0]!r}")
            continue
        question = record.get("question")
        if question not in COPA_QUESTIONS:
            _report(sink, path, number, "question 'cause' or 'effect'", repr(question))
            continue
        label = record.get("label")
        if label is not None and (isinstance(label, bool) or label not in (0, 1)):
            _report(sink, path, number, "label 0 (choice1) or 1 (choice2)", repr(label))
            continue
        ident = str(record.get("idx", len(examples)))
        examples.append(
            MultipleChoiceExample(
                id=f"{split}-{lang}-{ident}",
                context=fields[0],
                question=COPA_QUESTIONS[question],
                choices=[fields[1], fields[2]],
                label=label,
            )
        )
    return examples


# --------------------------------------------------------------------------------------------
# Dispatch
# --------------------------------------------------------------------------------------------

def _plain(reader):
    """A reader that needs no listing of the data folder."""
    return lambda path, task, split, lang, sink, listing: reader(path, task, split, lang, sink)


# Families whose tasks keep their own formats and file finding register their readers here
# (xstilts.data.nlu_readers: "nlu", xstilts.data.code_readers: "code"; the package imports both):
# family -> reader(task, data_dir, split, lang, sink) and reader(task, path, split, sink).
FAMILY_READERS: dict[str, Callable[..., list]] = {}
FAMILY_PATH_READERS: dict[str, Callable[..., list]] = {}

# Reader name (``Task.reader``, or the one the kind implies) -> reader(path, task, split, lang,
# sink, listing): the one place a task's reader is resolved.
READERS = {
    "pair-tsv": _plain(_read_pair_tsv),
    "tag-tsv": _plain(_read_tag_tsv),
    "conllu": _plain(_read_conllu),
    "squad": _plain(_read_squad),
    "copa-jsonl": _plain(_read_copa_jsonl),
    "bucc": _read_bucc,
    "tatoeba": _read_tatoeba,
}


# Files whose suffix names their format, whatever the task (UD's treebanks).
SUFFIX_READERS = {".conllu": "conllu"}


def _reader_name(task: Task, path: Path) -> str:
    """The task's own reader, else the file suffix's, else the kind's."""
    name = task.reader or SUFFIX_READERS.get(path.suffix) or kind_ops(task).reader
    if name is None:
        raise ConfigError(f"no reader for task {task.name} of kind {task.kind.value}")
    return name


def read_path(
    task: Task | str,
    path: str | Path,
    split: str = "test",
    lang: str = "",
    *,
    sink: ProblemSink | None = None,
    data_dir: str | Path | None = None,
) -> list[Example]:
    """Parse one file of ``task`` (its format follows from the task's kind and the file name).

    ``data_dir`` lets the retrieval readers find gold kept apart from the sentences (XTREME's
    Tatoeba labels); ``sink`` collects problems instead of raising at the first one.
    """
    task = get_task(task)
    path = Path(path)
    if task.family in FAMILY_PATH_READERS:
        return list(FAMILY_PATH_READERS[task.family](task, path, split, sink))
    sink = sink or ProblemSink(strict=True)
    listing = _LISTINGS.get(Path(data_dir)) if data_dir is not None else None
    reader = _reader_name(task, path)
    if reader not in READERS:
        raise ConfigError(f"unknown reader {reader!r} for task {task.name}; readers: {', '.join(READERS)}")
    try:
        return list(READERS[reader](path, task, split, lang, sink, listing))
    except _FatalFileError:
        return []


def read_examples(
    task: Task | str,
    data_dir: str | Path,
    split: str,
    lang: str,
    *,
    sink: ProblemSink | None = None,
) -> list[Example]:
    """The examples of (task, split, lang) found below ``data_dir``, in file order.

    Returns the kind's example class; for retrieval tasks a one-element list holding a
    :class:`BitextExample`. NLU intermediate and code tasks are read by their own modules
    (:mod:`xstilts.data.nlu_readers`, :mod:`xstilts.data.code_readers`).
    Raises :class:`MissingDataError` when no file matches and
    :class:`DataFormatError` (file, line, what was expected) at the first malformed record.
    """
    task = get_task(task)
    if task.family in FAMILY_READERS:  # the intermediate and code tasks' own formats
        return list(FAMILY_READERS[task.family](task, data_dir, split, lang, sink))
    listing = _LISTINGS.get(Path(data_dir))
    paths = _locate(task, listing, split, lang)
    if not paths:
        patterns = ", ".join(
            p for p in (_expand(q, split, lang) for q in _patterns(task, split)) if p
        )
        raise MissingDataError(
            f"no {task.name} {split} file for language {lang!r} below {data_dir} "
            f"(looked for a path ending in: {patterns})"
        )
    sink = sink or ProblemSink(strict=True)
    if len(paths) == 1:
        return read_path(task, paths[0], split, lang, sink=sink, data_dir=data_dir)
    examples: list[Example] = []
    for path in paths:  # several raw UD treebanks of one language, merged as XTREME does
        try:
            part = _read_conllu(path, task, split, lang, sink, start=len(examples))
        except _FatalFileError:
            continue
        examples.extend(part)
    return examples


def count_unit(task: Task | str) -> str:
    """What one example of the task counts as, for reports."""
    return kind_ops(get_task(task)).unit
