"""The training loop: one function, the same code on one CPU, one GPU or many (Accelerate DDP,
or torch FSDP2 with ``sharding="fsdp"``).

``train`` owns the optimizer, the schedule, the batches, evaluation, early stopping, logging
and checkpoints; the model is any ``nn.Module`` whose ``forward(**batch)`` returns an object
with ``.loss`` or a mapping with ``"loss"``. Calling ``train`` again with the same arguments
and ``out_dir`` resumes from the last checkpoint, or returns at once if the run had finished.

Files under ``out_dir``::

    checkpoints/step-NNNNNNNN/  model.pt optimizer.pt scheduler.pt [scaler.pt] rng-R.pt state.json
    checkpoints/latest          name of the newest complete checkpoint
    best/                       model.pt + meta.json of the best evaluation so far
    final/                      model.pt + meta.json of the weights train() returned with
    log.jsonl                   one line per logged step and per evaluation
    tensorboard/                SummaryWriter events
    result.json                 TrainResult (written last: its presence means finished)
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from xstilts.errors import ConfigError, NonFiniteLossError
from xstilts.fileio import write_json_atomic
from xstilts.models.device import resolve_mixed_precision
from xstilts.train import checkpoint as ck
from xstilts.train.batching import (
    BatchPlanner,
    LengthGroupedPlanner,
    collated_batches,
    feature_length,
)
from xstilts.train.embedding_grads import KeptEmbeddingGrads
from xstilts.train.schedule import build_scheduler, warmup_steps_for
from xstilts.train.signals import StoppedBySignal, StopRequest, graceful_stop
from xstilts.train.train_config import TrainConfig, TrainResult

# With several processes, ranks agree on a stop every this many steps (an all-reduce, which
# waits for the device; one process reads its flag every step, for free).
STOP_CHECK_EVERY_DDP = 10

EvalFn = Callable[[Any], Mapping[str, float]]


def get_loss(output: Any):
    """The loss from a model output (attribute or mapping); a clear error when absent."""
    loss = getattr(output, "loss", None)
    if loss is None and isinstance(output, Mapping):
        loss = output.get("loss")
    if loss is None:
        raise ValueError("the model returned no loss: does the batch contain labels?")
    return loss


def move_to_device(batch: Mapping[str, Any], device) -> dict[str, Any]:
    import torch

    return {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}


def parameter_groups(model, weight_decay: float, lr: float | None = None) -> list[dict[str, Any]]:
    """Weight decay on matrices only: biases and LayerNorm weights are not decayed (BERT recipe).

    A submodule with a float attribute ``lr_scale`` (e.g. the randomly initialised decoder of
    code generation, which would barely move at an encoder's fine-tuning rate) trains at
    ``lr * lr_scale``; the schedule scales every group alike."""
    scale_of: dict[int, float] = {}
    if lr is not None:
        for module in model.modules():
            scale = getattr(module, "lr_scale", None)
            if isinstance(scale, (int, float)) and scale != 1:
                for p in module.parameters():
                    scale_of[id(p)] = float(scale)
    buckets: dict[tuple[float, bool], list] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        no_decay = p.ndim < 2 or "LayerNorm" in name or "layer_norm" in name or name.endswith(".bias")
        buckets.setdefault((scale_of.get(id(p), 1.0), no_decay), []).append(p)
    groups = [{"params": buckets.get((1.0, False), []), "weight_decay": weight_decay}]
    if buckets.get((1.0, True)):
        groups.append({"params": buckets[(1.0, True)], "weight_decay": 0.0})
    for (scale, no_decay), params in sorted(buckets.items(), key=lambda kv: kv[0]):
        if scale != 1.0:
            groups.append({"params": params, "weight_decay": 0.0 if no_decay else weight_decay, "lr": lr * scale})
    return groups


def build_accelerator(config: TrainConfig, find_unused_parameters: bool = False):
    import torch
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    handlers = []
    if find_unused_parameters:
        handlers.append(DistributedDataParallelKwargs(find_unused_parameters=True))
    # Several processes on a machine without a GPU: Accelerate joins them (gloo) only when told
    # cpu=True; otherwise every process would train alone, all of them "rank 0".
    cpu = config.cpu or (int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available())
    return Accelerator(
        mixed_precision=resolve_mixed_precision(config.mixed_precision, cpu),
        cpu=cpu,
        kwargs_handlers=handlers,
    )


def shard_units(model) -> list:
    """The modules FSDP shards one by one: every block of every ``nn.ModuleList`` (the transformer
    layers of an encoder or decoder), outermost only; the root then holds the rest (embeddings,
    heads and tied weights, which must stay in one unit)."""
    import torch

    units: list = []
    inside: set[int] = set()
    for module in model.modules():
        if id(module) in inside:
            continue
        if isinstance(module, torch.nn.ModuleList):
            for block in module:
                if any(True for _ in block.parameters()):
                    units.append(block)
                    inside.update(id(m) for m in block.modules())
    return units


def fsdp_shard(model, num_processes: int, device):
    """``model`` sharded in place over ``num_processes`` processes with torch FSDP2
    (``fully_shard``): each unit of :func:`shard_units`, then the root."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(device.type, (num_processes,))
    for unit in shard_units(model):
        fully_shard(unit, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


def _full_state_options(cpu_offload: bool = False):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=cpu_offload)


class _Logger:
    """log.jsonl + TensorBoard, on the main process only; truncated to the resume step."""

    def __init__(self, out_dir: Path, enabled: bool, tensorboard: bool, resume_step: int) -> None:
        self.enabled = enabled
        self.path = out_dir / "log.jsonl"
        self.writer = None
        if not enabled:
            return
        if self.path.exists():  # drop lines written after the checkpoint we resume from
            kept = [
                line for line in self.path.read_text().splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= resume_step
            ]
            self.path.write_text("".join(k + "\n" for k in kept))
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(
                    log_dir=str(out_dir / "tensorboard"),
                    purge_step=resume_step + 1 if resume_step > 0 else None,
                )
            except ImportError:  # tensorboard is a dependency, but logging must not kill training
                self.writer = None

    def log(self, record: dict[str, Any], prefix: str) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as fh:
            fh.write(json.dumps(record, sort_keys=True) + "\n")
        if self.writer is not None:
            step = record["step"]
            for k, v in record.items():
                if k not in ("step", "epoch", "kind") and isinstance(v, (int, float)):
                    self.writer.add_scalar(f"{prefix}/{k}", v, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()


@dataclass
class TrainerState:
    """Where a training run is: the position in the data, the schedule, the best evaluation and
    early stopping. Saved in every checkpoint (``trainer``) and read back on resume."""

    global_step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    best_metric: float | None = None
    best_step: int | None = None
    bad_evals: int = 0
    eval_history: list[dict[str, Any]] = field(default_factory=list)
    epoch_loss_sum: float = 0.0
    epoch_loss_steps: int = 0
    last_epoch_loss: float | None = None
    stopped_early: bool = False
    last_eval_step: int | None = None
    log_window: list[float] | None = None  # a log line's partial window [loss sum, steps], for exact logs

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, saved: Mapping[str, Any]) -> TrainerState:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in saved.items() if k in known})


