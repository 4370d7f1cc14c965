"""``xstilts score``: score predictions in XTREME's submission layout against gold labels."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer


class SeqevalMode(str, Enum):
    legacy = "legacy"
    v1 = "v1"


def _split_tasks(tasks: list[str] | None) -> list[str] | None:
    if not tasks:
        return None
    out: list[str] = []
    for item in tasks:
        out.extend(x for x in item.replace(",", " ").split() if x)
    return out or None


def score(
    predictions: Annotated[
        Path,
        typer.Option("--predictions", "-p", help="Prediction folder: {task}/test-{lang}.tsv|json."),
    ],
    labels: Annotated[
        Path | None,
        typer.Option(
            "--labels", "-l", help="Gold-label folder in the same layout (XTREME's label folder)."
        ),
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            "-d",
            help="Instead of --labels: a data folder (e.g. ../shared/data) whose test files the readers turn into gold.",
        ),
    ] = None,
    tasks: Annotated[
        list[str] | None,
        typer.Option(
            "--tasks",
            "-t",
            help="Tasks to score (repeat or comma-separate). Default: every XTREME task with a folder in both trees.",
        ),
    ] = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json", help="Print the scores as JSON (the shape other xstilts tools read)."
        ),
    ] = False,
    seqeval_mode: Annotated[
        SeqevalMode,
        typer.Option(
            "--seqeval-mode",
            case_sensitive=False,
            help=(
                "Chunking for UDPOS/PAN-X F1. 'legacy' (default) is seqeval 0.0.12, which produced "
                "XTREME's published UDPOS numbers; 'v1' is seqeval >= 0.0.16 (e.g. 1.2.2), which scores "
                "the tag X after the first sentence (and CCONJ next to SCONJ) differently. "
                "PAN-X scores are the same in both."
            ),
        ),
    ] = SeqevalMode.legacy,
) -> None:
    """Score predictions with XTREME evaluate.py semantics; print per-language scores and the XTREME score.

    Languages whose prediction or label file is absent are listed as missing: the task score is then over the languages present (marked partial) and there is no XTREME score.
    """
    from xstilts.evaluation.scorer import results_to_json, score_tree

    if (labels is None) == (data is None):
        raise typer.BadParameter("give exactly one of --labels and --data")
    results = score_tree(
        predictions, labels, _split_tasks(tasks), seqeval_mode=seqeval_mode.value, data_dir=data
    )
    report = results_to_json(results)
    if as_json:
        typer.echo(json.dumps(report, indent=2, ensure_ascii=False))
        return
    _print_tables(results, report, seqeval_mode.value)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _print_tables(results, report, seqeval_mode: str) -> None:
    from rich.console import Console
    from rich.table import Table

    from xstilts.evaluation.scorer import average_metrics
    from xstilts.tasks.xtreme import XTREME_TASKS

    console = Console(highlight=False)
    for r in results:
        metric_names: list[str] = []
        for metrics in r.languages.values():
            for name in metrics:
                if name not in metric_names:
                    metric_names.append(name)
        title = f"{r.task}: score {_fmt(r.score)}"
        if r.partial:
            title += f" (partial {len(r.languages)}/{len(r.languages) + len(r.missing)})"
        table = Table(title=title, title_justify="left")
        table.add_column("lang")
        for name in metric_names:
            table.add_column(name, justify="right")
        for lang, metrics in r.languages.items():
            table.add_row(lang, *(_fmt(metrics.get(n)) for n in metric_names))
        if r.languages:
            avg = average_metrics(r.languages)
            table.add_row("avg", *(_fmt(avg.get(n)) for n in metric_names), style="bold")
        notes = []
        if r.missing:
            notes.append("missing: " + " ".join(r.missing))
        if r.unanswered:
            notes.append(
                "unanswered questions scored 0: "
                + ", ".join(f"{k} {v}" for k, v in r.unanswered.items())
            )
        if r.ignored:
            notes.append("not a language of this task, ignored: " + " ".join(r.ignored))
        if r.task in ("udpos", "panx"):
            notes.append(f"seqeval mode: {seqeval_mode}")
        console.print(table)
        for note in notes:
            console.print(f"  {note}")
        console.print()
    xs = report["xtreme_score"]
    if xs is not None:
        console.print(f"[bold]XTREME score: {xs:.2f}[/bold]")
    else:
        scored = [r.task for r in results if not r.partial and r.score is not None]
        lacking = [t for t in XTREME_TASKS if t not in scored]
        console.print(
            "XTREME score: - (needs all nine tasks in all their languages; "
            f"incomplete or absent: {' '.join(lacking)})"
        )


def register(app: typer.Typer) -> None:
    """Adds ``score`` to the app."""
    app.command("score")(score)
