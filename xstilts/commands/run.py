"""``xstilts run``: one X-STILTs pipeline from a YAML config and/or flags (flags win)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer

T = TypeVar("T")


def run(
    config: Annotated[Path | None, typer.Argument(help="Run config (YAML). Flags override its values.")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Encoder: catalogue name, folder or hub id.")] = None,
    target: Annotated[str | None, typer.Option("--target", "-t", help="Target task (XTREME).")] = None,
    intermediate: Annotated[
        list[str] | None,
        typer.Option("--intermediate", "-i",
                     help="Intermediate task(s) for phase 1 (repeat or comma-separate; TASK:FORMULATION for code tasks; 'none').")
    ] = None,
    sampling: Annotated[str | None, typer.Option(help="Mixture sampling: uniform, proportional or temperature.")] = None,
    encoder_dir: Annotated[str | None, typer.Option(help="Start from this encoder folder (e.g. another run's encoder/).")] = None,
    mlm_data: Annotated[str | None, typer.Option(help="Raw text for phase-0 masked-LM training (file or folder).")] = None,
    data_dir: Annotated[str | None, typer.Option("--data-dir", "-d", help="Data folder (e.g. ../shared/data).")] = None,
    out: Annotated[str | None, typer.Option("--out", "-o", help="Run directory.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Target fine-tuning epochs.")] = None,
    lr: Annotated[float | None, typer.Option("--lr", help="Target fine-tuning peak learning rate.")] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(help="Target fine-tuning batch per optimizer step (sets gradient accumulation to 1 unless --grad-accum).")
    ] = None,
    grad_accum: Annotated[int | None, typer.Option(help="Target fine-tuning gradient accumulation steps.")] = None,
    max_length: Annotated[int | None, typer.Option(help="Target maximum sequence length (tokens).")] = None,
    max_steps: Annotated[int | None, typer.Option(help="Cap on target optimizer steps.")] = None,
    max_examples: Annotated[int | None, typer.Option(help="Keep the first N target training examples.")] = None,
    languages: Annotated[list[str] | None, typer.Option("--languages", "-l", help="Evaluation languages (default: all present).")] = None,
    eval_split: Annotated[str | None, typer.Option(help="Split predicted in phase 3 (default: the task's scored split; 'dev' for PAN-X here).")] = None,
    eval_max_examples: Annotated[int | None, typer.Option(help="At most N examples per language in phase 3.")] = None,
    dev_eval: Annotated[
        bool | None,
        typer.Option("--dev-eval/--no-dev-eval", help="Select the best checkpoint on English dev (default on when dev exists).")
    ] = None,
    random_init: Annotated[
        bool | None, typer.Option("--random-init/--pretrained", help="Control run: same architecture, random weights.")
    ] = None,
    mixed_precision: Annotated[str | None, typer.Option(help="auto, no, bf16 or fp16.")] = None,
    cpu: Annotated[bool | None, typer.Option("--cpu/--no-cpu", help="Force CPU.")] = None,
    progress: Annotated[bool | None, typer.Option("--progress/--no-progress", help="Progress bars.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print scores.json when done.")] = False,
    wait: Annotated[
        bool, typer.Option("--wait", help="If another process is working in --out, wait for it instead of stopping.")
    ] = False,
) -> None:
    """Run (MLM ->) (intermediate ->) target fine-tuning -> zero-shot scores; resumes if killed.

    Re-running the same command on a finished run reads its results instead of training again;
    with other evaluation languages or --eval-split it reuses the trained model and evaluates
    again (the earlier scores are kept in RUN/evaluations/). Every input is checked before
    training. Exit status: 0 when done; 2 for an invalid config, missing data or a directory in
    use; 143 when stopped by SIGTERM (130 by Ctrl-C), after a checkpoint: the same command resumes.
    """
    from xstilts.study.run_config import load_run_config

    overrides: dict[str, object] = {
        "model": model, "target": target, "encoder_dir": encoder_dir, "data_dir": data_dir, "out": out,
        "seed": seed, "eval_split": eval_split, "eval_max_examples": eval_max_examples, "dev_eval": dev_eval,
        "cpu": cpu, "progress": progress, "random_init": random_init,
        "hyperparameters.target.epochs": epochs, "hyperparameters.target.learning_rate": lr,
        "hyperparameters.target.max_length": max_length, "hyperparameters.target.max_steps": max_steps,
        "hyperparameters.target.max_examples": max_examples,
        "hyperparameters.target.mixed_precision": mixed_precision,
        "hyperparameters.intermediate.mixed_precision": mixed_precision,
    }
    if batch_size is not None:
        overrides["hyperparameters.target.batch_size"] = batch_size
        overrides["hyperparameters.target.grad_accum"] = grad_accum or 1
    elif grad_accum is not None:
        overrides["hyperparameters.target.grad_accum"] = grad_accum
    if languages:
        overrides["languages"] = [x for item in languages for x in item.replace(",", " ").split()]
    if intermediate:
        names = [x for item in intermediate for x in item.replace(",", " ").split()]
        if names == ["none"]:
            overrides["intermediate"] = "none"  # the config's validator turns this into no phase 1
        else:
            overrides["intermediate.tasks"] = names  # merged into the config's intermediate block
    if sampling:
        overrides["intermediate.sampling"] = sampling
    if mlm_data:
        overrides["mlm.data"] = mlm_data
    cfg = with_hub_data(load_run_config(config, **overrides))

    from xstilts.study.pipeline import is_rank_zero, run_pipeline
    from xstilts.study.rundir import SCORES_FILE, RunDir

    run_dir = run_stoppably(lambda: run_pipeline(cfg, wait_for_lock=wait))
    if not is_rank_zero():  # the other processes of a multi-process run: rank 0 reports
        return
    finished_dir = RunDir(run_dir)  # its files are checked: a damaged one says how to recover
    if as_json and (run_dir / SCORES_FILE).is_file():
        finished_dir.read_scores()
        typer.echo((run_dir / SCORES_FILE).read_text(encoding="utf-8").rstrip())
        return
    finished = finished_dir.read_finished()
    typer.echo(f"run directory: {run_dir}")
    for task, entry in (finished.get("scores") or {}).get("tasks", {}).items():
        langs = entry.get("languages", {})
        parts = []
        for lang, metrics in sorted(langs.items()):
            value = next((metrics[k] for k in ("f1", "accuracy") if k in metrics), None)
            if value is not None:
                parts.append(f"{lang} {value:.1f}")
        score = entry.get("score")
        typer.echo(f"{task}: score {score:.2f}" if score is not None else f"{task}: no score")
        if parts:
            typer.echo("  " + "  ".join(parts))


def with_hub_data(cfg):
    """``cfg`` with a ``hub:[DIR]`` data source replaced by the folder the needed tasks were
    fetched into (``xstilts data get``'s layouts); a local folder is left as it is."""
    from xstilts.data.fetch import is_hub, resolve_data_dir

    def echo(line: str) -> None:
        typer.echo(line, err=True)

    update: dict[str, object] = {}
    if is_hub(cfg.data_dir):
        needs = [(cfg.target, cfg.languages)] if cfg.target else []
        inherited = [t.task for t in (cfg.intermediate.tasks if cfg.intermediate else []) if t.data_dir is None]
        needs += [(name, ["en"]) for name in inherited]
        update["data_dir"] = str(resolve_data_dir(cfg.data_dir, needs, echo=echo))
    if cfg.intermediate and any(is_hub(t.data_dir) for t in cfg.intermediate.tasks):
        tasks = [
            t.model_copy(update={"data_dir": str(resolve_data_dir(t.data_dir, [(t.task, ["en"])], echo=echo))})
            if is_hub(t.data_dir) else t
            for t in cfg.intermediate.tasks
        ]
        update["intermediate"] = cfg.intermediate.model_copy(update={"tasks": tasks})
    return cfg.model_copy(update=update) if update else cfg


def run_stoppably(job: Callable[[], T]) -> T:
    """``job()``, with the ways a long job ends early turned into a message and an exit status
    instead of a traceback: SIGTERM / Ctrl-C (:class:`StoppedBySignal`, 128 + the signal, after
    a checkpoint), and a disk that filled up (exit status 2; what was written before is kept)."""
    import errno

    from xstilts.errors import XstiltsError
    from xstilts.train.signals import RESUME_HINT, StoppedBySignal

    try:
        return job()
    except StoppedBySignal as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        typer.echo(f"interrupted; {RESUME_HINT}", err=True)
        raise typer.Exit(130) from None
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        where = f" writing {exc.filename}" if exc.filename else ""
        raise XstiltsError(f"{exc.strerror}{where}; free some space and re-run the same command to resume") from None


def register(app: typer.Typer) -> None:
    """Adds this module's commands to the app."""
    app.command("run")(run)
