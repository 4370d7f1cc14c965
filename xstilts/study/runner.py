"""The whole study (:func:`run_study`): check, plan, pick the executor, run, record; and the real
unit of work, one pipeline run per cell (:func:`pipeline_work`), in one process or as a cell's
several DDP processes (:func:`run_multiprocess`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

import xstilts
from xstilts.data.readers import read_examples
from xstilts.evaluation.trivial import reads_training_data, trivial_scores
from xstilts.fileio import write_json_atomic, write_text_atomic
from xstilts.study.cells import (
    NodeOutcome,
    WorkFn,
    WorkRequest,
    node_config_hashes,
    node_legacy_hashes,
    node_training_hashes,
    run_config_for,
)
from xstilts.study.executors import (
    LocalExecutor,
    ProgressFn,
    RayExecutor,
    StudyContext,
    phase1_quality,
)
from xstilts.study.locks import DirLock
from xstilts.study.pipeline import run_pipeline
from xstilts.study.plan import build_plan
from xstilts.study.preflight import check_study
from xstilts.study.run_config import load_run_config
from xstilts.study.rundir import METRICS_FILE, SCORES_FILE, RunDir
from xstilts.study.slurm import SlurmExecutor
from xstilts.study.store import ResultStore
from xstilts.tasks import get_task
from xstilts.train.signals import StoppedBySignal, stop_on_signal

MAX_EXIT = 125


def make_executor(study) -> Any:
    """The executor the study's ``executor:`` entry names (local, Ray, or SLURM via submitit)."""
    ex = study.executor
    if ex.kind == "ray":
        return RayExecutor(address=ex.address, gpus=ex.gpus, processes_per_cell=ex.processes_per_cell)
    if ex.kind == "slurm":
        return SlurmExecutor.from_config(ex)
    return LocalExecutor(gpus=ex.gpus, workers=ex.workers if ex.gpus == 0 else 1,
                         processes_per_cell=ex.processes_per_cell)


