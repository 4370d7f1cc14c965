"""The study report: Markdown and a self-contained HTML page, built only from the result store.

Every number comes from ``results.sqlite`` (metric ``score``: the number that enters the XTREME
score; ``trivial``: the trivial reference on the same gold), so the report can be checked
against the store; the figures are embedded as base64 PNG.

Statistics (:mod:`xstilts.study.stats`): the unit of replication is the training run (the seed).
Per seed, Δ = mean over languages of (setting − none); over seeds, a paired t-interval and test;
below three seeds no interval and no test, and the report says so in words; Holm's method over
each table's family of comparisons. A cell near its trivial reference is flagged "not learnt" and
its Δ is not interpreted; so is a phase-1 task whose own quality did not rise above its untrained
head's.
"""

from __future__ import annotations

import base64
import html
import io
import math
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from xstilts.errors import MissingDataError
from xstilts.study.published import PUBLISHED, is_xlmr_large
from xstilts.study.runner import STORE_FILE, STUDY_FILE
from xstilts.study.stats import (
    LEARNT_FRACTION,
    MIN_SEEDS,
    SeedComparison,
    adjust_family,
    compare_over_seeds,
    is_learnt,
    learnt_threshold,
    per_seed_deltas,
)
from xstilts.study.store import BUDGET_TASK, TRIVIAL_METRIC, UNTRAINED_SUFFIX, ResultStore
from xstilts.study.study_config import Budgets
from xstilts.tasks import REGISTRY
from xstilts.tasks.kinds import num_choices
from xstilts.tasks.xtreme import XTREME_TASKS

# -- formatting ----------------------------------------------------------------------------


def mean_std(values: list[float]) -> tuple[float, float | None]:
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), (float(arr.std(ddof=1)) if len(arr) > 1 else None)


def fmt(x: float | None, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:.{digits}f}"


def fmt_signed(x: float | None) -> str:
    return "n/a" if x is None else f"{x:+.2f}"


def fmt_mean_std(m: float, s: float | None) -> str:
    return f"{m:.2f} ± {s:.2f}" if s is not None else f"{m:.2f}"


# -- the document model: blocks rendered to Markdown and HTML -------------------------------


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]
    caption: str = ""


@dataclass
class Figure:
    name: str
    png: bytes
    caption: str


@dataclass
class Doc:
    blocks: list[tuple[str, Any]] = field(default_factory=list)

    def h(self, level: int, text: str) -> None:
        self.blocks.append(("h", (level, text)))

    def p(self, text: str) -> None:
        self.blocks.append(("p", text))

    def items(self, items: list[str]) -> None:
        self.blocks.append(("list", items))

    def table(self, t: Table) -> None:
        self.blocks.append(("table", t))

    def figure(self, f: Figure) -> None:
        self.blocks.append(("fig", f))

    def markdown(self, fig_dir: str | None = None) -> str:
        out: list[str] = []
        for kind, value in self.blocks:
            if kind == "h":
                out.append("#" * value[0] + " " + value[1])
            elif kind == "p":
                out.append(value)
            elif kind == "list":
                out.append("\n".join(f"- {i}" for i in value))
            elif kind == "table":
                out.append(markdown_table(value))
            elif kind == "fig":
                target = f"{fig_dir}/{value.name}.png" if fig_dir else f"{value.name}.png"
                out.append(f"![{value.caption}]({target})\n\n*{value.caption}*")
        return "\n\n".join(out) + "\n"

    def html(self, title: str) -> str:
        parts = [
            "<!DOCTYPE html>", "<html><head><meta charset='utf-8'>", f"<title>{html.escape(title)}</title>",
            "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
            "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:3px 8px;"
            "text-align:right}th{background:#eee}td:first-child,th:first-child{text-align:left}"
            "caption{caption-side:bottom;font-size:90%;color:#555}img{max-width:100%}</style>",
            "</head><body>",
        ]
        for kind, value in self.blocks:
            if kind == "h":
                parts.append(f"<h{value[0]}>{html.escape(value[1])}</h{value[0]}>")
            elif kind == "p":
                parts.append(f"<p>{_inline(value)}</p>")
            elif kind == "list":
                parts.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in value) + "</ul>")
            elif kind == "table":
                t: Table = value
                rows = "".join(
                    "<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in t.rows
                )
                head = "".join(f"<th>{html.escape(h)}</th>" for h in t.headers)
                cap = f"<caption>{html.escape(t.caption)}</caption>" if t.caption else ""
                parts.append(f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
            elif kind == "fig":
                data = base64.b64encode(value.png).decode("ascii")
                parts.append(
                    f"<figure><img alt='{html.escape(value.caption)}' src='data:image/png;base64,{data}'>"
                    f"<figcaption>{html.escape(value.caption)}</figcaption></figure>"
                )
        parts.append("</body></html>")
        return "\n".join(parts)


def _inline(text: str) -> str:
    """Escape, then the two Markdown marks the report uses: **bold** and `code`."""
    s = html.escape(text)
    s = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", s)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", s)


def markdown_table(t: Table) -> str:
    lines = ["| " + " | ".join(t.headers) + " |", "|" + "|".join("---" for _ in t.headers) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in t.rows]
    if t.caption:
        lines.append("")
        lines.append(f"*{t.caption}*")
    return "\n".join(lines)


# -- reading the store ---------------------------------------------------------------------


