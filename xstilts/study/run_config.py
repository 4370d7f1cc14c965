"""The configuration of one pipeline run (``xstilts run``) and the paper's default hyperparameters.

(Three configs, one per level: :mod:`xstilts.study.study_config` a whole study, this module one
run of the pipeline, :mod:`xstilts.train.train_config` one training phase inside a run.)

A run is: an encoder, optionally masked-LM training on raw text (phase 0), optionally one or
several English intermediate tasks (phase 1), optionally a target task (phase 2 fine-tuning on
its English training data, then phase 3 zero-shot prediction and scoring in every language).

Every field is validated (pydantic, ``extra="forbid"``): an unknown key, task or language is an
error that names what is allowed.

Default hyperparameters
-----------------------
:data:`TARGET_DEFAULTS` (phase 2) follow XTREME's reference scripts (google-research/xtreme,
``scripts/train_{udpos,panx,xnli,pawsx,qa}.sh``, for base-size encoders):

==================  ======  ==========================  ======  =======  ==========================
kind                lr      batch (per step)            epochs  max len  other
==================  ======  ==========================  ======  =======  ==========================
tagging             2e-5    8 x 4 accumulation = 32     10      128      eval on dev, keep best
sentence-pair       2e-5    8 x 4 accumulation = 32     5       128      eval on dev, keep best
qa                  3e-5    4 x 8 accumulation = 32     3       384      doc stride 128, warm-up
                                                                         500 steps, wd 1e-4
multiple-choice     2e-5    8 x 4                       5       128      (as sentence-pair)
==================  ======  ==========================  ======  =======  ==========================

(XLM-R Large in those scripts uses 2 x 16 = 32 and lr 3e-5 for XNLI.)
:data:`INTERMEDIATE_DEFAULTS` (phase 1) follow jiant's X-STILTs recipe (Phang et al. 2020; jiant
``guides/benchmarks/xtreme.md`` and the STILTs example): lr 1e-5, batch 4, 3 epochs, warm-up over
10% of the steps, evaluation every 1000 steps with early stopping after 30 evaluations without
improvement, max length 256 (384 for QA). Phase 0 (MLM) uses lr 1e-5 (as the paper's +MLM runs),
batch 8, 1 epoch, max length 256, masking 15% of the tokens (80/10/10).

Every value can be overridden per phase (``hyperparameters:`` in the YAML, or the CLI flags,
which apply to the target phase).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from xstilts.data.batching import PREDICT_BATCH_SIZE
from xstilts.errors import ConfigError, DataFormatError
from xstilts.fileio import decode_utf8, read_input_bytes
from xstilts.tasks import REGISTRY, TaskKind, get_task
from xstilts.tasks.kinds import KINDS, kind_ops
from xstilts.train.formulations import check_options

SAMPLING = ("uniform", "proportional", "temperature")

# Phase 2: XTREME reference scripts (see the module docstring), declared on each kind.
TARGET_DEFAULTS: dict[str, dict[str, Any]] = {
    kind.value: ops.target_defaults for kind, ops in KINDS.items() if ops.target_defaults
}
# Phase 1: jiant's X-STILTs recipe (see the module docstring).
INTERMEDIATE_DEFAULTS: dict[str, Any] = dict(
    learning_rate=1e-5, batch_size=4, grad_accum=1, epochs=3, max_length=256, warmup_ratio=0.1,
    weight_decay=0.0, eval_every=1000, patience=30, pack_sequences=True,
)
INTERMEDIATE_QA_MAX_LENGTH = KINDS[TaskKind.QA].intermediate_defaults["max_length"]
MLM_DEFAULTS: dict[str, Any] = dict(
    learning_rate=1e-5, batch_size=8, grad_accum=1, epochs=1, max_length=256, warmup_ratio=0.1,
    weight_decay=0.0,
)
COMMON_DEFAULTS: dict[str, Any] = dict(max_grad_norm=1.0, schedule="linear", checkpoint_every=500)
# retrieval targets (BUCC, Tatoeba) train nothing; a run's target `mixed_precision` overrides these
RETRIEVAL_DEFAULTS: dict[str, Any] = dict(mixed_precision="auto")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PhaseHyperparameters(_Strict):
    """Overrides of one phase's defaults; ``None`` keeps the default."""

    learning_rate: float | None = Field(None, gt=0)
    batch_size: int | None = Field(None, ge=1)
    grad_accum: int | None = Field(None, ge=1)
    epochs: int | None = Field(None, ge=1)
    max_steps: int | None = Field(None, ge=1)
    warmup_ratio: float | None = Field(None, ge=0, lt=1)
    warmup_steps: int | None = Field(None, ge=0)
    weight_decay: float | None = Field(None, ge=0)
    max_grad_norm: float | None = Field(None, ge=0)
    schedule: Literal["linear", "constant"] | None = None
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] | None = None
    eval_every: int | None = Field(None, ge=0)
    patience: int | None = Field(None, ge=1)
    checkpoint_every: int | None = Field(None, ge=0)
    max_length: int | None = Field(None, ge=8)
    doc_stride: int | None = Field(None, ge=1)
    max_examples: int | None = Field(None, ge=1, description="keep the first N training examples")
    group_by_length: bool | None = Field(None, description="length-grouped batches (fewer pad tokens)")
    mega_batch_mult: int | None = Field(None, ge=1, description="length groups form within windows of this many batches")
    pack_sequences: bool | None = Field(
        None, description="tasks with a head (tagging, sentence-pair, QA, multiple choice): each batch "
        "as one padding-free row, in training and prediction (default true; same loss)"
    )
    head_lr_scale: float | None = Field(
        None, gt=0, description="a fresh task head trains at learning_rate x this (intermediate 'head' parts)"
    )
    sharding: Literal["ddp", "fsdp"] | None = Field(
        None, description="several processes (torchrun): ddp keeps a replica of the training state in each, "
        "fsdp shards weights, gradients and optimizer state over them (FSDP2; default ddp)"
    )


