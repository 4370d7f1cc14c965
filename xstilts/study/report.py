"""The study report: Markdown and a self-contained HTML page, built only from the result store.

Every number comes from ``results.sqlite`` (metric ``score``: the number that enters the XTREME
score), so the report can be checked against the store; the figures are embedded as base64 PNG.

Statistics:

* per target and intermediate setting: mean ± sample std (ddof=1) over seeds of the task score
  (the run's average over its evaluated languages);
* Δ = setting − ``none`` (same encoder). Its 95% confidence interval is a **paired bootstrap**:
  the resampling unit is the (seed, language) pair; for each pair present in both the setting
  and the baseline, d = setting − baseline; we draw n pairs with replacement 10,000 times and
  take the 2.5th and 97.5th percentiles of the mean of d. This captures variation across seeds
  and languages, not across test examples (the store holds no per-example scores). With a
  single seed and a single language the interval collapses to the point.
* code vs NLU: per (seed, language) the family value is the mean over the family's settings;
  the family difference (code − NLU) gets the same paired bootstrap; "significant" means the
  95% interval excludes 0.
"""

from __future__ import annotations

import base64
import html
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xstilts.study.published import PUBLISHED, is_xlmr_large
from xstilts.study.store import UNTRAINED_SUFFIX

N_BOOTSTRAP = 10_000
BOOTSTRAP_SEED = 0
XTREME_TARGETS = ("xnli", "pawsx", "udpos", "panx", "xquad", "mlqa", "tydiqa", "bucc2018", "tatoeba")


# -- statistics ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PairedCI:
    delta: float
    low: float
    high: float
    n_pairs: int

    @property
    def significant(self) -> bool:
        return self.low > 0 or self.high < 0