@dataclass
class StudyData:
    """The store's rows, indexed the ways the report needs them."""

    name: str
    scores: Any  # DataFrame of all score rows
    cells: Any  # DataFrame of cells
    settings: list[str]  # in config order
    families: dict[str, str]
    targets: list[str]
    encoders: list[str]
    config: dict[str, Any]

    def task_scores(self, encoder: str, setting: str, target: str) -> dict[int, float]:
        """seed -> task score (the ``avg`` row)."""
        df = self.scores
        sel = df[(df.phase == "target") & (df.metric == "score") & (df.language == "avg") & (df.encoder == encoder)
                 & (df.intermediate == setting) & (df.task == target)]
        return {int(s): float(v) for s, v in zip(sel.seed, sel.value)}

    def lang_scores(self, encoder: str, setting: str, target: str, metric: str = "score") -> dict[tuple[int, str], float]:
        """(seed, language) -> per-language value."""
        df = self.scores
        sel = df[(df.phase == "target") & (df.metric == metric) & (df.language != "avg") & (df.encoder == encoder)
                 & (df.intermediate == setting) & (df.task == target)]
        return {(int(s), str(lang)): float(v) for s, lang, v in zip(sel.seed, sel.language, sel.value)}

    def trivial(self, encoder: str, target: str) -> float | None:
        """The target's trivial reference (mean over its runs' ``trivial`` avg rows), None if unrecorded."""
        df = self.scores
        sel = df[(df.phase == "target") & (df.metric == TRIVIAL_METRIC) & (df.language == "avg")
                 & (df.encoder == encoder) & (df.task == target)]
        return float(sel.value.mean()) if len(sel) and sel.value.notna().any() else None

    @property
    def seeds(self) -> list[int]:
        return [int(s) for s in self.config.get("seeds", sorted(set(self.scores.seed.dropna())))]

    @property
    def seed_counts(self) -> list[int]:
        """Seeds per (encoder, setting, target) cell that has results."""
        df = self.scores
        sel = df[(df.phase == "target") & (df.metric == "score") & (df.language == "avg")]
        return [int(n) for n in sel.groupby(["encoder", "intermediate", "task"]).seed.nunique()]

    @cached_property
    def phase1_learnt(self) -> dict[tuple[str, str], bool | None]:
        """(encoder, setting) -> did every phase-1 task of the setting learn (None: unknown)."""
        df = self.scores[(self.scores.phase == "intermediate") & (self.scores.task != BUDGET_TASK)]
        out: dict[tuple[str, str], bool | None] = {}
        for (encoder, setting, _task), (_m, _after, _ref, learnt) in phase1_verdicts(df).items():
            prev = out.get((encoder, setting), True)
            out[(encoder, setting)] = False if (prev is False or learnt is False) else (
                None if (prev is None or learnt is None) else True)
        return out


def load_study_data(study_dir: Path) -> StudyData:
    import json


    study_dir = Path(study_dir)
    store_path = study_dir / STORE_FILE
    if not store_path.is_file():
        raise MissingDataError(
            f"{study_dir} has no result store ({STORE_FILE}); run `xstilts study CONFIG.yaml --out {study_dir}` first"
        )
    config = json.loads((study_dir / STUDY_FILE).read_text()) if (study_dir / STUDY_FILE).is_file() else {}
    store = ResultStore(store_path)
    name = config.get("name")
    scores = store.scores_frame(name)
    cells = store.cells_frame(name)
    if name is None and len(scores):
        name = str(scores.study.iloc[0])
    settings = [s["name"] for s in config.get("intermediate", [])] or sorted(set(scores.intermediate.dropna()))
    families = {}
    for s in config.get("intermediate", []):
        fams = set()

        for t in s.get("tasks", []):
            fams.add(REGISTRY.get(t["task"]).family if t["task"] in REGISTRY else "?")
        families[s["name"]] = "none" if not fams else (fams.pop() if len(fams) == 1 else "mixed")
    for s, f in zip(scores.intermediate, scores.family):
        families.setdefault(s, f)
    targets = list(config.get("targets", [])) or sorted(set(scores[scores.phase == "target"].task))
    encoders = list(config.get("encoders", [])) or sorted(set(scores.encoder.dropna()))
    return StudyData(name or "study", scores, cells, settings, families, targets, encoders, config)


def verify_against_run_dirs(study_dir: Path, data: StudyData) -> tuple[int, list[str]]:
    """Compare the store with each finished run's own ``scores.json``; returns (runs checked, mismatches)."""
    import json

    df = data.scores[data.scores.phase == "target"]
    checked, problems = 0, []
    for cell, grp in df.groupby("cell"):
        run_dir = str(grp.run_dir.iloc[0]) if grp.run_dir.notna().any() else None
        path = Path(study_dir) / run_dir / "scores.json" if run_dir else None
        if path is None or not path.is_file():
            continue
        checked += 1
        scores = json.loads(path.read_text(encoding="utf-8"))
        for task, entry in scores.get("tasks", {}).items():
            expected = {("avg", "score"): entry.get("score")}
            for lang, metrics in entry.get("languages", {}).items():
                for metric, value in metrics.items():
                    expected[(lang, metric)] = value
            for (lang, metric), value in expected.items():
                got = grp[(grp.task == task) & (grp.language == lang) & (grp.metric == metric)].value
                if value is None:
                    continue
                if len(got) != 1 or not math.isclose(float(got.iloc[0]), float(value), rel_tol=0, abs_tol=1e-9):
                    problems.append(f"{cell} {task} {lang} {metric}: run dir {value}, store {list(got)}")
    return checked, problems