class Hyperparameters(_Strict):
    mlm: PhaseHyperparameters = PhaseHyperparameters()
    intermediate: PhaseHyperparameters = PhaseHyperparameters()
    target: PhaseHyperparameters = PhaseHyperparameters()


def _check_task(name: str, allowed: list[str], what: str) -> str:
    if name not in REGISTRY or name not in allowed:
        raise ValueError(f"unknown {what} {name!r}; allowed: {', '.join(sorted(allowed))}")
    return name


def intermediate_task_names() -> list[str]:
    """Tasks that can be trained in phase 1: any task with training data and a trainable kind."""

    return [t.name for t in REGISTRY if t.has_training_data and kind_ops(t).has_head
            or (t.family == "code" and t.has_training_data)]


def target_task_names() -> list[str]:
    return REGISTRY.targets()


class IntermediateTaskSpec(_Strict):
    """One intermediate task; ``formulation`` picks the model builder (code tasks)."""

    task: str
    formulation: str | None = None
    translated: dict[str, str] | None = Field(
        None, description="language -> data directory of machine-translated copies (same reader)"
    )
    weight: float | None = Field(None, gt=0, description="explicit sampling weight in a mixture")
    data_dir: str | None = Field(None, description="where this task's files are (default: the run's data_dir)")
    train_split: str | None = Field(None, description="train on this split instead of 'train' (e.g. dev only)")
    heldout: int | None = Field(None, ge=1, description="with train_split: the last N examples are held out as dev")
    options: dict[str, Any] | None = Field(
        None, description="settings of the formulation, e.g. {decoder_layers: 2, num_beams: 4} for generate"
    )

    @field_validator("task")
    @classmethod
    def _known(cls, value: str) -> str:
        return _check_task(value, intermediate_task_names(), "intermediate task")

    @model_validator(mode="after")
    def _check_spec(self) -> IntermediateTaskSpec:
        task = get_task(self.task)
        if self.train_split is not None and self.train_split not in task.splits:
            raise ValueError(f"train_split {self.train_split!r} of {self.task}; allowed: {', '.join(task.splits)}")
        if self.heldout is not None and self.train_split is None:
            raise ValueError(f"heldout on {self.task} needs train_split (the split it is held out of)")
        if self.options:
            try:
                check_options(task, self.formulation, self.options)
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return self

    @classmethod
    def parse(cls, spec: Any) -> Any:
        if isinstance(spec, str):
            task, _, form = spec.partition(":")
            return {"task": task.strip(), "formulation": form.strip() or None}
        return spec


