"""The study config: encoders × intermediate settings × target tasks × seeds, with budgets
(the outermost config; each cell becomes a :mod:`xstilts.study.run_config` run).

A study is written as YAML and validated here (pydantic, unknown keys are errors). Every error
names the offending key and what is allowed, and surfaces as :class:`ConfigError` so that the
CLI prints one line with exit status 2.

Intermediate settings can be written in three ways::

    intermediate:
      - none                     # no phase 1: the pretrained encoder goes straight to phase 2
      - cosmosqa                 # one NLU task
      - conala:generate          # one code task with its formulation (generate | contrastive | match | infill)
      - name: nlu-mix            # a named mixture
        tasks: [mnli, cosmosqa]
        sampling: temperature    # uniform | proportional | temperature
        temperature: 2.0
      - name: conala+mlm         # MLM co-training (the paper's "MLM" variant)
        tasks: [conala:generate]
        mlm: {probability: 0.5}
      - name: mnli-translated    # machine-translated copies of the intermediate data
        tasks:
          - {task: mnli, translated: {de: /data/mnli-de, fr: /data/mnli-fr}}
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from xstilts.errors import ConfigError
from xstilts.study.run_config import IntermediateTaskSpec, PhaseHyperparameters, RunConfig
from xstilts.tasks import REGISTRY
from xstilts.train.formulations import default_formulation

# The ways an encoder can learn a code task (issue 5; xstilts.models.codegen implements them).
CODE_FORMULATIONS = ("generate", "contrastive", "match", "infill")
SAMPLING = ("uniform", "proportional", "temperature")
# RunConfig fields that every cell gets from the study itself; ``pipeline:`` may set the others.
PIPELINE_SET_BY_STUDY = {
    "model": "use encoders:", "encoder_dir": "each cell starts from its phase-1 node's encoder",
    "target": "use targets:", "intermediate": "use intermediate:", "data_dir": "use data_dir: or --data-dir",
    "out": "each cell has its run directory", "seed": "use seeds:", "hyperparameters": "use hyperparameters:",
    "languages": "use languages:", "eval_split": "use eval_splits:",
    "eval_max_examples": "use budgets.eval_max_examples",
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def slug(text: str) -> str:
    """A filesystem- and id-safe form of a name (``conala:generate`` → ``conala-generate``)."""
    out = re.sub(r"[^A-Za-z0-9._+-]+", "-", text).strip("-")
    return out or "x"


class IntermediateTask(IntermediateTaskSpec):
    """One English intermediate task inside a setting: the run config's task entry (the same
    fields, passed on as they are), restricted to NLU and code tasks. A code task without a
    formulation gets its kind's default (``generate`` for NL -> code, ``contrastive`` for
    retrieval), the one the pipeline would use, so that cell names say what was trained."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="after")
    def _check_family(self) -> IntermediateTask:
        allowed = sorted(REGISTRY.names("nlu") + REGISTRY.names("code"))
        task = REGISTRY.get(self.task)
        if task.family not in ("nlu", "code"):
            raise ValueError(f"unknown intermediate task {self.task!r}; allowed: {', '.join(allowed)}")
        if task.family == "code":
            if self.formulation is None:
                object.__setattr__(self, "formulation", default_formulation(task))
            elif self.formulation not in CODE_FORMULATIONS:
                raise ValueError(
                    f"formulation {self.formulation!r} of {self.task}; allowed: {', '.join(CODE_FORMULATIONS)}"
                )
        elif self.formulation is not None:
            raise ValueError(
                f"{self.task} is an NLU task and takes no formulation (got {self.formulation!r}); "
                f"formulations are for code tasks only"
            )
        return self

    @property
    def label(self) -> str:
        return f"{self.task}:{self.formulation}" if self.formulation else self.task

    @property
    def family(self) -> str:
        return REGISTRY.get(self.task).family

    @classmethod
    def parse(cls, spec: str | dict[str, Any]) -> IntermediateTask:
        if isinstance(spec, str):
            task, _, form = spec.partition(":")
            return cls(task=task.strip(), formulation=form.strip() or None)
        return cls(**spec)


class MLMCoTraining(_Strict):
    """Multilingual MLM mixed into phase 1 (Phang et al. 2020's "+MLM" runs)."""

    probability: float = Field(0.5, gt=0, lt=1, description="share of steps that are MLM steps")
    data: str | None = Field(None, description="raw multilingual text (file or folder); None = pipeline default")