def train(
    model,
    train_features: Sequence[Any],
    collate_fn: Callable[[list[Any]], Mapping[str, Any]],
    config: TrainConfig,
    eval_fn: EvalFn | None = None,
    out_dir: str | Path = "train_out",
    *,
    planner: BatchPlanner | None = None,
    accelerator=None,
    find_unused_parameters: bool = False,
    description: str = "train",
) -> TrainResult:
    """Train ``model`` in place and return what happened; resumes from ``out_dir`` when it can.

    ``eval_fn(model) -> {metric: value}`` is called with the unwrapped model in eval mode (on
    the main process; the result is shared with the others). ``planner`` decides the batches
    of each epoch (default: length-grouped batches of ``config.batch_size``).

    SIGTERM (a scheduler's "time is up") or Ctrl-C ends the optimizer step in progress, writes a
    checkpoint at that step and raises :class:`~xstilts.train.signals.StoppedBySignal`; calling
    ``train`` again resumes there and ends with the weights of an uninterrupted run. A
    checkpoint that cannot be written (a full disk) is a :class:`CheckpointWriteError`; the
    previous checkpoint is left intact.
    """
    config.validate()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if accelerator is None:
        accelerator = build_accelerator(config, find_unused_parameters)
    # A finished run: load its final weights and report, without training again.
    result_path = out_dir / RESULT_FILE
    if result_path.is_file() and (out_dir / "final" / "model.pt").is_file():
        model.load_state_dict(ck.load_weights(out_dir / "final"))
        model.to(accelerator.device)
        return TrainResult.from_dict(json.loads(result_path.read_text()))
    if len(train_features) == 0:
        raise ConfigError(f"{description}: no training examples")
    with graceful_stop() as stop:
        run = _TrainingRun(model, train_features, collate_fn, config, eval_fn, out_dir, planner=planner,
                           accelerator=accelerator, description=description, stop=stop)
        return run.run()


