"""``xstilts data get``: fetch tasks from the hub (or their release archives) into the layouts the
local readers read, with a manifest per file; and ``hub:`` data folders built the same way.

Each (task, split, language) becomes one file (a few tasks: several) in the layout of
:attr:`Task.files` — XTREME's ``download/`` layout for the targets, the release layouts for the
intermediate and code tasks. A file is written through a temporary file and renamed, then its
manifest ``DIR/manifests/<file>.json`` (source id, config, split, revision, URLs, sha256,
example count). A file with a manifest whose sha256 still matches is skipped without asking the
network, so an interrupted ``data get`` resumes where it stopped, and a file that is there
without a manifest (the user's own) is left alone. After writing, the split is read back by the
same reader training uses: the manifest's count is what that reader sees.

Hub downloads go through ``huggingface_hub.snapshot_download`` (its cache, ``HF_HUB_CACHE``,
resumes partial downloads and serves ``HF_HUB_OFFLINE=1``); rows are converted and validated
by the hub conversions (:mod:`xstilts.data.hub`, :mod:`xstilts.data.nlu_readers`), so a
malformed hub row is a ``DataFormatError`` naming ``hub:ID/CONFIG[SPLIT]`` and the row.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import os
import shutil
import tarfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xstilts import __version__
from xstilts.data.examples import BitextExample, QAExample, SentencePairExample, TaggingExample
from xstilts.data.hub import convert_rows
from xstilts.data.nlu_readers import nlu_examples_from_records
from xstilts.data.readers import count_unit, read_examples
from xstilts.errors import ConfigError, DataFormatError, MissingDataError
from xstilts.fileio import sha256_of, write_json_atomic, write_text_atomic
from xstilts.languages import TATOEBA_ISO3
from xstilts.tasks import REGISTRY, get_task
from xstilts.tasks.base import Task
from xstilts.tasks.intermediate import PAPER_NLU_TASKS
from xstilts.tasks.kinds import kind_ops
from xstilts.tasks.sources import HubTable, ReleaseArchive, TaskSource, Unavailable
from xstilts.tasks.xtreme import XTREME_TASKS

HUB_PREFIX = "hub:"
MANIFESTS = "manifests"
# Where `--data-dir hub:` keeps what it fetched (`hub:DIR` names another folder).
def default_hub_data() -> Path:
    return Path(os.environ.get("XSTILTS_HUB_DATA", "~/.cache/xstilts/hub-data")).expanduser()


@dataclass
class FileResult:
    task: str
    split: str
    lang: str
    path: str  # relative to the output folder
    status: str  # "written", "present" (manifest matches), "user" (there without a manifest)
    count: int | None = None


@dataclass
class GetReport:
    out: Path
    files: list[FileResult] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)  # (task split lang): not in the source
    unavailable: dict[str, str] = field(default_factory=dict)  # task -> why it cannot be fetched
    notes: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "files": [vars(f) for f in self.files],
            "absent": self.absent,
            "unavailable": self.unavailable,
            "notes": {k: list(v) for k, v in self.notes.items()},
        }


# ------------------------------------------------------------------------------------- hub I/O
class _Rows(list):
    """Hub rows (dicts) with the ``datasets`` features read from the parquet metadata, so the
    conversions find ClassLabel names as they do on a ``datasets.Dataset``."""

    features: Any = None


@dataclass(frozen=True)
class _HubFiles:
    files: list[Path]
    commit: str
    urls: list[str]


def _patterns(folder: str, hub_split: str) -> list[str]:
    return [
        f"{folder}/{hub_split}-*.parquet",  # main branch: DIR/train-00000-of-00001.parquet
        f"{folder}/{hub_split}/*.parquet",  # refs/convert/parquet: DIR/train/0000.parquet
        f"{folder}/*-{hub_split}.parquet",  # older exports: DIR/NAME-train.parquet
    ]


def _hub_unreachable(where: str, exc: BaseException) -> MissingDataError:
    from huggingface_hub.errors import LocalEntryNotFoundError

    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    if offline or isinstance(exc, LocalEntryNotFoundError):
        why = "it is not in the hub cache and the hub is " + (
            "offline (HF_HUB_OFFLINE=1)" if offline else "unreachable"
        )
    else:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        why = f"the hub answered: {reason[:160]}"
    return MissingDataError(
        f"cannot fetch {where}: {why}; connect to the network, or give --data-dir a folder with the files"
    )


def hub_files(
    table: HubTable, lang: str, hub_split: str, *, cache_dir: str | Path | None = None
) -> _HubFiles:
    """The parquet files of one (config, split): downloaded into the hub cache, or found there."""
    from huggingface_hub import snapshot_download

    folder = table.folder_for(lang)
    patterns = _patterns(folder, hub_split)
    where = table.describe(lang, hub_split)
    try:
        snapshot = Path(
            snapshot_download(
                table.repo,
                repo_type="dataset",
                revision=table.revision,
                allow_patterns=patterns,
                cache_dir=str(cache_dir or os.environ.get("HF_HUB_CACHE") or "") or None,
            )
        )
    except Exception as exc:  # offline and not cached, no network, unknown repository, ...
        raise _hub_unreachable(where, exc) from None
    found: list[Path] = []
    for pattern in patterns:
        found = sorted(snapshot.glob(pattern))
        if found:
            break
    commit = snapshot.name
    urls = [
        f"https://huggingface.co/datasets/{table.repo}/resolve/{commit}/"
        + p.relative_to(snapshot).as_posix()
        for p in found
    ]
    return _HubFiles(found, commit, urls)


def read_parquet_rows(files: Sequence[Path]) -> _Rows:
    """Rows of parquet files as dicts, in file order, with their ``datasets`` features."""
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = []
    for path in files:
        try:
            tables.append(pq.read_table(path))
        except (OSError, pa.ArrowException) as exc:
            raise DataFormatError(path, None, "a parquet file", str(exc)[:120]) from None
    rows = _Rows()
    if not tables:
        return rows
    try:
        rows.features = datasets.Features.from_arrow_schema(tables[0].schema)
    except Exception:  # no usable metadata: the spec's label names apply
        rows.features = None
    for table in tables:
        rows.extend(table.to_pylist())
    return rows


# ------------------------------------------------------------------------------------- writers
def _tsv_field(text: str) -> str:
    """One TSV field as XTREME's csv.writer writes it (quoted when it holds a quote); a tab or a
    line break inside a sentence becomes a space, as the format cannot hold them."""
    text = _one_line(text)
    if '"' in text:
        return '"' + text.replace('"', '""') + '"'
    return text


def _one_line(text: str) -> str:
    return " ".join(str(text).replace("\t", " ").split("\n")).replace("\r", " ")


def _pairs_tsv(examples: Iterable[SentencePairExample]) -> str:
    out = []
    for ex in examples:
        fields = [_tsv_field(ex.text_a), _tsv_field(ex.text_b)]
        if ex.label is not None:
            fields.append(ex.label)
        out.append("\t".join(fields))
    return "".join(line + "\n" for line in out)


def _tags_tsv(examples: Iterable[TaggingExample]) -> str:
    blocks = []
    for ex in examples:
        tags = ex.tags if ex.tags is not None else [None] * len(ex.tokens)
        lines = [
            _one_line(tok) if tag is None else f"{_one_line(tok)}\t{tag}"
            for tok, tag in zip(ex.tokens, tags)
        ]
        if lines:
            blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)


def _squad_json(examples: Iterable[QAExample], version: str = "1.1") -> str:
    articles: list[dict[str, Any]] = []
    by_title: dict[str, dict[str, Any]] = {}
    paragraphs: dict[tuple[str, str], dict[str, Any]] = {}
    for ex in examples:
        article = by_title.get(ex.title)
        if article is None:
            article = {"title": ex.title, "paragraphs": []}
            by_title[ex.title] = article
            articles.append(article)
        key = (ex.title, ex.context)
        paragraph = paragraphs.get(key)
        if paragraph is None:
            paragraph = {"context": ex.context, "qas": []}
            paragraphs[key] = paragraph
            article["paragraphs"].append(paragraph)
        qa: dict[str, Any] = {
            "id": ex.id,
            "question": ex.question,
            "answers": [{"text": a.text, "answer_start": a.answer_start} for a in ex.answers],
        }
        if version == "2.0":
            qa["is_impossible"] = not ex.answers
        paragraph["qas"].append(qa)
    return json.dumps({"version": version, "data": articles}, ensure_ascii=False) + "\n"


def _jsonl(rows: Iterable[Mapping[str, Any]]) -> str:
    return "".join(json.dumps(dict(r), ensure_ascii=False, default=str) + "\n" for r in rows)


def _json_array(rows: Iterable[Mapping[str, Any]]) -> str:
    items = [json.dumps(dict(r), ensure_ascii=False, default=str) for r in rows]
    return "[\n" + ",\n".join(items) + "\n]\n" if items else "[]\n"


_NLI_NAMES = ("entailment", "neutral", "contradiction")  # the hub's 0, 1, 2 (dataset cards)


def _label_names(rows: _Rows, column: str, default: Sequence[str]) -> Sequence[str]:
    feature = rows.features[column] if rows.features and column in rows.features else None
    return list(getattr(feature, "names", None) or default)


def _nli_release(rows: _Rows, source: str) -> str:
    """MultiNLI / SNLI 1.0 JSONL (sentence1, sentence2, gold_label, pairID); -1 is '-' (no gold)."""
    names = _label_names(rows, "label", _NLI_NAMES)
    out = []
    for i, row in enumerate(rows):
        label = row.get("label")
        if not isinstance(label, int) or label >= len(names):
            raise DataFormatError(source, i + 1, "label 0, 1, 2 or -1", repr(label))
        out.append({
            "sentence1": row.get("premise"),
            "sentence2": row.get("hypothesis"),
            "gold_label": "-" if label < 0 else names[label],
            "pairID": str(row.get("pairID") or row.get("idx") or i),
        })
    return _jsonl(out)


def _anli_release(rows: _Rows, source: str) -> str:
    """ANLI's JSONL (uid, premise, hypothesis, label e/n/c)."""
    short = {"entailment": "e", "neutral": "n", "contradiction": "c"}
    names = _label_names(rows, "label", _NLI_NAMES)
    out = []
    for i, row in enumerate(rows):
        label = row.get("label")
        if not isinstance(label, int) or not 0 <= label < len(names):
            raise DataFormatError(source, i + 1, "label 0, 1 or 2", repr(label))
        out.append({"uid": row.get("uid", str(i)), "premise": row.get("premise"),
                    "hypothesis": row.get("hypothesis"), "label": short[names[label]]})
    return _jsonl(out)


