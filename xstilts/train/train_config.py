"""Settings of one training phase and what a finished phase reports (the innermost of the three
configs: a study, :mod:`xstilts.study.study_config`; a run, :mod:`xstilts.study.run_config`).

Kept free of torch imports so that configs can be built and validated without loading torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from xstilts.errors import ConfigError

MixedPrecision = Literal["auto", "no", "bf16", "fp16"]


@dataclass
class TrainConfig:
    """Everything :func:`xstilts.train.loop.train` needs to know besides the model and the data.

    ``batch_size`` is per device and per micro-batch; the effective batch of one optimizer step
    is ``batch_size * grad_accum * number of processes``. ``epochs`` is a whole number of passes
    unless ``max_steps`` (optimizer steps) is set, which then wins.
    """

    learning_rate: float = 2e-5
    batch_size: int = 8
    grad_accum: int = 1
    epochs: int = 1
    max_steps: int | None = None
    warmup_ratio: float = 0.0
    warmup_steps: int | None = None  # wins over warmup_ratio when set
    weight_decay: float = 0.0
    adam_epsilon: float = 1e-8
    adam_betas: tuple[float, float] = (0.9, 0.999)
    max_grad_norm: float | None = 1.0
    schedule: Literal["linear", "constant"] = "linear"
    mixed_precision: MixedPrecision = "auto"
    seed: int = 1
    # Length-grouped batches pad far less (the main CPU speed-up) but change which examples share
    # a batch, and with them the results: UDPOS with multilingual-e5-small after one epoch scored
    # 50.9 grouped against 56.7 with random batches (3 seeds, bench/RESULTS.md). Off by default,
    # so that runs reproduce the reference recipe. The pipeline packs the batches of every task
    # with a head instead (xstilts.models.packing: the same random batches, each one padding-free row).
    group_by_length: bool = False
    mega_batch_mult: int = 50  # length groups are formed inside windows of this many batches
    shuffle: bool = True
    eval_every: int = 0  # optimizer steps; 0 = at the end of every epoch
    patience: int | None = None  # evaluations without improvement before stopping; None = never
    metric_for_best: str = "loss"
    greater_is_better: bool | None = None  # None: True unless the metric name contains "loss"
    load_best_at_end: bool = True
    checkpoint_every: int = 0  # optimizer steps; 0 = at the end of every epoch only
    keep_checkpoints: int = 2
    log_every: int = 10
    progress: bool = True
    tensorboard: bool = True
    cpu: bool = False  # force CPU even where an accelerator is present
    # Speed switches; each can be turned off (tests/test_speed.py checks that they change nothing
    # beyond float rounding). Length grouping is ``group_by_length`` above.
    fused_optimizer: bool = True  # one vectorised AdamW kernel on CUDA and CPU; False: per-tensor loop
    compile: bool = False  # torch.compile the forward pass (pays on GPUs in long runs; compiles first)
    dataloader_workers: int = 0  # processes that collate batches ahead of the step; 0: in-line
    pin_memory: bool | None = None  # page-locked batches for async host->GPU copies; None: on GPUs
    # big embedding tables: sparse backward into a gradient buffer kept across steps (saves the
    # table-sized allocation each step); None: on for a single CPU process (embedding_grads.py)
    sparse_embedding_grads: bool | None = None
    # Several processes: "ddp" keeps a full replica of the weights, gradients and optimizer state
    # in every process; "fsdp" shards all three over the processes (torch FSDP2: each transformer
    # block, then the rest), for a model whose training state does not fit one device.
    sharding: Literal["ddp", "fsdp"] = "ddp"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        def need(cond: bool, what: str) -> None:
            if not cond:
                raise ConfigError(f"training setting {what}")

        need(self.learning_rate > 0, f"learning_rate must be > 0, got {self.learning_rate}")
        need(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        need(self.grad_accum >= 1, f"grad_accum must be >= 1, got {self.grad_accum}")
        need(self.epochs >= 1 or self.max_steps is not None, f"epochs must be >= 1, got {self.epochs}")
        need(self.max_steps is None or self.max_steps >= 1, f"max_steps must be >= 1, got {self.max_steps}")
        need(0.0 <= self.warmup_ratio < 1.0, f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        need(self.mixed_precision in ("auto", "no", "bf16", "fp16"),
             f"mixed_precision must be one of auto, no, bf16, fp16; got {self.mixed_precision!r}")
        need(self.schedule in ("linear", "constant"),
             f"schedule must be linear or constant; got {self.schedule!r}")
        need(self.patience is None or self.patience >= 1, f"patience must be >= 1, got {self.patience}")
        need(self.keep_checkpoints >= 1, f"keep_checkpoints must be >= 1, got {self.keep_checkpoints}")
        need(self.mega_batch_mult >= 1, f"mega_batch_mult must be >= 1, got {self.mega_batch_mult}")
        need(self.sharding in ("ddp", "fsdp"), f"sharding must be ddp or fsdp; got {self.sharding!r}")
        need(not (self.sharding == "fsdp" and self.mixed_precision == "fp16"),
             "sharding: fsdp trains in fp32 or bf16; fp16 (a loss scaler over sharded gradients) is not supported")
        need(not (self.sharding == "fsdp" and self.sparse_embedding_grads),
             "sharding: fsdp needs dense embedding gradients; sparse_embedding_grads must not be true")
        need(self.dataloader_workers >= 0,
             f"dataloader_workers must be >= 0, got {self.dataloader_workers}")

    @property
    def higher_is_better(self) -> bool:
        if self.greater_is_better is not None:
            return self.greater_is_better
        return "loss" not in self.metric_for_best

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["adam_betas"] = list(self.adam_betas)
        return d


@dataclass
class TrainResult:
    """What a finished (or early-stopped) training run reports; written to ``result.json``."""

    out_dir: Path
    global_step: int
    epochs_completed: int
    train_loss: float | None
    best_metric: float | None = None
    best_step: int | None = None
    stopped_early: bool = False
    resumed_from_step: int | None = None
    eval_history: list[dict[str, float]] = field(default_factory=list)
    train_seconds: float = 0.0
    examples_per_second: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["out_dir"] = str(self.out_dir)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainResult:
        d = dict(d)
        d["out_dir"] = Path(d["out_dir"])
        return cls(**d)