# -- the report ----------------------------------------------------------------------------


@dataclass
class Report:
    doc: Doc
    key_table: Table
    markdown: str
    html: str
    key_notes: list[str] = field(default_factory=list)  # what the key table cannot support, in words


@dataclass
class SettingRow:
    """One intermediate setting on one target: the seeds' task scores and the comparison with none."""

    setting: str
    family: str
    mean: float
    std: float | None
    n: int
    comparison: SeedComparison | None = None  # Δ vs none over seeds (None for none itself)
    trivial: float | None = None
    learnt: bool | None = None
    phase1_learnt: bool | None = None
    baseline_learnt: bool | None = None

    @property
    def delta(self) -> float | None:
        return self.comparison.mean if self.comparison is not None else None

    @property
    def interpretable(self) -> bool:
        """Δ is read only when both this cell and the baseline are above the trivial reference."""
        return self.learnt is not False and self.baseline_learnt is not False

    @property
    def starred(self) -> bool:
        return self.comparison is not None and self.interpretable and self.comparison.significant


def _paired_by_seed(data: StudyData, encoder: str, setting: str, target: str) -> dict[tuple[int, str], float]:
    """(seed, language) -> score; where a run stored no languages, (seed, 'avg') -> its task score."""
    langs = data.lang_scores(encoder, setting, target)
    if langs:
        return langs
    return {(s, "avg"): v for s, v in data.task_scores(encoder, setting, target).items()}


def _target_rows(data: StudyData, encoder: str, target: str) -> list[SettingRow]:
    """Per setting: mean/std over seeds, the trivial reference, and Δ vs none over seeds (unadjusted)."""
    base = _paired_by_seed(data, encoder, "none", target)
    trivial = data.trivial(encoder, target)
    rows = []
    for setting in data.settings:
        seeds = data.task_scores(encoder, setting, target)
        if not seeds:
            continue
        m, s = mean_std(list(seeds.values()))
        row = SettingRow(setting, data.families.get(setting, "?"), m, s, len(seeds), trivial=trivial,
                         learnt=is_learnt(m, trivial), phase1_learnt=data.phase1_learnt.get((encoder, setting)))
        if setting != "none" and base:
            row.comparison = compare_over_seeds(per_seed_deltas(_paired_by_seed(data, encoder, setting, target), base))
        rows.append(row)
    base_learnt = next((r.learnt for r in rows if r.setting == "none"), None)
    for r in rows:
        r.baseline_learnt = base_learnt
    return rows


def _adjust(rows: dict[Any, SettingRow]) -> None:
    """Holm over the interpretable comparisons of a family, written back into the rows."""
    family = {k: r.comparison for k, r in rows.items() if r.comparison is not None and r.interpretable}
    for k, c in adjust_family(family).items():
        rows[k].comparison = c


def fmt_interval(c: SeedComparison | None) -> str:
    if c is None:
        return "n/a"
    if not c.has_interval:
        return f"none ({c.n_seeds} seed{'s' if c.n_seeds != 1 else ''})"
    return f"[{c.low:+.2f}, {c.high:+.2f}]"


def fmt_p(c: SeedComparison | None) -> str:
    if c is None or c.p is None:
        return "n/a"
    adj = f"{c.p_adjusted:.3f}" if c.p_adjusted is not None else "n/a"
    return f"{c.p:.3f} / {adj}"


def fmt_learnt(flag: bool | None) -> str:
    return {True: "yes", False: "**not learnt**", None: "n/a"}[flag]


def key_cell(r: SettingRow) -> str:
    text = f"{r.mean:.2f}"
    if r.learnt is False:
        text += " [not learnt]"
    if r.delta is not None:
        if r.interpretable:
            text += f" ({r.delta:+.2f}{' *' if r.starred else ''})"
        else:
            text += f" (Δ {r.delta:+.2f} not interpreted)"
    return text


def _seed_sentence(n_seeds: int) -> str | None:
    if n_seeds >= MIN_SEEDS:
        return None
    return (f"**{n_seeds} seed{'s' if n_seeds != 1 else ''} per cell**: training noise cannot be separated from "
            f"the effect of an intermediate task, so no Δ in this report has an interval or a test, and none "
            f"should be read as an effect. A run with another seed can move a score by as much as the Δs shown; "
            f"at least {MIN_SEEDS} seeds are needed.")