class IntermediateSetting(_Strict):
    """A phase-1 setting: none, one task, or a mixture, optionally with MLM or translated data."""

    name: str
    tasks: tuple[IntermediateTask, ...] = ()
    sampling: Literal["uniform", "proportional", "temperature"] = "proportional"
    temperature: float = Field(2.0, gt=0)
    mlm: MLMCoTraining | None = None

    @field_validator("tasks", mode="before")
    @classmethod
    def _tasks(cls, value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return tuple(IntermediateTask.parse(v) if isinstance(v, (str, dict)) else v for v in value)
        return value

    @model_validator(mode="after")
    def _check(self) -> IntermediateSetting:
        if self.name == "none" and self.tasks:
            raise ValueError("the setting name 'none' is reserved for no intermediate task")
        if self.name != "none" and not self.tasks:
            raise ValueError(f"intermediate setting {self.name!r} lists no tasks (use 'none' for the baseline)")
        if self.mlm is not None and not self.tasks:
            raise ValueError("MLM co-training needs at least one intermediate task")
        return self

    @property
    def is_none(self) -> bool:
        return not self.tasks

    @property
    def family(self) -> str:
        """none | nlu | code | mixed: the axis of the code-vs-NLU comparison."""
        families = {t.family for t in self.tasks}
        if not families:
            return "none"
        return families.pop() if len(families) == 1 else "mixed"

    @property
    def slug(self) -> str:
        return slug(self.name)

    @classmethod
    def parse(cls, spec: str | dict[str, Any]) -> IntermediateSetting:
        if isinstance(spec, str):
            if spec.strip() == "none":
                return cls(name="none")
            return cls(name=spec.strip(), tasks=(IntermediateTask.parse(spec.strip()),))
        if isinstance(spec, dict):
            return cls(**spec)
        raise ValueError(f"an intermediate setting is a string or a mapping, found {spec!r}")


class PhaseBudget(_Strict):
    """Caps on one phase: the smallest applies. None = the pipeline's (paper's) default."""

    max_steps: int | None = Field(None, ge=1)
    epochs: int | None = Field(None, ge=1)
    max_examples: int | None = Field(None, ge=1, description="training examples kept (first N)")
    examples_seen: int | None = Field(
        None, ge=1,
        description="train on exactly this many examples (steps = ceil(N / (batch_size x grad_accum)), repeating "
                    "a small task's data, stopping a large one early): one budget for every setting, so tasks of "
                    "100x different sizes compare fairly",
    )

    def capped(self) -> list[str]:
        out = []
        if self.examples_seen is not None:
            out.append(f"{self.examples_seen} training examples seen (the same for every setting)")
        if self.max_steps is not None:
            out.append(f"max {self.max_steps} steps")
        if self.epochs is not None:
            out.append(f"{self.epochs} epoch(s)")
        if self.max_examples is not None:
            out.append(f"first {self.max_examples} training examples")
        return out


class Budgets(_Strict):
    intermediate: PhaseBudget = PhaseBudget()
    target: PhaseBudget = PhaseBudget()
    eval_max_examples: int | None = Field(
        None, ge=1, description="evaluate on at most N examples per language (sentences for tagging)"
    )

    def describe(self) -> list[str]:
        """Human-readable list of what was capped (the report says it)."""
        out = []
        if c := self.intermediate.capped():
            out.append("phase 1 (intermediate): " + ", ".join(c))
        if c := self.target.capped():
            out.append("phase 2 (target fine-tuning): " + ", ".join(c))
        if self.eval_max_examples is not None:
            out.append(f"phase 3 (evaluation): at most {self.eval_max_examples} examples per language")
        return out


class Hyperparameters(_Strict):
    """Overrides of the pipeline's per-kind defaults (which follow the paper's protocol)."""

    intermediate: dict[str, Any] = {}
    target: dict[str, Any] = {}

    @field_validator("intermediate", "target")
    @classmethod
    def _keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        allowed = tuple(PhaseHyperparameters.model_fields)  # the pipeline's per-phase names
        bad = sorted(set(value) - set(allowed))
        if bad:
            raise ValueError(f"unknown hyperparameter(s) {', '.join(bad)}; allowed: {', '.join(allowed)}")
        try:  # the pipeline's own per-phase model checks the values (ranges, choices)
            PhaseHyperparameters(**value)
        except ValidationError as exc:
            raise ValueError("; ".join(
                ".".join(str(p) for p in e["loc"]) + ": " + e["msg"] for e in exc.errors())) from None
        return value


class ExecutorConfig(_Strict):
    """Where the cells run: ``local`` (this machine), ``ray`` (a Ray cluster) or ``slurm`` (one
    submitit job per cell; the keys below ``address`` apply to it)."""

    kind: Literal["local", "ray", "slurm"] = "local"
    gpus: int = Field(0, ge=0, description="GPUs: local, the machine's (0 = CPU; >1 runs one cell per GPU); "
                                           "ray, per cell (0 = one CPU per cell); slurm, per cell's job")
    workers: int = Field(
        1, ge=1,
        description="CPU only (gpus: 0): cells run at once, each in its own process with its share of the "
                    "cores as its thread budget (OMP_NUM_THREADS and torch threads)",
    )
    processes_per_cell: int = Field(
        1, ge=1,
        description="processes that train one cell together (DDP, launched with torchrun): one per GPU of the "
                    "cell; local with gpus G runs G / N cells at once; on the CPU, N processes over gloo")
    sharding: Literal["ddp", "fsdp"] = Field(
        "ddp", description="with processes_per_cell > 1: ddp replicates weights, gradients and optimizer state "
                           "in every process; fsdp shards them over the cell's processes (a model too big for one GPU)")
    address: str | None = Field(None, description="Ray cluster address (None: start or join a local one)")
    cluster: Literal["slurm", "local", "debug"] | None = Field(
        None, description="slurm: submitit's executor (None: SLURM where sbatch exists, else local processes)")
    partition: str | None = Field(None, description="slurm: the partition (sbatch --partition)")
    cpus_per_cell: int = Field(4, ge=1, description="slurm: CPUs per cell's job (its thread budget on a CPU job)")
    mem_gb: float | None = Field(None, gt=0, description="slurm: memory per cell's job")
    time_min: int = Field(24 * 60, ge=1, description="slurm: a job's time limit; a longer cell is requeued "
                                                     "and resumes from its last checkpoint")
    signal_delay_s: int = Field(120, ge=1, description="slurm: seconds before the limit at which a job "
                                                       "checkpoints and requeues")
    max_parallel: int = Field(0, ge=0, description="slurm: cells queued or running at once (0: no cap)")
    poll_s: float = Field(15.0, gt=0, description="slurm: seconds between checks of the jobs")
    slurm_args: dict[str, Any] = Field(
        default_factory=dict, description="slurm: other sbatch options, e.g. {account: A, qos: Q, constraint: a100}")

    @model_validator(mode="after")
    def _processes_fit(self) -> "ExecutorConfig":
        if self.sharding == "fsdp" and self.processes_per_cell < 2:
            raise ValueError("sharding: fsdp shards a cell over its processes: set processes_per_cell >= 2")
        if self.gpus and self.processes_per_cell > self.gpus:
            raise ValueError(f"processes_per_cell {self.processes_per_cell} needs as many GPUs per cell; gpus is "
                             f"{self.gpus}")
        return self


class StudyConfig(_Strict):
    """A whole study; see the module docstring for the YAML shape."""

    name: str
    description: str = ""
    encoders: tuple[str, ...]
    intermediate: tuple[IntermediateSetting, ...]
    targets: tuple[str, ...]
    languages: dict[str, tuple[str, ...]] | tuple[str, ...] | None = Field(
        None, description="evaluation languages: one list for all targets, or target -> list; None = all present"
    )
    eval_splits: dict[str, str] = Field(
        default_factory=dict, description="target -> split to predict and score (default: the task's test split)"
    )
    seeds: tuple[int, ...] = (1,)
    budgets: Budgets = Budgets()
    hyperparameters: Hyperparameters = Hyperparameters()
    executor: ExecutorConfig = ExecutorConfig()
    data_dir: str | None = None
    pipeline: dict[str, Any] = Field(
        default_factory=dict, description="extra RunConfig fields passed to every run as they are"
    )

    @field_validator("pipeline")
    @classmethod
    def _pipeline_keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        """Only RunConfig fields that the study does not set itself: a typo here would otherwise
        be found by the first cell, after the study has started (and fail every cell)."""

        bad = sorted(k for k in value if k not in RunConfig.model_fields)
        if bad:
            allowed = sorted(k for k in RunConfig.model_fields if k not in PIPELINE_SET_BY_STUDY)
            raise ValueError(f"unknown key(s) {', '.join(bad)}; allowed: {', '.join(allowed)}")
        managed = sorted(k for k in value if k in PIPELINE_SET_BY_STUDY)
        if managed:
            raise ValueError("; ".join(f"{k} is set by the study ({PIPELINE_SET_BY_STUDY[k]})" for k in managed))
        return value

    @field_validator("intermediate", mode="before")
    @classmethod
    def _settings(cls, value: Any) -> Any:
        if not isinstance(value, (list, tuple)):
            return value
        out = []
        for i, spec in enumerate(value):
            if not isinstance(spec, (str, dict)):
                out.append(spec)
                continue
            try:
                out.append(IntermediateSetting.parse(spec))
            except ValidationError as exc:
                msgs = "; ".join(
                    (".".join(str(p) for p in e["loc"]) + ": " if e["loc"] else "")
                    + e["msg"].removeprefix("Value error, ")
                    for e in exc.errors()
                )
                raise ValueError(f"entry {i + 1} ({spec if isinstance(spec, str) else spec.get('name', spec)}): {msgs}") from None
        return tuple(out)

    @field_validator("encoders", "targets", "seeds")
    @classmethod
    def _non_empty_unique(cls, value: tuple[Any, ...], info: Any) -> tuple[Any, ...]:
        if not value:
            raise ValueError(f"{info.field_name} must list at least one entry")
        dup = sorted({str(v) for v in value if list(value).count(v) > 1})
        if dup:
            raise ValueError(f"{info.field_name} lists {', '.join(dup)} more than once")
        return value

    @field_validator("targets")
    @classmethod
    def _targets(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        allowed = REGISTRY.targets()
        bad = [t for t in value if t not in allowed]
        if bad:
            raise ValueError(f"unknown target task(s) {', '.join(bad)}; allowed: {', '.join(allowed)}")
        return value

    @model_validator(mode="after")
    def _check(self) -> StudyConfig:
        names = [s.name for s in self.intermediate]
        if not names:
            raise ValueError("intermediate must list at least one setting (e.g. none)")
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"intermediate setting names must be unique; repeated: {', '.join(dup)}")
        slugs = [s.slug for s in self.intermediate]
        if len(set(slugs)) != len(slugs):
            raise ValueError(f"intermediate setting names collide once made filesystem-safe: {slugs}")
        if isinstance(self.languages, dict):
            unknown = sorted(set(self.languages) - set(self.targets))
            if unknown:
                raise ValueError(f"languages given for {', '.join(unknown)}, which are not targets")
        for target, split in self.eval_splits.items():
            if target not in self.targets:
                raise ValueError(f"eval_splits names {target}, which is not a target")
            if split not in REGISTRY.get(target).splits:
                raise ValueError(
                    f"eval_splits.{target}: {split!r}; allowed: {', '.join(REGISTRY.get(target).splits)}"
                )
        for target in self.targets:
            langs = self.languages_for(target)
            if langs is None:
                continue
            task_langs = self.eval_languages(target)
            bad = [lang for lang in langs if lang not in task_langs]
            if bad and isinstance(self.languages, dict):
                raise ValueError(
                    f"languages {', '.join(bad)} are not {target} languages; allowed: {' '.join(task_langs)}"
                )
        return self

    def eval_languages(self, target: str) -> tuple[str, ...]:
        """Every language of the split a target is scored on."""

        task = REGISTRY.get(target)
        return task.splits.get(self.eval_splits.get(target, task.score_split), ())

    def languages_for(self, target: str) -> tuple[str, ...] | None:
        """The requested evaluation languages of a target (a global list is intersected with the task's)."""
        if self.languages is None:
            return None
        if isinstance(self.languages, dict):
            return self.languages.get(target)
        task_langs = self.eval_languages(target)
        return tuple(lang for lang in self.languages if lang in task_langs)

    def setting(self, name: str) -> IntermediateSetting:
        for s in self.intermediate:
            if s.name == name:
                return s
        raise ConfigError(f"no intermediate setting {name!r}; settings: {', '.join(s.name for s in self.intermediate)}")

    def to_json_dict(self) -> dict[str, Any]:
        return json.loads(self.model_dump_json())

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.to_json_dict(), sort_keys=True).encode()).hexdigest()[:12]


