"""``xstilts tasks``: the table of registered tasks."""

from __future__ import annotations

import json
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    @app.command("tasks")
    def tasks_command(
        family: Annotated[
            str | None, typer.Option(help="Only this family: xtreme, xtreme-r, nlu or code.")
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    ) -> None:
        """List the tasks: kind, languages per split, labels and metric."""
        from rich.console import Console
        from rich.table import Table

        from xstilts.tasks import REGISTRY

        tasks = [t for t in REGISTRY if family is None or t.family == family]
        if as_json:
            rows = [
                {
                    "name": t.name,
                    "family": t.family,
                    "kind": t.kind.value,
                    "metric": t.metric,
                    "splits": {s: list(langs) for s, langs in t.splits.items()},
                    "labels": list(t.labels) if t.labels else None,
                }
                for t in tasks
            ]
            typer.echo(json.dumps(rows, indent=2, ensure_ascii=False))
            return
        table = Table(title="xstilts tasks")
        for col in ("task", "family", "kind", "metric", "splits", "languages"):
            table.add_column(col)
        for t in tasks:
            splits = ", ".join(f"{s}:{len(langs)}" for s, langs in t.splits.items())
            table.add_row(
                t.name, t.family, t.kind.value, t.metric, splits, " ".join(t.languages)
            )
        Console().print(table)