RESULT_FILE = "result.json"
LOSS_READ_EVERY = 50  # steps between reads of the losses kept on the device


class _TrainingRun:
    """One call of :func:`train`, in four parts: the set-up (batches, optimizer, schedule, and the
    state of a checkpoint to resume from), the optimizer step, the cadence after each step
    (logging, evaluation, early stopping, checkpoints, a requested stop) and the end (final
    evaluation, the best weights, ``final/`` and ``result.json``)."""

    def __init__(self, model, train_features, collate_fn, config: TrainConfig, eval_fn: EvalFn | None,
                 out_dir: Path, *, planner: BatchPlanner | None, accelerator, description: str,
                 stop: StopRequest) -> None:
        import torch
        from accelerate.utils import set_seed

        self.config, self.eval_fn, self.out_dir = config, eval_fn, out_dir
        self.train_features, self.collate_fn = train_features, collate_fn
        self.accelerator, self.description, self.stop = accelerator, description, stop
        self.is_main = accelerator.is_main_process
        self.ckpt_root = out_dir / "checkpoints"
        set_seed(config.seed)
        self.planner = planner or LengthGroupedPlanner(
            [feature_length(f) for f in train_features],
            config.batch_size,
            seed=config.seed,
            group_by_length=config.group_by_length,
            shuffle=config.shuffle,
            mega_batch_mult=config.mega_batch_mult,
            world_size=accelerator.num_processes,
            rank=accelerator.process_index,
        )
        self._plan_schedule()
        self.device = device = accelerator.device
        model.to(device)
        # FSDP: a copy of the model is sharded and trained; ``model`` stays whole (the weights the
        # caller gets back, evaluation and saving), gathered from the shards when it is needed and
        # kept in host memory in between.
        self.fsdp = config.sharding == "fsdp"
        if self.fsdp:
            import copy

            if accelerator.num_processes < 2:
                raise ConfigError(f"{description}: sharding: fsdp needs several processes (torchrun; "
                                  f"processes_per_cell > 1), got {accelerator.num_processes}")
            trained = fsdp_shard(copy.deepcopy(model), accelerator.num_processes, device)
            model.to("cpu")
        else:
            trained = model
        # The fused kernel is one vectorised pass over parameters, gradients and moments: on CUDA and
        # on CPU (torch >= 2.4) it is several times faster than the per-tensor loop (10x on CPU for a
        # 96M-row embedding matrix), with the same results to float rounding.
        fused = config.fused_optimizer and device.type in ("cuda", "cpu")
        optimizer = torch.optim.AdamW(
            parameter_groups(trained, config.weight_decay, config.learning_rate),
            lr=config.learning_rate,
            betas=tuple(config.adam_betas),
            eps=config.adam_epsilon,
            fused=fused,
        )
        # The scheduler is not handed to accelerate: its wrapper would step it once per process.
        self.scheduler = build_scheduler(optimizer, kind=config.schedule, total_steps=self.total_steps,
                                         warmup=self.warmup)
        if self.fsdp:  # FSDP2 reduces the gradients itself; no loss scaler (fp16 is refused)
            self.model, self.optimizer, self.raw_model = trained, optimizer, model
        else:
            self.model, self.optimizer = accelerator.prepare(model, optimizer)
            self.raw_model = accelerator.unwrap_model(self.model)
        # Compiled forward for the steps only; ``model`` (DDP wrapper) keeps no_sync and clipping.
        self.forward_model = torch.compile(self.model, dynamic=True) if config.compile else self.model
        sparse_embeddings = config.sparse_embedding_grads
        if sparse_embeddings is None:  # the saving is the CPU allocation; DDP buckets want dense grads
            sparse_embeddings = device.type == "cpu" and accelerator.num_processes == 1
        self.kept_grads = KeptEmbeddingGrads(self.raw_model) if sparse_embeddings else None
        self.pin_memory = config.pin_memory if config.pin_memory is not None else device.type == "cuda"
        self.signature = {
            "planner": self.planner.describe(),
            "num_processes": accelerator.num_processes,
            "total_steps": self.total_steps,
            "grad_accum": config.grad_accum,
        }
        if self.fsdp:  # a DDP checkpoint's optimizer state is not a sharded one's: refuse to mix them
            self.signature["sharding"] = "fsdp"
        self.state = TrainerState()
        self.resumed_from: int | None = None
        self._resume()
        self.logger = _Logger(out_dir, self.is_main, config.tensorboard, self.state.global_step)
        self.last_checkpoint_step: int | None = None
        self.examples_seen = 0
        window = self.state.log_window or (0.0, 0)
        self.state.log_window = None
        self.log_loss_sum, self.log_loss_n = window
        # Each step's micro-batch losses stay on the device until they are needed (a log line, the
        # end of an epoch, a checkpoint): reading a loss waits for the GPU, and waiting every step
        # stops the host from queueing the next step's kernels while the current one runs. The
        # floats are summed in the same order as when read one by one, so the numbers are the same.
        self.pending: list[list[Any]] = []
        self.progress = None
        if self.is_main and config.progress:
            from tqdm.auto import tqdm

            self.progress = tqdm(total=self.total_steps, initial=self.state.global_step, desc=description,
                                 unit="step", dynamic_ncols=True, leave=False)

    # -- set-up --------------------------------------------------------------------------------

    def _plan_schedule(self) -> None:
        """Batches per epoch, optimizer steps in all, epochs and warm-up steps."""
        config, accelerator = self.config, self.accelerator
        batches_per_epoch = len(self.planner.plan(0))
        if batches_per_epoch == 0:
            raise ConfigError(
                f"{self.description}: {len(self.train_features)} examples make no batch on "
                f"{accelerator.num_processes} processes"
            )
        steps_per_epoch = math.ceil(batches_per_epoch / config.grad_accum)
        if config.max_steps is not None:
            self.total_steps = config.max_steps
            self.num_epochs = math.ceil(self.total_steps / steps_per_epoch)
        else:
            self.total_steps = config.epochs * steps_per_epoch
            self.num_epochs = config.epochs
        self.warmup = warmup_steps_for(self.total_steps, config.warmup_ratio, config.warmup_steps)

    def _resume(self) -> None:
        """Load the newest complete checkpoint, if there is one written by the same run."""
        import torch

        if self.is_main:
            ck.clean_temporaries(self.ckpt_root)
            ck.recover_folder(self.out_dir / "best")
        self.accelerator.wait_for_everyone()
        ckpt = ck.latest_checkpoint(self.ckpt_root, clean=False)
        if ckpt is None:
            return
        saved = ck.read_state(ckpt)
        if saved.get("signature") != self.signature:
            raise ConfigError(
                f"{self.description}: cannot resume from {ckpt}: it was written with different data or "
                f"settings ({saved.get('signature')} != {self.signature}); use a new output folder"
            )
        weights = torch.load(ckpt / "model.pt", map_location="cpu", weights_only=True)
        optimizer_state = torch.load(ckpt / "optimizer.pt", map_location="cpu", weights_only=True)
        self.raw_model.load_state_dict(weights)
        if self.fsdp:  # every rank reads the full state and keeps its shard
            from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

            set_model_state_dict(self.model, weights, options=_full_state_options())
            set_optimizer_state_dict(self.model, self.optimizer, optimizer_state, options=_full_state_options())
        else:
            self.optimizer.load_state_dict(optimizer_state)
        self.scheduler.load_state_dict(torch.load(ckpt / "scheduler.pt", weights_only=True))
        if self.accelerator.scaler is not None and (ckpt / "scaler.pt").exists():
            self.accelerator.scaler.load_state_dict(torch.load(ckpt / "scaler.pt", weights_only=True))
        rng_file = ckpt / f"rng-{self.accelerator.process_index}.pt"
        ck.restore_rng_state(torch.load(rng_file, weights_only=False))
        self.state = TrainerState.from_dict(saved["trainer"])
        self.resumed_from = self.state.global_step

    # -- evaluation, checkpoints, stopping -----------------------------------------------------

    def evaluate(self) -> dict[str, float]:
        import torch
        from accelerate.utils import broadcast_object_list

        state, config, accelerator = self.state, self.config, self.accelerator
        metrics_box: list[Any] = [None]
        if self.fsdp:
            self.gather_weights()
        if self.is_main:
            if self.fsdp:
                self.raw_model.to(self.device)
            self.raw_model.eval()
            with torch.no_grad(), accelerator.autocast():
                metrics_box[0] = {k: float(v) for k, v in self.eval_fn(self.raw_model).items()}
            self.raw_model.train()
            if self.fsdp:
                self.raw_model.to("cpu")
        if accelerator.num_processes > 1:
            broadcast_object_list(metrics_box)
        metrics = metrics_box[0]
        if config.metric_for_best not in metrics:
            raise ConfigError(
                f"{self.description}: evaluation returned {sorted(metrics)}, not metric_for_best="
                f"{config.metric_for_best!r}"
            )
        value = metrics[config.metric_for_best]
        best = state.best_metric
        improved = best is None or (value > best if config.higher_is_better else value < best)
        if improved:
            state.best_metric, state.best_step, state.bad_evals = value, state.global_step, 0
            if self.is_main:
                ck.save_weights_atomic(
                    self.raw_model.state_dict(), self.out_dir / "best",
                    {"step": state.global_step, "metrics": metrics},
                )
        else:
            state.bad_evals += 1
        record = {"kind": "eval", "step": state.global_step, "epoch": state.epoch, **metrics}
        state.eval_history.append(record)
        state.last_eval_step = state.global_step
        self.logger.log(record, "eval")
        if config.patience is not None and state.bad_evals >= config.patience:
            state.stopped_early = True
        return metrics

    def save_checkpoint(self) -> None:
        """A checkpoint of this step, written to a temporary folder and renamed into place: if
        the write fails (a full disk), the folder is removed and the previous one is intact."""
        accelerator, ckpt_root, is_main = self.accelerator, self.ckpt_root, self.is_main
        step = self.state.global_step
        self.state.log_window = [self.log_loss_sum, self.log_loss_n]
        tmp = ckpt_root / f"{ck.TMP_PREFIX}{ck.step_dir_name(step)}"
        if self.fsdp:  # collective: every rank takes part, rank 0 gets the full states
            from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

            weights = get_model_state_dict(self.model, options=_full_state_options(cpu_offload=True))
            optimizer_state = get_optimizer_state_dict(self.model, self.optimizer,
                                                       options=_full_state_options(cpu_offload=True))
        else:
            weights, optimizer_state = None, None
        try:
            if is_main:
                ck.begin_checkpoint(ckpt_root, step)
            accelerator.wait_for_everyone()
            ck.torch_save_durably(ck.capture_rng_state(), tmp / f"rng-{accelerator.process_index}.pt")
            if is_main:
                ck.torch_save_durably(weights if self.fsdp else self.raw_model.state_dict(), tmp / "model.pt")
                ck.torch_save_durably(optimizer_state if self.fsdp else self.optimizer.state_dict(),
                                      tmp / "optimizer.pt")
                ck.torch_save_durably(self.scheduler.state_dict(), tmp / "scheduler.pt")
                if accelerator.scaler is not None:
                    ck.torch_save_durably(accelerator.scaler.state_dict(), tmp / "scaler.pt")
            accelerator.wait_for_everyone()
            if is_main:
                ck.commit_checkpoint(
                    ckpt_root, tmp, step,
                    {"signature": self.signature, "trainer": self.state.to_dict(), "config": self.config.to_dict()},
                    keep=self.config.keep_checkpoints,
                )
        except OSError as exc:
            if is_main:
                shutil.rmtree(tmp, ignore_errors=True)
            raise ck.CheckpointWriteError.of(ckpt_root / ck.step_dir_name(step), exc,
                                             ck.latest_checkpoint(ckpt_root, clean=False)) from None
        finally:
            self.state.log_window = None
        accelerator.wait_for_everyone()
        self.last_checkpoint_step = step

    def gather_weights(self) -> None:
        """FSDP: the trained shards into the whole model on every rank (collective)."""
        from torch.distributed.checkpoint.state_dict import get_model_state_dict

        full = get_model_state_dict(self.model, options=_full_state_options())
        self.raw_model.load_state_dict({k: v.to("cpu") for k, v in full.items()})

    def stop_requested(self, force: bool = False) -> bool:
        """Whether to stop now: this process's flag, or with several processes their agreement
        (every STOP_CHECK_EVERY_DDP steps, or when ``force``d), so that all ranks stop together."""
        import torch

        if self.accelerator.num_processes == 1:
            return bool(self.stop)
        if not force and self.state.global_step % STOP_CHECK_EVERY_DDP:
            return False
        flag = torch.tensor([1.0 if self.stop else 0.0], device=self.device)
        return bool(self.accelerator.reduce(flag, reduction="sum").item() > 0)

    def non_finite_loss(self, value: float, step: int) -> NonFiniteLossError:
        kept = ck.latest_checkpoint(self.ckpt_root, clean=False)
        where = (f"the last checkpoint ({kept.name}) is intact, but re-running the same command resumes "
                 f"from it into the same {value}" if kept is not None else "no checkpoint was written")
        return NonFiniteLossError(
            f"{self.description}: the training loss is {value} at step {step} (of {self.total_steps}); training "
            f"stopped and nothing after it was saved; {where}. Lower the learning rate, or use bf16 "
            f"instead of fp16, and run with a fresh --out")

    def stop_signal(self) -> StoppedBySignal:
        return StoppedBySignal(self.stop.signum or signal.SIGTERM, self.state.global_step)

    def read_losses(self) -> float | None:
        """The losses of the steps since the last read, into the epoch and log sums (in order)."""
        import torch

        if not self.pending:
            return None
        values = iter(torch.stack([x for step in self.pending for x in step]).float().tolist())
        first_step = self.state.global_step - len(self.pending) + 1
        window_loss = 0.0
        for n, step_losses in enumerate(self.pending):
            window_loss = 0.0
            for _ in step_losses:
                window_loss += next(values)
            if not math.isfinite(window_loss):  # read before any checkpoint of these steps is written
                raise self.non_finite_loss(window_loss, first_step + n)
            self.state.epoch_loss_sum += window_loss
            self.state.epoch_loss_steps += 1
            self.log_loss_sum += window_loss
            self.log_loss_n += 1
        self.pending.clear()
        return window_loss

    # -- one optimizer step --------------------------------------------------------------------

    def optimizer_step(self, window: Sequence[Any], batch_stream) -> None:
        """Forward and backward over the window's micro-batches (gradients synchronised on the
        last), clipping, the optimizer and scheduler step; the losses stay on the device."""
        config, accelerator, model = self.config, self.accelerator, self.model
        step_losses = []
        for k, idx in enumerate(window):
            batch = move_to_device(next(batch_stream), self.device)
            sync = k == len(window) - 1
            if self.fsdp:  # reduce-scatter the gradients on the window's last micro-batch only
                model.set_requires_gradient_sync(sync)
                ctx = contextlib.nullcontext()
            else:
                ctx = contextlib.nullcontext() if sync else accelerator.no_sync(model)
            with ctx:
                with accelerator.autocast():
                    loss = get_loss(self.forward_model(**batch)) / len(window)
                accelerator.backward(loss)
            step_losses.append(loss.detach())
            self.examples_seen += len(idx)
        if config.max_grad_norm is not None and config.max_grad_norm > 0:
            if self.fsdp:  # the norm over all shards (DTensor gradients)
                import torch

                torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
            else:
                clip = (self.kept_grads.clip_grad_norm_ if self.kept_grads is not None
                        else accelerator.clip_grad_norm_)
                clip(model.parameters(), config.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.kept_grads is not None:
            self.kept_grads.reset()
        self.state.global_step += 1
        self.pending.append(step_losses)

    # -- after each step: logs, evaluation, checkpoints ----------------------------------------

    def after_step(self, epoch: int, epoch_end: bool) -> bool:
        """Logging, the end of an epoch, evaluation, early stopping and checkpoints at the step
        just taken; True when training is finished."""
        config, state = self.config, self.state
        step = state.global_step
        finished = step >= self.total_steps
        logging = bool(config.log_every) and step % config.log_every == 0
        checkpointing = bool(config.checkpoint_every) and step % config.checkpoint_every == 0
        if logging or epoch_end or finished or checkpointing or step % LOSS_READ_EVERY == 0:
            window_loss = self.read_losses()
            if self.progress is not None:
                elapsed = max(time.perf_counter() - self.t_start, 1e-9)
                self.progress.set_postfix(loss=f"{window_loss:.4f}", ex_s=f"{self.examples_seen / elapsed:.1f}")
        if self.progress is not None:
            self.progress.update(1)
        if logging:
            self.logger.log({"kind": "train", "step": step, "epoch": epoch,
                             "loss": self.log_loss_sum / self.log_loss_n,
                             "lr": self.scheduler.get_last_lr()[0]}, "train")
            self.log_loss_sum, self.log_loss_n = 0.0, 0
        if epoch_end:
            state.last_epoch_loss = state.epoch_loss_sum / max(1, state.epoch_loss_steps)
            state.epoch_loss_sum, state.epoch_loss_steps = 0.0, 0
            state.epoch, state.batch_in_epoch = epoch + 1, 0
        if self.eval_fn is not None and (
            (config.eval_every and step % config.eval_every == 0)
            or (not config.eval_every and epoch_end)
        ):
            self.evaluate()
        if state.stopped_early:
            finished = True
        if (checkpointing or epoch_end) and not finished:
            self.save_checkpoint()
        return finished

    # -- the whole run -------------------------------------------------------------------------

    def run(self) -> TrainResult:
        state, config = self.state, self.config
        self.model.train()
        self.t_start = time.perf_counter()
        done = state.global_step >= self.total_steps or state.stopped_early
        interrupted = False
        for epoch in range(state.epoch, self.num_epochs):
            if done:
                break
            state.epoch = epoch
            plan = self.planner.plan(epoch)
            i = state.batch_in_epoch
            batch_stream = collated_batches(self.train_features, plan[i:], self.collate_fn,
                                            workers=config.dataloader_workers, pin_memory=self.pin_memory)
            while i < len(plan):
                window = plan[i : i + config.grad_accum]
                self.optimizer_step(window, batch_stream)
                i += len(window)
                state.batch_in_epoch = i
                if self.after_step(epoch, epoch_end=i >= len(plan)):
                    done = True
                    break
                if self.stop_requested():
                    interrupted = done = True
                    break
        self.read_losses()  # steps since the last read (an early stop between reads)
        if interrupted:  # SIGTERM / Ctrl-C: a checkpoint of this very step, then stop
            if self.last_checkpoint_step != state.global_step:
                self.save_checkpoint()
            self._close()
            raise self.stop_signal()
        return self._finish()

    def _close(self) -> None:
        if self.kept_grads is not None:
            self.kept_grads.close()
        if self.progress is not None:
            self.progress.close()
        self.logger.close()

    def _finish(self) -> TrainResult:
        """The last evaluation, the best weights when asked, ``final/`` and ``result.json``."""
        state, config, out_dir = self.state, self.config, self.out_dir
        if self.kept_grads is not None:
            self.kept_grads.close()
            self.kept_grads = None
        if state.last_epoch_loss is None and state.epoch_loss_steps:
            state.last_epoch_loss = state.epoch_loss_sum / state.epoch_loss_steps
        if self.eval_fn is not None and state.last_eval_step != state.global_step:
            self.evaluate()
        if self.progress is not None:
            self.progress.close()
            self.progress = None
        train_seconds = time.perf_counter() - self.t_start
        if self.fsdp:  # the final weights, whole, on every rank's device (as without sharding)
            self.gather_weights()
            self.raw_model.to(self.device)
        if self.eval_fn is not None and config.load_best_at_end and (out_dir / "best" / "model.pt").is_file():
            self.raw_model.load_state_dict(ck.load_weights(out_dir / "best", map_location="cpu"))
        result = TrainResult(
            out_dir=out_dir,
            global_step=state.global_step,
            epochs_completed=state.epoch,
            train_loss=state.last_epoch_loss,
            best_metric=state.best_metric,
            best_step=state.best_step,
            stopped_early=state.stopped_early,
            resumed_from_step=self.resumed_from,
            eval_history=state.eval_history,
            train_seconds=round(train_seconds, 3),
            examples_per_second=round(self.examples_seen / train_seconds, 3) if train_seconds > 0 else None,
        )
        self.accelerator.wait_for_everyone()
        if self.is_main:
            ck.save_weights_atomic(self.raw_model.state_dict(), out_dir / "final",
                                   {"step": state.global_step, "best_step": state.best_step})
            write_json_atomic(out_dir / RESULT_FILE, result.to_dict())
            shutil.rmtree(self.ckpt_root, ignore_errors=True)  # finished: the resume state is no longer needed
        self.logger.close()
        self.accelerator.wait_for_everyone()
        if self.stop_requested(force=True):  # asked to stop while finishing: finished, so stop here
            raise self.stop_signal()
        return result


def make_loss_eval(features: Sequence[Any], collate_fn, batch_size: int = 32) -> EvalFn:
    """An ``eval_fn`` giving the mean per-batch loss on held-out features (metric ``loss``)."""

    def evaluate(model) -> dict[str, float]:
        import torch

        device = next(model.parameters()).device
        total, n = 0.0, 0
        with torch.no_grad():
            for start in range(0, len(features), batch_size):
                chunk = list(features[start : start + batch_size])
                out = model(**move_to_device(collate_fn(chunk), device))
                total += float(get_loss(out)) * len(chunk)
                n += len(chunk)
        return {"loss": total / max(1, n)}

    return evaluate
