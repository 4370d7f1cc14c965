"""One X-STILTs pipeline: [MLM] -> [intermediate tasks] -> target fine-tuning -> zero-shot scores.

Phases (each optional except that something must run; see :class:`RunConfig`):

0. masked-LM training on raw multilingual text (the encoder's own LM head, or a fresh one);
1. intermediate training on one or several English tasks (a mixture with uniform, proportional
   or temperature sampling), optionally with MLM batches mixed in and machine-translated copies
   of the data; the encoder is saved to ``RUN/encoder`` for reuse by other targets;
2. fine-tuning a NEW head on the target task's English training data, starting from the phase-1
   encoder (only the encoder: a check compares every weight with the saved phase-1 encoder and
   fails loudly when they differ or when none was loaded);
3. zero-shot prediction in every language present and scoring (``scores.json`` in the shape of
   ``xstilts score --json``). Retrieval targets (BUCC, Tatoeba) skip phase 2.

Each phase marks itself done in the run directory; running the same config again skips finished
phases (a finished run is only read) and resumes an interrupted phase from its checkpoints. A
config that differs only in phase-3 settings (evaluation split, languages) reuses the trained
model and evaluates again, keeping the earlier evaluation. The run directory is owned by one
process at a time (its lock file), and every input is checked before anything is trained.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from xstilts.data.feature_cache import cached_featurize
from xstilts.data.readers import available, has_split, read_examples
from xstilts.errors import ConfigError, MissingDataError
from xstilts.evaluation.layout import gold_from_examples, write_labels, write_predictions
from xstilts.evaluation.predict import PredictOptions, predict_examples, predict_task
from xstilts.evaluation.retrieval import embed, mining_mode, tatoeba_predictions
from xstilts.evaluation.scorer import score_directory, score_language
from xstilts.fileio import write_json_atomic
from xstilts.models.device import resolve_device
from xstilts.models.heads import build_model, load_task_model
from xstilts.models.loading import load_encoder, resolve_model
from xstilts.models.mlm import build_mlm_model, checkpoint_state
from xstilts.models.packing import choose_collator
from xstilts.study.locks import DirLock
from xstilts.study.preflight import check_run
from xstilts.study.run_config import RunConfig
from xstilts.study.rundir import ENCODER_DIR, FINISHED_FILE, SCORES_FILE, RunDir
from xstilts.tasks import Task, get_task
from xstilts.tasks.kinds import kind_ops
from xstilts.train.batching import feature_length
from xstilts.train.formulations import FormulationInput, TrainablePart, get_builder, labels_for
from xstilts.train.loop import build_accelerator, make_loss_eval, train
from xstilts.train.mixing import (
    MixturePlanner,
    build_multitask_model,
    mixture_collate,
    mixture_probabilities,
    tag_features,
)
from xstilts.train.mlm import MLMCollator, mlm_features, read_raw_text
from xstilts.train.signals import stop_on_signal
from xstilts.train.train_config import TrainConfig

TRAIN_KEYS = (
    "learning_rate", "batch_size", "grad_accum", "epochs", "max_steps", "warmup_ratio", "warmup_steps",
    "weight_decay", "max_grad_norm", "schedule", "mixed_precision", "eval_every", "patience",
    "checkpoint_every", "group_by_length", "mega_batch_mult", "sharding",
)
DEV_SUBSET = 500  # dev examples per task for early stopping (jiant's eval_subset_num)


# ------------------------------------------------------------------------------------------
# helpers


def train_config(settings: dict[str, Any], config: RunConfig, **extra: Any) -> TrainConfig:
    kwargs = {k: settings[k] for k in TRAIN_KEYS if k in settings}
    kwargs.update(seed=config.seed, cpu=config.cpu, progress=config.progress)
    kwargs.update(extra)
    return TrainConfig(**kwargs)


def encoder_state_from_folder(folder: str | Path) -> dict[str, Any]:
    """Tensors saved in a Hugging Face model folder (safetensors, else pytorch .bin)."""

    return checkpoint_state(folder)


def verify_encoder_matches(encoder: Any, folder: str | Path) -> dict[str, Any]:
    """Fail loudly unless ``encoder`` holds exactly the weights saved in ``folder``.

    Every tensor saved in the folder must exist in the encoder under the same name (allowing
    for a saved base-model prefix) and be equal; the encoder may have extra keys only for a
    pooler (which the task heads do not use). Returns counts for the log.
    """
    import torch

    saved = encoder_state_from_folder(folder)
    if not saved:
        raise ConfigError(f"no encoder weights found in {folder}: nothing would be carried over")
    current = {k: v.detach().cpu() for k, v in encoder.state_dict().items()}
    prefix = getattr(encoder, "base_model_prefix", "")

    def own_name(k: str) -> str:
        return k[len(prefix) + 1 :] if prefix and k.startswith(prefix + ".") and k not in current else k

    matched, differing, unknown = 0, [], []
    seen = set()
    for key, value in saved.items():
        name = own_name(key)
        if name not in current:
            unknown.append(key)
            continue
        seen.add(name)
        if current[name].shape != value.shape or not torch.equal(current[name], value.to(current[name].dtype)):
            differing.append(name)
        else:
            matched += 1
    not_loaded = [k for k in current if k not in seen and "pooler" not in k and not k.endswith("position_ids")]
    if matched == 0 or differing or unknown or not_loaded:
        raise ConfigError(
            f"the encoder was not loaded from {folder}: {matched} tensors equal, "
            f"{len(differing)} differ ({', '.join(differing[:5])}), {len(unknown)} saved tensors unknown to the "
            f"model ({', '.join(unknown[:5])}), {len(not_loaded)} model tensors not in the folder "
            f"({', '.join(not_loaded[:5])})"
        )
    return {"tensors_checked": matched, "folder": str(folder)}


def save_encoder(encoder: Any, tokenizer: Any, folder: Path) -> Path:
    """Write the encoder and its tokenizer as a standard Hugging Face folder (atomically)."""
    import shutil

    tmp = folder.with_name(folder.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    encoder.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    if folder.exists():
        shutil.rmtree(folder)
    tmp.replace(folder)
    return folder


def prune_training_weights(train_dir: Path) -> None:
    """Once a phase is marked done, its exported model/encoder is what later phases read: drop the
    trainer's own copies (best/ and final/ weights), keeping result.json, log.jsonl, tensorboard."""
    import shutil

    for name in ("best", "final", "checkpoints"):
        shutil.rmtree(train_dir / name, ignore_errors=True)


