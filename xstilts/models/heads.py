"""Task heads per task kind on top of any Hugging Face ``AutoModel`` encoder.

A :class:`TaskModel` is an encoder (``.encoder``, the plain ``AutoModel``: XLM-R, mBERT,
mDeBERTa...) plus a small head (``.head``) chosen by the task kind:

==================  =======================================================================
kind                head
==================  =======================================================================
sentence pair       first-token state → dropout → dense + tanh → dropout → linear
                    (the shape of ``RobertaClassificationHead``, which XTREME's XLM-R runs
                    use; built here so no encoder pooler is needed or trusted)
tagging             dropout → linear on every token; loss ignores positions labelled -100
extractive QA       linear to (start, end) logits on every token, as ``*ForQuestionAnswering``
multiple choice     the classification head with one output: a score per choice
==================  =======================================================================

``forward(**batch)`` takes the batch that :func:`xstilts.data.features.collate` makes and
returns a :class:`TaskOutput` with ``logits`` (and ``loss`` when labels are in the batch).

On disk (:meth:`TaskModel.save`)::

    DIR/encoder/           a standard Hugging Face folder (config, safetensors, tokenizer)
    DIR/head.safetensors   the head's weights
    DIR/head.json          kind, number of labels, label names, dropout

so that a later phase can load only the encoder (``AutoModel.from_pretrained(DIR/"encoder")``)
and put a fresh head on it.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from xstilts.errors import ConfigError, DataFormatError, MissingDataError
from xstilts.fileio import decode_utf8, read_input_bytes
from xstilts.models.packing import unpack_rows
from xstilts.tasks import REGISTRY, Task, TaskKind
from xstilts.tasks.kinds import HEAD_KINDS, kind_ops, resolve_kind

HEAD_FORMAT_VERSION = 1
ENCODER_DIR = "encoder"
HEAD_WEIGHTS = "head.safetensors"
HEAD_CONFIG = "head.json"


@dataclass
class TaskOutput:
    """What :meth:`TaskModel.forward` returns; also readable as a mapping (``out["loss"]``)."""

    logits: torch.Tensor
    loss: torch.Tensor | None = None
    start_logits: torch.Tensor | None = None  # QA only
    end_logits: torch.Tensor | None = None  # QA only

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)

    def __contains__(self, key: str) -> bool:
        return getattr(self, key, None) is not None

    def keys(self) -> list[str]:
        return [k for k in ("loss", "logits", "start_logits", "end_logits") if k in self]


class ClassificationHead(nn.Module):
    """First-token state → dropout → dense + tanh → dropout → linear (RoBERTa's head shape)."""

    def __init__(self, hidden_size: int, num_outputs: int, dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.out_proj = nn.Linear(hidden_size, num_outputs)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        x = self.dropout(hidden[:, 0])
        x = torch.tanh(self.dense(x))
        return self.out_proj(self.dropout(x))


class TaggingHead(nn.Module):
    """Dropout → linear on every token."""

    def __init__(self, hidden_size: int, num_labels: int, dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden_size, num_labels)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(hidden))


class SpanHead(nn.Module):
    """Linear to start and end logits on every token."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.qa_outputs = nn.Linear(hidden_size, 2)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.qa_outputs(hidden)


@dataclass(frozen=True)
class Gold:
    """The gold a batch may carry, and the packing facts a kind's loss needs."""

    labels: torch.Tensor | None = None
    start_positions: torch.Tensor | None = None
    end_positions: torch.Tensor | None = None
    cu_seq_lens_q: torch.Tensor | None = None  # packed rows: sequence boundaries
    max_length_q: int | None = None
    num_choices: int | None = None


@dataclass(frozen=True)
class Head:
    """A kind's head (its ``head`` operation): ``build(hidden_size, num_labels, dropout)`` gives
    the module and its number of outputs; ``outputs(logits, gold)`` the :class:`TaskOutput`."""

    build: Any
    outputs: Any


def _cross_entropy(logits: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor | None:
    return nn.functional.cross_entropy(logits, labels.view(-1)) if labels is not None else None


def _pair_outputs(logits: torch.Tensor, gold: Gold) -> TaskOutput:
    return TaskOutput(logits=logits, loss=_cross_entropy(logits, gold.labels))


def _tag_outputs(logits: torch.Tensor, gold: Gold) -> TaskOutput:
    loss = None
    if gold.labels is not None:  # positions labelled -100 (pieces after a word's first) are ignored
        loss = nn.functional.cross_entropy(
            logits.reshape(-1, logits.size(-1)), gold.labels.reshape(-1), ignore_index=-100
        )
    return TaskOutput(logits=logits, loss=loss)


def _span_outputs(logits: torch.Tensor, gold: Gold) -> TaskOutput:
    start_logits, end_logits = logits[..., 0].contiguous(), logits[..., 1].contiguous()
    loss = None
    cu = gold.cu_seq_lens_q
    if gold.start_positions is not None and gold.end_positions is not None:
        span_start, span_end = start_logits, end_logits
        if cu is not None:  # a packed row: each sequence over its own positions
            span_start, span_end = (unpack_rows(x, cu, gold.max_length_q, fill=float("-inf"))
                                    for x in (start_logits, end_logits))  # fmt: skip
        # positions outside the sequence are ignored (as in Hugging Face's QA models)
        ignored = span_start.size(1)
        s = gold.start_positions.view(-1).clamp(0, ignored)
        e = gold.end_positions.view(-1).clamp(0, ignored)
        if cu is not None:
            own = cu.diff()
            s, e = torch.where(s < own, s, ignored), torch.where(e < own, e, ignored)
        loss = (
            nn.functional.cross_entropy(span_start, s, ignore_index=ignored)
            + nn.functional.cross_entropy(span_end, e, ignore_index=ignored)
        ) / 2
    return TaskOutput(logits=logits, loss=loss, start_logits=start_logits, end_logits=end_logits)


def _choice_outputs(logits: torch.Tensor, gold: Gold) -> TaskOutput:
    """One score per choice, laid out as ``[examples, choices]``."""
    if gold.num_choices is None:
        raise ValueError("a packed multiple-choice batch needs num_choices")
    logits = logits.view(-1, gold.num_choices)
    return TaskOutput(logits=logits, loss=_cross_entropy(logits, gold.labels))


kind_ops(TaskKind.SENTENCE_PAIR).implements("head")(Head(
    build=lambda hidden, n, dropout: (ClassificationHead(hidden, int(n), dropout), int(n)),
    outputs=_pair_outputs,
))
kind_ops(TaskKind.TAGGING).implements("head")(Head(
    build=lambda hidden, n, dropout: (TaggingHead(hidden, int(n), dropout), int(n)),
    outputs=_tag_outputs,
))
kind_ops(TaskKind.QA).implements("head")(Head(
    build=lambda hidden, n, dropout: (SpanHead(hidden), 2),
    outputs=_span_outputs,
))
kind_ops(TaskKind.MULTIPLE_CHOICE).implements("head")(Head(
    build=lambda hidden, n, dropout: (ClassificationHead(hidden, 1, dropout), 1),
    outputs=_choice_outputs,
))


def _dropout_of(config: Any) -> float:
    for name in ("classifier_dropout", "hidden_dropout_prob", "dropout"):
        value = getattr(config, name, None)
        if isinstance(value, (int, float)):
            return float(value)
    return 0.1


class TaskModel(nn.Module):
    """An encoder and a head for one task kind; see the module docstring."""

    def __init__(
        self,
        encoder: nn.Module,
        kind: TaskKind | str,
        *,
        num_labels: int | None = None,
        labels: list[str] | None = None,
        dropout: float | None = None,
    ) -> None:
        super().__init__()
        kind = TaskKind(kind)
        ops = kind_ops(kind)
        if not ops.has_head:
            raise ConfigError(
                f"no head for task kind {kind.value!r}; heads exist for "
                + ", ".join(k.value for k in HEAD_KINDS)
            )
        if labels is not None:
            labels = list(labels)
            if num_labels is not None and num_labels != len(labels):
                raise ConfigError(f"num_labels={num_labels} but {len(labels)} label names given")
            num_labels = len(labels)
        if ops.label_set and not num_labels:
            raise ConfigError(f"a {kind.value} head needs num_labels (or labels)")
        self.encoder = encoder
        self.kind = kind
        self.labels = labels
        self.dropout = _dropout_of(encoder.config) if dropout is None else float(dropout)
        self.head, self.num_labels = ops.head.build(encoder.config.hidden_size, num_labels, self.dropout)
        self._init_head()
        params = inspect.signature(encoder.forward).parameters
        self._accepts_token_types = "token_type_ids" in params

    def _init_head(self) -> None:
        """Initialise the head as the encoder initialises its own linear layers."""
        std = getattr(self.encoder.config, "initializer_range", 0.02)
        for module in self.head.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, mean=0.0, std=std)
                nn.init.zeros_(module.bias)

    # ----------------------------------------------------------------------------------------

    def encode(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None,
               **packing: Any) -> torch.Tensor:
        """The encoder's last hidden states ``[batch, length, hidden]``. ``position_ids`` and
        ``packing`` (sequence boundaries) come from packed rows (:mod:`xstilts.models.packing`)."""
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None and self._accepts_token_types:
            kwargs["token_type_ids"] = token_type_ids
        if position_ids is not None:
            kwargs["position_ids"] = position_ids
        kwargs.update((k, v) for k, v in packing.items() if v is not None)
        out = self.encoder(**kwargs)
        return out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        start_positions: torch.Tensor | None = None,
        end_positions: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        cu_seq_lens_q: torch.Tensor | None = None,
        max_length_q: int | None = None,
        num_choices: int | None = None,
        **_: Any,
    ) -> TaskOutput:
        if input_ids.dim() == 3:  # multiple choice, unpacked: [batch, choices, length], a row per choice
            batch, num_choices, length = input_ids.shape
            input_ids, attention_mask, token_type_ids = (
                None if t is None else t.reshape(batch * num_choices, length)
                for t in (input_ids, attention_mask, token_type_ids)
            )
        hidden = self.encode(input_ids, attention_mask, token_type_ids, position_ids,
                             cu_seq_lens_q=cu_seq_lens_q, max_length_q=max_length_q)
        ops = kind_ops(self.kind)
        if cu_seq_lens_q is not None and not ops.token_level:
            # a packed row: the sentence-level head reads each sequence's first token
            hidden = hidden[0, cu_seq_lens_q[:-1].long()].unsqueeze(1)
        gold = Gold(labels, start_positions, end_positions, cu_seq_lens_q, max_length_q, num_choices)
        return ops.head.outputs(self.head(hidden), gold)

    # ----------------------------------------------------------------------------------------

    def head_config(self) -> dict:
        return {
            "format_version": HEAD_FORMAT_VERSION,
            "kind": self.kind.value,
            "num_labels": self.num_labels,
            "labels": self.labels,
            "dropout": self.dropout,
            "head_class": type(self.head).__name__,
            "encoder_class": type(self.encoder).__name__,
        }

    def save(self, directory: str | Path, tokenizer: Any | None = None) -> Path:
        """Write ``encoder/`` (HF folder, plus the tokenizer if given), ``head.safetensors``, ``head.json``."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.encoder.save_pretrained(str(directory / ENCODER_DIR))
        if tokenizer is not None:
            tokenizer.save_pretrained(str(directory / ENCODER_DIR))
        state = {k: v.detach().cpu().contiguous() for k, v in self.head.state_dict().items()}
        save_file(state, str(directory / HEAD_WEIGHTS))
        (directory / HEAD_CONFIG).write_text(json.dumps(self.head_config(), indent=2) + "\n")
        return directory

    @classmethod
    def load(
        cls,
        directory: str | Path,
        *,
        device: str | torch.device | None = None,
        encoder: nn.Module | None = None,
    ) -> "TaskModel":
        """Load a model written by :meth:`save` (safetensors only).

        The encoder is read with ``AutoModel`` (no pooler is added when the checkpoint has none)
        unless an already loaded ``encoder`` of ``DIR/encoder`` is passed.
        """
        from safetensors.torch import load_file
        from transformers import AutoModel

        directory = Path(directory)
        config_path = directory / HEAD_CONFIG
        if not config_path.is_file() or not (directory / HEAD_WEIGHTS).is_file():
            raise MissingDataError(
                f"{directory} is not a task model folder (needs {HEAD_CONFIG}, {HEAD_WEIGHTS}, {ENCODER_DIR}/)"
            )
        config = read_head_config(directory)
        if config.get("format_version") != HEAD_FORMAT_VERSION:
            raise ConfigError(
                f"{config_path}: head format version {config.get('format_version')!r}, expected {HEAD_FORMAT_VERSION}"
            )
        if encoder is None:
            enc_dir = directory / ENCODER_DIR
            kwargs = {}
            if _has_pooler_weights(enc_dir) is False:
                kwargs["add_pooling_layer"] = False
            try:
                encoder = AutoModel.from_pretrained(str(enc_dir), use_safetensors=True, **kwargs)
            except TypeError:  # an architecture without add_pooling_layer
                encoder = AutoModel.from_pretrained(str(enc_dir), use_safetensors=True)
        model = cls(
            encoder,
            config["kind"],
            num_labels=config["num_labels"] if kind_ops(config["kind"]).label_set else None,
            labels=config.get("labels"),
            dropout=config.get("dropout"),
        )
        model.head.load_state_dict(load_file(str(directory / HEAD_WEIGHTS)))
        if device is not None:
            model.to(device)
        model.eval()
        return model


def build_model(
    task_or_kind: Task | str | TaskKind,
    encoder: nn.Module,
    num_labels: int | None = None,
    *,
    labels: list[str] | None = None,
    dropout: float | None = None,
) -> TaskModel:
    """A fresh head for ``task_or_kind`` on ``encoder``; a task's label list is used by default."""
    kind, task = resolve_kind(task_or_kind)
    if labels is None and num_labels is None and task is not None and task.labels:
        labels = list(task.labels)
    return TaskModel(encoder, kind, num_labels=num_labels, labels=labels, dropout=dropout)


