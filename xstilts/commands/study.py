"""``xstilts study CONFIG.yaml``: run (or finish, or only plan) a whole study."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

EXIT_HELP = (
    "Exit status: 0 when every phase run succeeded; otherwise the number of failed phase runs "
    "(capped at 125); 2 for an invalid config, missing data or a study directory in use; 143 when "
    "stopped by SIGTERM (130 by Ctrl-C): running cells checkpoint, and the same command resumes them."
)


def default_out(config_path: Path, name: str) -> Path:
    return Path("studies") / name


def print_plan(study, study_dir: Path, console) -> None:
    """The plan as a rich table: phase runs per phase, what is done, and the compute estimate."""
    from rich.table import Table

    from xstilts.study.cells import plan_status
    from xstilts.study.plan import build_plan, estimate, format_duration
    from xstilts.study.runner import STORE_FILE
    from xstilts.study.store import ResultStore

    plan = build_plan(study)
    status = plan_status(plan, study_dir)
    store = ResultStore(study_dir / STORE_FILE) if (study_dir / STORE_FILE).is_file() else None
    device = "gpu" if study.executor.gpus > 0 else "cpu"
    table = Table(title=f"study {study.name}: plan ({study_dir})")
    for col in ("phase", "what", "runs", "done", "failed", "started", "to do", "est. compute"):
        table.add_column(col, justify="left" if col in ("phase", "what") else "right")
    labels = {
        "intermediate": ("1", "intermediate training"),
        "target": ("2+3", "English fine-tuning + zero-shot"),
        "retrieval": ("3", "retrieval, no fine-tuning"),
    }
    total_runs = 0
    for phase in ("intermediate", "target", "retrieval"):
        nodes = [n for n in plan.nodes if n.phase == phase]
        if not nodes:
            continue
        sub = type(plan)(study, nodes)
        est = estimate(sub, status, store, device)
        counts = {k: sum(status[n.id] == k for n in nodes) for k in ("done", "failed", "started")}
        num, what = labels[phase]
        table.add_row(f"{num}", what, str(len(nodes)), str(counts["done"]), str(counts["failed"]),
                      str(counts["started"]), str(len(nodes) - counts["done"]),
                      format_duration(est.seconds))
        total_runs += len(nodes)
    est = estimate(plan, status, store, device)
    table.add_row("all", "", str(total_runs), str(sum(v == "done" for v in status.values())), "", "", "",
                  format_duration(est.seconds), style="bold")
    console.print(table)
    if changed := sum(v == "changed" for v in status.values()):
        console.print(f"{changed} finished phase run(s) whose training settings changed will be trained afresh "
                      "(counted under 'to do'; their old run dirs are kept as NAME.old-HASH).")
    n_int = sum(1 for n in plan.nodes if n.phase == "intermediate")
    users = sum(1 for n in plan.nodes if n.depends_on)
    console.print(
        f"{n_int} intermediate checkpoint(s), each trained once and reused by {len(study.targets)} target(s) "
        f"({users} phase runs start from one). Executor: {study.executor.kind}, gpus={study.executor.gpus}"
        + (f", {study.executor.workers} CPU workers." if study.executor.gpus == 0 and study.executor.workers > 1 else ".")
    )
    for enc, src in est.source.items():
        console.print(f"throughput for {enc}: {src}")
    if caps := study.budgets.describe():
        console.print("capped budgets: " + "; ".join(caps))


def register(app: typer.Typer) -> None:
    @app.command("study", help=f"Run a study: encoders x intermediate settings x targets x seeds. {EXIT_HELP}",
                 epilog=EXIT_HELP)
    def study_command(
        config: Annotated[Path, typer.Argument(help="Study YAML (see configs/).")],
        data_dir: Annotated[
            str | None,
            typer.Option("--data-dir", help="Data folder, or hub:[DIR] to fetch it (default: the config's data_dir)."),
        ] = None,
        out: Annotated[
            Path | None, typer.Option("--out", help="Study directory (default: studies/NAME).")
        ] = None,
        dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan and the compute estimate only.")] = False,
        report: Annotated[bool, typer.Option("--report/--no-report", help="Write the report at the end.")] = True,
        work: Annotated[
            str | None, typer.Option("--work", hidden=True, help="module:function unit of work (testing)")
        ] = None,
        wait: Annotated[
            bool, typer.Option("--wait", help="If another process is running this study directory, wait for it.")
        ] = False,
    ) -> None:
        """Every cell still to run is checked first (its config and every input its phases will
        read), also by --dry-run: a problem stops the study with exit status 2 before training."""
        from rich.console import Console

        from xstilts.errors import MissingDataError
        from xstilts.fileio import check_output_dir
        from xstilts.study.preflight import check_study
        from xstilts.study.study_config import load_study

        console = Console(highlight=False, soft_wrap=True, width=max(Console().width, 110))
        study = load_study(config)
        study_dir = check_output_dir((out or default_out(config, study.name)).resolve(), "the study directory (--out)")
        data = hub_data(study, data_dir or study.data_dir)
        if dry_run:
            print_plan(study, study_dir, console)
            if work is None:  # a test's own unit of work reads what it likes
                cells = check_study(study, study_dir, data)
                console.print(f"inputs checked: every file the {cells} cell(s) to run will read is there and parses")
            return
        if data is not None and not Path(data).is_dir():
            raise MissingDataError(f"data folder not found: {data} (give --data-dir DIR)")
        raise typer.Exit(run_and_report(study, study_dir, data, console, work=work, report=report, wait=wait))


def hub_data(study, value: str | None) -> Path | None:
    """The study's data folder; for ``hub:[DIR]``, the folder its targets (in the study's
    languages) and intermediate tasks are first fetched into, as ``xstilts data get`` does."""
    from xstilts.data.fetch import is_hub, resolve_data_dir

    if not is_hub(value):
        return Path(value) if value else None
    langs = study.languages
    needs: list[tuple[str, object]] = []
    for target in study.targets:
        wanted = langs.get(target) if isinstance(langs, dict) else langs
        needs.append((target, list(wanted) if wanted else None))
    tasks = {t.task for setting in study.intermediate for t in setting.tasks}
    needs += [(name, ["en"]) for name in sorted(tasks)]
    return resolve_data_dir(value, needs, echo=lambda line: typer.echo(line, err=True))


def _load_work(spec: str | None):
    if spec is None:
        return None
    import importlib

    module, _, func = spec.partition(":")
    return getattr(importlib.import_module(module), func)


def run_and_report(study, study_dir: Path, data_dir: Path | None, console, *, work: str | None = None,
                   report: bool = True, task: str | None = None, wait: bool = False) -> int:
    """Check the inputs, run the study, print a line per phase run, write the report; returns
    the exit status. The study directory's lock is held from the run to the report."""
    from xstilts.study.locks import DirLock
    from xstilts.study.preflight import check_study
    from xstilts.train.signals import RESUME_HINT, StoppedBySignal

    print_plan(study, study_dir, console)
    if work is None:  # before the directory is locked (and so created)
        check_study(study, study_dir, data_dir)
    study_dir.mkdir(parents=True, exist_ok=True)
    try:
        with DirLock(study_dir, label="study directory").hold(wait=wait):
            return _run_and_report(study, study_dir, data_dir, console, work=work, report=report, task=task)
    except StoppedBySignal as exc:
        console.print(f"study {study.name}: {exc}; cells that were running are recorded as interrupted")
        return exc.exit_code
    except KeyboardInterrupt:
        console.print(f"study {study.name}: interrupted; {RESUME_HINT}")
        return 130


def _run_and_report(study, study_dir: Path, data_dir: Path | None, console, *, work: str | None,
                    report: bool, task: str | None) -> int:
    import time

    from xstilts.study.runner import run_study

    start = time.time()

    def progress(node, outcome) -> None:
        mark = {"done": "[green]done[/]", "skipped-done": "[dim]already done[/]", "failed": "[red]FAILED[/]"}
        line = f"{mark.get(outcome.status, outcome.status)} {node.id} ({outcome.seconds:.0f} s)"
        if outcome.error:
            line += f": {outcome.error}"
        console.print(line)

    run = run_study(study, study_dir, data_dir=data_dir, work=_load_work(work), progress=progress)
    console.print(f"study {study.name}: {len(run.outcomes) - len(run.failed)} phase runs done, "
                  f"{len(run.failed)} failed, {time.time() - start:.0f} s; results in {study_dir / 'results.sqlite'}")
    for o in run.failed:
        console.print(f"[red]failed[/] {o.node_id}: {o.error} (traceback: {study_dir / 'runs' / o.node_id / 'error.txt'})")
    if report:
        from xstilts.study.report import write_report

        md, page, rep = write_report(study_dir, task=task)
        console.print(f"report: {md} and {page}")
    return run.exit_status
