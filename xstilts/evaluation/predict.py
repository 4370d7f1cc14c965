"""Zero-shot prediction: a trained task model (or, for retrieval, an encoder) on every language.

:func:`predict_task` reads each language's examples of a split, featurizes them, runs the model
without gradients over batches sorted by length, maps the outputs back to examples (labels,
tags per word, answer strings) and writes them in XTREME's submission layout through
:func:`xstilts.evaluation.layout.write_predictions`. Retrieval tasks (BUCC, Tatoeba) go to
:func:`xstilts.evaluation.retrieval.predict_retrieval` with a plain encoder.

The lower-level :func:`predict_examples` does the same for a list of examples in memory and
returns the predictions (the training loop's evaluation uses it).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from xstilts.data.batching import PREDICT_BATCH_SIZE as DEFAULT_BATCH_SIZE
from xstilts.data.batching import (
    check_max_tokens,
    feature_length,
    prediction_max_tokens,
    sorted_batches,
)
from xstilts.data.features import collate, featurize
from xstilts.data.readers import available, read_examples
from xstilts.errors import ConfigError, MissingDataError
from xstilts.evaluation.layout import write_predictions
from xstilts.evaluation.qa_decode import decode_answers, decode_answers_v2
from xstilts.evaluation.retrieval import predict_retrieval
from xstilts.fileio import check_output_dir
from xstilts.models.device import autocast_for, check_precision, resolve_device
from xstilts.models.heads import (
    HEAD_CONFIG,
    TaskModel,
    check_head_fits,
    is_task_model_dir,
    load_task_model,
    read_head_config,
)
from xstilts.models.loading import load_encoder
from xstilts.models.packing import packed_collator, unpack_rows, unpackable
from xstilts.tasks import Task, TaskKind, get_task
from xstilts.tasks.kinds import kind_ops


def _progress(enabled: bool):
    if not enabled:
        return nullcontext(None)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        transient=False,
    )


class Extract:
    """What a batch's model output becomes: ``on_device(output)`` keeps a few small tensors (an
    argmax, two logit rows...) computed where the model ran, and ``on_host(arrays, batch_features)``
    turns them, as numpy arrays, into one result per feature. The split lets :func:`run_model`
    fetch each batch with one asynchronous copy while the accelerator runs the next batch."""

    def __init__(self, on_device: Callable[[Any], tuple], on_host: Callable[[tuple, Sequence[dict]], list]):
        self.on_device, self.on_host = on_device, on_host


def run_model(
    model: Any,
    features: Sequence[dict],
    tokenizer: Any,
    extract: Extract,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_tokens: int | None = None,
    device: Any = None,
    progress: Any = None,
    description: str = "predict",
    pack: bool = False,
    precision: str = "no",
) -> list:
    """Run ``model`` over ``features`` in length-sorted batches; one result per feature, in order.

    A batch holds at most ``batch_size`` features and ``max_tokens`` padded tokens (None: the
    device's default, :func:`xstilts.data.batching.prediction_max_tokens`; 0: no token bound).

    ``extract`` (:class:`Extract`) turns a batch's model output into one small result per
    feature, so full logits are never kept for the whole set. ``progress`` is a rich
    ``Progress`` (or None for no bar). ``pack``: each batch runs as one padding-free row
    (:mod:`xstilts.models.packing`; every head kind), per-token outputs laid back out as the padded
    batch's, so ``extract`` sees the same layout. ``precision``: see :func:`autocast_for`.

    On a GPU the host never waits for a batch it has just launched: each batch's small outputs
    come back by a non-blocking copy, and are read only after the next batch has been collated
    and queued, so collation overlaps the model's work. The results are the same either way.
    """
    import torch


    device = resolve_device(device)
    max_tokens = prediction_max_tokens(max_tokens, device.type)
    autocast = autocast_for(precision, device)
    asynchronous = device.type == "cuda"
    was_training = model.training
    model.eval()
    model.to(device)
    batches = sorted_batches(
        [feature_length(f) for f in features], batch_size, max_tokens=max_tokens
    )
    packer = None
    unpack_tokens = pack and kind_ops(model.kind).token_level  # per-token outputs laid back out
    if pack:
        packer = packed_collator(model.encoder)
    results: list = [None] * len(features)
    bar = progress.add_task(description, total=len(features)) if progress is not None else None

    def finish(done) -> None:
        batch_indices, batch_features, fetched, ready = done
        if ready is not None:
            ready.synchronize()
        arrays = tuple(t.numpy() for t in fetched)
        for i, r in zip(batch_indices, extract.on_host(arrays, batch_features)):
            results[i] = r
        if progress is not None:
            progress.advance(bar, len(batch_indices))

    pending = None
    try:
        with torch.no_grad():
            for batch_indices in batches:
                batch_features = [features[i] for i in batch_indices]
                batch = packer(batch_features) if packer else collate(batch_features, tokenizer)
                for key in ("labels", "start_positions", "end_positions"):
                    batch.pop(key, None)
                batch = {k: (v.to(device, non_blocking=asynchronous) if isinstance(v, torch.Tensor) else v)
                         for k, v in batch.items()}  # fmt: skip
                with autocast:
                    output = model(**batch)
                    if unpack_tokens:
                        output = _unpacked(output, batch)
                    kept = extract.on_device(output)
                fetched, ready = _fetch(kept, device)
                if pending is not None:
                    finish(pending)
                pending = (batch_indices, batch_features, fetched, ready)
            if pending is not None:
                finish(pending)
    finally:
        model.train(was_training)
    return results


def _fetch(kept: tuple, device: Any) -> tuple[tuple, Any]:
    """Start copying a batch's kept tensors to the host: ``(host tensors, event)``. On a GPU the
    copies are non-blocking (into page-locked memory) and valid once ``event.synchronize()``
    returns; elsewhere the tensors are already on the host and the event is None."""
    import torch

    if device.type != "cuda":
        return tuple(t.cpu() for t in kept), None
    fetched = tuple(t.to("cpu", non_blocking=True) for t in kept)
    ready = torch.cuda.Event()
    ready.record()
    return fetched, ready


def _unpacked(output, batch):
    """A packed batch's per-token outputs in the padded layout (see :func:`run_model`)."""
    cu, longest = batch["cu_seq_lens_q"], batch["max_length_q"]
    fields = ("logits", "start_logits", "end_logits")
    return replace(output, **{k: unpack_rows(getattr(output, k), cu, longest)
                              for k in fields if getattr(output, k) is not None})  # fmt: skip


# --------------------------------------------------------------------------------------------
# per kind: what to keep of a batch's output, and how to turn it into predictions


def _argmax_ids(output) -> tuple:
    return (output.logits.argmax(-1),)


_argmax = Extract(_argmax_ids, lambda arrays, batch_features: arrays[0].tolist())


def _tags_per_word(arrays, batch_features):
    ids = arrays[0]  # [rows, longest]: every position's argmax
    return [[(w, int(ids[row, p])) for p, w in f["word_positions"]] for row, f in enumerate(batch_features)]


_tag_ids = Extract(_argmax_ids, _tags_per_word)


def _both_span_logits(output) -> tuple:
    return output.start_logits.float(), output.end_logits.float()


def _spans_per_feature(arrays, batch_features):
    start, end = arrays
    return [(start[r, : len(f["input_ids"])], end[r, : len(f["input_ids"])]) for r, f in enumerate(batch_features)]


_span_logits = Extract(_both_span_logits, _spans_per_feature)


def fallback_label(labels: Sequence[str]) -> str:
    """The tag given to a word the model produced no prediction for (should not happen: words
    without pieces are fed as the unknown token). "O" for entity tag sets, "X" (UD's "other")
    for POS, else the first label."""
    for candidate in ("O", "X"):
        if candidate in labels:
            return candidate
    return labels[0]


def _label_names(task: Task, model: Any) -> list[str]:
    labels = getattr(model, "labels", None) or (list(task.labels) if task.labels else None)
    if not labels:
        raise ConfigError(f"{task.name}: neither the model nor the task has a label list")
    return list(labels)


@dataclass(frozen=True)
class PredictOptions:
    """How prediction runs. ``batch_size`` and ``max_tokens`` bound each batch (:func:`run_model`;
    ``max_tokens`` None: the device's default, 0: none); ``max_length`` and ``doc_stride`` are the
    features' (None: the kind's default length); ``n_best`` and ``max_answer_length`` QA decoding's;
    ``pack``: batches run as padding-free rows (None: where the encoder allows it); ``precision``:
    autocast for the forward passes (:func:`autocast_for`; ``auto``: bf16 on GPUs)."""

    batch_size: int = DEFAULT_BATCH_SIZE
    max_tokens: int | None = None
    max_length: int | None = None
    doc_stride: int = 128
    n_best: int = 20
    max_answer_length: int = 30
    device: Any = None
    precision: str = "auto"
    pack: bool | None = None


@dataclass(frozen=True)
class RetrievalOptions:
    """Retrieval only: the hidden layer (None: the default, see :mod:`xstilts.evaluation.retrieval`),
    ``mean`` or ``cls`` pooling, and text put before every sentence (e.g. ``"query: "`` for E5)."""

    layer: int | None = None
    pooling: str = "mean"
    prefix: str = ""


def predict_examples(
    task: Task | str,
    model: Any,
    tokenizer: Any,
    examples: Sequence[Any],
    options: PredictOptions = PredictOptions(),
    *,
    progress: Any = None,
    description: str | None = None,
) -> Any:
    """Predictions for ``examples`` in the submission layout's in-memory form (the kind's
    ``decode``): sentence pair: ``list[str]`` labels; tagging: ``list[list[str]]`` (one tag per
    word, always as many as words); QA: ``{id: answer text}``; multiple choice: ``list[int]``
    choice indices. ``progress``: a rich ``Progress`` (or None).
    """
    o = options
    check_precision(o.precision)  # before featurizing: a typo should not cost the wait
    check_max_tokens(o.max_tokens)
    task = get_task(task)
    ops = kind_ops(task)
    if not ops.has("decode"):
        raise ConfigError(f"{task.name}: no prediction for task kind {task.kind.value!r}")
    features = featurize(
        task,
        examples,
        tokenizer,
        max_length=o.max_length,
        doc_stride=o.doc_stride,
        for_training=False,
        labels=getattr(model, "labels", None),
    )
    pack = o.pack
    if pack is None:
        pack = ops.has_head and unpackable(getattr(model, "encoder", None)) is None
    common = dict(batch_size=o.batch_size, max_tokens=o.max_tokens, device=o.device, progress=progress,
                  description=description or task.name, precision=o.precision, pack=pack)

    def run(extract: Extract) -> list:
        return run_model(model, features, tokenizer, extract, **common)

    return ops.decode(Decoding(task, model, examples, features, run, o.n_best, o.max_answer_length))


@dataclass(frozen=True)
class Decoding:
    """What a kind's ``decode`` operation receives: ``run(extract)`` runs the model over the
    features and gives one extracted result per feature."""

    task: Task
    model: Any
    examples: Sequence[Any]
    features: Sequence[dict]
    run: Callable[[Extract], list]
    n_best: int = 20  # QA
    max_answer_length: int = 30  # QA


def _per_example(d: Decoding, results: list) -> list:
    by_example = {f["example_index"]: r for f, r in zip(d.features, results)}
    return [by_example[e] for e in range(len(d.examples))]


@kind_ops(TaskKind.SENTENCE_PAIR).implements("decode")
def _decode_labels(d: Decoding) -> list[str]:
    names = _label_names(d.task, d.model)
    return [names[i] for i in _per_example(d, d.run(_argmax))]


@kind_ops(TaskKind.MULTIPLE_CHOICE).implements("decode")
def _decode_choices(d: Decoding) -> list[int]:
    return [int(i) for i in _per_example(d, d.run(_argmax))]


@kind_ops(TaskKind.TAGGING).implements("decode")
def _decode_tags(d: Decoding) -> list[list[str]]:
    """One tag per word, always as many as words (a word without a prediction gets the fallback)."""
    names = _label_names(d.task, d.model)
    tags: list[list[str | None]] = [[None] * len(ex.tokens) for ex in d.examples]
    for f, pairs in zip(d.features, d.run(_tag_ids)):
        row = tags[f["example_index"]]
        for w, i in pairs:
            if row[w] is not None:
                raise AssertionError(f"word {w} of example {f['example_index']} predicted twice")
            row[w] = names[i]
    fallback = fallback_label(names)
    return [[t if t is not None else fallback for t in row] for row in tags]


@kind_ops(TaskKind.QA).implements("decode")
def _decode_answers(d: Decoding) -> dict[str, str]:
    results = d.run(_span_logits)
    starts, ends = [s for s, _ in results], [e for _, e in results]
    if d.task.metric == "squad_v2":  # unanswerable questions: the null answer "" can win
        return decode_answers_v2(d.examples, d.features, starts, ends, n_best=d.n_best,
                                 max_answer_length=d.max_answer_length)[0]  # fmt: skip
    return decode_answers(d.examples, d.features, starts, ends, n_best=d.n_best,
                          max_answer_length=d.max_answer_length)  # fmt: skip


# --------------------------------------------------------------------------------------------


def _load_for_task(task: Task, model_or_path: Any, tokenizer: Any, device: Any):
    """(model, tokenizer) for a task with a head; a path is a folder from ``TaskModel.save``."""

    if isinstance(model_or_path, (str, os.PathLike)):
        path = Path(model_or_path)
        if not is_task_model_dir(path):
            raise MissingDataError(
                f"{path}: not a trained task model (expected head.json, head.safetensors and "
                f"encoder/); {task.name} needs a model fine-tuned on its training data "
                f"(`xstilts run`), only bucc2018 and tatoeba run on a plain encoder"
            )
        head = read_head_config(path)  # checked before the weights are loaded
        check_head_fits(task, head["kind"], head.get("labels"), path / HEAD_CONFIG)
        model, tok = load_task_model(path, device=device)
        return model, tokenizer or tok
    if isinstance(model_or_path, tuple):
        model_or_path, tokenizer = model_or_path
    if not isinstance(model_or_path, TaskModel):
        raise ConfigError(f"{task.name}: expected a TaskModel or a task model folder")
    if tokenizer is None:
        raise ConfigError("a tokenizer is needed with an in-memory model")
    check_head_fits(task, model_or_path.kind, model_or_path.labels, "the model")
    return model_or_path, tokenizer


def _load_encoder(model_or_path: Any, tokenizer: Any):
    """(encoder, tokenizer) for retrieval: a name or folder, a TaskModel, or an encoder."""
    if isinstance(model_or_path, (str, os.PathLike)):
        return load_encoder(os.fspath(model_or_path))
    if isinstance(model_or_path, tuple):
        return model_or_path
    encoder = getattr(model_or_path, "encoder", model_or_path)
    if tokenizer is None:
        raise ConfigError("a tokenizer is needed with an in-memory encoder")
    return encoder, tokenizer


def languages_to_predict(
    task: Task, data_dir: str | Path, split: str, languages: Sequence[str] | None
) -> list[str]:
    """The requested languages (all present ones by default) whose ``split`` files exist."""

    if split not in task.splits:
        raise ConfigError(f"{task.name} has no {split!r} split (it has: {', '.join(task.splits)})")
    present = available(task, data_dir).get(split, [])
    if languages is None:
        if not present:
            raise MissingDataError(f"no {task.name} {split} files below {data_dir}")
        return list(present)
    unknown = [x for x in languages if x not in task.splits[split]]
    if unknown:
        raise ConfigError(
            f"{task.name} {split} has no language {', '.join(unknown)} "
            f"(it has: {' '.join(task.splits[split])})"
        )
    missing = [x for x in languages if x not in present]
    if missing:
        raise MissingDataError(
            f"no {task.name} {split} file below {data_dir} for {', '.join(missing)} "
            f"(present: {' '.join(present) or 'none'})"
        )
    return list(languages)


def predict_task(
    task: Task | str,
    model_or_path: Any,
    data_dir: str | Path,
    out_dir: str | Path,
    languages: Sequence[str] | None = None,
    *,
    split: str | None = None,
    tokenizer: Any = None,
    options: PredictOptions = PredictOptions(),
    retrieval: RetrievalOptions = RetrievalOptions(),
    progress: bool = True,
) -> dict[str, Path]:
    """Predict ``split`` (default: the task's scored split) of every language; write the files.

    ``model_or_path``: a folder written by ``TaskModel.save`` (or a TaskModel / ``(model,
    tokenizer)``); for retrieval tasks a plain encoder name or folder (any form
    :func:`xstilts.models.loading.load_encoder` takes), embedded as ``retrieval`` says. Returns
    language → written file. ``options.precision`` applies to retrieval's embeddings too
    (``no``: float32).
    """

    task = get_task(task)
    split = split or task.score_split
    check_output_dir(out_dir, "the predictions")  # before any model is loaded or run
    ops = kind_ops(task)
    if ops.encoder_only:
        if retrieval.pooling not in ("mean", "cls"):
            raise ConfigError(f"pooling must be 'mean' or 'cls', got {retrieval.pooling!r}")
        encoder, tok = _load_encoder(model_or_path, tokenizer)
        encoder.to(resolve_device(options.device))
        langs = languages_to_predict(task, data_dir, split, languages)
        extra: dict[str, Any] = {} if options.max_length is None else {"max_length": options.max_length}
        return predict_retrieval(
            task, encoder, tok, data_dir, langs, out_dir,
            layer=retrieval.layer, pooling=retrieval.pooling, prefix=retrieval.prefix,
            batch_size=options.batch_size, max_tokens=options.max_tokens, precision=options.precision,
            progress=progress, **extra,
        )  # fmt: skip
    if not ops.has("decode"):
        raise ConfigError(f"{task.name}: `predict` does not handle {task.kind.value} tasks")

    langs = languages_to_predict(task, data_dir, split, languages)
    dev = resolve_device(options.device)
    model, tok = _load_for_task(task, model_or_path, tokenizer, dev)
    written: dict[str, Path] = {}
    with _progress(progress) as bar:
        for lang in langs:
            examples = read_examples(task, data_dir, split, lang)
            predictions = predict_examples(task, model, tok, examples, replace(options, device=dev),
                                           progress=bar, description=f"{task.name} {split} {lang}")
            written[lang] = write_predictions(out_dir, task, lang, predictions)
    return written