def read_head_config(directory: str | Path) -> dict[str, Any]:
    """``DIR/head.json``, checked: a JSON object naming one of the head kinds (and its labels)."""

    path = Path(directory) / HEAD_CONFIG
    text = decode_utf8(read_input_bytes(path), path)
    try:
        config = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataFormatError(
            path, exc.lineno, "valid JSON (a task model's head description)", exc.msg,
            hint="the model folder is incomplete or was edited: restore the file or train the model again",
        ) from None
    kinds = ", ".join(k.value for k in HEAD_KINDS)
    if not isinstance(config, dict) or config.get("kind") not in {k.value for k in HEAD_KINDS}:
        found = repr(config.get("kind")) if isinstance(config, dict) else type(config).__name__
        raise DataFormatError(path, None, f'a "kind" among {kinds}', found)
    labels = config.get("labels")
    if labels is not None and (
        not isinstance(labels, list) or not all(isinstance(x, str) for x in labels)
    ):
        raise DataFormatError(path, None, '"labels" as a list of strings', repr(labels)[:80])
    return config


def _describe_head(kind: TaskKind, labels: Sequence[str] | None, owner: str | None = None) -> str:
    """"a tagging head with 17 labels (ADJ ... X) (a udpos model)"; ``owner`` names the task whose
    labels they are, else the registry's tasks with that label set are named."""
    text = f"a {kind.value} head"
    if not labels:
        return text
    shown = " ".join(labels) if len(labels) <= 20 else " ".join(labels[:20]) + " ..."
    if owner is not None:
        return f"{text} with {owner}'s {len(labels)} labels ({shown})"
    text += f" with {len(labels)} labels ({shown})"
    same = [t.name for t in REGISTRY if t.kind is kind and t.labels and set(t.labels) == set(labels)]
    return text + (f" (a {'/'.join(same)} model)" if same else "")