def _qqp_tsv(rows: _Rows, source: str) -> str:
    """GLUE's QQP TSV (the hub drops qid1/qid2: written empty)."""
    lines = ["id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate"]
    for i, row in enumerate(rows):
        label = row.get("label")
        if label not in (0, 1):
            raise DataFormatError(source, i + 1, "label 0 or 1", repr(label))
        q1, q2 = _one_line(row.get("question1", "")), _one_line(row.get("question2", ""))
        lines.append(f"{row.get('idx', i)}\t\t\t{q1}\t{q2}\t{label}")
    return "\n".join(lines) + "\n"


def _cosmos_csv(rows: _Rows, source: str) -> str:
    columns = ("id", "context", "question", "answer0", "answer1", "answer2", "answer3", "label")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for i, row in enumerate(rows):
        missing = [c for c in columns if c not in row]
        if missing:
            raise DataFormatError(source, i + 1, f"the columns {', '.join(columns)}", f"no {missing[0]}")
        writer.writerow([row[c] for c in columns])
    return buffer.getvalue()


def target_path(task: Task, split: str, lang: str, table: HubTable | None = None) -> str:
    """Where (task, split, lang) is written: the source's ``path``, else the task's first
    file pattern of the split (without wildcards)."""
    pattern = (table.path if table is not None else None) or next(
        p for p in task.files[split] if "*" not in p and "?" not in p
    )
    return pattern.format(split=split, lang=lang, lang3=TATOEBA_ISO3.get(lang, lang))