def build_report(study_dir: str | Path, *, task: str | None = None, figures: bool = True) -> Report:
    """The study's report: overview, key table, per-target tables, XTREME score, per-language
    scores, code vs NLU, published numbers, phase-1 quality and budget, how to read it."""
    data = load_study_data(Path(study_dir))
    doc = Doc()
    _overview(doc, data, Path(study_dir))
    per_encoder, n_tests = _holm_family(data)
    key = _key_table(data, n_tests)
    heat: dict[str, dict[str, float | None]] = {}
    for encoder in data.encoders:
        prefix = f" ({encoder})" if len(data.encoders) > 1 else ""
        per_target = per_encoder[encoder]
        _target_tables(doc, data, per_target, prefix, n_tests)
        xtreme = _xtreme_scores(data, encoder)
        _key_rows(key, heat, data, encoder, per_target, xtreme, prefix)
        _xtreme_table(doc, data, xtreme, prefix)
        chosen = task or (data.targets[0] if data.targets else None)
        if chosen:
            _per_language(doc, data, encoder, chosen, prefix)
        _code_vs_nlu(doc, data, encoder, per_target, prefix)
        if is_xlmr_large(encoder):
            _published(doc, data, encoder, per_target)
    if figures and heat:
        doc.figure(_heatmap(heat, data.targets))
    _intermediate_quality(doc, data)
    _phase1_budget(doc, data)
    _how_to_read(doc)
    # the key table goes near the top, after the overview
    at = next(i for i, (kind, _) in enumerate(doc.blocks) if kind == "list") + 1
    notes = [n for n in (_seed_sentence(min(data.seed_counts or [0])),) if n is not None]
    doc.blocks[at:at] = [("h", (2, "Key table")), ("table", key), *(("p", n) for n in notes)]
    md = doc.markdown(fig_dir="figures")
    page = doc.html(f"Study report: {data.name}")
    return Report(doc, key, md, page, notes)


def _overview(doc: Doc, data: StudyData, study_dir: Path) -> None:
    """The title, what the study holds, the store check, what was capped and what failed."""
    cfg = data.config
    doc.h(1, f"Study report: {data.name}")
    if cfg.get("description"):
        doc.p(cfg["description"])
    cells = data.cells
    n_done = int((cells.status == "done").sum()) if len(cells) else 0
    n_failed = int((cells.status == "failed").sum()) if len(cells) else 0
    n_running = int(cells.status.isin(["running", "interrupted"]).sum()) if len(cells) else 0
    versions = sorted(set(data.scores.code_version.dropna())) if len(data.scores) else []
    doc.items([
        f"encoders: {', '.join(data.encoders)}",
        "intermediate settings: " + ", ".join(f"{s} ({data.families.get(s, '?')})" for s in data.settings),
        f"targets: {', '.join(data.targets)}",
        f"seeds: {', '.join(str(s) for s in data.seeds)}",
        f"phase runs done: {n_done}, failed: {n_failed}"
        + (f", started but not finished (running, interrupted or killed: re-run the study to finish): {n_running}"
           if n_running else ""),
        f"code version(s): {', '.join(versions) or 'n/a'}",
        "every number below is read from `results.sqlite` (metric `score`: accuracy, F1, or (EM+F1)/2 for QA)",
    ])
    checked, problems = verify_against_run_dirs(study_dir, data)
    if checked:
        doc.p(f"Checked: the store equals the `scores.json` of all {checked} finished run directories."
              if not problems else f"**Warning**: {len(problems)} store value(s) differ from the run directories: "
              + "; ".join(problems[:10]))
    caps = _budget_lines(cfg)
    doc.h(2, "What was capped")
    doc.items(caps or ["nothing: every phase ran with the pipeline's full (paper) budget"])
    if n_failed:
        failed = cells[cells.status == "failed"]
        doc.h(2, "Failed phase runs")
        doc.table(Table(["cell", "error"], [[str(c), str(e)] for c, e in zip(failed.cell, failed.error)]))


def _holm_family(data: StudyData) -> tuple[dict[str, dict[str, dict[str, SettingRow]]], int]:
    """Encoder -> target -> setting -> row, with every setting-vs-none comparison of the study
    adjusted as one Holm family; and how many tests that family holds."""
    per_encoder: dict[str, dict[str, dict[str, SettingRow]]] = {}
    family: dict[tuple[str, str, str], SettingRow] = {}
    for encoder in data.encoders:
        per_encoder[encoder] = {}
        for target in data.targets:
            rows = {r.setting: r for r in _target_rows(data, encoder, target)}
            per_encoder[encoder][target] = rows
            family.update({(encoder, target, s): r for s, r in rows.items() if s != "none"})
    _adjust(family)
    n_tests = sum(1 for r in family.values() if r.comparison is not None and r.comparison.p is not None)
    return per_encoder, n_tests


def _key_table(data: StudyData, n_tests: int) -> Table:
    partial = any(t not in data.targets for t in XTREME_TASKS)
    return Table(["encoder", "setting", "family", *data.targets,
                  "mean of targets (partial XTREME)" if partial else "XTREME score"], [],
                 caption=("mean over seeds of the task score; (Δ vs none, mean over seeds of the paired per-seed Δ); "
                          f"* = Holm-adjusted p < 0.05 among the {n_tests} tested setting-vs-none comparisons "
                          "(paired t-test over seeds); [not learnt] = less than "
                          f"{LEARNT_FRACTION:.0%} of the way from the trivial reference to 100, whose Δ is not "
                          "interpreted"))


