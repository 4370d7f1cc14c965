"""``xstilts code-eval``: pass@k of generated code by executing it against the dataset's tests."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

DATASETS = {"humaneval": ("humaneval", ("test",)), "mbpp": ("mbpp", ("prompt", "test", "dev", "train"))}


def register(app: typer.Typer) -> None:
    @app.command("code-eval")
    def code_eval_command(
        dataset: Annotated[str, typer.Option(help="humaneval or mbpp.")],
        samples: Annotated[Path, typer.Option(help="JSONL, one {task_id, completion} per line (human-eval format).")],
        k: Annotated[str, typer.Option(help="Comma-separated k values for pass@k.")] = "1,10",
        data_dir: Annotated[
            Path | None, typer.Option(help="Folder holding the dataset files (default: $XSTILTS_DATA or ./data).")
        ] = None,
        timeout: Annotated[float, typer.Option(help="Wall-clock seconds per program.")] = 5.0,
        memory_mb: Annotated[int, typer.Option(help="Address-space limit per program (MiB).")] = 1024,
        workers: Annotated[int, typer.Option(help="Programs run at once.")] = 2,
        partial: Annotated[bool, typer.Option(help="Score only the problems that have samples.")] = False,
        results: Annotated[Path | None, typer.Option(help="Write one result per sample here (JSONL).")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    ) -> None:
        """Execute samples in a sandbox and print pass@k (unbiased estimator) overall and per problem.

        A sample passes only if its program ran the dataset's checks to the end; exiting early
        with status 0 (sys.exit, os._exit, atexit) is a failure, with the reason in --results.
        """
        from xstilts.data.code_readers import read_code_examples
        from xstilts.errors import ConfigError, OutputError
        from xstilts.evaluation.code_metrics import evaluate_samples, read_samples
        from xstilts.evaluation.execution import Sandbox, SandboxConfig
        from xstilts.fileio import check_output_dir, write_text_atomic

        if dataset not in DATASETS:
            raise ConfigError(f"unknown --dataset {dataset!r}; allowed: {', '.join(DATASETS)}")
        try:
            ks = sorted({int(x) for x in k.split(",") if x.strip()})
        except ValueError:
            raise ConfigError(f"--k must be comma-separated integers, got {k!r}") from None
        if not ks or min(ks) < 1:
            raise ConfigError(f"--k values must be >= 1, got {k!r}")
        root = data_dir or Path(os.environ.get("XSTILTS_DATA", "data"))
        task, splits = DATASETS[dataset]
        problems = {}
        for split in splits:
            for ex in read_code_examples(task, root, split, "en"):
                problems[ex.id] = ex
        pairs = read_samples(samples, set(problems))
        if dataset == "mbpp":
            # Score the problems of the split(s) the samples come from, not all 974.
            wanted = {tid for tid, _ in pairs}
            mbpp_split = {s for s in splits for ex_id in wanted if _mbpp_split(int(ex_id)) == s}
            problems = {pid: ex for pid, ex in problems.items() if _mbpp_split(int(pid)) in mbpp_split}
        if results is not None:  # refused before minutes of execution, not after
            if results.is_dir():
                raise OutputError(f"{results}: expected a file for the per-sample results (--results), found a folder")
            check_output_dir(results.parent, "the per-sample results (--results)")
        sandbox = Sandbox(SandboxConfig(timeout_s=timeout, memory_mb=memory_mb))
        table = evaluate_samples(problems, pairs, ks, sandbox=sandbox, workers=workers, require_all=not partial)
        if results is not None:  # atomic: a full disk leaves no half-written file and names the path
            write_text_atomic(results, "".join(json.dumps(row) + "\n" for row in table["results"]))
        summary = {
            "dataset": dataset,
            "samples": str(samples),
            "n_samples": len(pairs),
            "n_problems": len(table["problems"]),
            "missing_problems": len(table["missing"]),
            "k": ks,
            "overall": table["overall"],
            "problems": table["problems"],
            "sandbox": sandbox.describe(),
        }
        if as_json:
            typer.echo(json.dumps(summary, indent=2))
            return
        from rich.console import Console
        from rich.table import Table

        console = Console()
        layers = sandbox.describe()
        console.print(
            "sandbox: " + ", ".join(f"{k}={v}" for k, v in layers.items()), highlight=False
        )
        missing_k = [key for key in ks if f"pass@{key}" not in table["overall"]]
        if missing_k:
            console.print(f"pass@{','.join(map(str, missing_k))}: not reported (needs at least that many samples per problem)")
        console.print(f"{dataset}: pass@k over {summary['n_problems']} problems ({len(pairs)} samples)")
        overall = Table()
        for key in table["overall"]:
            overall.add_column(key, justify="right")
        overall.add_row(*(f"{v:.2f}" for v in table["overall"].values()))
        console.print(overall)
        per = Table(title="per problem")
        per.add_column("task_id")
        per.add_column("n", justify="right")
        per.add_column("correct", justify="right")
        for key in ks:
            per.add_column(f"pass@{key}", justify="right")
        for pid, row in table["problems"].items():
            per.add_row(
                pid, str(row["n"]), str(row["correct"]),
                *(f"{row[f'pass@{key}']:.1f}" if f"pass@{key}" in row else "-" for key in ks),
            )
        console.print(per)


def _mbpp_split(task_id: int) -> str | None:
    from xstilts.tasks.code import MBPP_SPLITS

    for split, (lo, hi) in MBPP_SPLITS.items():
        if lo <= task_id <= hi:
            return split
    return None
