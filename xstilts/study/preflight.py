"""Checking a run's inputs before anything is trained.

A phase reads its files when it starts, so without a check a missing or malformed target test
file is found only after hours of fine-tuning. Before any training, a run (``xstilts run``),
every cell of a study and ``xstilts study --dry-run`` therefore list every input that each phase
still to run will read (:func:`run_needs`), and read it (:func:`check_needs`) with the same
readers the phases call: a missing file, an empty one and a malformed record are all found, and
all problems are reported at once, in one :class:`PreflightError` (exit status 2), so that one
fix covers them.

Every (task, split, language) is parsed completely: the readers are fast next to training
(seconds for XTREME-sized files) and a full parse is the only check that the phase cannot then
fail on. A check that passed is remembered for the process, keyed by the files' sizes and
modification times, so a study's driver and its cells read each file once.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xstilts.data.code_readers import find_code_files
from xstilts.data.examples import BitextExample
from xstilts.data.readers import available, find_files, has_split, read_examples
from xstilts.errors import MissingDataError, XstiltsError
from xstilts.evaluation.trivial import reads_training_data
from xstilts.study.cells import (
    make_request,
    node_config_hashes,
    node_legacy_hashes,
    node_training_hashes,
    reuse_state,
    run_config_for,
)
from xstilts.study.plan import build_plan
from xstilts.study.run_config import load_run_config
from xstilts.tasks import Task, get_task
from xstilts.tasks.kinds import kind_ops
from xstilts.train.mlm import read_raw_text


@dataclass(frozen=True)
class Need:
    """One input that a phase will read: a task's (split, language) below a data folder, or the
    raw text of masked-LM training (``task`` None, ``location`` the file or folder)."""

    phase: str
    task: str | None
    location: str
    split: str = ""
    lang: str = ""
    optional: bool = False  # read only where present (English dev for model selection)

    @property
    def key(self) -> tuple[str | None, str, str, str]:
        return (self.task, str(Path(self.location).resolve()), self.split, self.lang)


class PreflightError(MissingDataError):
    """Inputs missing or unreadable; the message lists every problem, one per line."""

    def __init__(self, what: str, problems: list[str]) -> None:
        self.problems = problems
        if len(problems) == 1:
            message = f"{problems[0]} ({what}; checked before training, nothing was trained)"
        else:
            message = (f"{len(problems)} problems with the inputs {what} (checked before training, "
                       f"nothing was trained):\n" + "\n".join(f"  {p}" for p in problems))
        super().__init__(message)


# -- what a run will read ------------------------------------------------------------------


def run_needs(config: Any, done: Collection[str] = ()) -> tuple[list[Need], list[str]]:
    """The inputs of every phase of ``config`` (a RunConfig) not in ``done`` ("phase0", ...),
    and the problems found without reading anything (no data folder, no file for a language)."""
    needs: list[Need] = []
    problems: list[str] = []
    data_dir = config.data_dir
    if not Path(data_dir).is_dir():
        return [], [f"data folder not found: {data_dir} (give --data-dir DIR)"]
    if config.mlm is not None and "phase0" not in done:
        needs.append(Need("phase 0", None, config.mlm.data))
    spec = config.intermediate
    if spec is not None and "phase1" not in done:
        for item in spec.tasks:  # as Pipeline.intermediate_examples reads them
            task = get_task(item.task)
            where = item.data_dir or data_dir
            needs.append(Need("phase 1", task.name, where, item.train_split or "train", "en"))
            for lang, path in sorted((item.translated or {}).items()):
                lang_read = "en" if has_split(task, path, "train", "en") else lang
                needs.append(Need("phase 1", task.name, path, "train", lang_read))
            if config.dev_eval and item.heldout is None and item.train_split != "dev":
                needs.append(Need("phase 1", task.name, where, "dev", "en", optional=True))
        if spec.mlm is not None:
            if spec.mlm.data is None:
                problems.append("phase 1: intermediate.mlm.data: give the raw multilingual text for "
                                "MLM co-training")
            else:
                needs.append(Need("phase 1", None, spec.mlm.data))
    if config.target is not None:
        task = get_task(config.target)
        if not kind_ops(task).encoder_only and "phase2" not in done:
            if not task.has_training_data:
                problems.append(f"phase 2: {task.name} has no training data to fine-tune on")
            else:
                needs.append(Need("phase 2", task.name, data_dir, "train", "en"))
                if config.dev_eval:
                    needs.append(Need("phase 2", task.name, data_dir, "dev", "en", optional=True))
        split = config.eval_split or task.score_split
        if config.languages:
            langs = list(config.languages)
        else:
            langs = available(task, data_dir).get(split, [])
            if not langs:
                problems.append(f"phase 3: no {task.name} {split} files below {data_dir} "
                                f"(for any of {' '.join(task.splits.get(split, ()))})")
        needs.extend(Need("phase 3", task.name, data_dir, split, lang) for lang in langs)
    return needs, problems


# -- reading them --------------------------------------------------------------------------

_VERIFIED: dict[tuple[str | None, str, str, str], tuple[tuple[str, int, int], ...]] = {}


def _files(task: Task, location: str, split: str, lang: str) -> list[Path]:
    """The files (task, split, lang) is read from, for the fingerprint of a passed check."""
    try:
        if task.family == "code":
            return find_code_files(task, location, split, lang)
        return find_files(task, location, split, lang) if split in task.files else []
    except (XstiltsError, OSError):
        return []


def _fingerprint(files: list[Path]) -> tuple[tuple[str, int, int], ...]:
    out = []
    for f in files:
        try:
            st = f.stat()
        except OSError:
            return ()
        out.append((str(f), st.st_size, st.st_mtime_ns))
    return tuple(out)


def _check_text(need: Need) -> str | None:
    try:
        if not read_raw_text(need.location, max_lines=1):
            return f"{need.phase}: {need.location}: no text for masked-LM training (empty)"
    except XstiltsError as exc:
        return f"{need.phase}: {exc}"
    return None


def check_need(need: Need) -> str | None:
    """None when the input is there and parses; else one line saying what is wrong."""
    if need.task is None:
        return _check_text(need)

    task = get_task(need.task)
    if need.optional and not has_split(task, need.location, need.split, need.lang):
        return None
    fingerprint = _fingerprint(_files(task, need.location, need.split, need.lang))
    if fingerprint and _VERIFIED.get(need.key) == fingerprint:
        return None
    try:
        examples = read_examples(task, need.location, need.split, need.lang)
    except XstiltsError as exc:
        return f"{need.phase}: {exc}"
    except (OSError, UnicodeError) as exc:
        return f"{need.phase}: {task.name} {need.split} {need.lang}: {exc}"
    empty = not examples or (isinstance(examples[0], BitextExample) and not examples[0].source)
    if empty:
        shown = ", ".join(f for f, _, _ in fingerprint) or need.location
        return f"{need.phase}: {shown}: no {task.name} {need.split} examples for {need.lang} (empty file?)"
    if fingerprint:
        _VERIFIED[need.key] = fingerprint
    return None


def check_needs(needs: list[Need]) -> list[str]:
    """Every problem of ``needs`` (each input read once, whichever phases need it)."""
    problems: list[str] = []
    seen: set[tuple[Any, ...]] = set()
    for need in needs:
        if need.key in seen:
            continue
        seen.add(need.key)
        problem = check_need(need)
        if problem is not None:
            problems.append(problem)
    return problems


def check_run(config: Any, done: Collection[str] = ()) -> None:
    """Raise :class:`PreflightError` listing every problem of the phases still to run."""
    needs, problems = run_needs(config, done)
    problems += check_needs(needs)
    if problems:
        raise PreflightError(f"of the run {config.out}", problems)


# -- a whole study -------------------------------------------------------------------------


def check_study(study: Any, study_dir: str | Path, data_dir: str | Path | None) -> int:
    """Check every cell of a study that will run (not the ones already done): its config (the
    study's ``pipeline:`` values included) and the inputs of its phases still to run. Raises one
    error listing every problem (each with the cells it stops); returns the cells checked."""
    if data_dir is None:
        raise MissingDataError("the study needs a data folder: give --data-dir DIR "
                               "(or data_dir: in the config)")
    data_dir = Path(data_dir).resolve()
    if not data_dir.is_dir():
        raise MissingDataError(f"data folder not found: {data_dir} (give --data-dir DIR)")
    study_dir = Path(study_dir).resolve()
    plan = build_plan(study)
    hashes = node_config_hashes(plan)
    training = node_training_hashes(plan)
    legacy = node_legacy_hashes(plan)
    by_problem: dict[str, list[str]] = {}
    needs_by_cell: dict[str, list[Need]] = {}
    checked = 0
    for node in plan.nodes:
        run_dir = node.run_dir(study_dir)
        reuse = reuse_state(run_dir, hashes[node.id], training[node.id], legacy[node.id])
        if reuse == "done":
            continue
        checked += 1
        request = make_request(plan, study_dir, data_dir, node, hashes[node.id], training[node.id],
                               legacy[node.id])
        try:
            config = load_run_config(run_config_for(request))
        except XstiltsError as exc:
            by_problem.setdefault(str(exc), []).append(node.id)
            continue
        done = []
        if reuse == "reuse":  # the cell goes on in its run dir: its finished phases read nothing
            done = [p for p in ("phase0", "phase1", "phase2") if (run_dir / p / "DONE").is_file()]
        needs, problems = run_needs(config, done)
        task = get_task(node.target) if node.target else None
        if task is not None and reads_training_data(task):  # the trivial reference's majority
            needs.append(Need("phase 3 (trivial reference)", task.name, str(data_dir), "train", "en"))
        for problem in problems:
            by_problem.setdefault(problem, []).append(node.id)
        needs_by_cell[node.id] = needs
    # each input once, then its problem is charged to every cell that needs it
    results: dict[tuple[Any, ...], str | None] = {}
    for cell, needs in needs_by_cell.items():
        for need in needs:
            if need.key not in results:
                results[need.key] = check_need(need)
            if results[need.key] is not None:
                cells = by_problem.setdefault(results[need.key], [])
                if cell not in cells:
                    cells.append(cell)
    if by_problem:
        lines = []
        for problem, cells in by_problem.items():
            more = f" and {len(cells) - 1} more" if len(cells) > 1 else ""
            lines.append(f"{problem} [cell {cells[0]}{more}]")
        raise PreflightError(f"of study {study.name}", lines)
    return checked