def _target_tables(doc: Doc, data: StudyData, per_target: dict[str, dict[str, SettingRow]], prefix: str,
                   n_tests: int) -> None:
    """One table per target: each setting's mean ± std, Δ vs none with its interval and test."""
    doc.h(2, f"Zero-shot results per target{prefix}")
    doc.p("Mean ± std over seeds of the task score. Δ against the no-intermediate baseline (`none`), "
          "paired by seed: per seed the mean over languages of (setting − none), then a t-interval over "
          f"seeds (95%) and a paired t-test whose p is shown raw / Holm-adjusted over the {n_tests} "
          "setting-vs-none tests of this study. "
          f"'learnt' compares the mean with the target's trivial reference.")
    for target in data.targets:
        rows = list(per_target[target].values())
        if not rows:
            doc.p(f"**{target}**: no results yet.")
            continue
        doc.h(3, f"{target}{prefix}")
        trivial = rows[0].trivial
        doc.p(f"Trivial reference: {fmt(trivial)}" + (
            f" (learnt = at least {learnt_threshold(trivial):.2f})" if trivial is not None else
            " (not recorded for these runs)"))
        doc.table(Table(
            ["setting", "family", "mean ± std", "Δ", "95% CI of Δ (over seeds)", "p raw / Holm", "seeds",
             "learnt"],
            [[r.setting + (" [phase 1 not learnt]" if r.phase1_learnt is False else ""), r.family,
              fmt_mean_std(r.mean, r.std),
              fmt_signed(r.delta) + (" *" if r.starred else "") + ("" if r.interpretable or r.delta is None
                                                                   else " (not interpreted)"),
              fmt_interval(r.comparison), fmt_p(r.comparison), str(r.n), fmt_learnt(r.learnt)] for r in rows],
        ))
        for r in rows:
            if r.comparison is not None and r.comparison.note:
                doc.p(f"{r.setting}: {r.comparison.note}.")
                break


def _key_rows(key: Table, heat: dict[str, dict[str, float | None]], data: StudyData, encoder: str,
              per_target: dict[str, dict[str, SettingRow]], xtreme: dict[str, Any], prefix: str) -> None:
    """An encoder's rows of the key table (and its cells of the Δ heat map)."""
    trivial_row = [data.trivial(encoder, t) for t in data.targets]
    if any(v is not None for v in trivial_row):
        key.rows.append([encoder, "trivial reference", "", *[fmt(v) for v in trivial_row], ""])
    for setting in data.settings:
        cells_row = []
        any_value = False
        for target in data.targets:
            r = per_target[target].get(setting)
            if r is None:
                cells_row.append("n/a")
                continue
            any_value = True
            cells_row.append(key_cell(r))
            heat.setdefault(f"{setting}{prefix}", {})[target] = r.delta if r.interpretable else None
        if any_value:
            xs = xtreme.get(setting)
            p1 = data.phase1_learnt.get((encoder, setting))
            key.rows.append([encoder, setting + (" [phase 1 not learnt]" if p1 is False else ""),
                             data.families.get(setting, "?"), *cells_row,
                             fmt_mean_std(*xs["mean_std"]) if xs else "n/a"])


def _xtreme_table(doc: Doc, data: StudyData, xtreme: dict[str, Any], prefix: str) -> None:
    """The (partial) XTREME score per setting, with its own Holm family."""
    doc.h(2, f"XTREME score per intermediate setting{prefix}")
    n_targets = len(data.targets)
    missing = [t for t in XTREME_TASKS if t not in data.targets]
    if missing:
        doc.p(f"**Partial**: averaged over the {n_targets} target(s) run ({', '.join(data.targets)}), not all nine "
              f"XTREME tasks (missing: {', '.join(missing)}); not comparable with published XTREME scores.")
    else:
        doc.p("Averaged over all nine XTREME tasks (with the languages each run evaluated).")
    x_family = {s: xs["comparison"] for s, xs in xtreme.items() if xs.get("comparison") is not None}
    x_adjusted = adjust_family(x_family)
    rows = []
    for setting in data.settings:
        xs = xtreme.get(setting)
        if xs:
            c = x_adjusted.get(setting)
            rows.append([setting, data.families.get(setting, "?"), fmt_mean_std(*xs["mean_std"]),
                         fmt_signed(c.mean if c else None) + (" *" if c is not None and c.significant else ""),
                         fmt_interval(c) if setting != "none" else "", fmt_p(c) if setting != "none" else "",
                         str(xs["n"])])
    doc.table(Table(["setting", "family", "score (mean ± std over seeds)", "Δ vs none", "95% CI of Δ",
                     "p raw / Holm", "seeds"], rows,
                    caption="per seed the mean over targets; Δ paired by seed; Holm over this table's "
                            f"{sum(1 for c in x_adjusted.values() if c is not None and c.p is not None)} tests; "
                            "not-learnt targets are included in the mean"))


def _how_to_read(doc: Doc) -> None:
    doc.h(2, "How to read this")
    doc.items([
        "Task score per run = mean over the languages that run evaluated; see the per-language table for which.",
        "The unit of replication is the training run (the seed): every language of a run is scored by the same "
        "model, so languages are not independent replicates. Per seed, Δ = mean over the languages both runs "
        "scored of (setting − none with the same seed); the 95% interval is a t-interval over those per-seed Δs "
        "and p a two-sided paired t-test (a bootstrap over 3–5 seeds has too few distinct resamples and gives "
        "intervals that are too narrow). Variation across test examples is not included.",
        f"Fewer than {MIN_SEEDS} seeds: no interval, no test, no star. Equal Δ in every seed (zero spread, "
        "e.g. the same run repeated): a zero-width interval and no test, since no noise was measured.",
        "Many comparisons: a star needs a Holm-adjusted p < 0.05 within its table's family (all setting-vs-none "
        "comparisons of the study; the XTREME-score table; the code-vs-NLU table), and each caption says how "
        "many tests the family holds.",
        "Trivial reference: what a predictor that learnt nothing scores on the same gold files — the majority "
        "tag of the English training data on every token (all-O for PAN-X), the majority label, chance for "
        "multiple choice and Tatoeba (1 / pool size), empty answers for QA. A cell below "
        f"reference + {LEARNT_FRACTION:.0%} × (100 − reference) is flagged not learnt and its Δ is not "
        "interpreted (no star). A phase-1 task is flagged the same way when its own quality after phase 1 is "
        "not that far above its quality with the fresh head or decoder (and chance, for multiple choice), or "
        "when the interval over seeds of its per-seed gain holds 0 (one lucky seed cannot carry the mean).",
        "Numbers are from the result store; the run directories under `runs/` hold configs, logs and predictions.",
    ])


