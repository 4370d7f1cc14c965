"""How an intermediate task is turned into something trainable: a formulation name -> builder.

A *formulation* says what model part and which features a task trains with. NLU tasks (and
XTREME tasks used as intermediate tasks) use ``"head"``: a fresh head for the task's kind on the
shared encoder (:func:`xstilts.models.heads.build_model`) and the kind's features. Code tasks
name their formulation (``generate``, ``contrastive``, ``match``, ``infill``); their builders are
added with :func:`register_formulation` by the module that implements them, listed in
:data:`FORMULATION_MODULES` so that they are imported on first use.

A builder receives a :class:`FormulationInput` and returns a :class:`TrainablePart` whose
``model`` shares ``encoder`` (the same module object: only the encoder is carried to phase 2)
and whose ``forward(**collate(features))`` returns a loss.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from xstilts.data.feature_cache import cached_featurize
from xstilts.errors import ConfigError
from xstilts.evaluation.metrics_nlu import intermediate_quality
from xstilts.evaluation.predict import PredictOptions
from xstilts.models.heads import build_model
from xstilts.models.packing import choose_collator
from xstilts.tasks import Task
from xstilts.tasks.kinds import kind_ops

# Modules that register more formulations when imported (missing ones are skipped).
FORMULATION_MODULES = ("xstilts.train.code_formulations",)

# What a run config may set per task under ``options:`` for each formulation (read by the builders
# in xstilts.train.code_formulations, whose docstring gives the meanings and defaults). Kept here,
# without importing the builders, so that a config is checked before anything is loaded.
FORMULATION_OPTIONS: dict[str, tuple[str, ...]] = {
    "head": (),
    "generate": ("max_target_length", "decoder_layers", "decoder_heads", "decoder_dropout",
                 "decoder_lr_scale", "decoder_embeddings", "copy_attention", "freeze_embeddings",
                 "num_beams", "eval_limit"),  # fmt: skip
    "contrastive": ("temperature", "eval_limit"),
    "match": ("negatives",),
    "infill": ("mask_probability", "encoder_source"),
}


@dataclass
class FormulationInput:
    task: Task
    encoder: Any
    tokenizer: Any
    train_examples: Sequence[Any]
    dev_examples: Sequence[Any] | None
    settings: dict[str, Any]  # resolved phase hyperparameters (max_length, doc_stride, ...)
    seed: int = 1
    # tokenised features are cached here (shared by a study's cells); None: always tokenise
    cache_dir: str | None = None
    # at most this many dev/held-out examples are predicted for ``TrainablePart.evaluate``
    eval_max_examples: int | None = None
    # prediction's batch bounds (batch_size, max_tokens; RunConfig.prediction_batches); none: defaults
    prediction_batches: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainablePart:
    """A model part sharing the encoder, its training features and how to batch them."""

    name: str
    model: Any
    train_features: list[Any]
    collate: Callable[[list[Any]], dict]
    dev_features: list[Any] | None = None
    info: dict[str, Any] = field(default_factory=dict)  # JSON-safe: written to the run's metrics
    # Scores the intermediate task itself on its dev examples (e.g. EM/BLEU/CodeBLEU for code
    # generation, MRR for contrastive): ``evaluate(model) -> {metric: value}``; None if no dev.
    evaluate: Callable[[Any], dict[str, float]] | None = None


Builder = Callable[[FormulationInput], TrainablePart]
_BUILDERS: dict[str, Builder] = {}
_loaded_modules = False


def register_formulation(name: str, builder: Builder, *, replace: bool = False) -> None:
    """Make ``name`` usable as an intermediate task's ``formulation``."""
    if name in _BUILDERS and not replace and _BUILDERS[name] is not builder:
        raise ValueError(f"formulation {name!r} is registered twice")
    _BUILDERS[name] = builder


def _load_modules() -> None:
    global _loaded_modules
    if _loaded_modules:
        return
    _loaded_modules = True
    for module in FORMULATION_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise


def available_formulations() -> list[str]:
    _load_modules()
    return sorted(_BUILDERS)


def default_formulation(task: Task) -> str:
    return kind_ops(task).formulation


def check_options(task: Task, formulation: str | None, options: dict[str, Any]) -> None:
    """Raise ConfigError unless every key of ``options`` is a setting of the formulation."""
    name = formulation or default_formulation(task)
    allowed = FORMULATION_OPTIONS.get(name)
    if allowed is None:  # a formulation registered by a plugin: its builder reads what it reads
        return
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(
            f"{task.name} ({name}): unknown option {', '.join(unknown)}; allowed: "
            f"{', '.join(allowed) or '(none: set hyperparameters.intermediate instead)'}"
        )


