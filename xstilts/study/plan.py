"""The plan of a study: a small graph of phase runs with every intermediate checkpoint reused.

Nodes:

* ``intermediate`` (phase 1): one per (encoder, intermediate setting, seed) whose setting has
  tasks. Trained ONCE; its encoder checkpoint is the starting point of every target below it.
* ``target`` (phase 2 + 3): one per (encoder, setting, seed, target task with English training
  data): fine-tune a new head on English, predict zero-shot in every language, score.
* ``retrieval`` (phase 3 only): BUCC / Tatoeba, evaluated straight from the phase-1 encoder (or
  the pretrained one for the ``none`` setting); no fine-tuning.

A node's run directory is ``STUDY/runs/<encoder>/<setting>/s<seed>/<phase1|target>``; a finished
node has ``DONE.json`` there (written last, atomically), so "already done" is read from the
study directory itself. Tokenized data is cached in ``STUDY/cache`` and shared by all nodes.

The compute estimate uses measured throughput (tokens/s of finished cells of the same encoder in
this study's store) when there is any, else :data:`DEFAULT_DEVICE_FLOPS` / (6 × non-embedding
parameters), see :func:`default_tokens_per_second`.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from xstilts.study import run_config
from xstilts.study.study_config import StudyConfig, slug
from xstilts.tasks import REGISTRY
from xstilts.tasks.kinds import kind_ops

DONE_FILE = "DONE.json"
ERROR_FILE = "error.txt"

# Effective training FLOP/s per device (forward+backward = 6 × params per token). The CPU figure
# is measured on this project's 2-core machine (multilingual-e5-small UDPOS fine-tuning, about
# 300 tokens/s); the GPU figure is an H100 in bf16 at about 40% utilisation.
DEFAULT_DEVICE_FLOPS = {"cpu": 4.0e10, "gpu": 8.0e13}

# Non-embedding parameters (the part whose cost grows with tokens); unknown encoders: base size.
ENCODER_PARAMS = {
    "xlm-roberta-large": 303e6,
    "FacebookAI/xlm-roberta-large": 303e6,
    "xlm-roberta-base": 85e6,
    "FacebookAI/xlm-roberta-base": 85e6,
    "multilingual-e5-small": 21e6,
    "intfloat/multilingual-e5-small": 21e6,
    "multilingual-e5-base": 85e6,
    "multilingual-e5-large": 303e6,
    "bert-base-multilingual-cased": 85e6,
}
DEFAULT_PARAMS = 85e6

# English training-set sizes (Task.train_examples) and tokens per example (the kind's
# tokens_per_example) are approximate: used only for the compute estimate when no budget caps
# the phase. A task that declares no size counts as this many examples.
DEFAULT_TRAIN_EXAMPLES = 10_000
DEFAULT_EPOCHS = 3
DEFAULT_BATCH = 32
EVAL_EXAMPLES_PER_LANGUAGE = 1_000


def default_tokens_per_second(encoder: str, device: str = "cpu") -> float:
    params = ENCODER_PARAMS.get(encoder, ENCODER_PARAMS.get(Path(encoder).name, DEFAULT_PARAMS))
    return DEFAULT_DEVICE_FLOPS[device] / (6.0 * params)


@dataclass(frozen=True)
class PlanNode:
    """One phase run of the plan."""

    id: str
    phase: str  # intermediate | target | retrieval
    encoder: str
    setting: str
    family: str
    seed: int
    target: str | None
    depends_on: str | None
    rel_dir: str
    languages: tuple[str, ...] | None = None
    est_tokens: float = 0.0

    def run_dir(self, study_dir: Path) -> Path:
        return Path(study_dir) / self.rel_dir

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["languages"] = list(self.languages) if self.languages is not None else None
        return d


@dataclass
class Plan:
    study: StudyConfig
    nodes: list[PlanNode] = field(default_factory=list)

    def by_id(self) -> dict[str, PlanNode]:
        return {n.id: n for n in self.nodes}

    def counts(self) -> Counter:
        return Counter(n.phase for n in self.nodes)

    def dependents(self, node_id: str) -> list[PlanNode]:
        return [n for n in self.nodes if n.depends_on == node_id]

    def status(self, study_dir: Path) -> dict[str, str]:
        """done | failed | started | todo, read from the run directories."""
        out = {}
        for n in self.nodes:
            d = n.run_dir(study_dir)
            if (d / DONE_FILE).is_file():
                out[n.id] = "done"
            elif (d / ERROR_FILE).is_file():
                out[n.id] = "failed"
            elif d.is_dir() and any(d.iterdir()):
                out[n.id] = "started"
            else:
                out[n.id] = "todo"
        return out

    def to_json(self) -> str:
        return json.dumps({"study": self.study.name, "nodes": [n.to_dict() for n in self.nodes]}, indent=2)


def _pipeline_defaults(phase: str, kind: str) -> dict[str, Any]:
    """The pipeline's default hyperparameters of a phase and task kind (empty if unknown)."""
    if phase == "intermediate":
        return dict(run_config.INTERMEDIATE_DEFAULTS)
    return dict(run_config.TARGET_DEFAULTS.get(kind, {}))