# A writer: (task, split, lang, its hub table, rows, where they came from) -> {path: text}.
Render = Callable[[Task, str, str, HubTable, _Rows, str], dict[str, str]]


def _render_examples(task: Task, split: str, lang: str, table: HubTable, rows: _Rows, source: str) -> dict[str, str]:
    """The targets: rows converted by the hub conversion (``table.columns``), then written in
    XTREME's layout for the kind."""
    path = target_path(task, split, lang, table)
    examples = convert_rows(task, table, rows, split, lang, source=source)
    if split != "test":
        # a label of -1 is no gold (PAWS-X's card): a labelled split leaves the example out
        gold = kind_ops(task).gold
        examples = [ex for ex in examples if gold(ex) is not None]
    kind = type(examples[0]) if examples else None
    if kind is SentencePairExample:
        return {path: _pairs_tsv(examples)}
    if kind is TaggingExample:
        return {path: _tags_tsv(examples)}
    if kind is QAExample:
        return {path: _squad_json(examples)}
    if kind is BitextExample:
        (bitext,) = examples
        keys = sorted(bitext.source, key=int)
        english = path.rsplit(".", 1)[0] + ".eng"
        return {
            path: "".join(_one_line(bitext.source[k]) + "\n" for k in keys),
            english: "".join(_one_line(bitext.target[k]) + "\n" for k in keys),
        }
    return {path: ""}