def code_version() -> str:
    """The git commit of the xstilts checkout (``+dirty`` with local changes), else the version."""
    root = Path(xstilts.__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return commit[:12] + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return f"xstilts-{getattr(xstilts, '__version__', 'unknown')}"


@dataclass
class StudyRun:
    outcomes: dict[str, NodeOutcome]
    study_dir: Path

    @property
    def failed(self) -> list[NodeOutcome]:
        return [o for o in self.outcomes.values() if o.status == "failed"]

    @property
    def exit_status(self) -> int:
        """The number of failed cells, capped at 125 (126+ mean other things to shells)."""
        return min(len(self.failed), MAX_EXIT)


STUDY_FILE = "study.json"


STORE_FILE = "results.sqlite"


def run_study(
    study,
    study_dir: str | Path,
    *,
    data_dir: str | Path | None = None,
    work: WorkFn | None = None,
    executor: LocalExecutor | RayExecutor | None = None,
    progress: ProgressFn | None = None,
    wait: bool = False,
) -> StudyRun:
    """Run (or finish) a study in ``study_dir``; finished nodes are skipped, killed ones resumed.

    With the real unit of work (``work`` None) every cell still to run is checked first, its
    config and every input its phases will read (:func:`~xstilts.study.preflight.check_study`),
    so that a missing or malformed file stops the study with one error before anything trains.
    The study directory's lock is held throughout: another process on the same directory is
    refused (or, with ``wait``, waited for). SIGTERM (or Ctrl-C) stops the study: cells that were
    running are recorded as ``interrupted`` and :class:`StoppedBySignal` (KeyboardInterrupt) is
    raised; the same call resumes them.
    """

    study_dir = Path(study_dir).resolve()
    data = Path(data_dir).resolve() if data_dir else (Path(study.data_dir) if study.data_dir else None)
    if work is None:
        check_study(study, study_dir, data)  # before the folder is even created
        work = pipeline_work
    study_dir.mkdir(parents=True, exist_ok=True)
    with DirLock(study_dir, label="study directory").hold(wait=wait), stop_on_signal(forward_to_children=True):
        (study_dir / "cache").mkdir(exist_ok=True)
        write_json_atomic(study_dir / STUDY_FILE, study.to_json_dict())
        plan = build_plan(study)
        (study_dir / "plan.json").write_text(plan.to_json(), encoding="utf-8")
        ctx = StudyContext(
            plan=plan, study_dir=study_dir, data_dir=data,
            store=ResultStore(study_dir / STORE_FILE), code_version=code_version(),
            config_hashes=node_config_hashes(plan), training_hashes=node_training_hashes(plan),
            legacy_hashes=node_legacy_hashes(plan),
        )
        executor = executor or make_executor(study)
        try:
            outcomes = executor.run(ctx, work, progress)
        except StoppedBySignal as exc:
            ctx.mark_interrupted(str(exc))
            raise
        except KeyboardInterrupt:
            ctx.mark_interrupted("interrupted (Ctrl-C); re-run the same command to resume")
            raise
    return StudyRun(outcomes, study_dir)


def target_trivial(run_dir: Path, target: str, data_dir: str | None, metrics: dict[str, Any]) -> dict[str, Any]:
    """The trivial reference on the gold files this run was scored on (see xstilts.evaluation.trivial)."""

    task = get_task(target)
    split = (metrics.get("phase3") or {}).get("split") or task.score_split
    label_root = run_dir / ("labels" if split == "test" else f"labels-{split}")
    train: list[Any] = []
    if data_dir and reads_training_data(task):
        train = list(read_examples(task, data_dir, "train", "en"))
    return {target: trivial_scores(task, label_root, train)}


def pipeline_work(request: WorkRequest) -> dict[str, Any]:
    """One node = one ``run_pipeline`` call in the node's run dir (which resumes if it was killed)."""

    config = load_run_config(run_config_for(request))
    processes = int(request.study["executor"].get("processes_per_cell", 1))  # validated by run_config_for
    if processes > 1 and request.node.phase != "retrieval":  # retrieval trains nothing: one process
        run_dir = run_multiprocess(config, processes)
    else:
        run_dir = Path(run_pipeline(config))
    rd = RunDir(run_dir)  # its readers say which file is damaged and how to recover
    out: dict[str, Any] = {"run_dir": str(run_dir)}
    if (run_dir / SCORES_FILE).is_file():
        out["scores"] = rd.read_scores()
    if (run_dir / METRICS_FILE).is_file():
        metrics = rd.read_metrics()
        out["metrics"] = phase1_quality(metrics) if request.node.phase == "intermediate" else {}
        out["phase_metrics"] = metrics
        if request.node.target and "scores" in out:
            out["trivial"] = target_trivial(run_dir, request.node.target, request.data_dir, metrics)
    versions = run_dir / "versions.json"
    if versions.is_file():
        out["device"] = json.loads(versions.read_text(encoding="utf-8")).get("device")
    if request.node.phase == "intermediate" and not (run_dir / "encoder").is_dir():
        raise RuntimeError(f"phase 1 finished without an encoder checkpoint in {run_dir / 'encoder'}")
    return out


LAUNCH_CONFIG = "launch.yaml"  # in the run dir: the config a multi-process cell was started with


LAUNCH_LOG = "launch.log"


def run_multiprocess(config, processes: int) -> Path:
    """One pipeline run as ``processes`` DDP processes: ``torchrun --standalone`` (a free port of
    this machine) runs ``xstilts run`` on the node's config; every rank trains, rank 0 writes the
    run dir and evaluates. Each process gets an equal share of this worker's threads; on GPUs
    torchrun gives rank i the i-th visible GPU. Its output goes to RUN_DIR/launch.log. SIGTERM
    is passed on (the ranks checkpoint together and stop); a failure raises with the log's tail."""
    run_dir = Path(config.out)
    run_dir.mkdir(parents=True, exist_ok=True)
    launch = run_dir / LAUNCH_CONFIG
    write_text_atomic(launch, yaml.safe_dump(json.loads(config.model_dump_json()), sort_keys=False))
    threads = max(1, int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1) // processes)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
               "-m", "xstilts.cli", "run", str(launch)]
    log_path = run_dir / LAUNCH_LOG
    with open(log_path, "a", encoding="utf-8") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            code = proc.wait()
        except BaseException:  # stopped: the ranks checkpoint and stop before we go
            proc.send_signal(signal.SIGTERM)
            proc.wait()
            raise
    if code == 0:
        return run_dir
    tail = [line for line in log_path.read_text(encoding="utf-8", errors="replace").splitlines()
            if line.strip()][-1:] or ["(no output)"]
    if code in (128 + signal.SIGTERM, -signal.SIGTERM):
        raise StoppedBySignal(signal.SIGTERM)
    raise RuntimeError(f"{processes}-process run failed (exit status {code}): {tail[0][:300]} (log: {log_path})")