def _budget_lines(cfg: dict[str, Any]) -> list[str]:
    if not cfg:
        return []

    return Budgets(**cfg.get("budgets", {})).describe()


def _xtreme_scores(data: StudyData, encoder: str) -> dict[str, dict[str, Any]]:
    """Per setting: per seed the mean of the task scores over the targets run; then mean ± std and
    the comparison with none paired by seed."""
    out: dict[str, dict[str, Any]] = {}
    per_setting: dict[str, dict[int, float]] = {}
    for setting in data.settings:
        by_target = {t: data.task_scores(encoder, setting, t) for t in data.targets}
        seeds = set.intersection(*(set(v) for v in by_target.values())) if by_target else set()
        if not seeds:
            continue
        per_seed = {s: float(np.mean([by_target[t][s] for t in data.targets])) for s in sorted(seeds)}
        per_setting[setting] = per_seed
    base = per_setting.get("none")
    for setting, per_seed in per_setting.items():
        m, s = mean_std(list(per_seed.values()))
        comparison = None
        if base and setting != "none":
            comparison = compare_over_seeds({k: v - base[k] for k, v in per_seed.items() if k in base})
        out[setting] = {"mean_std": (m, s), "comparison": comparison, "n": len(per_seed), "per_seed": per_seed}
    return out


def _per_language(doc: Doc, data: StudyData, encoder: str, task: str, prefix: str) -> None:
    doc.h(2, f"Per-language breakdown: {task}{prefix}")
    settings = [s for s in data.settings if data.lang_scores(encoder, s, task)]
    if not settings:
        doc.p(f"No per-language results for {task}.")
        return
    per = {s: data.lang_scores(encoder, s, task) for s in settings}
    langs = sorted({lang for v in per.values() for (_, lang) in v})
    rows = []
    for lang in langs:
        row = [lang]
        for s in settings:
            vals = [v for (seed, lg), v in per[s].items() if lg == lang]
            row.append(fmt(float(np.mean(vals))) if vals else "n/a")
        rows.append(row)
    doc.table(Table(["language", *settings], rows, caption=f"{task}: mean over seeds per language"))


def _code_vs_nlu(doc: Doc, data: StudyData, encoder: str, per_target: dict[str, dict[str, SettingRow]],
                 prefix: str) -> None:
    doc.h(2, f"Code generation vs language understanding{prefix}")
    fams = set(data.families.get(s) for s in data.settings)
    if not ({"code", "nlu"} <= fams):
        doc.p("The study needs at least one code and one NLU intermediate setting for this comparison.")
        return
    found: dict[str, tuple[list[SettingRow], list[SettingRow], SeedComparison | None, bool]] = {}
    for target in data.targets:
        rs = per_target.get(target, {})
        code = [r for r in rs.values() if r.family == "code" and r.comparison is not None]
        nlu = [r for r in rs.values() if r.family == "nlu" and r.comparison is not None]
        if not code or not nlu:
            continue
        # per seed: mean Δ of the code settings − mean Δ of the NLU settings (the baseline cancels)
        seeds = set.intersection(*(set(r.comparison.per_seed) for r in code + nlu))
        diff = {s: float(np.mean([r.comparison.per_seed[s] for r in code])
                         - np.mean([r.comparison.per_seed[s] for r in nlu])) for s in sorted(seeds)}
        interpretable = all(r.interpretable for r in code + nlu)
        found[target] = (code, nlu, compare_over_seeds(diff), interpretable)
    adjusted = adjust_family({t: c for t, (_, _, c, ok) in found.items() if ok})
    m = sum(1 for c in adjusted.values() if c is not None and c.p is not None)
    doc.p("Family mean = mean Δ over the family's settings; difference = code − NLU per seed (the mean Δ of the "
          "code settings minus that of the NLU settings in the same seed), then a t-interval over seeds; "
          f"* = Holm-adjusted p < 0.05 among the {m} targets tested. A target where any cell is not learnt is "
          "not interpreted.")
    rows = []
    for target, (code, nlu, c, ok) in found.items():
        c = adjusted.get(target, c) if ok else c
        best_code = max(code, key=lambda r: r.delta)
        best_nlu = max(nlu, key=lambda r: r.delta)
        rows.append([
            target,
            fmt_signed(float(np.mean([r.delta for r in nlu]))),
            fmt_signed(float(np.mean([r.delta for r in code]))),
            f"{best_nlu.setting} ({best_nlu.delta:+.2f})",
            f"{best_code.setting} ({best_code.delta:+.2f})",
            (fmt_signed(c.mean) + (" *" if ok and c.significant else "") + ("" if ok else " (not interpreted)"))
            if c else "n/a",
            fmt_interval(c),
            fmt_p(c),
        ])
    doc.table(Table(["target", "NLU mean Δ", "code mean Δ", "best NLU", "best code", "code − NLU",
                     "95% CI (over seeds)", "p raw / Holm"], rows))
    notes = {c.note for _, _, c, _ in found.values() if c is not None and c.note}
    for note in sorted(notes):
        doc.p(f"code − NLU: {note}.")