def _read(task: Task, data_dir: str | Path, split: str, lang: str) -> list[Any]:
    return list(read_examples(task, data_dir, split, lang))


def _tag_ids(examples: list[Any], prefix: str) -> list[Any]:
    import copy

    out = []
    for ex in examples:
        ex = copy.copy(ex)
        if hasattr(ex, "id"):
            ex.id = f"{prefix}:{ex.id}"
        out.append(ex)
    return out


def set_seed(seed: int) -> None:
    from accelerate.utils import set_seed as _set

    _set(seed)


# ------------------------------------------------------------------------------------------
# evaluation during training


def prediction_packing(settings: dict[str, Any]) -> bool | None:
    """``pack`` for predictions: where the encoder allows it (None) unless ``pack_sequences`` is
    off, which turns packing off for training and prediction alike."""
    return None if settings.get("pack_sequences", True) else False


def dev_metric_eval(task: Task, tokenizer: Any, examples: Sequence[Any], settings: dict[str, Any],
                    prediction_batches: dict[str, Any]):
    """``eval_fn`` scoring predictions on English dev with the task's own metric (``score``);
    ``prediction_batches``: the batch bounds (:attr:`RunConfig.prediction_batches`)."""

    gold = gold_from_examples(task, examples)

    def evaluate(model) -> dict[str, float]:
        device = next(model.parameters()).device
        predictions = predict_examples(task, model, tokenizer, examples, PredictOptions(
            **prediction_batches,
            max_length=settings.get("max_length"), doc_stride=settings.get("doc_stride", 128),
            device=device, pack=prediction_packing(settings),
            precision="no",  # inside the training loop's evaluation, under its own autocast
        ))
        metrics = score_language(task, "en", gold, predictions)
        primary = next((metrics[k] for k in ("f1", "accuracy", "exact_match") if k in metrics), None)
        if primary is None:
            primary = next(iter(metrics.values()))
        return {**metrics, "score": primary}

    return evaluate


def mixture_loss_eval(parts: Sequence[Any], batch_size: int):
    """``eval_fn`` for phase 1: dev loss of every task that has dev data, and their mean."""

    evals = {p.name: make_loss_eval(p.dev_features, p.collate, batch_size) for p in parts if p.dev_features}

    def evaluate(model) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, fn in evals.items():
            out[f"{name}_loss"] = fn(model.members[name])["loss"]
        out["loss"] = sum(out.values()) / len(out)
        return out

    return evaluate if evals else None