def check_head_fits(
    task: Task, kind: TaskKind | str, labels: Sequence[str] | None, where: str | Path
) -> None:
    """A model predicts ``task`` only with a head of the task's kind whose labels are the
    task's: a UDPOS tagger asked for PAN-X would write POS tags as entity predictions. Else a
    ConfigError naming the model's head (kind, labels) and the task's."""
    kind = TaskKind(kind)
    fits = kind is task.kind
    if fits and task.labels and labels is not None:
        fits = set(labels) <= set(task.labels)
    if fits:
        return
    wanted = _describe_head(task.kind, task.labels, owner=task.name)
    raise ConfigError(
        f"{where}: expected {wanted} to predict {task.name}, found {_describe_head(kind, labels)}; "
        f"give a model fine-tuned on {task.name}"
    )


def _has_pooler_weights(folder: Path) -> bool | None:
    """Whether a saved encoder's safetensors hold pooler weights (None: no safetensors file)."""
    from safetensors import safe_open

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        return None
    for file in files:
        with safe_open(str(file), framework="pt") as fh:
            if any(k.split(".")[0] == "pooler" or ".pooler." in k for k in fh.keys()):
                return True
    return False


def load_task_model(directory: str | Path, *, device: str | torch.device | None = None):
    """``(TaskModel, tokenizer)`` from a folder written by :meth:`TaskModel.save` with a tokenizer."""
    from transformers import AutoTokenizer

    model = TaskModel.load(directory, device=device)
    encoder_dir = Path(directory) / ENCODER_DIR
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(encoder_dir))
    except (OSError, ValueError) as exc:
        raise MissingDataError(
            f"{encoder_dir} has no tokenizer: save the model with tokenizer=..."
        ) from exc
    return model, tokenizer


def is_task_model_dir(path: str | Path) -> bool:
    """True for a folder written by :meth:`TaskModel.save`."""
    p = Path(path)
    return (p / HEAD_CONFIG).is_file() and (p / ENCODER_DIR).is_dir()
