"""Readers for the code tasks' official release formats → :class:`GenerationExample`.

Entry point: :func:`read_code_examples` (``xstilts.data.readers.read_examples`` dispatches here
for ``task.family == "code"``). Each format has one reader, chosen by ``Task.reader``:

- ``conala_json``: CoNaLa curated / MCoNaLa, one JSON array of {intent, rewritten_intent,
  snippet, question_id}; ``rewritten_intent`` may be null, then the raw intent is used;
- ``conala_mined``: CoNaLa mined JSONL {intent, snippet, prob, question_id, ...};
- ``django``: ``all.anno`` / ``all.code``, line-parallel, split by line number;
- ``concode``: CodeXGLUE JSON lines {nl, code};
- ``mbpp``: JSONL {task_id, text, code, test_list, test_setup_code, challenge_test_list},
  split by task id ranges;
- ``humaneval``: (gzipped) JSONL {task_id, prompt, canonical_solution, test, entry_point};
- ``codesearchnet``: JSONL records {docstring, code | original_string, language, ...}, one file
  (CodeXGLUE layout) or several gzipped shards (original layout).

Malformed input raises :class:`DataFormatError` naming the file and line; nothing is skipped
silently (CodeSearchNet records without a docstring are the one documented exception: they are
not NL → code pairs, and the count dropped is logged).
"""

from __future__ import annotations

import gzip
import json
import logging
import re
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from xstilts.data.examples import GenerationExample
from xstilts.data.readers import FAMILY_READERS
from xstilts.data.textio import read_text
from xstilts.errors import ConfigError, DataFormatError, MissingDataError
from xstilts.fileio import decode_utf8, input_error, open_input
from xstilts.tasks import Task, get_task
from xstilts.tasks.sources import HubTable

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- finding files


def find_code_files(task: Task | str, data_dir: str | Path, split: str, lang: str) -> list[Path]:
    """All files for (split, lang): the first pattern of ``task.files[split]`` that matches.

    A pattern is tried directly under ``data_dir`` and then anywhere below it; it may contain
    shell wildcards (CodeSearchNet's original release splits a split into numbered shards, which
    are returned sorted, all of them).
    """
    task = get_task(task)
    root = Path(data_dir)
    if split not in task.files:
        raise ConfigError(f"task {task.name!r} has no split {split!r}; splits: {', '.join(task.files)}")
    for pattern in task.files[split]:
        rel = pattern.format(lang=lang, split=split)
        direct = sorted(p for p in root.glob(rel) if p.is_file())
        if direct:
            return direct
        below = sorted(p for p in root.rglob(rel) if p.is_file()) if root.is_dir() else []
        if below:
            if not any(ch in rel for ch in "*?["):
                return below[:1]
            # Shards: keep those of the first directory that holds any.
            first_dir = below[0].parent
            return [p for p in below if p.parent == first_dir]
    return []


# --------------------------------------------------------------------------- low-level parsing


def _binary_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(1-based line, raw bytes) of a plain or (name ending in ``.gz``) gzip-compressed file.

    A missing file or a folder, a ``.gz`` file that is not gzip and one that ends early (a cut
    download) are DataFormatErrors naming the file (and the line reached), not tracebacks.
    """
    number = 0
    handle = open_input(path)
    try:
        with handle:
            stream: IO[bytes] = gzip.GzipFile(fileobj=handle, mode="rb") if path.suffix == ".gz" else handle
            for number, raw in enumerate(stream, start=1):
                yield number, raw
    except gzip.BadGzipFile:
        raise DataFormatError(path, None, "gzip-compressed data (the name ends in .gz)",
                              "a file that is not gzip") from None
    except (EOFError, zlib.error):
        raise DataFormatError(path, number + 1, "the rest of the gzip stream",
                              "the end of the data (a truncated file?)",
                              hint="download the file again") from None
    except OSError as exc:
        raise input_error(path, exc) from None


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(1-based line, object) for each non-blank line; a bad line is a DataFormatError.

    Lines are UTF-8 (a BOM on the first one is dropped, CRLF ends are fine); plain or gzip."""
    for lineno, raw in _binary_lines(path):
        line = decode_utf8(raw, path, first_line=lineno)
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataFormatError(path, lineno, "one JSON object per line", f"{exc.msg}: {line.strip()}") from None
        if not isinstance(obj, dict):
            raise DataFormatError(path, lineno, "a JSON object", type(obj).__name__)
        yield lineno, obj