# phase-1 quality: which metric decides "it learnt", higher is better (x100 scales); else the loss
PHASE1_PRIMARY = ("accuracy", "f1", "codebleu", "bleu", "mrr", "exact_match")
PHASE1_LOSSES = ("loss", "dev_loss")
LOSS_REDUCTION = 0.10  # a loss-only task counts as learnt when its dev loss fell by at least 10%


def _gain_over_seeds(grp: Any, metric: str) -> SeedComparison | None:
    """The per-seed change (after phase 1 − untrained) of one phase-1 metric, over seeds."""
    after = {int(r.seed): float(r.value) for r in grp[grp.metric == metric].itertuples() if r.value == r.value}
    before = {int(r.seed): float(r.value) for r in grp[grp.metric == metric + UNTRAINED_SUFFIX].itertuples()
              if r.value == r.value}
    shared = sorted(set(after) & set(before))
    return compare_over_seeds({s: after[s] - before[s] for s in shared}) if shared else None


def _gain_excludes_zero(gain: SeedComparison | None, lower_is_better: bool = False) -> bool:
    """False only when an interval over seeds exists and holds 0 (or a change the wrong way)."""
    if gain is None or not gain.has_interval:
        return True
    return gain.high < 0 if lower_is_better else gain.low > 0


def phase1_verdicts(df: Any) -> dict[tuple[str, str, str], tuple[str, float, float | None, bool | None]]:
    """(encoder, setting, task) -> (metric, mean after, reference, learnt) from phase-1 rows.

    The reference is the same metric with the fresh head or decoder (``_untrained``), and for
    multiple-choice tasks at least chance (100 / choices). Learnt: the mean after phase 1 is
    LEARNT_FRACTION of the way from the reference to 100 (a loss: LOSS_REDUCTION lower) and,
    with an interval over seeds, the per-seed gain over the untrained metric excludes 0 (so that
    one lucky seed cannot carry the mean past the line)."""

    out: dict[tuple[str, str, str], tuple[str, float, float | None, bool | None]] = {}
    for (encoder, setting, task), grp in df.groupby(["encoder", "intermediate", "task"], sort=False):
        if task == BUDGET_TASK:
            continue
        means = {m: float(g.value.mean()) for m, g in grp.groupby("metric") if g.value.notna().any()}
        metric = next((m for m in PHASE1_PRIMARY if m in means), None)
        if metric is not None:
            ref = means.get(metric + UNTRAINED_SUFFIX)
            t = REGISTRY.get(task) if task in REGISTRY else None
            n = num_choices(t) if metric == "accuracy" and t is not None else None
            if n:  # a multiple-choice task: chance is a floor for "learnt"
                ref = max(ref if ref is not None else 0.0, 100.0 / n)
            learnt, lower_is_better = is_learnt(means[metric], ref), False
        else:
            metric = next((m for m in PHASE1_LOSSES if m in means), None)
            if metric is None:
                continue
            ref = means.get(metric + UNTRAINED_SUFFIX)
            learnt = None if ref is None else means[metric] <= (1 - LOSS_REDUCTION) * ref
            lower_is_better = True
        if learnt and not _gain_excludes_zero(_gain_over_seeds(grp, metric), lower_is_better):
            learnt = False
        out[(encoder, setting, task)] = (metric, means[metric], ref, learnt)
    return out


def _intermediate_quality(doc: Doc, data: StudyData) -> None:
    doc.h(2, "Intermediate tasks: their own quality (phase 1)")
    df = data.scores[(data.scores.phase == "intermediate") & (data.scores.task != BUDGET_TASK)]
    if not len(df):
        doc.p("No phase-1 metrics recorded (no intermediate settings, or none finished).")
        return
    verdicts = phase1_verdicts(df)
    by_task = {key: grp for key, grp in df.groupby(["encoder", "intermediate", "task"], sort=False)}
    groups = {key: list(grp.value) for key, grp in
              df.groupby(["encoder", "intermediate", "task", "metric"], sort=False)}
    rows = []
    for (encoder, setting, task, metric), values in groups.items():
        if metric.endswith(UNTRAINED_SUFFIX):
            continue
        m, s = mean_std(values)
        before = groups.get((encoder, setting, task, metric + UNTRAINED_SUFFIX))
        gain = _gain_over_seeds(by_task[(encoder, setting, task)], metric) if before else None
        verdict = verdicts.get((encoder, setting, task))
        decides = verdict is not None and verdict[0] == metric
        rows.append([setting, task, metric, fmt_mean_std(*mean_std(before)) if before else "",
                     fmt_mean_std(m, s), fmt_signed(gain.mean) if gain else "", fmt_interval(gain) if gain else "",
                     str(len(values)), (fmt(verdict[2]) if decides else ""),
                     (fmt_learnt(verdict[3]) if decides else ""), encoder])
    order = {s: i for i, s in enumerate(data.settings)}
    rows.sort(key=lambda r: (order.get(r[0], 99), r[1], r[2]))
    doc.table(Table(["setting", "task", "metric", "untrained", "after phase 1 (mean ± std)", "gain",
                     "95% CI of gain (over seeds)", "seeds", "reference", "learnt", "encoder"],
                    rows, caption="dev/held-out metrics of the intermediate task itself, from each phase-1 run; "
                    "'untrained': the same metric with the fresh head or decoder, before phase 1; 'gain': per "
                    "seed after − untrained, its mean and t-interval over seeds; 'learnt' is "
                    "judged on one metric per task (accuracy, F1, CodeBLEU, BLEU, MRR or EM, else the loss) "
                    f"against the reference: {LEARNT_FRACTION:.0%} of the way to 100 above it (a loss: "
                    f"{LOSS_REDUCTION:.0%} lower), with a gain whose interval excludes 0"))


