"""One study cell: its request, its hashes, its run config, and how it is run wherever it runs.

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
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xstilts.errors import MissingDataError
from xstilts.fileio import write_json_atomic
from xstilts.study import run_config as defaults
from xstilts.study.locks import DirLock, LockHeldError
from xstilts.study.plan import DONE_FILE, ERROR_FILE, Plan, PlanNode
from xstilts.study.rundir import COSMETIC_FIELDS, PHASE3_FIELDS
from xstilts.study.study_config import StudyConfig
from xstilts.tasks import get_task
from xstilts.train.signals import StoppedBySignal, stop_on_signal
from xstilts.train.train_config import TrainConfig

WorkFn = Callable[["WorkRequest"], dict[str, Any]]


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


def will_compute(request: WorkRequest) -> bool:
    """Whether :func:`execute_node` will run the work rather than skip the node as done: a
    finished run dir under another training config is computed again (:func:`reuse_state`)."""
    return reuse_state(Path(request.run_dir), request.config_hash, request.training_hash,
                       request.legacy_hash) != "done"


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


def _defaults_for(node: PlanNode) -> dict[str, Any] | None:
    """The code's defaults that decide a node's result beyond what the study sets: the phase's
    hyperparameter defaults (xstilts.study.run_config) and the training loop's (TrainConfig). Part of
    the node's hash, so a changed default reruns the nodes it affects instead of reusing results
    computed under the old one."""
    from dataclasses import asdict


    if node.phase == "retrieval":  # no training: the embeddings' precision and the evaluation cap
        return {"retrieval": defaults.RETRIEVAL_DEFAULTS}
    if node.phase == "intermediate":
        phase = {"common": defaults.COMMON_DEFAULTS, "intermediate": defaults.INTERMEDIATE_DEFAULTS,
                 "qa_max_length": defaults.INTERMEDIATE_QA_MAX_LENGTH, "mlm": defaults.MLM_DEFAULTS}
    else:
        kind = get_task(node.target).kind.value
        phase = {"common": defaults.COMMON_DEFAULTS, "target": defaults.TARGET_DEFAULTS.get(kind)}
    train = asdict(TrainConfig())
    train.pop("sharding")  # how several processes share the state: in the spec when it is fsdp (_node_spec)
    return {"phase": phase, "train": train}


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
        if study.executor.sharding == "fsdp":  # only then, so that DDP nodes keep their hashes
            spec["sharding"] = "fsdp"
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


def plan_status(plan: Plan, study_dir: Path) -> dict[str, str]:
    """:meth:`Plan.status` with the config hashes taken into account, as a run would decide
    (:func:`reuse_state`): a finished node whose training changed is ``changed`` (it will be
    trained afresh, its old run dir kept aside), one whose evaluation changed is ``started`` (it
    will be re-evaluated); the rest as :meth:`Plan.status` reads them."""
    status = plan.status(study_dir)
    config, training, legacy = node_config_hashes(plan), node_training_hashes(plan), node_legacy_hashes(plan)
    for node in plan.nodes:
        if status[node.id] != "done":
            continue
        state = reuse_state(node.run_dir(study_dir), config[node.id], training[node.id], legacy[node.id])
        if state == "aside":
            status[node.id] = "changed"
        elif state == "reuse":
            status[node.id] = "started"
    return status


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
    if study.executor.sharding == "fsdp":  # the executor's choice, for every phase that trains
        for phase_hp in cfg["hyperparameters"].values():
            phase_hp["sharding"] = "fsdp"
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