def iter_json_array(path: Path) -> Iterator[tuple[int, Any]]:
    """(line where the element starts, element) for each element of a top-level JSON array.

    Decodes element by element so that a record with a missing field can be reported at its own
    line rather than at line 1 of the file.
    """
    text = read_text(path)
    decoder = json.JSONDecoder()
    ws = re.compile(r"\s*")

    def line_of(offset: int) -> int:
        return text.count("\n", 0, offset) + 1

    pos = ws.match(text, 0).end()
    if pos >= len(text) or text[pos] != "[":
        raise DataFormatError(path, line_of(pos), "a JSON array ('[')", repr(text[pos : pos + 20]))
    pos = ws.match(text, pos + 1).end()
    if pos < len(text) and text[pos] == "]":
        return
    while True:
        try:
            element, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise DataFormatError(path, exc.lineno, "a JSON value", exc.msg) from None
        yield line_of(pos), element
        pos = ws.match(text, end).end()
        if pos < len(text) and text[pos] == ",":
            pos = ws.match(text, pos + 1).end()
            continue
        if pos < len(text) and text[pos] == "]":
            rest = ws.match(text, pos + 1).end()
            if rest != len(text):
                raise DataFormatError(path, line_of(rest), "end of file after ']'", repr(text[rest : rest + 20]))
            return
        raise DataFormatError(path, line_of(pos), "',' or ']'", repr(text[pos : pos + 20]) or "end of file")


def _field(
    record: dict[str, Any], name: str, path: Path, line: int, *, types: tuple[type, ...] = (str,), nullable: bool = False
) -> Any:
    if name not in record:
        raise DataFormatError(path, line, f"field {name!r}", f"fields {sorted(record)}")
    value = record[name]
    if value is None and nullable:
        return None
    if not isinstance(value, types):
        want = " or ".join(t.__name__ for t in types)
        raise DataFormatError(path, line, f"{name!r} as {want}", f"{type(value).__name__} {value!r}")
    return value


# --------------------------------------------------------------------------- record → example
# These take one record (from a file or a hub row) so that hub datasets reuse them.


def conala_example(record: dict[str, Any], path: Path, line: int, index: int, language: str = "python") -> GenerationExample:
    intent = _field(record, "intent", path, line)
    rewritten = _field(record, "rewritten_intent", path, line, nullable=True) if "rewritten_intent" in record else None
    snippet = _field(record, "snippet", path, line)
    qid = record.get("question_id", "")
    # The rewritten intent names the variables the snippet uses; CoNaLa's baselines use it when
    # present and fall back to the StackOverflow title otherwise.
    source = rewritten if rewritten and rewritten.strip() else intent
    return GenerationExample(id=f"{qid}-{index}", source=source, target=snippet, language=language)


def mbpp_example(record: dict[str, Any], path: Path, line: int) -> GenerationExample:
    task_id = _field(record, "task_id", path, line, types=(int,))
    text = _field(record, "text", path, line)
    code = _field(record, "code", path, line)
    tests = _field(record, "test_list", path, line, types=(list,))
    if not all(isinstance(t, str) for t in tests):
        raise DataFormatError(path, line, "'test_list' as a list of strings", repr(tests)[:80])
    setup = record.get("test_setup_code") or ""
    test_code = "\n".join(([setup] if setup.strip() else []) + list(tests)) + "\n"
    # The prompt of Austin et al. (2021): the problem and its tests, so the function name is known.
    prompt = f"{text}\nYour code should pass these tests:\n\n" + "\n".join(tests) + "\n"
    match = re.search(r"^def\s+(\w+)\s*\(", code, re.M)
    return GenerationExample(
        id=str(task_id),
        source=text,
        target=code.replace("\r\n", "\n"),
        language="python",
        tests=test_code,
        entry_point=match.group(1) if match else None,
        prompt=prompt,
    )


