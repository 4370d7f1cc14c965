"""``xstilts data check``: what a data folder holds, per task, language and split, and every
problem in it.

Reading for training stops at the first malformed record; a check reads every file in
collecting mode instead, so one run lists all the problems of a folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xstilts.data.examples import BitextExample
from xstilts.data.readers import ProblemSink, available, count_unit, find_files, read_examples
from xstilts.errors import DataFormatError, MissingDataError, XstiltsError
from xstilts.tasks import get_task
from xstilts.tasks.base import TARGET_FAMILIES, Task
from xstilts.tasks.xtreme import XTREME_TASKS


@dataclass
class SplitCheck:
    """One (task, language, split): the files read, the example count and the problems."""

    files: list[str]
    count: int
    problems: list[str] = field(default_factory=list)
    gold: int | None = None  # retrieval: number of gold pairs

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"files": self.files, "count": self.count, "problems": self.problems}
        if self.gold is not None:
            out["gold"] = self.gold
        return out


@dataclass
class TaskCheck:
    name: str
    unit: str
    languages: dict[str, dict[str, SplitCheck]] = field(default_factory=dict)
    missing: dict[str, list[str]] = field(default_factory=dict)  # split -> absent languages

    @property
    def problems(self) -> list[str]:
        return [
            p for splits in self.languages.values() for s in splits.values() for p in s.problems
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "unit": self.unit,
            "languages": {
                lang: {split: c.to_json() for split, c in splits.items()}
                for lang, splits in self.languages.items()
            },
            "missing": self.missing,
            "problem_count": len(self.problems),
        }


@dataclass
class DataCheck:
    data_dir: str
    tasks: dict[str, TaskCheck]

    @property
    def problems(self) -> list[str]:
        return [p for t in self.tasks.values() for p in t.problems]

    def to_json(self) -> dict[str, Any]:
        return {
            "data_dir": self.data_dir,
            "tasks": {name: t.to_json() for name, t in self.tasks.items()},
            "problem_count": len(self.problems),
            "problems": self.problems,
        }


def _check_one(task: Task, data_dir: Path, split: str, lang: str) -> SplitCheck | None:
    try:
        files = [str(p) for p in find_files(task, data_dir, split, lang)]
    except XstiltsError:
        files = []
    sink = ProblemSink(strict=False)
    problems: list[str] = []
    try:
        examples = read_examples(task, data_dir, split, lang, sink=sink)
    except MissingDataError as exc:
        if not files:
            return None  # nothing of this (split, language) here
        examples = []
        problems.append(str(exc))
    except DataFormatError as exc:  # readers without a collecting mode stop at the first
        examples = []
        problems.append(str(exc))
    problems = [str(e) for e in sink.problems] + problems
    if sink.dropped:
        problems.append(f"... and {sink.dropped} more problems in {', '.join(files)}")
    gold: int | None = None
    count = len(examples)
    if examples and isinstance(examples[0], BitextExample):
        count = len(examples[0].source)
        gold = len(examples[0].gold)
    return SplitCheck(files=files, count=count, problems=problems, gold=gold)


def check_data(data_dir: str | Path, tasks: list[str] | None = None) -> DataCheck:
    """Read every (task, split, language) present below ``data_dir`` and collect all problems.

    ``tasks`` defaults to the nine XTREME targets. Languages a split lacks are listed as
    missing, which is not a problem (the shared copy omits some on purpose).
    """
    root = Path(data_dir)
    if not root.is_dir():
        raise MissingDataError(f"data directory not found: {root}")
    names = list(tasks) if tasks else list(XTREME_TASKS)
    report = DataCheck(data_dir=str(root), tasks={})
    for name in names:
        task = get_task(name)
        result = TaskCheck(name=task.name, unit=count_unit(task))
        # One listing look-up per task; NLU/code tasks have layouts of their own (ANLI rounds,
        # CCGbank sections), so for them every (split, language) is tried.
        present = available(task, root) if task.family in TARGET_FAMILIES else None
        for split, langs in task.splits.items():
            if split not in task.files:
                continue
            for lang in langs:
                if present is not None and lang not in present.get(split, ()):
                    result.missing.setdefault(split, []).append(lang)
                    continue
                checked = _check_one(task, root, split, lang)
                if checked is None:
                    result.missing.setdefault(split, []).append(lang)
                else:
                    result.languages.setdefault(lang, {})[split] = checked
        report.tasks[task.name] = result
    return report


def render_text(report: DataCheck) -> str:
    """A plain-text table per task (languages × splits) followed by every problem."""
    lines = [f"data: {report.data_dir}"]
    for name, task in report.tasks.items():
        splits = list(get_task(name).splits)
        present = sum(len(s) for s in task.languages.values())
        lines.append("")
        count = len(task.problems)
        lines.append(f"{name} ({task.unit}; {present} files present, {count} problems)")
        if not task.languages:
            lines.append("  nothing found")
            continue
        width = max(9, *(len(s) + 2 for s in splits))
        lines.append("  lang  " + "".join(f"{s:>{width}}" for s in splits))
        for lang in sorted(task.languages):
            cells = []
            for split in splits:
                c = task.languages[lang].get(split)
                if c is None:
                    cell = "-"
                else:
                    cell = str(c.count) + (f" !{len(c.problems)}" if c.problems else "")
                cells.append(f"{cell:>{width}}")
            lines.append(f"  {lang:<4}  " + "".join(cells))
        for split, langs in task.missing.items():
            lines.append(f"  missing {split}: {' '.join(langs)}")
    problems = report.problems
    lines.append("")
    if problems:
        lines.append(f"{len(problems)} problem{'s' if len(problems) != 1 else ''}:")
        lines.extend(f"error: {p}" for p in problems)
    else:
        lines.append("no problems found")
    return "\n".join(lines)