def _format_error(exc: ValidationError, source: str) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-")) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
            parent = _model_at(err["loc"][:-1])
            if parent is not None:
                msg += f"; allowed keys: {', '.join(parent.model_fields)}"
        elif err["type"] == "missing":
            msg = "required key is missing"
        parts.append(f"{loc}: {msg}")
    return f"{source}: invalid study config: " + "; ".join(parts)


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model class at a location of the StudyConfig tree (for 'allowed keys')."""
    model: type[BaseModel] | None = StudyConfig
    for part in loc:
        if model is None:
            return None
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        ann = field.annotation
        found = None
        for cand in (ann, *getattr(ann, "__args__", ())):
            for sub in (cand, *getattr(cand, "__args__", ())):
                if isinstance(sub, type) and issubclass(sub, BaseModel):
                    found = sub
        model = found
    return model


def parse_study(data: dict[str, Any], source: str = "study config") -> StudyConfig:
    """Validate a mapping into a :class:`StudyConfig`; errors become one-line ConfigErrors."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a study config is a YAML mapping, found {type(data).__name__}")
    try:
        return StudyConfig(**data)
    except ValidationError as exc:
        raise ConfigError(_format_error(exc, source)) from None
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def load_study(path: str | Path) -> StudyConfig:
    """Read and validate a study YAML file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"study config not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    return parse_study(data or {}, str(path))