# ------------------------------------------------------------------------------------------
# the phases


class Pipeline:
    def __init__(self, config: RunConfig, *, wait_for_lock: bool = False) -> None:
        self.config = config
        self.wait_for_lock = wait_for_lock
        self.rd = RunDir(config.out)
        self.log = None
        self.encoder_source: str = config.encoder_dir or config.model
        self.timings: dict[str, float] = {}
        # Several processes (torchrun / accelerate launch: one cell on N GPUs): every rank trains
        # in lockstep; only rank 0 writes the run directory and runs phase 3.
        self.main = is_rank_zero()

    def finish_phase(self, phase: str, metrics: dict[str, Any], train_dir: Path) -> None:
        """A phase's metrics, its DONE marker, and its training folder pruned (rank 0 only)."""
        if not self.main:
            return
        self.rd.write_phase_metrics(phase, metrics)
        self.rd.mark_phase_done(phase)
        prune_training_weights(train_dir)

    # encoder -------------------------------------------------------------------------------

    @property
    def starting_from_pretrained(self) -> bool:
        return self.encoder_source == (self.config.encoder_dir or self.config.model)

    def load_encoder(self, source: str):
        """The encoder at ``source``; for a ``random_init`` control run, the same architecture
        with fresh random weights (seeded) instead of the pretrained ones."""

        encoder, tokenizer = load_encoder(source, trust_remote_code=self.config.trust_remote_code)
        if self.config.random_init and source == (self.config.encoder_dir or self.config.model):
            from transformers import AutoModel

            set_seed(self.config.seed)
            encoder = AutoModel.from_config(encoder.config, trust_remote_code=self.config.trust_remote_code)
            if self.log is not None:
                self.log.info("random_init: %s with random weights (control run)", type(encoder).__name__)
        encoder.train()
        return encoder, tokenizer

    def lm_head_source(self) -> Path | None:
        """Where a pretrained LM head can be read (never for a random-weights control run)."""
        if self.config.random_init and self.starting_from_pretrained:
            return None
        return self.local_folder(self.encoder_source)

    def local_folder(self, source: str) -> Path | None:
        try:
            resolved = resolve_model(source)
        except Exception:  # noqa: BLE001 - a hub id without a local folder
            return None
        path = Path(resolved.location)
        return path if path.is_dir() else None

    # phase 0 -------------------------------------------------------------------------------

    def phase0(self) -> None:
        cfg = self.config
        out = self.rd.path / "phase0"
        enc_dir = out / ENCODER_DIR
        if self.rd.phase_done("phase0"):
            self.encoder_source = str(enc_dir)
            return

        settings = cfg.phase_settings("mlm")
        t0 = time.perf_counter()
        encoder, tokenizer = self.load_encoder(self.encoder_source)
        set_seed(cfg.seed)
        mlm, head_loaded = build_mlm_model(encoder, self.lm_head_source())
        texts = read_raw_text(cfg.mlm.data, max_lines=settings.get("max_examples"))
        feats = mlm_features(texts, tokenizer, settings["max_length"])
        self.log.info("phase 0: masked LM on %d texts from %s (LM head %s)", len(feats), cfg.mlm.data,
                      "loaded" if head_loaded else "fresh")
        result = train(mlm, feats, MLMCollator(tokenizer, cfg.mlm.mask_probability),
                       train_config(settings, cfg), out_dir=out / "train", description="phase0-mlm",
                       find_unused_parameters=True)
        if self.main:
            save_encoder(encoder, tokenizer, enc_dir)
        barrier()
        self.timings["phase0"] = time.perf_counter() - t0
        self.finish_phase("phase0", {"train": result.to_dict(), "lm_head_loaded": head_loaded,
                                     "texts": len(feats), "settings": settings,
                                     "seconds": round(self.timings["phase0"], 2)}, out / "train")
        self.encoder_source = str(enc_dir)

    # phase 1 -------------------------------------------------------------------------------

    def intermediate_examples(self, spec, task: Task, max_examples: int | None) -> tuple[list, list | None]:
        data_dir = spec.data_dir or self.config.data_dir
        train = _read(task, data_dir, spec.train_split or "train", "en")
        heldout = None
        if spec.train_split and spec.heldout:  # e.g. only a dev file: its tail measures quality
            if spec.heldout >= len(train):
                raise ConfigError(f"{task.name}: heldout {spec.heldout} >= {len(train)} {spec.train_split} examples")
            train, heldout = train[: -spec.heldout], train[-spec.heldout:]
        if max_examples is not None:
            train = train[:max_examples]
        for lang, path in sorted((spec.translated or {}).items()):
            copy = _read(task, path, "train", "en" if has_split(task, path, "train", "en") else lang)
            if max_examples is not None:
                copy = copy[:max_examples]
            self.log.info("phase 1: %s: %d machine-translated examples (%s) from %s", task.name, len(copy), lang, path)
            train.extend(_tag_ids(copy, lang))
        dev = None
        if heldout is not None:
            dev = heldout[:DEV_SUBSET] if self.config.dev_eval else None
        elif spec.train_split == "dev":
            dev = None  # never evaluate on the examples it trains on
        elif self.config.dev_eval and has_split(task, data_dir, "dev", "en"):
            dev = _read(task, data_dir, "dev", "en")[:DEV_SUBSET]
        return train, dev

    def phase1(self) -> None:
        """English intermediate training: the tasks' parts (and MLM's), mixed batch by batch."""
        cfg = self.config
        spec = cfg.intermediate
        out = self.rd.path / "phase1"
        enc_dir = self.rd.path / ENCODER_DIR
        if self.rd.phase_done("phase1"):
            self.encoder_source = str(enc_dir)
            return

        t0 = time.perf_counter()
        encoder, tokenizer = self.load_encoder(self.encoder_source)
        set_seed(cfg.seed)
        task_parts, weights, settings_by_task = self.intermediate_parts(encoder, tokenizer)
        settings = settings_by_task[task_parts[0].name]  # the first task's settings drive the loop
        parts = list(task_parts)
        if spec.mlm is not None:
            parts.append(self.mlm_part(encoder, tokenizer, settings["max_length"]))
        sizes = {p.name: len(p.train_features) for p in task_parts}
        probs = mixture_probabilities(sizes, spec.sampling, spec.temperature, weights)
        if spec.mlm is not None:
            probs = {k: v * (1 - spec.mlm.probability) for k, v in probs.items()}
            probs["mlm"] = spec.mlm.probability
        # one "epoch" = as many batches as one pass over the supervised tasks (plus MLM's share)
        bs = settings["batch_size"]
        natural = sum(math.ceil(n / bs) for n in sizes.values())
        per_epoch = math.ceil(natural / (1 - spec.mlm.probability)) if spec.mlm is not None else natural
        tconf = train_config(settings, cfg, metric_for_best="loss")

        accelerator = build_accelerator(tconf, find_unused_parameters=True)
        planner = MixturePlanner(
            [[_len(f) for f in p.train_features] for p in parts],
            bs, [probs[p.name] for p in parts], seed=cfg.seed, batches_per_epoch=per_epoch,
            group_by_length=tconf.group_by_length, mega_batch_mult=tconf.mega_batch_mult,
            world_size=accelerator.num_processes, rank=accelerator.process_index, names=[p.name for p in parts],
        )
        model = build_multitask_model(encoder, {p.name: p.model for p in parts})
        features = [tf for p in parts for tf in tag_features(p.name, p.train_features)]
        collate = mixture_collate({p.name: p.collate for p in parts})
        eval_fn = mixture_loss_eval(task_parts, batch_size=max(8, bs * 2)) if cfg.dev_eval else None
        self.log.info("phase 1: mixture %s, %d batches of %d per epoch",
                      {k: round(v, 4) for k, v in probs.items()}, per_epoch, bs)
        quality_before = self.quality_before(task_parts, out / "quality_before.json", accelerator.is_main_process)
        result = train(model, features, collate, tconf, eval_fn=eval_fn, out_dir=out / "train",
                       planner=planner, accelerator=accelerator, description="phase1")
        if accelerator.is_main_process:
            save_encoder(encoder, tokenizer, enc_dir)
        accelerator.wait_for_everyone()
        self.timings["phase1"] = time.perf_counter() - t0
        self.finish_phase("phase1", {
            "train": result.to_dict(), "probabilities": probs, "sizes": sizes, "planner": planner.describe(),
            "tasks": {p.name: p.info for p in parts}, "settings": settings_by_task,
            "seconds": round(self.timings["phase1"], 2),
            # the study's result store reads intermediate-task quality from here
            "metrics": {p.name: {"dev_loss": h.get(f"{p.name}_loss")} for p in task_parts
                        for h in result.eval_history[-1:]} if result.eval_history else {},
            "quality_before": quality_before,
            "quality": self.part_quality(task_parts),
        }, out / "train")
        self.encoder_source = str(enc_dir)

    def intermediate_parts(self, encoder, tokenizer) -> tuple[list[TrainablePart], dict[str, float | None],
                                                              dict[str, dict[str, Any]]]:
        """Each intermediate task's trainable part (its formulation's builder), the sampling
        weights the config gives them and their resolved settings."""
        cfg = self.config
        parts: list[TrainablePart] = []
        weights: dict[str, float | None] = {}
        settings_by_task: dict[str, dict[str, Any]] = {}
        for item in cfg.intermediate.tasks:
            task = get_task(item.task)
            settings = {**cfg.phase_settings("intermediate", task.kind.value), **(item.options or {})}
            settings_by_task[task.name] = settings
            train_ex, dev_ex = self.intermediate_examples(item, task, settings.get("max_examples"))
            name, builder = get_builder(task, item.formulation)
            part = builder(FormulationInput(task=task, encoder=encoder, tokenizer=tokenizer,
                                            train_examples=train_ex, dev_examples=dev_ex,
                                            settings=settings, seed=cfg.seed, cache_dir=cfg.cache_dir,
                                            eval_max_examples=cfg.eval_max_examples,
                                            prediction_batches=cfg.prediction_batches))
            part.info["formulation"] = name
            if part.name in weights:
                raise ConfigError(f"intermediate task {part.name} is listed twice")
            weights[part.name] = item.weight
            parts.append(part)
            self.log.info("phase 1: %s (%s): %d training features, %s dev features", part.name, name,
                          len(part.train_features), len(part.dev_features or []))
            if isinstance(part.info.get("packed"), str):
                self.log.info("phase 1: %s: sequences not packed: %s", part.name, part.info["packed"])
        return parts, weights, settings_by_task

    def mlm_part(self, encoder, tokenizer, max_length: int) -> TrainablePart:
        """MLM co-training on raw multilingual text, beside the intermediate tasks."""
        mlm = self.config.intermediate.mlm
        if mlm.data is None:
            raise ConfigError("intermediate.mlm.data: give the raw multilingual text for MLM co-training")
        mlm_model, head_loaded = build_mlm_model(encoder, self.lm_head_source())
        texts = read_raw_text(mlm.data)
        self.log.info("phase 1: MLM co-training on %d texts (p=%.2f, LM head %s)", len(texts),
                      mlm.probability, "loaded" if head_loaded else "fresh")
        return TrainablePart(
            name="mlm", model=mlm_model,
            train_features=mlm_features(texts, tokenizer, min(max_length, 256)),
            collate=MLMCollator(tokenizer, mlm.mask_probability),
            info={"lm_head_loaded": head_loaded},
        )

    def quality_before(self, task_parts, path: Path, main: bool) -> dict[str, dict[str, float]]:
        """The intermediate tasks' own quality before any training (a fresh head or decoder): the
        baseline against which "it learnt the task" is read; measured once (kept on resume)."""
        if path.is_file():
            return json.loads(path.read_text())
        quality = self.part_quality(task_parts)
        if main:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(quality, indent=1))
        return quality

    def part_quality(self, parts) -> dict[str, dict[str, float]]:
        """Each part's own dev metrics (``TrainablePart.evaluate``), in eval mode, no gradients."""
        import torch

        scores = {}
        for p in parts:
            if getattr(p, "evaluate", None) is None:
                continue
            was_training = p.model.training
            p.model.eval()
            with torch.no_grad():
                scores[p.name] = {k: float(v) for k, v in p.evaluate(p.model).items()}
            p.model.train(was_training)
        return scores

    # phase 2 -------------------------------------------------------------------------------

    def phase2(self, task: Task):
        """Fine-tune a new head on English; returns ``(TaskModel, tokenizer)``."""

        cfg = self.config
        out = self.rd.path / "phase2"
        model_dir = out / "model"
        if self.rd.phase_done("phase2"):
            return load_task_model(model_dir)

        t0 = time.perf_counter()
        settings = cfg.phase_settings("target", task.kind.value)
        encoder, tokenizer = self.load_encoder(self.encoder_source)
        carried = None
        folder = self.local_folder(self.encoder_source)
        if cfg.random_init and self.starting_from_pretrained:
            carried = {"random_init": True}
        elif folder is not None:
            carried = verify_encoder_matches(encoder, folder)
            self.log.info("phase 2: encoder loaded from %s (%d tensors equal to the saved ones)",
                          folder, carried["tensors_checked"])
        elif self.encoder_source != cfg.model:
            raise ConfigError(f"phase 2: cannot check the encoder carried from {self.encoder_source}")
        train_ex = _read(task, cfg.data_dir, "train", "en")
        if settings.get("max_examples"):
            train_ex = train_ex[: settings["max_examples"]]
        labels = labels_for(task, train_ex)
        set_seed(cfg.seed)
        model = build_model(task, encoder, labels=labels) if labels else build_model(task, encoder)
        fkw: dict[str, Any] = {"max_length": settings["max_length"], "labels": labels}
        if "doc_stride" in settings:  # QA's
            fkw["doc_stride"] = settings["doc_stride"]
        feats = cached_featurize(task, train_ex, tokenizer, cache_dir=cfg.cache_dir, for_training=True, **fkw)
        eval_fn = None
        if cfg.dev_eval and has_split(task, cfg.data_dir, "dev", "en"):
            dev = _read(task, cfg.data_dir, "dev", "en")[:DEV_SUBSET]
            eval_fn = dev_metric_eval(task, tokenizer, dev, settings, cfg.prediction_batches)
            self.log.info("phase 2: %d English dev examples for model selection", len(dev))
        self.log.info("phase 2: %s: %d training examples -> %d features; %s", task.name, len(train_ex),
                      len(feats), {k: settings[k] for k in ("learning_rate", "batch_size", "grad_accum", "epochs", "max_length") if k in settings})
        tconf = train_config(settings, cfg, metric_for_best="score", greater_is_better=True)
        # the same batches, each packed into one padding-free row: same loss
        collate, packed = choose_collator(encoder, tokenizer, bool(settings.get("pack_sequences")))
        if isinstance(packed, str):
            self.log.info("phase 2: sequences not packed: %s", packed)
        result = train(model, feats, collate, tconf, eval_fn=eval_fn, out_dir=out / "train",
                       description=f"phase2-{task.name}", find_unused_parameters=True)
        if self.main:
            model.save(model_dir, tokenizer=tokenizer)
        self.timings["phase2"] = time.perf_counter() - t0
        self.finish_phase("phase2", {
            "train": result.to_dict(), "settings": settings, "train_examples": len(train_ex), "packed": packed is True,
            "train_features": len(feats), "encoder_check": carried, "encoder_source": self.encoder_source,
            "seconds": round(self.timings["phase2"], 2),
        }, out / "train")
        model.eval()
        return model, tokenizer

    # phase 3 -------------------------------------------------------------------------------

    def eval_languages(self, task: Task, split: str) -> list[str]:
        present = available(task, self.config.data_dir).get(split, [])
        langs = self.config.languages or present
        missing = [l for l in langs if l not in present]
        if missing:
            raise MissingDataError(
                f"no {task.name} {split} file below {self.config.data_dir} for {', '.join(missing)} "
                f"(present: {' '.join(present) or 'none'})"
            )
        if not langs:
            raise MissingDataError(f"no {task.name} {split} files below {self.config.data_dir}")
        return list(langs)

    def phase3(self, task: Task, model_and_tokenizer=None) -> dict[str, Any]:
        cfg = self.config
        split = cfg.eval_split or task.score_split
        # XTREME's submission layout names every file test-{lang}; predictions of another split
        # (PAN-X dev, whose test labels are hidden) go to predictions-{split}/ so as not to pass
        # for test predictions.
        suffix = "" if split == "test" else f"-{split}"
        pred_root = self.rd.path / f"predictions{suffix}"
        label_root = self.rd.path / f"labels{suffix}"
        langs = self.eval_languages(task, split)
        t0 = time.perf_counter()
        per_lang: dict[str, float] = {}
        if kind_ops(task).encoder_only:
            encoder, tokenizer = self.load_encoder(self.encoder_source)
            encoder.eval()
            precision = cfg.phase_settings("target", task.kind.value)["mixed_precision"]
            mining = mining_mode(task)
            if cfg.eval_max_examples is not None and mining == "nearest":
                per_lang = self.capped_tatoeba(task, encoder, tokenizer, split, langs, pred_root, label_root,
                                               precision)
            else:  # BUCC mines whole corpora: a cap would change the task, so none applies
                options = PredictOptions(**cfg.prediction_batches, device=resolve_device(cpu=cfg.cpu),
                                         precision=precision)
                predict_task(task, (encoder, tokenizer), cfg.data_dir, pred_root, langs, split=split,
                             options=options, progress=cfg.progress)
                for lang in langs:
                    write_labels(label_root, task, lang, _read(task, cfg.data_dir, split, lang))
        else:
            model, tokenizer = model_and_tokenizer
            device = resolve_device(cpu=cfg.cpu)
            model.to(device).eval()
            settings = cfg.phase_settings("target", task.kind.value)
            for lang in langs:
                t = time.perf_counter()
                examples = _read(task, cfg.data_dir, split, lang)
                if cfg.eval_max_examples is not None:
                    examples = examples[: cfg.eval_max_examples]
                options = PredictOptions(
                    **cfg.prediction_batches, max_length=settings["max_length"],
                    doc_stride=settings.get("doc_stride", 128), device=device,
                    pack=prediction_packing(settings), precision=settings.get("mixed_precision") or "auto",
                )
                predictions = predict_examples(task, model, tokenizer, examples, options,
                                               description=f"{task.name} {split} {lang}")
                write_predictions(pred_root, task, lang, predictions)
                write_labels(label_root, task, lang, examples)
                per_lang[lang] = round(time.perf_counter() - t, 3)
                self.log.info("phase 3: %s %s %s: %d examples predicted in %.1fs", task.name, split, lang,
                              len(examples), per_lang[lang])
        scores = score_directory(pred_root, label_root, tasks=[task.name])
        write_json_atomic(self.rd.path / SCORES_FILE, scores)
        self.timings["phase3"] = time.perf_counter() - t0
        self.rd.write_phase_metrics("phase3", {"split": split, "languages": langs, "seconds_per_language": per_lang,
                                               "seconds": round(self.timings["phase3"], 2)})
        return scores

    def capped_tatoeba(self, task: Task, encoder: Any, tokenizer: Any, split: str, langs: list[str],
                       pred_root: Path, label_root: Path, precision: str = "auto") -> dict[str, float]:
        """Tatoeba on the first ``eval_max_examples`` gold pairs of each language: those sources,
        their gold English targets (in file order) as the whole search space; embedded and
        searched exactly like :func:`xstilts.evaluation.retrieval.predict_retrieval` does the
        full set, so a cap makes retrieval easier but measures the same thing."""

        cfg = self.config
        encoder.to(resolve_device(cpu=cfg.cpu))
        seconds: dict[str, float] = {}
        for lang in langs:
            t = time.perf_counter()
            (bitext,) = _read(task, cfg.data_dir, split, lang)
            capped = cap_bitext(bitext, cfg.eval_max_examples)
            src, eng = (embed(encoder, tokenizer, list(side.values()), max_length=512,
                              **cfg.prediction_batches, precision=precision, progress=False)
                        for side in (capped.source, capped.target))
            write_predictions(pred_root, task, lang, tatoeba_predictions(src, eng))
            write_labels(label_root, task, lang, [capped])
            seconds[lang] = round(time.perf_counter() - t, 3)
            self.log.info("phase 3: %s %s %s: first %d of %d pairs retrieved in %.1fs", task.name, split, lang,
                          len(capped.source), len(bitext.source), seconds[lang])
        return seconds

    # all -----------------------------------------------------------------------------------

    def run(self) -> Path:
        """Read a finished run, or run what is left of it, holding the run directory's lock.

        Before anything is written, every input of the phases still to run is read
        (:func:`~xstilts.study.preflight.check_run`): a missing or malformed file is one error
        listing every problem, not a failure after hours of training. SIGTERM stops the run
        cleanly (:mod:`xstilts.train.signals`): inside training at a checkpoint of the current
        step, elsewhere at once; the same command resumes.
        """
        cfg = self.config
        config_dict = json.loads(cfg.model_dump_json())
        with stop_on_signal():
            state = self.rd.compare(config_dict)
            if self.rd.finished and state == "same":
                return self.rd.path  # finished: read, never retrained
            self.preflight()
            if not self.main:  # rank 0 holds the lock and writes; the others train alongside
                return self._run(config_dict)
            self.rd.path.mkdir(parents=True, exist_ok=True)
            with DirLock(self.rd.path, label="run directory").hold(wait=self.wait_for_lock) as waited:
                if waited:  # the other process may have finished it, or started another config
                    state = self.rd.compare(config_dict)
                    if self.rd.finished and state == "same":
                        return self.rd.path
                if state == "re-evaluate":
                    self.reuse_for_new_evaluation()
                if cfg.torch_threads is None:
                    return self._run(config_dict)
                import torch  # e.g. the demo's 2 threads on a 2-core CPU, only for this run

                threads = torch.get_num_threads()
                torch.set_num_threads(cfg.torch_threads)
                try:
                    return self._run(config_dict)
                finally:
                    torch.set_num_threads(threads)

    def phases_done(self) -> list[str]:
        return [p for p in ("phase0", "phase1", "phase2") if self.rd.phase_done(p)]

    def preflight(self) -> None:
        """Every input the phases still to run will read exists and parses (else exit 2)."""

        check_run(self.config, self.phases_done())

    def reuse_for_new_evaluation(self) -> None:
        """Only phase-3 settings changed: keep the trained model, move the earlier evaluation
        to ``evaluations/`` (see :meth:`RunDir.archive_evaluation`); phase 3 then runs anew."""
        import sys

        kept = self.rd.archive_evaluation()
        if kept is not None:
            print(f"[xstilts] {self.rd.path}: evaluation settings changed; the trained model is reused and "
                  f"the earlier evaluation kept in {kept}", file=sys.stderr)

    def _run(self, config_dict: dict[str, Any]) -> Path:
        cfg = self.config
        if self.main:
            self.rd.open(config_dict)
        self.log = self.rd.logger(to_file=self.main)
        try:
            self.log.info("run %s: model=%s target=%s intermediate=%s seed=%d", self.rd.path, cfg.model,
                          cfg.target, cfg.intermediate.label if cfg.intermediate else "none", cfg.seed)
            if cfg.mlm is not None:
                self.phase0()
            if cfg.intermediate is not None:
                self.phase1()
            summary: dict[str, Any] = {"encoder": self.encoder_source}
            if cfg.target is not None:
                task = get_task(cfg.target)
                if kind_ops(task).encoder_only:
                    if not self.main:
                        return self.rd.path
                    scores = self.phase3(task)
                else:
                    if not task.has_training_data:
                        raise ConfigError(f"{task.name} has no training data to fine-tune on")
                    trained = self.phase2(task)
                    if not self.main:  # evaluation is rank 0's
                        return self.rd.path
                    scores = self.phase3(task, trained)
                summary["scores"] = scores
                tasks = scores.get("tasks", {})
                self.log.info("scores: %s", {t: v.get("score") for t, v in tasks.items()})
            summary["seconds"] = {k: round(v, 2) for k, v in self.timings.items()}
            if self.main:
                write_json_atomic(self.rd.path / FINISHED_FILE, summary)
        finally:
            self.rd.close_logger(self.log)
        return self.rd.path


def is_rank_zero() -> bool:
    """This process is the run's first (or only) one: RANK as torchrun and accelerate set it."""
    return int(os.environ.get("RANK", "0")) == 0


def barrier() -> None:
    """Wait for every process of a multi-process run (nothing to wait for in one process)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def cap_bitext(bitext: Any, n: int) -> Any:
    """The first ``n`` sources of a Tatoeba bitext with their gold targets (kept in file order)."""
    import dataclasses

    sources = dict(list(bitext.source.items())[:n])
    gold = {(s, t) for s, t in bitext.gold if s in sources}
    wanted = {t for _, t in gold}
    targets = {k: v for k, v in bitext.target.items() if k in wanted}
    return dataclasses.replace(bitext, source=sources, target=targets, gold=gold)


def _len(feature: Any) -> int:
    return feature_length(feature) if isinstance(feature, dict) else len(feature)


def run_pipeline(config: RunConfig, *, wait_for_lock: bool = False) -> Path:
    """Run (or resume, or just read) one pipeline; returns the run directory. Another process
    working in the same run directory is an error naming it, or with ``wait_for_lock`` is
    waited for."""
    return Pipeline(config, wait_for_lock=wait_for_lock).run()