def humaneval_example(record: dict[str, Any], path: Path, line: int) -> GenerationExample:
    task_id = _field(record, "task_id", path, line)
    prompt = _field(record, "prompt", path, line)
    solution = _field(record, "canonical_solution", path, line)
    test = _field(record, "test", path, line)
    entry = _field(record, "entry_point", path, line)
    return GenerationExample(
        id=task_id, source=prompt, target=solution, language="python", tests=test, entry_point=entry, prompt=prompt
    )


_PY_DOCSTRING = re.compile(r'(\)\s*(->[^:]*)?:\s*\n)(\s*)[rRuUbB]{0,2}("""|\'\'\')(.*?)\4[ \t]*\n', re.S)


def strip_python_docstring(code: str) -> str:
    """Remove the docstring of the first ``def`` from Python code (CodeSearchNet's ``code`` keeps
    it, which would give the NL side away in NL → code retrieval)."""
    return _PY_DOCSTRING.sub(lambda m: m.group(1), code, count=1)


def codesearchnet_example(record: dict[str, Any], path: Path, line: int, lang: str, index: int) -> GenerationExample | None:
    docstring = _field(record, "docstring", path, line)
    if "code" in record:
        code = _field(record, "code", path, line)
    else:
        code = _field(record, "original_string", path, line)
    language = record.get("language", lang)
    if not isinstance(language, str):
        raise DataFormatError(path, line, "'language' as a string", repr(language))
    if not docstring.strip():
        return None
    if language == "python":
        code = strip_python_docstring(code)
    ident = record.get("url") or f"{path.name}:{line}"
    return GenerationExample(id=str(ident) if index < 0 else f"{index}", source=docstring, target=code, language=language)


# --------------------------------------------------------------------------- per-format readers


def _read_conala_json(task: Task, files: list[Path], split: str, lang: str) -> list[GenerationExample]:
    out: list[GenerationExample] = []
    language = str(task.extra.get("code_language", "python"))
    for path in files:
        for index, (line, record) in enumerate(iter_json_array(path)):
            if not isinstance(record, dict):
                raise DataFormatError(path, line, "a JSON object with intent/snippet", type(record).__name__)
            out.append(conala_example(record, path, line, index, language))
    return out


def _read_conala_mined(task: Task, files: list[Path], split: str, lang: str) -> list[GenerationExample]:
    out: list[GenerationExample] = []
    for path in files:
        for line, record in iter_jsonl(path):
            intent = _field(record, "intent", path, line)
            snippet = _field(record, "snippet", path, line)
            ident = record.get("id") or f"{record.get('question_id', '')}-{line}"
            out.append(GenerationExample(id=str(ident), source=intent, target=snippet, language="python"))
    return out


def _read_django(task: Task, files: list[Path], split: str, lang: str) -> list[GenerationExample]:
    anno = files[0]
    code = anno.with_name("all.code")
    if not code.is_file():
        raise MissingDataError(f"{code}: Django's all.code is missing next to {anno}")
    anno_lines = read_text(anno).split("\n")
    code_lines = read_text(code).split("\n")
    # A trailing newline leaves one empty string at the end; drop it (both files end with one).
    for lines in (anno_lines, code_lines):
        if lines and lines[-1] == "":
            lines.pop()
    if len(anno_lines) != len(code_lines):
        shorter, n = (anno, len(anno_lines)) if len(anno_lines) < len(code_lines) else (code, len(code_lines))
        raise DataFormatError(shorter, n + 1, f"as many lines as {anno.name}/{code.name} partner", "end of file")
    ranges = task.extra["line_ranges"]
    start, stop = ranges[split]  # type: ignore[index]
    if len(anno_lines) < stop:
        raise DataFormatError(anno, len(anno_lines) + 1, f"{stop} lines for the {split} split", "end of file")
    out = []
    for i in range(start, stop):
        # Lines carry stray leading spaces (not indentation: the dataset has one statement per
        # line without block structure), so both sides are stripped.
        src, tgt = anno_lines[i].strip(), code_lines[i].strip()
        if not tgt:
            raise DataFormatError(code, i + 1, "a line of code", "an empty line")
        out.append(GenerationExample(id=f"django-{i + 1}", source=src, target=tgt, language="python"))
    return out


