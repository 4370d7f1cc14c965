"""``xstilts report STUDY_DIR``: report.md and a self-contained report.html from the result store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def print_key_table(report, console) -> None:
    from rich.markup import escape
    from rich.table import Table

    # cells say "[not learnt]": escaped, or rich would read them as markup
    t = Table(title=escape("key table: " + (report.key_table.caption or "")))
    for h in report.key_table.headers:
        t.add_column(h, justify="left" if h in ("encoder", "setting", "family") else "right")
    for row in report.key_table.rows:
        t.add_row(*(escape(cell) for cell in row))
    console.print(t)
    for note in report.key_notes:
        console.print(note.replace("**", ""), markup=False)


def register(app: typer.Typer) -> None:
    @app.command("report")
    def report_command(
        study_dir: Annotated[Path, typer.Argument(help="A study directory (holds results.sqlite).")],
        task: Annotated[
            str | None, typer.Option("--task", help="Target task for the per-language breakdown (default: the first).")
        ] = None,
        out: Annotated[Path | None, typer.Option("--out", help="Where to write (default: the study directory).")] = None,
    ) -> None:
        """Write the study report: per-target deltas with intervals over seeds, heatmap, XTREME score, code vs NLU."""
        from rich.console import Console

        from xstilts.study.report import write_report

        if task is not None:
            from xstilts.tasks import get_task

            get_task(task)
        console = Console(highlight=False, soft_wrap=True, width=max(Console().width, 140))
        md, page, report = write_report(study_dir, task=task, out_dir=out)
        print_key_table(report, console)
        console.print(f"report: {md}\nhtml:   {page}")
