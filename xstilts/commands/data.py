"""``xstilts data``: inspect data folders — ``check`` (everything present, every problem) and
``show`` (read one task/split/language strictly, as training would)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated, Optional

import typer


def _split_tasks(tasks: list[str] | None) -> list[str] | None:
    if not tasks:
        return None
    names: list[str] = []
    for item in tasks:
        names.extend(x for x in item.replace(",", " ").split() if x)
    return names or None


def register(app: typer.Typer) -> None:
    data_app = typer.Typer(
        help="Inspect data folders: what is present, example counts, malformed files.",
        no_args_is_help=True,
    )

    @data_app.command("check")
    def check_command(
        data_dir: Annotated[Path, typer.Argument(help="Data folder (searched recursively).")],
        tasks: Annotated[
            Optional[list[str]],
            typer.Option(
                "--tasks",
                "-t",
                help="Tasks to check (repeat or comma-separate). Default: the nine XTREME tasks.",
            ),
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    ) -> None:
        """Per task and language: the splits present, their example counts and every problem.

        Exit status 2 when any file has a problem, 0 otherwise.
        """
        from xstilts.data.check import check_data, render_text
        from xstilts.tasks import get_task

        names = _split_tasks(tasks)
        for name in names or ():
            get_task(name)  # unknown names fail before any reading
        report = check_data(data_dir, names)
        if as_json:
            typer.echo(json.dumps(report.to_json(), indent=2, ensure_ascii=False))
        else:
            typer.echo(render_text(report))
        if report.problems:
            raise typer.Exit(code=2)

    @data_app.command("show")
    def show_command(
        task: Annotated[str, typer.Argument(help="Task name, e.g. udpos.")],
        data_dir: Annotated[Path, typer.Option("--data-dir", "-d", help="Data folder.")],
        split: Annotated[
            str, typer.Option("--split", "-s", help="Split: train, dev or test.")
        ] = "test",
        lang: Annotated[str, typer.Option("--lang", "-l", help="Language (ISO 639-1).")] = "en",
        limit: Annotated[int, typer.Option(help="How many examples to print.")] = 3,
    ) -> None:
        """Read one (task, split, language) strictly and print its file, count and first examples.

        A malformed file stops it with one line naming the file, the line and what was expected
        (exit status 2), just as training would.
        """
        from xstilts.data.readers import find_files, read_examples

        examples = read_examples(task, data_dir, split, lang)
        files = [str(p) for p in find_files(task, data_dir, split, lang)]
        head = {"task": task, "split": split, "lang": lang, "files": files, "count": len(examples)}
        typer.echo(json.dumps(head, ensure_ascii=False))
        for example in examples[: max(limit, 0)]:
            row = dataclasses.asdict(example)
            for key, value in row.items():
                if isinstance(value, set):
                    row[key] = sorted(value)[:limit]
                elif isinstance(value, dict) and len(value) > limit:
                    row[key] = dict(list(value.items())[:limit])
            typer.echo(json.dumps(row, ensure_ascii=False, default=str))

    app.add_typer(data_app, name="data")
