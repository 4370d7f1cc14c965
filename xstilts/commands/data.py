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
        help="Get data (from the hub or release archives) and inspect data folders.",
        no_args_is_help=True,
    )

    @data_app.command("check")
    def check_command(
        data_dir: Annotated[
            str, typer.Argument(help="Data folder (searched recursively), or hub:[DIR] to fetch first.")
        ],
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

        from xstilts.data.fetch import resolve_data_dir
        from xstilts.tasks.xtreme import XTREME_TASKS

        names = _split_tasks(tasks)
        for name in names or ():
            get_task(name)  # unknown names fail before any reading
        folder = resolve_data_dir(data_dir, [(n, None) for n in names or XTREME_TASKS], echo=_err)
        report = check_data(folder, names)
        if as_json:
            typer.echo(json.dumps(report.to_json(), indent=2, ensure_ascii=False))
        else:
            typer.echo(render_text(report))
        if report.problems:
            raise typer.Exit(code=2)

    @data_app.command("show")
    def show_command(
        task: Annotated[str, typer.Argument(help="Task name, e.g. udpos.")],
        data_dir: Annotated[str, typer.Option("--data-dir", "-d", help="Data folder, or hub:[DIR].")],
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
        from xstilts.data.fetch import resolve_data_dir
        from xstilts.data.readers import find_files, read_examples

        data_dir = resolve_data_dir(data_dir, [(task, [lang])], echo=_err)
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

    @data_app.command("get")
    def get_command(
        tasks: Annotated[
            Optional[list[str]],
            typer.Argument(help="Task names and groups: xtreme (the nine targets), nlu (the paper's nine "
                          "intermediate tasks), code (every code task). Default: xtreme."),
        ] = None,
        out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write the files into.")] = Path("data"),
        languages: Annotated[
            Optional[list[str]],
            typer.Option("--languages", "-l", help="Only these languages (repeat or comma-separate)."),
        ] = None,
        splits: Annotated[
            Optional[list[str]],
            typer.Option("--splits", "-s", help="Only these splits: train, dev, test (repeat or comma-separate)."),
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    ) -> None:
        """Fetch tasks from the Hugging Face hub (or their release archives) into OUT, in the
        layouts the readers read, with a manifest per file (DIR/manifests/FILE.json: source,
        revision, URLs, sha256, count). What is there already is skipped, so an interrupted run
        resumes; a file you put there yourself is left alone. Exit status 2 when a source cannot
        be reached (one line says which and why)."""
        from xstilts.data.fetch import get

        report = get(
            _split_tasks(tasks) or ["xtreme"],
            out,
            languages=_split_tasks(languages),
            splits=_split_tasks(splits),
            echo=_err,
        )
        if as_json:
            typer.echo(json.dumps(report.to_json(), indent=2, ensure_ascii=False))
            return
        written = [f for f in report.files if f.status == "written"]
        kept = [f for f in report.files if f.status != "written"]
        typer.echo(f"{out}: {len(written)} file(s) written, {len(kept)} already there")
        for task, notes in report.notes.items():
            for note in notes:
                typer.echo(f"  note: {task}: {note}")
        for item in report.absent:
            typer.echo(f"  not in its source: {item}")
        for task, why in report.unavailable.items():
            typer.echo(f"  cannot be fetched: {task}: {why}")

    app.add_typer(data_app, name="data")


def _err(line: str) -> None:
    typer.echo(line, err=True)