class MLMCoTraining(_Strict):
    """Masked-LM batches mixed into phase 1 (the paper's "+MLM" runs)."""

    probability: float = Field(0.5, gt=0, lt=1, description="share of phase-1 batches that are MLM batches")
    data: str | None = Field(None, description="raw multilingual text: a file or a folder of .txt files")
    mask_probability: float = Field(0.15, gt=0, lt=1)


class IntermediateSpec(_Strict):
    """Phase 1: one task, or a mixture sampled uniformly, proportionally or with a temperature."""

    name: str | None = None
    tasks: list[IntermediateTaskSpec] = Field(min_length=1)
    sampling: Literal["uniform", "proportional", "temperature"] = "proportional"
    temperature: float = Field(2.0, gt=0)
    mlm: MLMCoTraining | None = None

    @field_validator("tasks", mode="before")
    @classmethod
    def _parse(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [v for v in value.split(",") if v.strip()]
        if isinstance(value, (list, tuple)):
            return [IntermediateTaskSpec.parse(v) for v in value]
        return value

    @property
    def label(self) -> str:
        return self.name or "+".join(
            t.task + (f":{t.formulation}" if t.formulation else "") for t in self.tasks
        )


class MLMPhase(_Strict):
    """Phase 0: masked-LM training on raw multilingual text before anything else."""

    data: str = Field(description="raw text: a file (one sentence or paragraph a line) or a folder of .txt files")
    mask_probability: float = Field(0.15, gt=0, lt=1)


class RunConfig(_Strict):
    """One pipeline run; see the module docstring. ``out`` is the run directory."""

    model: str = Field(description="encoder: a catalogue name, a local folder or a hub id")
    encoder_dir: str | None = Field(
        None, description="start from this encoder folder (e.g. another run's phase-1 encoder) instead of `model`"
    )
    target: str | None = None
    intermediate: IntermediateSpec | None = None
    mlm: MLMPhase | None = None
    data_dir: str
    out: str
    seed: int = 1
    languages: list[str] | None = Field(None, description="evaluation languages (default: every one present)")
    eval_split: str | None = Field(None, description="split predicted in phase 3 (default: the task's scored split)")
    eval_max_examples: int | None = Field(None, ge=1, description="at most N examples per language in phase 3 (and for phase-1 quality)")
    dev_eval: bool = Field(True, description="evaluate on English dev during training (when present) and keep the best")
    hyperparameters: Hyperparameters = Hyperparameters()
    random_init: bool = Field(
        False, description="control run: the encoder's architecture with freshly initialised (random) weights"
    )
    trust_remote_code: bool = False
    cpu: bool = False
    progress: bool = True
    predict_batch_size: int = Field(PREDICT_BATCH_SIZE, ge=1, description="features per prediction batch, at most")
    predict_max_tokens: int | None = Field(
        None, ge=0,
        description="padded tokens per prediction batch, at most (default: 16384 on GPUs, 1024 on CPU; 0: no bound)",
    )
    torch_threads: int | None = Field(
        None, ge=1, description="torch intra-op threads for this run (default: torch's, i.e. OMP_NUM_THREADS)"
    )
    cache_dir: str | None = Field(
        None, description="cache tokenised training features here (a study shares STUDY_DIR/cache); none: off"
    )

    @field_validator("intermediate", mode="before")
    @classmethod
    def _intermediate(cls, value: Any) -> Any:
        if isinstance(value, str):
            return None if value.strip() in ("", "none") else {"tasks": value}
        if isinstance(value, (list, tuple)):
            return {"tasks": list(value)}
        return value

    @field_validator("target")
    @classmethod
    def _target(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return _check_task(value, target_task_names(), "target task")

    @model_validator(mode="after")
    def _check(self) -> RunConfig:
        if self.target is None and self.intermediate is None and self.mlm is None:
            raise ValueError("nothing to run: give a target task, an intermediate task or an mlm phase")
        if self.target is not None:
            task = get_task(self.target)
            split = self.eval_split or task.score_split
            if split not in task.splits:
                raise ValueError(
                    f"eval_split: {split!r} is not a split of {task.name}; allowed: {', '.join(task.splits)}"
                )
            if self.languages is not None:
                allowed = task.splits[split]
                bad = [lang for lang in self.languages if lang not in allowed]
                if bad:
                    raise ValueError(
                        f"languages: {task.name} {split} has no language {', '.join(bad)}; "
                        f"allowed: {' '.join(allowed)}"
                    )
        elif self.languages is not None:
            raise ValueError("languages: evaluation languages need a target task")
        return self

    # ------------------------------------------------------------------------------------

    @property
    def run_dir(self) -> Path:
        return Path(self.out)

    @property
    def prediction_batches(self) -> dict[str, int | None]:
        """The bounds every prediction batch of the run takes, as prediction's keyword arguments."""
        return {"batch_size": self.predict_batch_size, "max_tokens": self.predict_max_tokens}

    def phase_settings(self, phase: str, kind: str | None = None) -> dict[str, Any]:
        """The resolved hyperparameters of a phase: defaults, then this config's overrides."""
        if phase == "target" and kind == "retrieval":
            base = dict(RETRIEVAL_DEFAULTS)
        elif phase == "target":
            if kind not in TARGET_DEFAULTS:
                raise ConfigError(f"no fine-tuning defaults for task kind {kind!r}")
            base = dict(COMMON_DEFAULTS, **TARGET_DEFAULTS[kind])
        elif phase == "intermediate":
            base = dict(COMMON_DEFAULTS, **INTERMEDIATE_DEFAULTS)
            if kind is not None:
                base.update(kind_ops(kind).intermediate_defaults)
        elif phase == "mlm":
            base = dict(COMMON_DEFAULTS, **MLM_DEFAULTS)
        else:
            raise ConfigError(f"unknown phase {phase!r}")
        overrides = getattr(self.hyperparameters, phase).model_dump(exclude_none=True)
        base.update(overrides)
        return base


def format_validation_error(exc: ValidationError, source: str = "config") -> str:
    """One readable line per problem: where, and what is wrong or allowed."""
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            parent = _model_at(err["loc"][:-1])
            allowed = ", ".join(parent.model_fields) if parent is not None else "?"
            lines.append(f"{source}: unknown key {where!r}; allowed keys here: {allowed}")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            lines.append(f"{source}: {where}: {msg}")
    return "; ".join(lines)


def _model_at(loc: tuple) -> type[BaseModel] | None:
    model: type[BaseModel] | None = RunConfig
    for part in loc:
        if isinstance(part, int) or model is None:
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        model = _unwrap_model(field.annotation)
    return model


def _unwrap_model(annotation: Any) -> type[BaseModel] | None:
    import typing

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _unwrap_model(arg)
        if found is not None:
            return found
    return None


def load_run_config(source: str | Path | dict[str, Any] | None = None, **overrides: Any) -> RunConfig:
    """A validated RunConfig from a YAML file or a mapping, with ``overrides`` applied on top.

    Overrides use dotted keys for nested fields (``hyperparameters.target.learning_rate``);
    ``None`` values are ignored. Errors become one :class:`ConfigError` naming every problem.
    """
    import yaml

    label = "config"
    data: dict[str, Any] = {}
    if isinstance(source, (str, Path)):
        path = Path(source)
        label = str(path)
        if path.is_dir():
            raise ConfigError(f"{path}: expected a config file (YAML), found a directory")
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        text = decode_utf8(read_input_bytes(path), path)
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            line = mark.line + 1 if mark is not None else None
            raise DataFormatError(path, line, "valid YAML", problem) from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level, found {type(loaded).__name__}")
        data = loaded
    elif isinstance(source, dict):
        data = dict(source)
    for key, value in overrides.items():
        if value is None:
            continue
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[parts[-1]] = value
    try:
        return RunConfig(**data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, label)) from None