def _train_tokens(task_names: list[str], budget, hparams: dict[str, Any], phase: str = "target") -> float:
    first = REGISTRY.get(task_names[0]).kind.value
    hp = {**_pipeline_defaults(phase, first), **hparams}
    batch = int(hp.get("batch_size", DEFAULT_BATCH)) * int(hp.get("grad_accum", 1))
    per_task = []
    for name in task_names:
        task = REGISTRY.get(name)
        length = kind_ops(task).tokens_per_example
        n = task.train_examples or DEFAULT_TRAIN_EXAMPLES
        if budget.max_examples is not None:
            n = min(n, budget.max_examples)
        if hp.get("max_examples"):
            n = min(n, int(hp["max_examples"]))
        epochs = min(x for x in (budget.epochs, hp.get("epochs") or DEFAULT_EPOCHS) if x)
        per_task.append((n * epochs, length))
    examples = sum(e for e, _ in per_task)
    length = sum(e * l for e, l in per_task) / max(examples, 1)
    steps = [x for x in (budget.max_steps, hp.get("max_steps")) if x]
    max_steps = min(steps) if steps else None
    if max_steps is not None:
        examples = min(examples, max_steps * batch)
    if budget.examples_seen is not None:  # a fixed number of steps: repeats a small task's data
        examples = math.ceil(budget.examples_seen / batch) * batch
        if max_steps is not None:
            examples = min(examples, max_steps * batch)
    return float(examples * length)


def _eval_tokens(target: str, languages: tuple[str, ...] | None, cap: int | None) -> float:
    task = REGISTRY.get(target)
    n_langs = len(languages) if languages is not None else len(task.languages)  # upper bound
    per_lang = min(cap, EVAL_EXAMPLES_PER_LANGUAGE) if cap else EVAL_EXAMPLES_PER_LANGUAGE
    # prediction is a forward pass only: a third of a training step's cost per token
    return n_langs * per_lang * kind_ops(task).tokens_per_example / 3.0


def build_plan(study: StudyConfig) -> Plan:
    """Expand the grid into nodes; each (encoder, setting, seed) has at most ONE phase-1 node."""

    plan = Plan(study)
    hp_int = dict(study.hyperparameters.intermediate)
    hp_tgt = dict(study.hyperparameters.target)
    for encoder in study.encoders:
        enc = slug(Path(encoder).name if "/" in encoder and Path(encoder).exists() else encoder)
        for setting in study.intermediate:
            for seed in study.seeds:
                base = f"{enc}/{setting.slug}/s{seed}"
                phase1_id = None
                if not setting.is_none:
                    phase1_id = f"{base}/phase1"
                    plan.nodes.append(
                        PlanNode(
                            id=phase1_id, phase="intermediate", encoder=encoder, setting=setting.name,
                            family=setting.family, seed=seed, target=None, depends_on=None,
                            rel_dir=f"runs/{phase1_id}",
                            est_tokens=_train_tokens([t.task for t in setting.tasks], study.budgets.intermediate, hp_int,
                                                      "intermediate"),
                        )
                    )
                for target in study.targets:
                    task = REGISTRY.get(target)
                    langs = study.languages_for(target)
                    evaluation = _eval_tokens(target, langs, study.budgets.eval_max_examples)
                    if task.has_training_data:
                        phase, tokens = "target", _train_tokens([target], study.budgets.target, hp_tgt) + evaluation
                    else:
                        phase, tokens = "retrieval", evaluation
                    node_id = f"{base}/{slug(target)}"
                    plan.nodes.append(
                        PlanNode(
                            id=node_id, phase=phase, encoder=encoder, setting=setting.name,
                            family=setting.family, seed=seed, target=target, depends_on=phase1_id,
                            rel_dir=f"runs/{node_id}", languages=langs, est_tokens=tokens,
                        )
                    )
    return plan


@dataclass
class Estimate:
    seconds: float
    tokens: float
    source: dict[str, str]  # encoder -> "measured (N tok/s)" | "default (N tok/s, device)"


def estimate(plan: Plan, status: dict[str, str], store=None, device: str = "cpu") -> Estimate:
    """Compute still to do: planned tokens of unfinished nodes / throughput per encoder."""
    seconds = 0.0
    tokens = 0.0
    source: dict[str, str] = {}
    rates: dict[str, float] = {}
    for encoder in plan.study.encoders:
        measured = store.throughput(encoder) if store is not None else None
        if measured:
            rates[encoder] = measured
            source[encoder] = f"measured: {measured:,.0f} tokens/s"
        else:
            rates[encoder] = default_tokens_per_second(encoder, device)
            source[encoder] = f"default: {rates[encoder]:,.0f} tokens/s on {device}"
    for n in plan.nodes:
        if status.get(n.id) == "done":
            continue
        tokens += n.est_tokens
        seconds += n.est_tokens / rates[n.encoder]
    return Estimate(seconds=seconds, tokens=tokens, source=source)


def format_duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"