def _read_concode(task: Task, files: list[Path], split: str, lang: str) -> list[GenerationExample]:
    out = []
    for path in files:
        for line, record in iter_jsonl(path):
            nl = _field(record, "nl", path, line)
            code = _field(record, "code", path, line)
            out.append(GenerationExample(id=f"concode-{split}-{line}", source=nl, target=code, language="java"))
    return out


def _read_mbpp(task: Task, files: list[Path], split: str, lang: str) -> list[GenerationExample]:
    lo, hi = task.extra["task_id_ranges"][split]  # type: ignore[index]
    out = []
    seen: set[int] = set()
    for path in files:
        for line, record in iter_jsonl(path):
            ex = mbpp_example(record, path, line)
            task_id = int(ex.id)
            if task_id in seen:
                raise DataFormatError(path, line, "unique task_id values", f"task_id {task_id} again")
            seen.add(task_id)
            if lo <= task_id <= hi:
                out.append(ex)
    return out


def _read_humaneval(task: Task, files: list[Path], split: str, lang: str) -> list[GenerationExample]:
    out = []
    for path in files:
        for line, record in iter_jsonl(path):
            out.append(humaneval_example(record, path, line))
    return out


def _read_codesearchnet(task: Task, files: list[Path], split: str, lang: str) -> list[GenerationExample]:
    out = []
    dropped = 0
    for path in files:
        for line, record in iter_jsonl(path):
            ex = codesearchnet_example(record, path, line, lang, index=-1)
            if ex is None:
                dropped += 1
                continue
            out.append(ex)
    if dropped:
        log.info("codesearchnet %s/%s: %d records without a docstring left out", lang, split, dropped)
    return out


READERS = {
    "conala_json": _read_conala_json,
    "conala_mined": _read_conala_mined,
    "django": _read_django,
    "concode": _read_concode,
    "mbpp": _read_mbpp,
    "humaneval": _read_humaneval,
    "codesearchnet": _read_codesearchnet,
}


def read_code_examples(task: Task | str, data_dir: str | Path, split: str, lang: str) -> list[GenerationExample]:
    """Read one (split, language) of a code task from its official files below ``data_dir``."""
    task = get_task(task)
    if task.family != "code" or task.reader not in READERS:
        raise ConfigError(f"task {task.name!r} is not a code task with a known reader")
    if split not in task.splits:
        raise ConfigError(f"task {task.name!r} has no split {split!r}; splits: {', '.join(task.splits)}")
    if lang not in task.splits[split]:
        raise ConfigError(
            f"task {task.name!r} split {split!r} has no language {lang!r}; languages: {', '.join(task.splits[split])}"
        )
    files = find_code_files(task, data_dir, split, lang)
    if not files:
        patterns = ", ".join(p.format(lang=lang, split=split) for p in task.files[split])
        raise MissingDataError(f"{task.name} {split}/{lang}: no file below {data_dir} matches {patterns}")
    examples = READERS[task.reader](task, files, split, lang)
    if not examples and all(_holds_nothing(f) for f in files):
        # An empty file would otherwise score 0 or train on nothing. (A split may select no
        # record of a file that has some: MBPP's ranges of task ids in a partial file.)
        raise DataFormatError(files[0], None, f"at least one {task.name} record", "an empty file")
    return examples