def _phase1_budget(doc: Doc, data: StudyData) -> None:
    df = data.scores[(data.scores.phase == "intermediate") & (data.scores.task == BUDGET_TASK)]
    if not len(df):
        return
    doc.h(2, "Phase-1 budget actually used")
    rows = []
    order = {s: i for i, s in enumerate(data.settings)}
    for (encoder, setting), grp in sorted(df.groupby(["encoder", "intermediate"], sort=False),
                                          key=lambda kv: order.get(kv[0][1], 99)):
        vals = {m: g.value.tolist() for m, g in grp.groupby("metric")}

        def show(metric: str) -> str:
            v = vals.get(metric)
            if not v:
                return "n/a"
            lo, hi = min(v), max(v)
            return f"{lo:.0f}" if lo == hi else f"{lo:.0f}–{hi:.0f}"

        seen, feats = vals.get("examples_seen"), vals.get("train_features")
        passes = fmt(float(np.mean(seen)) / float(np.mean(feats))) if seen and feats else "n/a"
        rows.append([setting, show("steps"), show("examples_seen"), show("train_features"), passes,
                     str(len(vals.get("steps", []))), encoder])
    doc.table(Table(["setting", "optimizer steps", "examples seen", "training features", "passes over the data",
                     "runs", "encoder"], rows,
                    caption="examples seen = steps × batch size × accumulation × processes; a budget of "
                            "`examples_seen` gives every setting the same number"))


def _published(doc: Doc, data: StudyData, encoder: str, per_target: dict[str, dict[str, SettingRow]]) -> None:
    doc.h(2, "Published numbers side by side (XLM-R Large)")
    headers = ["target", "ours: none", "ours: best setting"] + [p.name for p in PUBLISHED]
    rows = []
    for target in data.targets:
        rs = per_target.get(target, {})
        qa = target in ("xquad", "mlqa", "tydiqa")
        if qa:  # published QA numbers are F1: compare F1 with F1
            def val(setting: str) -> float | None:
                v = data.lang_scores(encoder, setting, target, metric="f1")
                return float(np.mean(list(v.values()))) if v else None
        else:
            def val(setting: str) -> float | None:
                r = rs.get(setting)
                return r.mean if r else None
        best = max((r for r in rs.values() if r.setting != "none"), key=lambda r: r.mean, default=None)
        rows.append([
            target + (" (F1)" if qa else ""), fmt(val("none")),
            f"{fmt(val(best.setting))} ({best.setting})" if best else "n/a",
            *[fmt(p.scores.get(target)) for p in PUBLISHED],
        ])
    doc.table(Table(headers, rows))
    doc.items([f"{p.name}: {p.source}. {p.notes}" for p in PUBLISHED]
              + ["Published figures average over all test languages of full test sets; ours over the languages "
                 "and examples evaluated here."])


def _heatmap(heat: dict[str, dict[str, float | None]], targets: list[str]) -> Figure:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [s for s in heat if s.split(" (")[0] != "none"]
    if not rows:
        rows = list(heat)
    mat = np.array([[np.nan if heat[r].get(t) is None else heat[r][t] for t in targets] for r in rows], dtype=float)
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(targets), 1.0 + 0.5 * len(rows)))
    finite = mat[np.isfinite(mat)]
    lim = float(np.abs(finite).max()) if finite.size else 1.0
    lim = lim or 1.0
    im = ax.imshow(mat, cmap="RdBu", vmin=-lim, vmax=lim, aspect="auto")
    ax.set_xticks(range(len(targets)), targets, rotation=30, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    for i in range(len(rows)):
        for j in range(len(targets)):
            if np.isfinite(mat[i, j]):
                ax.text(j, i, f"{mat[i, j]:+.1f}", ha="center", va="center", fontsize=8)
    fig.colorbar(im, ax=ax, label="Δ vs none")
    ax.set_title("Intermediate setting × target: Δ of the task score")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return Figure("heatmap", buf.getvalue(), "Δ (setting − none) of the mean task score, per target")


def write_report(study_dir: str | Path, *, task: str | None = None, out_dir: str | Path | None = None) -> tuple[Path, Path, Report]:
    """Write report.md (+ figures/) and the self-contained report.html; returns their paths."""
    study_dir = Path(study_dir)
    out = Path(out_dir) if out_dir else study_dir
    out.mkdir(parents=True, exist_ok=True)
    report = build_report(study_dir, task=task)
    figs = out / "figures"
    for kind, value in report.doc.blocks:
        if kind == "fig":
            figs.mkdir(exist_ok=True)
            (figs / f"{value.name}.png").write_bytes(value.png)
    md_path, html_path = out / "report.md", out / "report.html"
    md_path.write_text(report.markdown, encoding="utf-8")
    html_path.write_text(report.html, encoding="utf-8")
    return md_path, html_path, report