def _render_squad(task: Task, split: str, lang: str, table: HubTable, rows: _Rows, source: str) -> dict[str, str]:
    examples = nlu_examples_from_records(task, rows, source=source)
    version = "2.0" if task.metric == "squad_v2" else "1.1"
    return {target_path(task, split, lang, table): _squad_json(examples, version)}  # type: ignore[arg-type]


def _render_rows(writer: Callable[[_Rows, str], str]) -> Render:
    def render(task: Task, split: str, lang: str, table: HubTable, rows: _Rows, source: str) -> dict[str, str]:
        return {target_path(task, split, lang, table): writer(rows, source)}

    return render


def _raw(fmt: Callable[[Iterable[Mapping[str, Any]]], str]) -> Callable[[_Rows, str], str]:
    return lambda rows, source: fmt(rows)


# Writers by the name a task's HubTable gives (``write``); the targets' default is "examples".
WRITERS: dict[str, Render] = {
    "examples": _render_examples,
    "squad-json": _render_squad,
    "nli-release": _render_rows(_nli_release),
    "anli-release": _render_rows(_anli_release),
    "qqp-tsv": _render_rows(_qqp_tsv),
    "cosmos-csv": _render_rows(_cosmos_csv),
    "jsonl-rows": _render_rows(_raw(_jsonl)),
    "json-array-rows": _render_rows(_raw(_json_array)),
    "mbpp-jsonl": _render_rows(lambda rows, source: _jsonl(sorted(rows, key=lambda r: r.get("task_id", 0)))),
}


def _writer(table: HubTable) -> Render:
    name = table.write or "examples"
    if name not in WRITERS:
        raise ConfigError(f"{table.repo}: unknown writer {name!r}; writers: {', '.join(WRITERS)}")
    return WRITERS[name]


# ------------------------------------------------------------------------------------ manifests
def manifest_path(out: Path, rel: str) -> Path:
    return out / MANIFESTS / f"{rel}.json"


def file_state(out: Path, rel: str) -> str:
    """'missing', 'present' (its manifest's sha256 matches), 'stale' (fetched, then changed or
    cut short), 'user' (a file xstilts did not fetch) or 'absent' (its source has none)."""
    path, manifest = out / rel, manifest_path(out, rel)
    record: dict[str, Any] | None = None
    if manifest.is_file():
        try:
            record = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            record = {}
    if not path.is_file():
        return "absent" if record and record.get("absent") else "missing"
    if record is None or record.get("absent"):
        return "user"
    if record.get("pending"):
        return "stale"  # written, not yet read back (a get stopped in between): fetched again
    stat = path.stat()
    if (record.get("bytes"), record.get("mtime_ns")) == (stat.st_size, stat.st_mtime_ns):
        return "present"  # untouched since it was recorded: no need to read it all again
    return "present" if record.get("sha256") == sha256_of(path) else "stale"