def paired_bootstrap(
    treatment: dict[Any, float],
    control: dict[Any, float],
    *,
    n_resamples: int = N_BOOTSTRAP,
    seed: int = BOOTSTRAP_SEED,
    alpha: float = 0.05,
) -> PairedCI | None:
    """Mean of paired differences with a percentile bootstrap CI; pairs are the shared keys."""
    keys = sorted(set(treatment) & set(control), key=str)
    if not keys:
        return None
    d = np.array([treatment[k] - control[k] for k in keys], dtype=float)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(d), size=(n_resamples, len(d)))
    means = d[idx].mean(axis=1)
    low, high = np.percentile(means, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return PairedCI(float(d.mean()), float(low), float(high), len(d))


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


def fmt_ci(ci: PairedCI | None) -> str:
    return "n/a" if ci is None else f"[{ci.low:+.2f}, {ci.high:+.2f}]"


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
    import re

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


def load_study_data(study_dir: Path) -> StudyData:
    import json

    from xstilts.errors import MissingDataError
    from xstilts.study.executors import STORE_FILE, STUDY_FILE
    from xstilts.study.store import ResultStore

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
        from xstilts.tasks import REGISTRY

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


def _setting_rows(data: StudyData, encoder: str, target: str) -> list[dict[str, Any]]:
    """Per setting: mean/std over seeds, Δ vs none, bootstrap CI."""
    base_lang = data.lang_scores(encoder, "none", target)
    base_task = data.task_scores(encoder, "none", target)
    out = []
    for setting in data.settings:
        seeds = data.task_scores(encoder, setting, target)
        if not seeds:
            continue
        m, s = mean_std(list(seeds.values()))
        row: dict[str, Any] = {"setting": setting, "family": data.families.get(setting, "?"), "mean": m, "std": s,
                               "n": len(seeds), "delta": None, "ci": None}
        if setting != "none" and base_task:
            bm, _ = mean_std(list(base_task.values()))
            row["delta"] = m - bm
            langs = data.lang_scores(encoder, setting, target)
            row["ci"] = paired_bootstrap(langs, base_lang) if langs and base_lang else paired_bootstrap(seeds, base_task)
        out.append(row)
    return out


def build_report(study_dir: str | Path, *, task: str | None = None, figures: bool = True) -> Report:
    data = load_study_data(Path(study_dir))
    doc = Doc()
    cfg = data.config
    doc.h(1, f"Study report: {data.name}")
    if cfg.get("description"):
        doc.p(cfg["description"])
    cells = data.cells
    n_done = int((cells.status == "done").sum()) if len(cells) else 0
    n_failed = int((cells.status == "failed").sum()) if len(cells) else 0
    n_running = int((cells.status == "running").sum()) if len(cells) else 0
    versions = sorted(set(data.scores.code_version.dropna())) if len(data.scores) else []
    doc.items([
        f"encoders: {', '.join(data.encoders)}",
        "intermediate settings: " + ", ".join(f"{s} ({data.families.get(s, '?')})" for s in data.settings),
        f"targets: {', '.join(data.targets)}",
        f"seeds: {', '.join(str(s) for s in cfg.get('seeds', sorted(set(data.scores.seed.dropna()))))}",
        f"phase runs done: {n_done}, failed: {n_failed}"
        + (f", started but not finished (running, or killed: re-run the study to finish): {n_running}" if n_running else ""),
        f"code version(s): {', '.join(versions) or 'n/a'}",
        "every number below is read from `results.sqlite` (metric `score`: accuracy, F1, or (EM+F1)/2 for QA)",
    ])
    checked, problems = verify_against_run_dirs(Path(study_dir), data)
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

    partial = any(t not in data.targets for t in XTREME_TARGETS)
    key = Table(["encoder", "setting", "family", *data.targets,
                 "mean of targets (partial XTREME)" if partial else "XTREME score"], [],
                caption="mean over seeds of the task score; (Δ vs none)")
    heat: dict[str, dict[str, float | None]] = {}
    for encoder in data.encoders:
        prefix = f" ({encoder})" if len(data.encoders) > 1 else ""
        doc.h(2, f"Zero-shot results per target{prefix}")
        doc.p("Mean ± std over seeds; Δ against the no-intermediate baseline (`none`); 95% CI of Δ from a "
              "paired bootstrap over (seed, language) pairs (10,000 resamples).")
        per_target = {}
        for target in data.targets:
            rows = _setting_rows(data, encoder, target)
            per_target[target] = {r["setting"]: r for r in rows}
            if not rows:
                doc.p(f"**{target}**: no results yet.")
                continue
            doc.h(3, f"{target}{prefix}")
            doc.table(Table(
                ["setting", "family", "mean ± std", "Δ", "95% CI of Δ", "seeds"],
                [[r["setting"], r["family"], fmt_mean_std(r["mean"], r["std"]), fmt_signed(r["delta"]),
                  fmt_ci(r["ci"]), str(r["n"])] for r in rows],
            ))
        xtreme = _xtreme_scores(data, encoder)
        for setting in data.settings:
            cells_row = []
            any_value = False
            for target in data.targets:
                r = per_target[target].get(setting)
                if r is None:
                    cells_row.append("n/a")
                    continue
                any_value = True
                cells_row.append(f"{r['mean']:.2f}" + (f" ({r['delta']:+.2f})" if r["delta"] is not None else ""))
                heat.setdefault(f"{setting}{prefix}", {})[target] = r["delta"]
            if any_value:
                xs = xtreme.get(setting)
                key.rows.append([encoder, setting, data.families.get(setting, "?"), *cells_row,
                                 fmt_mean_std(*xs["mean_std"]) if xs else "n/a"])

        doc.h(2, f"XTREME score per intermediate setting{prefix}")
        n_targets = len(data.targets)
        missing = [t for t in XTREME_TARGETS if t not in data.targets]
        if missing:
            doc.p(f"**Partial**: averaged over the {n_targets} target(s) run ({', '.join(data.targets)}), not all nine "
                  f"XTREME tasks (missing: {', '.join(missing)}); not comparable with published XTREME scores.")
        else:
            doc.p("Averaged over all nine XTREME tasks (with the languages each run evaluated).")
        rows = []
        for setting in data.settings:
            xs = xtreme.get(setting)
            if xs:
                rows.append([setting, data.families.get(setting, "?"), fmt_mean_std(*xs["mean_std"]),
                             fmt_signed(xs["delta"]), str(xs["n"])])
        doc.table(Table(["setting", "family", "score (mean ± std over seeds)", "Δ vs none", "seeds"], rows))

        chosen = task or (data.targets[0] if data.targets else None)
        if chosen:
            _per_language(doc, data, encoder, chosen, prefix)
        _code_vs_nlu(doc, data, encoder, per_target, prefix)
        if is_xlmr_large(encoder):
            _published(doc, data, encoder, per_target)

    if figures and heat:
        doc.figure(_heatmap(heat, data.targets))
    _intermediate_quality(doc, data)
    doc.h(2, "How to read this")
    doc.items([
        "Task score per run = mean over the languages that run evaluated; see the per-language table for which.",
        "Bootstrap: resampling unit = (seed, language) pair, paired between setting and baseline; "
        "variation across test examples is not included.",
        "Numbers are from the result store; the run directories under `runs/` hold configs, logs and predictions.",
    ])
    # the key table goes near the top, after the overview
    at = next(i for i, (kind, _) in enumerate(doc.blocks) if kind == "list") + 1
    doc.blocks[at:at] = [("h", (2, "Key table")), ("table", key)]
    md = doc.markdown(fig_dir="figures")
    page = doc.html(f"Study report: {data.name}")
    return Report(doc, key, md, page)


def _budget_lines(cfg: dict[str, Any]) -> list[str]:
    if not cfg:
        return []
    from xstilts.study.study_config import Budgets

    return Budgets(**cfg.get("budgets", {})).describe()


def _xtreme_scores(data: StudyData, encoder: str) -> dict[str, dict[str, Any]]:
    """Per setting: per seed the mean of the task scores over the targets run; then mean ± std."""
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
        delta = None
        if base and setting != "none":
            delta = m - mean_std(list(base.values()))[0]
        out[setting] = {"mean_std": (m, s), "delta": delta, "n": len(per_seed), "per_seed": per_seed}
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


def _family_values(data: StudyData, encoder: str, target: str, family: str) -> dict[tuple[int, str], float]:
    members = [s for s in data.settings if data.families.get(s) == family]
    per = [data.lang_scores(encoder, s, target) for s in members]
    per = [p for p in per if p]
    if not per:
        return {}
    keys = set.intersection(*(set(p) for p in per))
    return {k: float(np.mean([p[k] for p in per])) for k in keys}


def _code_vs_nlu(doc: Doc, data: StudyData, encoder: str, per_target: dict[str, dict[str, Any]], prefix: str) -> None:
    doc.h(2, f"Code generation vs language understanding{prefix}")
    fams = set(data.families.get(s) for s in data.settings)
    if not ({"code", "nlu"} <= fams):
        doc.p("The study needs at least one code and one NLU intermediate setting for this comparison.")
        return
    doc.p("Family mean = mean Δ over the family's settings; difference = code − NLU, paired bootstrap over "
          "(seed, language) of the family means; * = 95% CI excludes 0.")
    rows = []
    for target in data.targets:
        rs = per_target.get(target, {})

        def fam(f: str) -> list[dict[str, Any]]:
            return [r for r in rs.values() if r["family"] == f and r["delta"] is not None]

        code, nlu = fam("code"), fam("nlu")
        if not code or not nlu:
            continue
        best_code = max(code, key=lambda r: r["delta"])
        best_nlu = max(nlu, key=lambda r: r["delta"])
        ci = paired_bootstrap(_family_values(data, encoder, target, "code"), _family_values(data, encoder, target, "nlu"))
        rows.append([
            target,
            fmt_signed(float(np.mean([r["delta"] for r in nlu]))),
            fmt_signed(float(np.mean([r["delta"] for r in code]))),
            f"{best_nlu['setting']} ({best_nlu['delta']:+.2f})",
            f"{best_code['setting']} ({best_code['delta']:+.2f})",
            (fmt_signed(ci.delta) + (" *" if ci.significant else "")) if ci else "n/a",
            fmt_ci(ci),
        ])
    doc.table(Table(["target", "NLU mean Δ", "code mean Δ", "best NLU", "best code", "code − NLU", "95% CI"], rows))


def _intermediate_quality(doc: Doc, data: StudyData) -> None:
    doc.h(2, "Intermediate tasks: their own quality (phase 1)")
    df = data.scores[data.scores.phase == "intermediate"]
    if not len(df):
        doc.p("No phase-1 metrics recorded (no intermediate settings, or none finished).")
        return
    groups = {key: list(grp.value) for key, grp in
              df.groupby(["encoder", "intermediate", "task", "metric"], sort=False)}
    rows = []
    for (encoder, setting, task, metric), values in groups.items():
        if metric.endswith(UNTRAINED_SUFFIX):
            continue
        m, s = mean_std(values)
        before = groups.get((encoder, setting, task, metric + UNTRAINED_SUFFIX))
        rows.append([setting, task, metric, fmt_mean_std(*mean_std(before)) if before else "",
                     fmt_mean_std(m, s), str(len(values)), encoder])
    order = {s: i for i, s in enumerate(data.settings)}
    rows.sort(key=lambda r: (order.get(r[0], 99), r[1], r[2]))
    doc.table(Table(["setting", "task", "metric", "untrained", "after phase 1 (mean ± std)", "seeds", "encoder"],
                    rows, caption="dev/held-out metrics of the intermediate task itself, from each phase-1 run; "
                    "'untrained': the same metric with the fresh head or decoder, before phase 1"))


def _published(doc: Doc, data: StudyData, encoder: str, per_target: dict[str, dict[str, Any]]) -> None:
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
                return r["mean"] if r else None
        best = max((r for r in rs.values() if r["setting"] != "none"), key=lambda r: r["mean"], default=None)
        rows.append([
            target + (" (F1)" if qa else ""), fmt(val("none")),
            f"{fmt(val(best['setting']))} ({best['setting']})" if best else "n/a",
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