def _holds_nothing(path: Path) -> bool:
    """True for a file with nothing but blanks in it (after decompression)."""
    return all(not raw.strip() for _, raw in _binary_lines(path))


def read_code_hub(
    task: Task | str, split: str, lang: str = "en", *, data_files: str | Path | list | None = None
) -> list[GenerationExample]:
    """Read a code task from its Hugging Face hub dataset, or from local ``data_files`` (JSON
    lines or parquet exported from the hub, which is how the tests exercise it offline).

    Hub rows keep the release's field names for CoNaLa, MBPP, HumanEval, CONCODE and CodeXGLUE's
    code-to-text, so the same record converters apply; the original CodeSearchNet hub schema
    names its fields ``func_documentation_string``/``func_code_string``, mapped here. MBPP's hub
    splits are already its task-id splits.
    """
    from datasets import load_dataset

    task = get_task(task)
    if task.family != "code" or task.reader not in READERS:
        raise ConfigError(f"task {task.name!r} is not a code task")
    if data_files is not None:
        files = [str(f) for f in (data_files if isinstance(data_files, list) else [data_files])]
        builder = "parquet" if files[0].endswith(".parquet") else "json"
        rows = load_dataset(builder, data_files=files, split="train")
        where = Path(files[0])
    else:
        table = task.source.for_split(split) if task.source is not None else None
        hub_splits = table.hub_splits(split) if isinstance(table, HubTable) else None
        if not hub_splits:
            raise ConfigError(f"task {task.name!r} has no hub dataset for {split!r}")
        config = table.config_for(lang)
        # MBPP's hub splits make one release file: its split is taken by task id below
        hub_split = hub_splits[0] if "all" not in table.splits else {"dev": "validation"}.get(split, split)
        rows = load_dataset(table.repo, config, split=hub_split, revision=table.revision)
        where = Path(table.describe(lang, hub_split))
    convert = HUB_ROW_READERS.get(task.reader)
    if convert is None:
        raise ConfigError(f"task {task.name!r} has no hub copy (read its release files)")
    out: list[GenerationExample] = []
    for i, row in enumerate(rows):
        ex = convert(task, dict(row), where, i + 1, split, lang)
        if ex is not None:
            out.append(ex)
    return out


def _conala_row(task: Task, row: dict, where: Path, line: int, split: str, lang: str) -> GenerationExample:
    return conala_example(row, where, line, line - 1, str(task.extra.get("code_language", "python")))


def _codesearchnet_row(task: Task, row: dict, where: Path, line: int, split: str, lang: str) -> GenerationExample | None:
    """The hub's CodeSearchNet columns (``func_documentation_string``...) under the release's names."""
    if "docstring" not in row and "func_documentation_string" in row:
        row["docstring"] = row["func_documentation_string"]
    if "code" not in row and "func_code_string" in row:
        row["code"] = row["func_code_string"]
    return codesearchnet_example(row, where, line, lang, index=-1)


def _concode_row(task: Task, row: dict, where: Path, line: int, split: str, lang: str) -> GenerationExample:
    nl, code = _field(row, "nl", where, line), _field(row, "code", where, line)
    return GenerationExample(id=f"concode-{split}-{line}", source=nl, target=code, language="java")


# Reader name -> one hub row as an example, (task, row, where, line, split, lang) -> example or None.
HUB_ROW_READERS = {
    "conala_json": _conala_row,
    "conala_mined": _conala_row,
    "mbpp": lambda task, row, where, line, split, lang: mbpp_example(row, where, line),
    "humaneval": lambda task, row, where, line, split, lang: humaneval_example(row, where, line),
    "codesearchnet": _codesearchnet_row,
    "concode": _concode_row,
}


FAMILY_READERS["code"] = lambda task, data_dir, split, lang, sink: read_code_examples(task, data_dir, split, lang)