def get_builder(task: Task, formulation: str | None) -> tuple[str, Builder]:
    _load_modules()
    name = formulation or default_formulation(task)
    if name not in _BUILDERS:
        raise ConfigError(
            f"{task.name}: formulation {name!r} is not available; available: "
            f"{', '.join(sorted(_BUILDERS)) or '(none)'}"
        )
    return name, _BUILDERS[name]


def labels_for(task: Task, examples: Sequence[Any]) -> list[str] | None:
    """The task's label list, or (for tasks whose labels come from the data, like CCG) the
    sorted set of labels seen in the training examples."""
    if task.labels:
        return list(task.labels)
    ops = kind_ops(task)
    if ops.label_set:
        return sorted({label for ex in examples for label in ops.labels_of(ex)})
    return None


def build_head_part(inp: FormulationInput) -> TrainablePart:
    """A fresh head for the task's kind on the shared encoder, with the kind's features.

    ``evaluate`` predicts the dev (or held-out) examples with the task's own head and scores
    them with the task's own metric (accuracy, SQuAD EM/F1, token accuracy), so phase 1 reports
    how well the intermediate task itself was learned, not only a loss.

    With ``pack_sequences`` in the settings (the phase-1 default) each batch is one padding-free
    row (:mod:`xstilts.models.packing`: the same loss as the padded batch) where the encoder allows
    it; ``info["packed"]`` says whether it does, or why not.
    """

    task = inp.task
    if not kind_ops(task).has_head:
        raise ConfigError(f"{task.name}: the 'head' formulation needs a kind with a head, not {task.kind.value}")
    labels = labels_for(task, inp.train_examples)
    model = build_model(task, inp.encoder, labels=labels) if labels else build_model(task, inp.encoder)
    if inp.settings.get("head_lr_scale"):  # the randomly initialised head may learn faster than the encoder
        model.head.lr_scale = float(inp.settings["head_lr_scale"])
    kwargs: dict[str, Any] = {"max_length": inp.settings.get("max_length"), "labels": labels}
    if "doc_stride" in inp.settings:
        kwargs["doc_stride"] = inp.settings["doc_stride"]

    def features(examples: Sequence[Any], for_training: bool) -> list[dict]:
        return cached_featurize(task, examples, inp.tokenizer, cache_dir=inp.cache_dir,
                                for_training=for_training, **kwargs)

    train_features = features(inp.train_examples, True)
    dev_features = None
    if inp.dev_examples:
        try:  # training-style features carry gold (QA answer positions too): a dev loss
            dev_features = features(inp.dev_examples, True)
        except ConfigError:  # some dev examples lack a (known) label: keep those that have one
            dev_features = features(inp.dev_examples, False)
        dev_features = [f for f in dev_features if _has_gold(f)] or None
    collate, packed = choose_collator(inp.encoder, inp.tokenizer, bool(inp.settings.get("pack_sequences")))
    scored = scorable_examples(task, inp.dev_examples or [])
    if inp.eval_max_examples is not None:
        scored = scored[: inp.eval_max_examples]
    evaluate = None
    if scored:
        def evaluate(task_model: Any) -> dict[str, float]:
            device = next(task_model.parameters()).device
            metrics = intermediate_quality(task, task_model, inp.tokenizer, scored, PredictOptions(
                **inp.prediction_batches,
                max_length=inp.settings.get("max_length"), doc_stride=inp.settings.get("doc_stride", 128),
                device=device, pack=packed is True, precision=inp.settings.get("mixed_precision") or "auto",
            ))
            return dict(metrics)

    return TrainablePart(
        name=task.name, model=model, train_features=train_features,
        collate=collate, dev_features=dev_features, evaluate=evaluate,
        info={"labels": labels, "kind": task.kind.value, "quality_examples": len(scored), "packed": packed},
    )


def scorable_examples(task: Task, examples: Sequence[Any]) -> list[Any]:
    """The examples whose gold the task's metric can score: labelled, tagged or answered (SQuAD
    v2.0 scores unanswerable questions too)."""
    if task.metric == "squad_v2":
        return list(examples)
    gold = kind_ops(task).gold
    return [ex for ex in examples if gold(ex) not in (None, [])]


def _has_gold(feature: dict) -> bool:
    if "start_positions" in feature:
        return feature["start_positions"] is not None
    labels = feature.get("labels")
    if labels is None:
        return False
    if isinstance(labels, list):
        return any(x != -100 for x in labels)
    return True


register_formulation("head", build_head_part)
