"""Running a plan: a local executor (sequential, or one cell per GPU) and a Ray executor.

The unit of work is a function ``work(request: WorkRequest) -> dict`` (the default,
:func:`xstilts.study.runner.pipeline_work`, builds a RunConfig and calls ``run_pipeline``; tests
pass a fake). Whatever executes it, :func:`execute_node` wraps it the same way:

* a finished node (``DONE.json`` in its run dir) is skipped; a node whose run dir exists without
  it was killed or failed before, and runs again in the same run dir (the pipeline resumes from
  its own checkpoints there); so does a finished node whose config changed only in what does not
  change the trained model (evaluation languages and split: the pipeline re-evaluates it), while
  one whose training changed starts afresh, its old run dir kept aside (:func:`reuse_state`);
* the node's lock (``NAME.lock`` beside its run dir) is held while it runs, so that no two
  workers ever run one node at once; the driver holds the study directory's lock;
* SIGTERM stops the study: the cell being trained checkpoints, and running cells are recorded
  as ``interrupted`` (not finished, not failed); the same command resumes them;
* an exception is caught: its traceback goes to ``error.txt`` in the run dir, a one-line summary
  to the store, and the study goes on; nodes that depend on a failed phase-1 node fail with
  "phase-1 node X failed" without running;
* on success the outcome is written to ``DONE.json`` atomically (the last thing a node does).

Only the driver process writes the result store (from the outcomes), so that a Ray cluster's
workers need nothing but the shared study directory.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from xstilts.fileio import write_json_atomic, write_text_atomic
from xstilts.study.locks import DirLock, LockHeldError
from xstilts.study.plan import DONE_FILE, ERROR_FILE, Plan, PlanNode
from xstilts.study.store import BUDGET_TASK, TRIVIAL_METRIC, UNTRAINED_SUFFIX, ResultStore, ScoreRow
from xstilts.train.signals import StoppedBySignal, stop_on_signal

WorkFn = Callable[["WorkRequest"], dict[str, Any]]
MAX_EXIT = 125
NODE_FILE = "node.json"  # written when a node starts: which config hash its run dir holds


@dataclass(frozen=True)
class WorkRequest:
    """Everything a unit of work needs; picklable, so it travels to processes and Ray workers."""

    node: PlanNode
    study: dict[str, Any]  # StudyConfig as JSON
    study_dir: str
    data_dir: str | None
    run_dir: str
    encoder_dir: str | None  # phase-1 encoder to start from (None: the pretrained encoder)
    cache_dir: str
    config_hash: str = ""
    training_hash: str = ""  # the part of config_hash that decides the trained model
    legacy_hash: str = ""  # config_hash as computed before eval_split counted (see reuse_state)


@dataclass
class NodeOutcome:
    node_id: str
    status: str  # done | failed | skipped-done
    seconds: float = 0.0
    error: str | None = None
    result: dict[str, Any] = field(default_factory=dict)


def read_done(run_dir: Path) -> dict[str, Any] | None:
    path = Path(run_dir) / DONE_FILE
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def one_line(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip().replace("\n", " ")
    return text if len(text) <= 300 else text[:297] + "..."


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def reuse_state(run_dir: Path, config_hash: str, training_hash: str = "", legacy_hash: str = "") -> str:
    """What :func:`execute_node` does with a node's run dir, from its ``DONE.json`` / ``node.json``:

    * ``done``: finished under this config: skipped;
    * ``reuse``: started (killed) under this config, or finished or started under one that differs
      only in what does not change training (evaluation languages and split, prediction batch
      bounds: the two configs' training hashes are equal): run again in the same run dir, where
      the pipeline resumes or re-evaluates the trained model;
    * ``aside``: what decides the trained model changed: the old run dir is kept aside as
      ``NAME.old-HASH`` and the node starts afresh;
    * ``fresh``: nothing there yet.

    A record written before training hashes existed (no ``training_hash``) whose hash equals
    ``legacy_hash`` (the hash formula of then, which left the evaluation split out) is the same
    trained run: ``reuse``, so that upgrading retrains nothing.
    """
    done = read_done(run_dir)
    record = done if done is not None else _read_json(run_dir / NODE_FILE)
    if record is None:
        return "fresh"
    old = record.get("config_hash")
    if not config_hash or old is None or old == config_hash:
        return "done" if done is not None else "reuse"
    if training_hash and record.get("training_hash") == training_hash:
        return "reuse"
    if "training_hash" not in record and legacy_hash and old == legacy_hash:
        return "reuse"
    return "aside"


def _move_aside(run_dir: Path, old_hash: Any) -> None:
    aside = run_dir.with_name(f"{run_dir.name}.old-{old_hash}")
    if aside.exists():
        import shutil

        shutil.rmtree(aside)
    run_dir.rename(aside)


def node_lock(run_dir: Path) -> DirLock:
    """The lock of one study cell: ``NAME.lock`` beside its run dir (not inside it, as the run dir
    itself may be moved aside while the lock is held)."""
    return DirLock(run_dir, label="study cell", path=run_dir.with_name(run_dir.name + ".lock"),
                   hint="not run a second time at once (a worker of an earlier, stopped study may "
                        "still be on it)")


def execute_node(work: WorkFn, request: WorkRequest, dependency: NodeOutcome | None = None) -> NodeOutcome:
    """Run one node with skip / resume / failure recording. Never raises, except KeyboardInterrupt
    and :class:`StoppedBySignal` (SIGTERM: the cell is not finished, and not failed either).

    The cell's lock is held throughout, so that a node is never run by two workers at once (a
    second one gets a failed outcome naming the first, and leaves its run dir alone)."""
    run_dir = Path(request.run_dir)
    lock = node_lock(run_dir)
    try:
        lock.acquire()
    except LockHeldError as exc:
        return NodeOutcome(request.node.id, "failed", 0.0, str(exc))
    try:
        with stop_on_signal():
            return _execute_locked(work, request, dependency)
    finally:
        lock.release()


def _settle_run_dir(request: WorkRequest) -> dict[str, Any] | None:
    """Make a node's run dir ready to run in (see :func:`reuse_state`): an old run whose training
    changed is moved aside, a finished one whose evaluation changed loses its DONE.json. Returns
    the DONE record when the node is finished under this config (nothing to run)."""
    run_dir = Path(request.run_dir)
    state = reuse_state(run_dir, request.config_hash, request.training_hash, request.legacy_hash)
    done = read_done(run_dir)
    if state == "done" and done is not None:
        return done
    if state == "aside":  # what decides this node changed (study settings or code defaults)
        record = done if done is not None else (_read_json(run_dir / NODE_FILE) or {})
        _move_aside(run_dir, record.get("config_hash"))
    elif done is not None:  # only evaluation settings changed: the pipeline re-evaluates in place
        (run_dir / DONE_FILE).unlink()
    return None


def prepare_run_dir(request: WorkRequest) -> bool:
    """For executors that start a node elsewhere (a SLURM job): settle its run dir under the
    node's lock, before the job's log folder is made in it. False: finished, nothing to run."""
    lock = node_lock(Path(request.run_dir))
    lock.acquire()
    try:
        return _settle_run_dir(request) is None
    finally:
        lock.release()


def _execute_locked(work: WorkFn, request: WorkRequest, dependency: NodeOutcome | None) -> NodeOutcome:
    run_dir = Path(request.run_dir)
    done = _settle_run_dir(request)
    if done is not None:
        return NodeOutcome(request.node.id, "skipped-done", float(done.get("seconds", 0.0)), None, done)
    started = run_dir / NODE_FILE
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(started, {"node": request.node.id, "config_hash": request.config_hash,
                                 "training_hash": request.training_hash})
    if dependency is not None and dependency.status == "failed":
        msg = f"phase-1 node {dependency.node_id} failed"
        (run_dir / ERROR_FILE).write_text(msg + "\n", encoding="utf-8")
        return NodeOutcome(request.node.id, "failed", 0.0, msg)
    (run_dir / ERROR_FILE).unlink(missing_ok=True)
    start = time.time()
    try:
        result = dict(work(request) or {})
    except (KeyboardInterrupt, StoppedBySignal):
        raise
    except BaseException as exc:  # noqa: BLE001 - a failing cell must not stop the study
        seconds = time.time() - start
        (run_dir / ERROR_FILE).write_text(traceback.format_exc(), encoding="utf-8")
        return NodeOutcome(request.node.id, "failed", seconds, one_line(exc))
    seconds = time.time() - start
    result.setdefault("seconds", seconds)
    result["node"] = request.node.id
    result["config_hash"] = request.config_hash
    result["training_hash"] = request.training_hash
    write_json_atomic(run_dir / DONE_FILE, result)
    return NodeOutcome(request.node.id, "done", seconds, None, result)


# -- turning outcomes into store rows ------------------------------------------------------


def language_score(task_name: str, metrics: dict[str, float]) -> float | None:
    """The per-language number that enters the XTREME score (scorer.task_score's rule)."""
    from xstilts.tasks import TaskKind, get_task

    if get_task(task_name).kind is TaskKind.QA and "f1" in metrics and "exact_match" in metrics:
        return (metrics["exact_match"] + metrics["f1"]) / 2
    for key in ("f1", "accuracy"):
        if key in metrics:
            return metrics[key]
    return None


def score_rows(node: PlanNode, result: dict[str, Any]) -> list[ScoreRow]:
    """Rows for the store from a node's outcome.

    ``result["scores"]`` (target/retrieval nodes) is the ``xstilts score --json`` shape: every
    metric of every language, plus ``score`` per language and ``avg`` (the task's score).
    ``result["metrics"]`` (phase-1 nodes) maps an intermediate task to its quality metrics.
    """
    rows: list[ScoreRow] = []
    scores = result.get("scores") or {}
    for task, entry in (scores.get("tasks") or {}).items():
        for lang, metrics in (entry.get("languages") or {}).items():
            for metric, value in metrics.items():
                rows.append(ScoreRow("target", task, lang, metric, value))
            primary = language_score(task, metrics)
            if primary is not None and "score" not in metrics:
                rows.append(ScoreRow("target", task, lang, "score", primary))
        if entry.get("score") is not None:
            rows.append(ScoreRow("target", task, "avg", "score", entry["score"]))
    trivial = result.get("trivial") or {}
    for task, entry in trivial.items():  # what a predictor that learnt nothing scores on the same gold
        for lang, value in (entry.get("languages") or {}).items():
            rows.append(ScoreRow("target", task, lang, TRIVIAL_METRIC, value))
        if entry.get("score") is not None:
            rows.append(ScoreRow("target", task, "avg", TRIVIAL_METRIC, entry["score"]))
    quality = result.get("metrics") or {}
    if node.phase == "intermediate" and isinstance(result.get("phase_metrics"), dict):
        quality = phase1_quality(result["phase_metrics"])  # re-read: the parser may have learnt more
    for task, metrics in quality.items():
        for metric, value in metrics.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                rows.append(ScoreRow("intermediate", task, "en", metric, value))
    if node.phase == "intermediate" and isinstance(result.get("phase_metrics"), dict):
        for metric, value in phase1_budget(result["phase_metrics"]).items():
            rows.append(ScoreRow("intermediate", BUDGET_TASK, "en", metric, value))
    return rows


def make_request(plan: Plan, study_dir: Path, data_dir: Path | None, node: PlanNode,
                 config_hash: str = "", training_hash: str = "", legacy_hash: str = "") -> WorkRequest:
    """The request of one node (also built by the preflight check, which has no store)."""
    encoder_dir = None
    if node.depends_on:
        dep = plan.by_id()[node.depends_on]
        encoder_dir = str(dep.run_dir(study_dir) / "encoder")
    return WorkRequest(
        node=node,
        study=plan.study.to_json_dict(),
        study_dir=str(study_dir),
        data_dir=str(data_dir) if data_dir else None,
        run_dir=str(node.run_dir(study_dir)),
        encoder_dir=encoder_dir,
        cache_dir=str(Path(study_dir) / "cache"),
        config_hash=config_hash,
        training_hash=training_hash,
        legacy_hash=legacy_hash,
    )


@dataclass
class StudyContext:
    plan: Plan
    study_dir: Path
    data_dir: Path | None
    store: ResultStore
    code_version: str
    config_hashes: dict[str, str]
    training_hashes: dict[str, str] = field(default_factory=dict)
    legacy_hashes: dict[str, str] = field(default_factory=dict)

    def request(self, node: PlanNode) -> WorkRequest:
        return make_request(self.plan, self.study_dir, self.data_dir, node,
                            self.config_hashes.get(node.id, ""), self.training_hashes.get(node.id, ""),
                            self.legacy_hashes.get(node.id, ""))

    def mark_interrupted(self, reason: str) -> list[str]:
        """Cells recorded as running become ``interrupted``: not finished, and not failed (a
        re-run resumes them from their checkpoints). Returns their ids."""
        study = self.plan.study.name
        cells = [cell for cell, row in self.store.cell_status(study).items() if row["status"] == "running"]
        for cell in cells:
            self.store.mark_cell(study, cell, "interrupted", error=reason, finished_at=time.time())
        return cells

    def record(self, node: PlanNode, outcome: NodeOutcome) -> None:
        """Write the outcome to the store (driver only)."""
        study = self.plan.study.name
        common = dict(
            phase=node.phase, encoder=node.encoder, intermediate=node.setting, family=node.family,
            target=node.target, seed=node.seed, config_hash=self.config_hashes.get(node.id),
            code_version=self.code_version, run_dir=node.rel_dir,
        )
        if outcome.status == "failed":
            self.store.mark_cell(study, node.id, "failed", error=outcome.error, seconds=outcome.seconds,
                                 finished_at=time.time(), **common)
            return
        result = outcome.result
        tokens = result.get("tokens") or node.est_tokens
        cell_fields = dict(common, seconds=outcome.seconds, est_tokens=tokens, device=result.get("device"))
        score_fields = dict(
            seed=node.seed, config_hash=common["config_hash"], code_version=common["code_version"],
            seconds=outcome.seconds, intermediate=node.setting, family=node.family,
            encoder=node.encoder, target=node.target, run_dir=node.rel_dir,
        )
        self.store.record_cell(study, node.id, score_rows(node, result),
                               cell_fields=cell_fields, score_fields=score_fields)

    def mark_running(self, node: PlanNode) -> None:
        self.store.mark_cell(self.plan.study.name, node.id, "running", started_at=time.time(),
                             phase=node.phase, encoder=node.encoder, intermediate=node.setting,
                             family=node.family, target=node.target, seed=node.seed,
                             run_dir=node.rel_dir)


ProgressFn = Callable[[PlanNode, NodeOutcome], None]


def _order(plan: Plan) -> list[PlanNode]:
    """Phase-1 nodes first, then the rest in plan order."""
    return [n for n in plan.nodes if n.depends_on is None and n.phase == "intermediate"] + [
        n for n in plan.nodes if not (n.depends_on is None and n.phase == "intermediate")
    ]


class LocalExecutor:
    """Sequential in this process; with ``gpus > 1``, one node per GPU in worker processes; on the
    CPU with ``workers > 1``, that many nodes at once, each in its own process.

    GPU workers are spawned with ``CUDA_VISIBLE_DEVICES`` set to their own GPU, so every cell sees
    exactly one device. CPU workers each get ``threads`` torch/OpenMP threads (default: the cores
    divided among the workers), set before torch is imported in the worker. A node starts once
    its phase-1 node has finished. Every node is the same computation whatever the executor, so
    the scores equal the sequential run's.
    """

    def __init__(self, gpus: int = 0, workers: int = 1, threads: int | None = None,
                 processes_per_cell: int = 1) -> None:
        if workers < 1:
            from xstilts.errors import ConfigError

            raise ConfigError(f"executor workers must be >= 1, got {workers}")
        self.gpus = gpus
        self.workers = workers
        self.processes_per_cell = processes_per_cell
        self.threads = threads or max(1, (os.cpu_count() or 1) // workers)

    @property
    def slots(self) -> int:
        """Nodes run at once: one per group of ``processes_per_cell`` GPUs, or ``workers`` on the CPU."""
        if self.gpus > 1:
            return max(1, self.gpus // self.processes_per_cell)
        return self.workers if self.gpus == 0 else 1

    def run(self, ctx: StudyContext, work: WorkFn, progress: ProgressFn | None = None) -> dict[str, NodeOutcome]:
        if self.slots <= 1:
            return self._run_sequential(ctx, work, progress)
        return self._run_parallel(ctx, work, progress)

    def _run_sequential(self, ctx, work, progress):
        outcomes: dict[str, NodeOutcome] = {}
        for node in _order(ctx.plan):
            dep = outcomes.get(node.depends_on) if node.depends_on else None
            if read_done(node.run_dir(ctx.study_dir)) is None and not (dep and dep.status == "failed"):
                ctx.mark_running(node)
            outcome = execute_node(work, ctx.request(node), dep)
            _finish(ctx, node, outcome, outcomes, progress)
        return outcomes

    def _run_parallel(self, ctx, work, progress):
        import multiprocessing as mp
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

        spawn = mp.get_context("spawn")
        slots = self.slots
        if self.gpus > 1:
            gpu_queue = spawn.Queue()
            per_cell = self.processes_per_cell
            for slot in range(slots):  # each worker its own group of GPUs ("0,1", "2,3", ...)
                gpu_queue.put(",".join(str(slot * per_cell + i) for i in range(per_cell)))
            initializer, initargs = _bind_gpu, (gpu_queue,)
        else:
            initializer, initargs = _bind_threads, (self.threads,)
        outcomes: dict[str, NodeOutcome] = {}
        pending = _order(ctx.plan)
        running: dict[Any, PlanNode] = {}
        with ProcessPoolExecutor(slots, mp_context=spawn, initializer=initializer, initargs=initargs) as pool:
            while pending or running:
                for node in list(pending):
                    if len(running) >= slots:
                        break
                    if node.depends_on and node.depends_on not in outcomes:
                        continue
                    pending.remove(node)
                    dep = outcomes.get(node.depends_on) if node.depends_on else None
                    if read_done(node.run_dir(ctx.study_dir)) is None and not (dep and dep.status == "failed"):
                        ctx.mark_running(node)
                    running[pool.submit(execute_node, work, ctx.request(node), dep)] = node
                if not running:
                    break
                finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for fut in finished:
                    node = running.pop(fut)
                    try:
                        outcome = fut.result()
                    except Exception as exc:  # the worker process itself died
                        outcome = NodeOutcome(node.id, "failed", 0.0, f"worker died: {one_line(exc)}")
                        Path(node.run_dir(ctx.study_dir)).mkdir(parents=True, exist_ok=True)
                        (node.run_dir(ctx.study_dir) / ERROR_FILE).write_text(outcome.error + "\n")
                    _finish(ctx, node, outcome, outcomes, progress)
        return outcomes


def _bind_gpu(queue) -> None:
    os.environ["CUDA_VISIBLE_DEVICES"] = str(queue.get())


def _bind_threads(threads: int) -> None:
    """A CPU worker's thread budget, set before anything in the worker imports torch."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    import torch

    torch.set_num_threads(threads)


def _finish(ctx: StudyContext, node: PlanNode, outcome: NodeOutcome, outcomes: dict[str, NodeOutcome],
            progress: ProgressFn | None) -> None:
    outcomes[node.id] = outcome
    ctx.record(node, outcome)
    if progress is not None:
        progress(node, outcome)


class RayExecutor:
    """One node per GPU (or per CPU when ``gpus`` is 0) on a Ray cluster.

    Run directories live in the study directory, which must be on storage every worker sees
    (the driver passes absolute paths). A target node receives its phase-1 node's outcome as a
    Ray object reference, so Ray starts it only after the checkpoint exists.
    """

    def __init__(self, address: str | None = None, gpus: int = 0, init_kwargs: dict[str, Any] | None = None,
                 processes_per_cell: int = 1) -> None:
        self.address = address
        self.gpus = gpus
        self.processes_per_cell = processes_per_cell
        self.init_kwargs = init_kwargs or {}

    def run(self, ctx: StudyContext, work: WorkFn, progress: ProgressFn | None = None) -> dict[str, NodeOutcome]:
        try:
            import ray
        except ImportError:
            from xstilts.errors import ConfigError

            raise ConfigError("executor kind 'ray' needs Ray: pip install 'xstilts[ray]'") from None
        started_here = False
        if not ray.is_initialized():
            kwargs = dict(self.init_kwargs)
            if self.address:
                kwargs["address"] = self.address
            ray.init(**kwargs)
            started_here = True
        try:
            per_cell = self.processes_per_cell
            resources = {"num_gpus": per_cell} if self.gpus > 0 else {"num_cpus": per_cell}
            remote = ray.remote(**resources)(_ray_execute)
            refs: dict[str, Any] = {}
            by_ref: dict[Any, PlanNode] = {}
            for node in _order(ctx.plan):
                dep_ref = refs.get(node.depends_on) if node.depends_on else None
                if read_done(node.run_dir(ctx.study_dir)) is None:
                    ctx.mark_running(node)
                ref = remote.remote(work, ctx.request(node), dep_ref)
                refs[node.id] = ref
                by_ref[ref] = node
            outcomes: dict[str, NodeOutcome] = {}
            waiting = list(by_ref)
            while waiting:
                ready, waiting = ray.wait(waiting, num_returns=1)
                for ref in ready:
                    node = by_ref[ref]
                    try:
                        outcome = ray.get(ref)
                    except Exception as exc:  # worker crash, or a worker stopped by SIGTERM
                        stopped = _stopped_cause(exc)
                        if stopped is not None:  # not failed: the run_study caller records it as interrupted
                            raise stopped from None
                        outcome = NodeOutcome(node.id, "failed", 0.0, f"ray worker died: {one_line(exc)}")
                    _finish(ctx, node, outcome, outcomes, progress)
            return outcomes
        finally:
            if started_here:
                ray.shutdown()


def _stopped_cause(exc: BaseException) -> StoppedBySignal | None:
    """The StoppedBySignal inside a Ray task error (Ray wraps a task's exception in RayTaskError,
    whose ``cause`` is the original), if that is what ended the task."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, StoppedBySignal):
            return exc
        exc = getattr(exc, "cause", None) or exc.__cause__
        seen += 1
    return None


def _ray_execute(work: WorkFn, request: WorkRequest, dependency: NodeOutcome | None) -> NodeOutcome:
    # Ray resolves a top-level ObjectRef argument to its value before calling us.
    return execute_node(work, request, dependency)


def make_executor(study) -> Any:
    """The executor the study's ``executor:`` entry names (local, Ray, or SLURM via submitit)."""
    ex = study.executor
    if ex.kind == "ray":
        return RayExecutor(address=ex.address, gpus=ex.gpus, processes_per_cell=ex.processes_per_cell)
    if ex.kind == "slurm":
        from xstilts.study.slurm import SlurmExecutor  # it imports this module

        return SlurmExecutor(cluster=ex.cluster, gpus=ex.gpus, cpus_per_cell=ex.cpus_per_cell,
                             time_min=ex.time_min, partition=ex.partition, mem_gb=ex.mem_gb,
                             slurm_args=ex.slurm_args, max_parallel=ex.max_parallel, poll_s=ex.poll_s,
                             signal_delay_s=ex.signal_delay_s)
    return LocalExecutor(gpus=ex.gpus, workers=ex.workers if ex.gpus == 0 else 1,
                         processes_per_cell=ex.processes_per_cell)


# -- the whole study -----------------------------------------------------------------------


def code_version() -> str:
    """The git commit of the xstilts checkout (``+dirty`` with local changes), else the version."""
    import subprocess

    import xstilts

    root = Path(xstilts.__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return commit[:12] + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return f"xstilts-{getattr(xstilts, '__version__', 'unknown')}"


def _defaults_for(node: PlanNode) -> dict[str, Any] | None:
    """The code's defaults that decide a node's result beyond what the study sets: the phase's
    hyperparameter defaults (xstilts.study.run_config) and the training loop's (TrainConfig). Part of
    the node's hash, so a changed default reruns the nodes it affects instead of reusing results
    computed under the old one."""
    from dataclasses import asdict

    from xstilts.study import run_config as defaults
    from xstilts.tasks import get_task
    from xstilts.train.train_config import TrainConfig

    if node.phase == "retrieval":  # no training: the embeddings' precision and the evaluation cap
        return {"retrieval": defaults.RETRIEVAL_DEFAULTS}
    if node.phase == "intermediate":
        phase = {"common": defaults.COMMON_DEFAULTS, "intermediate": defaults.INTERMEDIATE_DEFAULTS,
                 "qa_max_length": defaults.INTERMEDIATE_QA_MAX_LENGTH, "mlm": defaults.MLM_DEFAULTS}
    else:
        kind = get_task(node.target).kind.value
        phase = {"common": defaults.COMMON_DEFAULTS, "target": defaults.TARGET_DEFAULTS.get(kind)}
    return {"phase": phase, "train": asdict(TrainConfig())}


def _node_spec(plan: Plan, node: PlanNode, parent: str | None) -> dict[str, Any]:
    """Everything that decides a node's result, ``parent`` being its phase-1 node's hash."""
    study = plan.study
    setting = study.setting(node.setting)
    phase = "intermediate" if node.phase == "intermediate" else "target"
    spec = {
        "defaults": _defaults_for(node),
        "encoder": node.encoder, "seed": node.seed, "phase": node.phase, "target": node.target,
        "setting": json.loads(setting.model_dump_json()) if node.phase == "intermediate" else node.setting,
        "languages": list(node.languages) if node.languages else None,
        # retrieval nodes train nothing: only the evaluation cap decides their result
        "budget": None if node.phase == "retrieval" else json.loads(getattr(study.budgets, phase).model_dump_json()),
        "eval_max_examples": study.budgets.eval_max_examples,
        # retrieval nodes take only the target phase's precision (RETRIEVAL_DEFAULTS)
        "hyperparameters": (study.hyperparameters.target.get("mixed_precision") if node.phase == "retrieval"
                            else getattr(study.hyperparameters, phase)),
        "pipeline": study.pipeline,
        "parent": parent,
    }
    if node.target in study.eval_splits:  # only where set, so that other nodes keep their hashes
        spec["eval_split"] = study.eval_splits[node.target]
    if study.executor.processes_per_cell > 1 and node.phase != "retrieval":  # DDP: other batches
        spec["processes"] = study.executor.processes_per_cell
    return spec


def _digest(spec: dict[str, Any]) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _chained_hashes(plan: Plan, spec_of: Callable[[PlanNode, str | None], dict[str, Any]]) -> dict[str, str]:
    """A digest per node of ``spec_of(node, parent digest)``, phase-1 nodes first so that a
    target's hash carries its phase-1 node's."""
    out: dict[str, str] = {}
    for node in sorted(plan.nodes, key=lambda n: n.depends_on is not None):
        out[node.id] = _digest(spec_of(node, out.get(node.depends_on) if node.depends_on else None))
    return out


def node_config_hashes(plan: Plan) -> dict[str, str]:
    """A hash per node of everything that decides its result (chained through its phase-1 node):
    the study's settings for it and the code's defaults (:func:`_defaults_for`)."""
    return _chained_hashes(plan, lambda node, parent: _node_spec(plan, node, parent))


def node_legacy_hashes(plan: Plan) -> dict[str, str]:
    """:func:`node_config_hashes` as computed before the evaluation split counted (the same spec
    without ``eval_split``), by which :func:`reuse_state` recognises runs recorded then."""

    def spec_of(node: PlanNode, parent: str | None) -> dict[str, Any]:
        spec = _node_spec(plan, node, parent)
        spec.pop("eval_split", None)
        return spec

    return _chained_hashes(plan, spec_of)


def node_training_hashes(plan: Plan) -> dict[str, str]:
    """A hash per node of what decides its *trained model*: :func:`node_config_hashes`' spec
    without the settings that only phase 3 reads (evaluation languages and split, prediction
    batch bounds and other cosmetic ``pipeline:`` keys; for target and retrieval nodes also the
    evaluation cap, which for phase-1 nodes caps their quality evaluation and so stays in).
    Two configs of a node with equal training hashes share the trained model: a changed
    evaluation setting re-evaluates it instead of training again (:func:`reuse_state`)."""
    from xstilts.study.rundir import COSMETIC_FIELDS, PHASE3_FIELDS

    skip_pipeline = set(COSMETIC_FIELDS) | set(PHASE3_FIELDS) | {"eval_max_examples"}

    def spec_of(node: PlanNode, parent: str | None) -> dict[str, Any]:
        spec = _node_spec(plan, node, parent)
        spec.pop("languages")
        spec.pop("eval_split", None)
        if node.phase != "intermediate":
            spec.pop("eval_max_examples")
        spec["pipeline"] = {k: v for k, v in spec["pipeline"].items() if k not in skip_pipeline}
        return spec

    return _chained_hashes(plan, spec_of)


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
    from xstilts.study.plan import build_plan

    study_dir = Path(study_dir).resolve()
    data = Path(data_dir).resolve() if data_dir else (Path(study.data_dir) if study.data_dir else None)
    if work is None:
        from xstilts.study.preflight import check_study

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


# -- the real unit of work: one pipeline run per node ---------------------------------------


def _capped(hp: dict[str, Any], budget, defaults: dict[str, Any], processes: int = 1) -> dict[str, Any]:
    """Study hyperparameters with the phase budget applied as caps (the smaller value wins).

    ``examples_seen`` fixes the number of optimizer steps, ceil(N / (batch_size x grad_accum x
    processes)), with the batch shape of these hyperparameters or the phase's ``defaults`` (each
    of a cell's DDP processes takes its own batch per step); a step count wins over epochs in
    the training loop, so every setting sees the same number of examples."""
    out = dict(hp)
    for key in ("max_steps", "epochs", "max_examples"):
        cap = getattr(budget, key)
        if cap is not None:
            out[key] = min(int(out[key]), cap) if out.get(key) is not None else cap
    if budget.examples_seen is not None:
        per_step = int(out.get("batch_size") or defaults["batch_size"]) * int(
            out.get("grad_accum") or defaults.get("grad_accum", 1)) * processes
        steps = max(1, math.ceil(budget.examples_seen / per_step))
        out["max_steps"] = min(int(out["max_steps"]), steps) if out.get("max_steps") is not None else steps
    return out


def run_config_for(request: WorkRequest) -> dict[str, Any]:
    """The RunConfig (as a mapping) that computes one node; validated by the pipeline."""
    from xstilts.errors import MissingDataError
    from xstilts.study import run_config as defaults
    from xstilts.study.study_config import StudyConfig
    from xstilts.tasks import get_task

    study = StudyConfig(**request.study)
    node = request.node
    target_kind = get_task(node.target).kind.value if node.target else "tagging"
    if not request.data_dir:
        raise MissingDataError("the study needs a data folder: give --data-dir DIR (or data_dir: in the config)")
    cfg: dict[str, Any] = {
        "model": node.encoder,
        "data_dir": request.data_dir,
        "out": request.run_dir,
        "seed": node.seed,
        "progress": False,
        "hyperparameters": {
            "intermediate": _capped(study.hyperparameters.intermediate, study.budgets.intermediate,
                                    defaults.INTERMEDIATE_DEFAULTS, study.executor.processes_per_cell),
            "target": _capped(study.hyperparameters.target, study.budgets.target,
                              defaults.TARGET_DEFAULTS.get(target_kind, defaults.TARGET_DEFAULTS["tagging"])),
        },
    }
    if request.cache_dir:  # tokenised features shared by the study's cells
        cfg["cache_dir"] = request.cache_dir
    if study.budgets.eval_max_examples is not None:  # phase 3, and phase 1's own quality
        cfg["eval_max_examples"] = study.budgets.eval_max_examples
    cfg.update(study.pipeline)
    if node.phase == "intermediate":
        setting = study.setting(node.setting)
        cfg["intermediate"] = {
            "name": setting.name,
            "tasks": [t.model_dump(exclude_none=True) for t in setting.tasks],  # RunConfig task entries
            "sampling": setting.sampling,
            "temperature": setting.temperature,
            **({"mlm": setting.mlm.model_dump(exclude_none=True)} if setting.mlm else {}),
        }
    else:
        cfg["target"] = node.target
        if request.encoder_dir:
            cfg["encoder_dir"] = request.encoder_dir
        if node.languages is not None:
            cfg["languages"] = list(node.languages)
        if node.target in study.eval_splits:
            cfg["eval_split"] = study.eval_splits[node.target]
    return cfg


def phase1_quality(metrics: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Intermediate-task metrics from a run's metrics.json: task -> metric -> value.

    The pipeline writes ``phase1.quality`` (the task's own metrics on its dev/held-out data:
    accuracy, EM, BLEU...) and ``phase1.metrics`` (dev loss); the final training loss is added
    as ``train_loss`` (under the task, or ``(mixture)`` for several tasks) so that every phase-1
    run reports something even where the task has no dev data. ``phase1.quality_before`` (the same
    metrics with the fresh head or decoder, before any phase-1 step) comes as ``METRIC_untrained``.
    """
    entry = metrics.get("phase1") if isinstance(metrics.get("phase1"), dict) else None
    if entry is None:
        return {}
    skip = ("second", "runtime", "per_second")

    def numeric(d: Any) -> dict[str, float]:
        if not isinstance(d, dict):
            return {}
        return {k: float(v) for k, v in d.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool) and not any(s in k for s in skip)}

    out: dict[str, dict[str, float]] = {}
    for key in ("quality", "metrics"):
        for task, d in (entry.get(key) or {}).items():
            vals = numeric(d)
            if vals:
                out.setdefault(task, {}).update(vals)
    for task, d in (entry.get("quality_before") or {}).items():  # the same metrics before phase 1
        vals = numeric(d)
        if vals:
            out.setdefault(task, {}).update({f"{k}{UNTRAINED_SUFFIX}": v for k, v in vals.items()})
    train = entry.get("train") if isinstance(entry.get("train"), dict) else {}
    if isinstance(train.get("train_loss"), (int, float)):
        sizes = list((entry.get("sizes") or {}).keys())
        name = sizes[0] if len(sizes) == 1 else "(mixture)"
        out.setdefault(name, {})["train_loss"] = float(train["train_loss"])
    return out


def phase1_budget(metrics: dict[str, Any]) -> dict[str, float]:
    """The budget a phase-1 run actually used: optimizer steps, examples seen (steps x batch x
    accumulation x processes), and the training features it had (all tasks of a mixture)."""
    entry = metrics.get("phase1") if isinstance(metrics.get("phase1"), dict) else None
    if entry is None:
        return {}
    train = entry.get("train") if isinstance(entry.get("train"), dict) else {}
    settings = next(iter((entry.get("settings") or {}).values()), {})
    steps = train.get("global_step")
    out: dict[str, float] = {}
    if isinstance(steps, int):
        out["steps"] = float(steps)
        if isinstance(settings.get("batch_size"), int):
            planner = entry.get("planner") if isinstance(entry.get("planner"), dict) else {}
            out["examples_seen"] = float(steps * settings["batch_size"] * int(settings.get("grad_accum") or 1)
                                         * int(planner.get("world_size") or 1))
    sizes = entry.get("sizes")
    if isinstance(sizes, dict) and sizes:
        out["train_features"] = float(sum(int(v) for v in sizes.values()))
    return out


def target_trivial(run_dir: Path, target: str, data_dir: str | None, metrics: dict[str, Any]) -> dict[str, Any]:
    """The trivial reference on the gold files this run was scored on (see xstilts.evaluation.trivial)."""
    from xstilts.data.readers import read_examples
    from xstilts.evaluation.trivial import reads_training_data, trivial_scores
    from xstilts.tasks import get_task

    task = get_task(target)
    split = (metrics.get("phase3") or {}).get("split") or task.score_split
    label_root = run_dir / ("labels" if split == "test" else f"labels-{split}")
    train: list[Any] = []
    if data_dir and reads_training_data(task):
        train = list(read_examples(task, data_dir, "train", "en"))
    return {target: trivial_scores(task, label_root, train)}


def pipeline_work(request: WorkRequest) -> dict[str, Any]:
    """One node = one ``run_pipeline`` call in the node's run dir (which resumes if it was killed)."""
    from xstilts.study.pipeline import run_pipeline
    from xstilts.study.run_config import load_run_config
    from xstilts.study.rundir import METRICS_FILE, SCORES_FILE, RunDir
    from xstilts.study.study_config import StudyConfig

    config = load_run_config(run_config_for(request))
    processes = StudyConfig(**request.study).executor.processes_per_cell
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
