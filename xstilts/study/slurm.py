"""Running a plan on a SLURM cluster through submitit: one job per cell.

`submitit <https://github.com/facebookincubator/submitit>`_ writes the sbatch script, pickles the
unit of work, submits it, and requeues a job that is preempted or reaches its time limit. This
module adds what a study needs on top:

* **one job per cell**, with the GPUs, CPUs, memory, time limit, partition and any other sbatch
  option from the study's ``executor:`` entry; a target cell is submitted once its phase-1 cell
  has finished (the driver holds the plan's dependencies, so that the same code runs on SLURM,
  on submitit's local executor and in its debug executor; ``max_parallel`` caps the cells queued
  at once);
* **requeue with resume**: submitit's preemption / time-limit signal (USR2, sent ``signal_delay_s``
  before the limit) is turned into the study's SIGTERM, so that the training loop finishes its
  step, writes a checkpoint and stops; then submitit's own handler requeues the job, and the
  requeued job resumes from that checkpoint in the same run directory;
* **logs in the run directory**: ``RUN_DIR/submitit/`` holds the job's sbatch script,
  ``JOBID_0_log.out`` / ``.err`` and submitit's pickles;
* a cell with nothing to compute (finished under the same config, or whose phase-1 cell failed)
  is settled by the driver without a job.

The driver (``xstilts study``) must keep running while the jobs run: run it on a login node in
tmux, or in a small CPU job. Stopping it (SIGTERM, Ctrl-C) cancels the jobs it submitted, which
checkpoint; the same command resumes them.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from xstilts.errors import ConfigError
from xstilts.study.cells import (
    NodeOutcome,
    WorkFn,
    WorkRequest,
    execute_node,
    one_line,
    prepare_run_dir,
)
from xstilts.study.executors import ProgressFn, StudyContext, _bind_threads, _finish, _order
from xstilts.study.locks import LockHeldError
from xstilts.train.signals import StoppedBySignal

LOG_DIR = "submitit"  # inside the run directory


def _submitit() -> Any:
    try:
        import submitit
    except ImportError:
        raise ConfigError("executor kind 'slurm' needs submitit: pip install 'xstilts[slurm]'") from None
    return submitit


def _preempt_signal() -> int:
    """The signal submitit's job handler treats as 'preempted or timed out' (its
    SUBMITIT_PREEMPT_SIGNAL setting, USR2 by default)."""
    name = os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2")
    return int(getattr(signal, name if name.startswith("SIG") else f"SIG{name}"))


class CellJob:
    """One study cell as a submitit job. Checkpointable (submitit requeues it with the same
    arguments: the pipeline resumes from its checkpoints in the run directory)."""

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads  # CPU cells: the thread budget, set before torch is imported

    def __call__(self, work: WorkFn, request: WorkRequest, dependency: NodeOutcome | None) -> NodeOutcome:
        if self.threads:
            _bind_threads(self.threads)
        preempt = _preempt_signal()
        requeue_handler = signal.getsignal(preempt)  # submitit's: checkpoint(), requeue, exit
        asked: list[int] = []

        def stop_for_requeue(signum: int, frame: Any) -> None:
            # the study's own stop: the training loop checkpoints at the end of its step
            if not asked:
                asked.append(signum)
                os.kill(os.getpid(), signal.SIGTERM)

        signal.signal(preempt, stop_for_requeue)
        try:
            return execute_node(work, request, dependency)
        except StoppedBySignal as exc:
            if asked and callable(requeue_handler):
                signal.signal(preempt, requeue_handler)
                requeue_handler(preempt, None)  # requeues and exits (or raises: requeued too often)
            return NodeOutcome(request.node.id, "interrupted", 0.0, str(exc))
        finally:
            signal.signal(preempt, requeue_handler)

    def checkpoint(self, work: WorkFn, request: WorkRequest, dependency: NodeOutcome | None) -> Any:
        """What submitit resubmits on requeue: the same cell (its run directory has the checkpoint)."""
        return _submitit().helpers.DelayedSubmission(self, work, request, dependency)


@dataclass
class SlurmExecutor:
    """One submitit job per cell; see the module docstring. The fields are the study config's
    ``executor:`` keys of the same names (:meth:`from_config`).

    ``cluster``: ``slurm``, ``local`` (submitit's local executor: jobs are processes on this
    machine, which is how the tests run this code) or ``debug`` (in this process), or None to let
    submitit choose (SLURM where ``sbatch`` exists, else local)."""

    cluster: str | None = None
    gpus: int = 0
    cpus_per_cell: int = 1
    time_min: int = 24 * 60
    partition: str | None = None
    mem_gb: float | None = None
    slurm_args: dict[str, Any] = field(default_factory=dict)
    max_parallel: int = 0
    poll_s: float = 5.0
    signal_delay_s: int = 120

    @classmethod
    def from_config(cls, executor: Any) -> SlurmExecutor:
        """From a study's :class:`~xstilts.study.study_config.ExecutorConfig`."""
        return cls(**executor.model_dump(include={f.name for f in fields(cls)}))

    def parameters(self, name: str) -> dict[str, Any]:
        """submitit parameters of one cell's job (AutoExecutor names; slurm_* apply to SLURM only)."""
        params: dict[str, Any] = {
            "name": name, "timeout_min": self.time_min, "nodes": 1, "tasks_per_node": 1,
            "cpus_per_task": self.cpus_per_cell, "gpus_per_node": self.gpus,
            "slurm_signal_delay_s": self.signal_delay_s,
        }
        if self.mem_gb is not None:
            params["mem_gb"] = self.mem_gb
        if self.partition:
            params["slurm_partition"] = self.partition
        if self.slurm_args:
            params["slurm_additional_parameters"] = dict(self.slurm_args)
        return params

    def run(self, ctx: StudyContext, work: WorkFn, progress: ProgressFn | None = None) -> dict[str, NodeOutcome]:
        outcomes: dict[str, NodeOutcome] = {}
        pending = _order(ctx.plan)
        running: dict[Any, Any] = {}  # submitit job -> plan node
        try:
            while pending or running:
                for node in list(pending):
                    if self.max_parallel and len(running) >= self.max_parallel:
                        break
                    if node.depends_on and node.depends_on not in outcomes:
                        continue
                    pending.remove(node)
                    dep = outcomes.get(node.depends_on) if node.depends_on else None
                    request = ctx.request(node)
                    try:  # settle the run dir first: a finished cell whose training changed is moved aside
                        to_run = not (dep and dep.status == "failed") and prepare_run_dir(request)
                    except LockHeldError as exc:  # another process is on this cell
                        _finish(ctx, node, NodeOutcome(node.id, "failed", 0.0, str(exc)), outcomes, progress)
                        continue
                    if not to_run:  # finished under this config, or its phase-1 cell failed: no job
                        _finish(ctx, node, execute_node(work, request, dep), outcomes, progress)
                        continue
                    ctx.mark_running(node)
                    running[self._submit(node, request, dep, work)] = node
                finished = [job for job in running if job.done()]
                if not finished:
                    if running:
                        time.sleep(self.poll_s)
                    continue
                for job in finished:
                    node = running.pop(job)
                    outcome = _job_outcome(job, node)
                    if outcome.status == "interrupted":  # stopped, not requeued: resume later
                        ctx.store.mark_cell(ctx.plan.study.name, node.id, "interrupted", error=outcome.error,
                                            finished_at=time.time())
                        outcomes[node.id] = outcome
                        continue
                    _finish(ctx, node, outcome, outcomes, progress)
        except (StoppedBySignal, KeyboardInterrupt):
            for job in running:  # the jobs checkpoint and stop; the same command resumes them
                try:
                    job.cancel(check=False)
                except Exception:  # noqa: BLE001 - a job that already ended
                    pass
            raise
        stopped = [o for o in outcomes.values() if o.status == "interrupted"]
        if stopped:  # jobs stopped by SIGTERM (scancel, or a preemption without requeue)
            raise StoppedBySignal(signal.SIGTERM)
        return outcomes

    def job_executor(self, folder: Path, name: str) -> Any:
        """The submitit executor of one cell's job, its logs and pickles in ``folder``."""
        executor = _submitit().AutoExecutor(folder=folder, cluster=self.cluster)
        executor.update_parameters(**self.parameters(name))
        return executor

    def _submit(self, node, request: WorkRequest, dependency: NodeOutcome | None, work: WorkFn) -> Any:
        executor = self.job_executor(Path(request.run_dir) / LOG_DIR, f"xstilts-{node.id}")
        threads = self.cpus_per_cell if self.gpus == 0 else None
        return executor.submit(CellJob(threads), work, request, dependency)


def _job_outcome(job: Any, node) -> NodeOutcome:
    """The job's NodeOutcome, or a failed one naming the job and its log when the job itself died
    (killed, out of memory, time limit without requeue...)."""
    try:
        outcome = job.result()
    except Exception as exc:  # noqa: BLE001 - submitit raises the job's failure here
        log = Path(job.paths.stderr)
        return NodeOutcome(node.id, "failed", 0.0, f"job {job.job_id} failed: {one_line(exc)} (log: {log})")
    if not isinstance(outcome, NodeOutcome):
        return NodeOutcome(node.id, "failed", 0.0, f"job {job.job_id} returned {type(outcome).__name__}, "
                                                   "not a cell outcome")
    return outcome
