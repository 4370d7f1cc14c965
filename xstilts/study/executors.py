"""Running a plan's cells: a local executor (sequential, N CPU workers, or one cell per GPU) and a
Ray executor (the SLURM one is :mod:`xstilts.study.slurm`). Each runs every cell through
:func:`xstilts.study.cells.execute_node`; only the driver writes the result store, from the
outcomes (:class:`StudyContext`), so that workers need nothing but the shared study directory.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xstilts.errors import ConfigError
from xstilts.study.cells import (
    NodeOutcome,
    WorkFn,
    WorkRequest,
    execute_node,
    make_request,
    one_line,
    will_compute,
)
from xstilts.study.plan import ERROR_FILE, Plan, PlanNode
from xstilts.study.store import BUDGET_TASK, TRIVIAL_METRIC, UNTRAINED_SUFFIX, ResultStore, ScoreRow
from xstilts.tasks import get_task
from xstilts.tasks.kinds import kind_ops
from xstilts.train.signals import StoppedBySignal


def language_score(task_name: str, metrics: dict[str, float]) -> float | None:
    """The per-language number that enters the XTREME score (the rule of :func:`scorer.task_score`)."""
    return kind_ops(get_task(task_name)).summary(metrics)


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
            request = ctx.request(node)
            if will_compute(request) and not (dep and dep.status == "failed"):
                ctx.mark_running(node)
            outcome = execute_node(work, request, dep)
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
                    request = ctx.request(node)
                    if will_compute(request) and not (dep and dep.status == "failed"):
                        ctx.mark_running(node)
                    running[pool.submit(execute_node, work, request, dep)] = node
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
                request = ctx.request(node)
                if will_compute(request):
                    ctx.mark_running(node)
                ref = remote.remote(work, request, dep_ref)
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