def _write_manifest(out: Path, rel: str, entry: Mapping[str, Any]) -> None:
    stat = (out / rel).stat()
    record = {
        **entry,
        "file": rel,
        "sha256": sha256_of(out / rel),
        "bytes": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "fetched": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "xstilts": __version__,
    }
    write_json_atomic(manifest_path(out, rel), record)


# ---------------------------------------------------------------------------- release archives
def _download(url: str, dest: Path) -> None:
    """``url`` to ``dest`` through ``dest.part`` (resumed with a Range request when the server
    allows it), renamed once complete."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    done = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={done}-"} if done else {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            resumed = done and getattr(response, "status", 200) == 206
            with open(part, "ab" if resumed else "wb") as handle:
                shutil.copyfileobj(response, handle, 1 << 20)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise MissingDataError(f"cannot fetch {url}: {reason}; connect to the network and run it again") from None
    os.replace(part, dest)


def _unpack(archive: Path, into: Path, members: Sequence[str] = ()) -> list[str]:
    """Unpack ``archive`` (only ``members``, when given) below ``into``; the files written,
    relative to ``into``."""
    names: list[str] = []
    if archive.name.endswith(".zip"):
        with zipfile.ZipFile(archive) as handle:
            for info in handle.infolist():
                if not info.is_dir() and (not members or info.filename in members):
                    handle.extract(info, into)
                    names.append(info.filename)
        return names
    with tarfile.open(archive) as handle:
        chosen = [m for m in handle.getmembers() if m.isfile() and (not members or m.name in members)]
        handle.extractall(into, members=chosen, filter="data")
        names = [m.name for m in chosen]
    return names


# -------------------------------------------------------------------------------------- get
# Names that stand for several tasks: the nine targets, the paper's nine intermediate tasks,
# every code task.
GROUPS: dict[str, Callable[[], Sequence[str]]] = {
    "xtreme": lambda: XTREME_TASKS,
    "nlu": lambda: PAPER_NLU_TASKS,
    "code": lambda: REGISTRY.names("code"),
}


def _expand_group(names: Sequence[str]) -> list[str]:
    tasks: list[str] = []
    for name in names:
        if name in GROUPS:
            tasks.extend(_expand_group(GROUPS[name]()))
            continue
        task = get_task(name)  # unknown names fail here, with the known ones listed
        components = task.extra.get("components") if task.reader == "anli_plus" else None
        if components:
            tasks.extend(c for c in components["train"] if c not in tasks)  # type: ignore[index]
        else:
            tasks.append(task.name)
    seen: list[str] = []
    for name in tasks:
        if name not in seen:
            seen.append(name)
    return seen


class _Getter:
    def __init__(self, out: Path, *, cache_dir: str | Path | None, echo: Callable[[str], None]):
        self.out = out
        self.cache_dir = cache_dir
        self.echo = echo
        self.report = GetReport(out)

    def task(self, task: Task, source: TaskSource, splits: Sequence[str] | None,
             languages: Sequence[str] | None) -> None:
        if source.notes:
            self.report.notes[task.name] = source.notes
        for split in task.files:
            if splits and split not in splits:
                continue
            src = source.for_split(split)
            if isinstance(src, Unavailable):
                self.report.unavailable[task.name] = src.reason
                continue
            langs = [lang for lang in task.splits.get(split, ()) if not languages or lang in languages]
            for lang in langs:
                if src is not None and src.languages is not None and lang not in src.languages:
                    self.report.absent.append(f"{task.name} {split} {lang}")
                    continue
                if isinstance(src, HubTable):
                    self._hub(task, split, lang, src)
                elif isinstance(src, ReleaseArchive):
                    self._release(task, split, lang, src)

    # -- a (task, split, lang) that is already there is not fetched again
    def _done(self, task: Task, split: str, lang: str, rels: Sequence[str]) -> bool:
        states = {rel: file_state(self.out, rel) for rel in rels}
        if rels and all(s == "absent" for s in states.values()):
            manifest = json.loads(manifest_path(self.out, rels[0]).read_text(encoding="utf-8"))
            self.report.absent.append(f"{task.name} {split} {lang} ({manifest['where']}: no such split)")
            return True
        if rels and all(s in ("present", "user") for s in states.values()):
            for rel, state in states.items():
                self.report.files.append(FileResult(task.name, split, lang, rel, state))
            return True
        return False

    def _hub(self, task: Task, split: str, lang: str, table: HubTable) -> None:
        hub_splits = table.hub_splits(split)
        if hub_splits is None:
            self.report.absent.append(f"{task.name} {split} {lang}")
            return
        per_round = table.write == "anli-release"  # one file per round, R1..R3 side by side
        first = target_path(task, split, lang, table)
        rels = (
            [first.replace("/R1/", f"/R{r}/") for r in (1, 2, 3)] if per_round else [first]
        )
        if kind_ops(task).bitext and _writer(table) is _render_examples:
            # a bitext target is written as LASER's pair files: the English side beside it
            rels.append(first.rsplit(".", 1)[0] + ".eng")
        if self._done(task, split, lang, rels):
            return
        texts: dict[str, str] = {}
        sources: list[dict[str, Any]] = []
        gathered = _Rows()
        for index, hub_split in enumerate(hub_splits):
            fetched = hub_files(table, lang, hub_split, cache_dir=self.cache_dir)
            where = table.describe(lang, hub_split)
            if not fetched.files:
                self.report.absent.append(f"{task.name} {split} {lang} ({where}: no such split)")
                for rel in rels:  # remembered, so that a second get need not ask again
                    write_json_atomic(manifest_path(self.out, rel), {
                        "absent": True, "where": where, "task": task.name, "split": split,
                        "lang": lang, "revision": fetched.commit,
                    })
                return
            rows = read_parquet_rows(fetched.files)
            sources.append({
                "id": table.repo, "config": table.config_for(lang), "split": hub_split,
                "revision": fetched.commit, "urls": fetched.urls, "rows": len(rows),
            })
            if per_round:
                (text,) = _writer(table)(task, split, lang, table, rows, where).values()
                texts[first.replace("/R1/", f"/R{index + 1}/")] = text
            else:
                gathered.extend(rows)
                gathered.features = gathered.features or rows.features
        if not per_round:
            texts = _writer(table)(task, split, lang, table, gathered, table.describe(lang, hub_splits[0]))
        self._pending(list(texts))
        for rel, text in texts.items():
            write_text_atomic(self.out / rel, text)
        self._finish(task, split, lang, list(texts), {"source": sources})

    def _release(self, task: Task, split: str, lang: str, archive: ReleaseArchive) -> None:
        url_template = os.environ.get(f"XSTILTS_{task.name.upper()}_URL", archive.url)
        if archive.files:  # plain release files, one download each (Django's all.anno/all.code)
            rels = [f"{archive.into}/{name}" for name in archive.files]
            if self._done(task, split, lang, rels):
                return
            self._pending(rels)
            urls = []
            for name, rel in zip(archive.files, rels):
                url = f"{url_template.rstrip('/')}/{name}"
                _download(url, self.out / rel)
                urls.append(url)
            self._finish(task, split, lang, rels, {"source": [{"id": url_template, "urls": urls}]})
            return
        url = url_template.format(lang=lang, name=archive.names[split])
        name = url.rsplit("/", 1)[-1]
        downloads = self.out / ".downloads"
        listing = downloads / f"{name}.files.json"
        if listing.is_file():
            rels = json.loads(listing.read_text(encoding="utf-8"))
            if self._done(task, split, lang, rels):
                return
        local = downloads / name
        if not local.is_file():
            self.echo(f"downloading {url}")
            _download(url, local)
        digest = sha256_of(local)
        try:
            members = _unpack(local, self.out, archive.members)
            self._pending(members)
        except (tarfile.TarError, zipfile.BadZipFile, OSError) as exc:
            local.unlink(missing_ok=True)  # a damaged download is fetched afresh next time
            raise DataFormatError(local, None, "a readable release archive", str(exc)[:120]) from None
        write_json_atomic(listing, members)
        meta = {"source": [{"id": url, "urls": [url], "archive_sha256": digest}]}
        self._finish(task, split, lang, members, meta)
        local.unlink()  # unpacked and recorded: the archive itself is not kept

    def _pending(self, rels: Sequence[str]) -> None:
        """Mark files as being written, so that a get stopped before their read-back does not
        leave them looking like the user's own."""
        for rel in rels:
            write_json_atomic(manifest_path(self.out, rel), {"pending": True, "file": rel})

    def _finish(self, task: Task, split: str, lang: str, rels: Sequence[str], meta: dict[str, Any]) -> None:
        try:
            examples = read_examples(task, self.out, split, lang)  # as training will read it
        except Exception:
            for rel in rels:  # what the reader refuses is not left behind
                (self.out / rel).unlink(missing_ok=True)
                manifest_path(self.out, rel).unlink(missing_ok=True)
            raise
        count = (
            len(examples[0].source) if examples and isinstance(examples[0], BitextExample) else len(examples)
        )
        for rel in rels:
            _write_manifest(self.out, rel, {"task": task.name, "split": split, "lang": lang,
                                            "count": count, "unit": count_unit(task), **meta})
            self.report.files.append(FileResult(task.name, split, lang, rel, "written", count))
        self.echo(f"{task.name} {split} {lang}: {count} {count_unit(task)} -> {', '.join(rels)}")


def get(
    tasks: Sequence[str],
    out: str | Path,
    *,
    languages: Sequence[str] | None = None,
    splits: Sequence[str] | None = None,
    cache_dir: str | Path | None = None,
    echo: Callable[[str], None] = lambda line: None,
) -> GetReport:
    """Fetch ``tasks`` (names, or the groups ``xtreme``, ``nlu`` (the paper's nine) and ``code``)
    into ``out``; see the module
    docstring. Raises :class:`MissingDataError` (one line) when the hub or a release server
    cannot be reached and nothing is cached."""
    out = Path(out)
    getter = _Getter(out, cache_dir=cache_dir, echo=echo)
    for name in _expand_group(list(tasks) or ["xtreme"]):
        task = get_task(name)
        source = task.source
        if source is None:
            getter.report.unavailable[name] = "no public source is declared for it"
            continue
        getter.task(task, source, splits, languages)
    return getter.report


# ------------------------------------------------------------------------------ hub: folders
def is_hub(value: str | Path | None) -> bool:
    return isinstance(value, str) and value.startswith(HUB_PREFIX)


def hub_folder(value: str) -> Path:
    """The local folder of a ``hub:`` data source: ``hub:`` alone is
    ``$XSTILTS_HUB_DATA`` (default ``~/.cache/xstilts/hub-data``), ``hub:DIR`` is DIR."""
    rest = value[len(HUB_PREFIX):]
    return Path(rest).expanduser() if rest else default_hub_data()


def resolve_data_dir(
    value: str | Path | None,
    needs: Iterable[tuple[str, Sequence[str] | None]],
    *,
    echo: Callable[[str], None] = lambda line: None,
) -> Path | None:
    """A data folder as given, or for ``hub:[DIR]`` the folder the hub data is fetched into,
    after fetching what ``needs`` lists ((task, languages or None for all) pairs): every split
    of each task, as ``data get`` would. What is there already is not fetched again."""
    if value is None:
        return None
    if not is_hub(value):
        return Path(value)
    folder = hub_folder(str(value))
    for task, langs in needs:
        # English too: the training split of every target is English
        wanted = sorted(set(langs) | {"en"}) if langs else None
        report = get([task], folder, languages=wanted, echo=echo)
        if task in report.unavailable:
            raise MissingDataError(f"{task} cannot be fetched: {report.unavailable[task]}")
    return folder
