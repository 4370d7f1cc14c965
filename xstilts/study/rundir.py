"""The run directory: everything needed to explain the numbers a run produced.

Layout (``RunConfig.out``)::

    config.yaml          the resolved configuration (defaults filled in), as run
    versions.json        xstilts git commit (and whether the tree was dirty), python, torch,
                         transformers, accelerate, tokenizers, numpy, platform, device
    run.log              the pipeline's log (appended on every start)
    phase0/ phase1/      training folders of masked-LM and intermediate training
    encoder/             the encoder after phase 1 (a Hugging Face folder), reused by other targets
    phase2/              target fine-tuning: training folder, model/ (TaskModel.save)
    predictions/TASK/    phase 3 predictions in XTREME's submission layout
    labels/TASK/         the gold labels they were scored against
    metrics.json         metrics per phase (training results, dev metrics, timings)
    scores.json          final scores, the shape of ``xstilts score --json``
    run.json             written last: the run finished (a re-run reads it instead of training)
    xstilts.lock         held by the process working in the folder (see xstilts.study.locks)
    evaluations/SPLIT-WHEN/  an earlier phase 3 (other split or languages) of the same trained
                         model: its predictions, labels, scores.json, run.json and config.yaml

The run's config may change in what phase 3 alone reads (:data:`PHASE3_FIELDS`): the trained
model is then reused and phase 3 runs again, the earlier evaluation moved to ``evaluations/``.
"""

from __future__ import annotations

import json
import logging
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from xstilts.errors import ConfigError, DataFormatError
from xstilts.fileio import check_output_dir, decode_utf8, read_input_bytes, write_json_atomic

CONFIG_FILE = "config.yaml"
VERSIONS_FILE = "versions.json"
LOG_FILE = "run.log"
METRICS_FILE = "metrics.json"
SCORES_FILE = "scores.json"
FINISHED_FILE = "run.json"
ENCODER_DIR = "encoder"

# Fields that may differ between the first start of a run and a restart without changing
# what the run computes.
COSMETIC_FIELDS = ("progress", "predict_batch_size", "predict_max_tokens", "cache_dir", "torch_threads")
# Fields that only phase 3 reads: a finished run re-evaluates its trained model when they change.
# ``eval_max_examples`` joins them in runs without phase 1, whose quality evaluation it also caps.
PHASE3_FIELDS = ("eval_split", "languages")
EVALUATIONS_DIR = "evaluations"
# What one phase 3 writes (besides its metrics.json entry), moved together to evaluations/
EVALUATION_OUTPUTS = ("predictions", "labels", SCORES_FILE, FINISHED_FILE)


def phase3_fields(config_dict: dict[str, Any]) -> tuple[str, ...]:
    """The fields of this config that only phase 3 reads (see :data:`PHASE3_FIELDS`)."""
    if config_dict.get("intermediate") is None:
        return PHASE3_FIELDS + ("eval_max_examples",)
    return PHASE3_FIELDS


def git_commit(repo: Path | None = None) -> dict[str, Any]:
    """The commit of the xstilts source tree and whether it had uncommitted changes."""
    repo = repo or Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip() != ""
        return {"commit": commit, "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def collect_versions() -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    packages = {}
    for name in ("xstilts", "torch", "transformers", "accelerate", "tokenizers", "numpy", "seqeval",
                 "faiss-cpu", "pydantic", "safetensors"):
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            packages[name] = None
    device: dict[str, Any] = {"cuda": False}
    try:
        import torch

        device["cuda"] = torch.cuda.is_available()
        if device["cuda"]:
            device["name"] = torch.cuda.get_device_name(0)
            device["count"] = torch.cuda.device_count()
        device["threads"] = torch.get_num_threads()
    except ImportError:
        pass
    return {
        "xstilts_git": git_commit(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": packages,
        "device": device,
    }


class RunDir:
    """Opens (or re-opens) a run directory for a config and keeps its bookkeeping files."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def finished(self) -> bool:
        """True when the run finished (``run.json`` is there). What a finished run is read for,
        ``run.json``, ``scores.json`` and ``metrics.json``, must parse: a damaged one is an error
        saying how to recover, never a silently accepted result."""
        if not (self.path / FINISHED_FILE).is_file():
            return False
        self.read_finished()
        if (self.path / SCORES_FILE).exists():
            self.read_scores()
        self.read_metrics()  # read with the scores by whoever collects a finished run
        return True

    def check_location(self) -> None:
        """The run directory is a folder, or can become one (not a file, not below a file)."""
        check_output_dir(self.path, "the run directory (--out)")

    def _read_json(self, name: str, what: str, hint: str) -> Any:
        """``name`` parsed, or a DataFormatError naming the file, what it should hold and how
        to recover (``hint``); nothing is deleted."""
        path = self.path / name
        text = decode_utf8(read_input_bytes(path), path)
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            found = (
                "an empty file"
                if not text.strip()
                else f"invalid JSON: {exc.msg} at column {exc.colno} (a truncated file?)"
            )
            raise DataFormatError(path, exc.lineno, what, found, hint=hint) from None
        if not isinstance(data, dict):
            raise DataFormatError(path, None, what, f"a JSON {type(data).__name__}", hint=hint)
        return data

    def read_finished(self) -> dict[str, Any]:
        """``run.json``, the summary written when the run finished."""
        return self._read_json(
            FINISHED_FILE, "the finished run's summary (a JSON object)",
            f"delete {self.path / FINISHED_FILE} and run the same command again: what was trained "
            "is reused and only the unfinished steps (evaluation) run again",
        )

    def read_scores(self) -> dict[str, Any]:
        """``scores.json``, the shape of ``xstilts score --json``."""
        scores_path, finished_path = self.path / SCORES_FILE, self.path / FINISHED_FILE
        scores = self._read_json(
            SCORES_FILE, 'the run\'s scores (a JSON object with "tasks")',
            f"delete {scores_path} and {finished_path} and run the same command again to recompute "
            "them from the trained model",
        )
        if not isinstance(scores.get("tasks"), dict):
            raise DataFormatError(scores_path, None, 'a "tasks" object', repr(scores.get("tasks"))[:60],
                                  hint=f"delete {scores_path} and {finished_path} and run the same "
                                  "command again to recompute them")
        return scores

    def stored_config(self) -> dict[str, Any] | None:
        """The config the folder holds (None when there is none yet). One that does not parse is
        an error: without it the folder's trained models cannot be matched to a config."""
        import yaml

        self.check_location()
        stored_path = self.path / CONFIG_FILE
        if not stored_path.is_file():
            return None
        hint = (f"restore {stored_path}, or run with a fresh --out (the folder is left as it is: "
                "its models cannot be matched to a config without the file)")
        text = decode_utf8(read_input_bytes(stored_path), stored_path)
        try:
            stored = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = mark.line + 1 if mark is not None else None
            problem = getattr(exc, "problem", None) or type(exc).__name__
            raise DataFormatError(stored_path, line, "the run's configuration (YAML)",
                                  f"{problem} (a truncated file?)", hint=hint) from None
        if not isinstance(stored, dict) or not stored:
            found = "an empty file" if not text.strip() else f"a YAML {type(stored).__name__}"
            raise DataFormatError(stored_path, None, "the run's configuration (a YAML mapping)", found,
                                  hint=hint)
        return stored

    def compare(self, config_dict: dict[str, Any]) -> str:
        """How ``config_dict`` relates to the config the folder holds: ``new`` (none yet),
        ``same`` (equal but for cosmetic fields), ``re-evaluate`` (it differs only in what phase
        3 reads: the trained model is reused); a ConfigError when training would differ."""
        stored = self.stored_config()
        if stored is None:
            return "new"
        # A cut-off file often still parses: its last fields are simply gone. (A field that is
        # None compares equal to an absent one, as for a config written before it existed.)
        lacking = [k for k, v in config_dict.items()
                   if k not in stored and k not in COSMETIC_FIELDS and v is not None]
        if lacking:
            stored_path = self.path / CONFIG_FILE
            raise DataFormatError(
                stored_path, None, "the run's configuration with all its fields",
                f"none for {', '.join(lacking)} (a truncated file?)",
                hint=f"restore {stored_path}, or run with a fresh --out (the folder is left as it is)",
            )
        a = {k: v for k, v in stored.items() if k not in COSMETIC_FIELDS}
        b = {k: v for k, v in config_dict.items() if k not in COSMETIC_FIELDS}
        if a == b:
            return "same"
        diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        training = [k for k in diff if k not in phase3_fields(config_dict)]
        if training:
            raise ConfigError(
                f"{self.path} holds a run with a different configuration (differs in: "
                f"{', '.join(training)}); give another --out, or delete the folder to start over"
            )
        return "re-evaluate"

    def check_config(self, config_dict: dict[str, Any]) -> bool:
        """True if the folder already holds this config; a ConfigError if it holds one that
        trains differently; False if none, or one that differs only in phase-3 fields."""
        return self.compare(config_dict) == "same"

    def open(self, config_dict: dict[str, Any]) -> None:
        """Create the folder, or check that an existing one belongs to the same config (its
        config file is rewritten when only phase-3 fields changed: it describes the latest
        scores; the earlier one is kept with the earlier evaluation)."""
        import yaml

        self.path.mkdir(parents=True, exist_ok=True)
        stored_path = self.path / CONFIG_FILE
        if self.compare(config_dict) != "same":
            tmp = stored_path.with_name(stored_path.name + ".tmp")
            tmp.write_text(yaml.safe_dump(config_dict, sort_keys=False, allow_unicode=True))
            tmp.replace(stored_path)
        versions = collect_versions()
        history_path = self.path / VERSIONS_FILE
        record: dict[str, Any] = {"first_start": versions, "starts": 1}
        if history_path.is_file():
            try:
                old = json.loads(history_path.read_text())
                record = {"first_start": old.get("first_start", versions), "starts": old.get("starts", 1) + 1,
                          "latest_start": versions}
            except ValueError:
                pass
        write_json_atomic(history_path, record)

    def evaluation_outputs(self) -> list[Path]:
        """What the latest phase 3 wrote: predictions[-SPLIT]/, labels[-SPLIT]/, scores, run.json."""
        out = []
        for entry in sorted(self.path.iterdir()) if self.path.is_dir() else []:
            for name in EVALUATION_OUTPUTS:
                if entry.name == name or (entry.is_dir() and entry.name.startswith(name + "-")):
                    out.append(entry)
                    break
        return out

    def archive_evaluation(self) -> Path | None:
        """Move the latest evaluation (and the config it was made with) to
        ``evaluations/SPLIT-WHEN/`` so that the next phase 3 overwrites nothing; returns the
        folder, or None when there was no evaluation to keep."""
        import shutil
        import time

        outputs = self.evaluation_outputs()
        if not outputs:
            return None
        stored = self.stored_config() or {}
        metrics = self.read_metrics().get("phase3") or {}
        split = metrics.get("split") or stored.get("eval_split") or "default"
        when = max(p.stat().st_mtime for p in outputs)
        root = self.path / EVALUATIONS_DIR
        folder = root / f"{split}-{time.strftime('%Y%m%d-%H%M%S', time.localtime(when))}"
        n = 2
        while folder.exists():
            folder = root / f"{split}-{time.strftime('%Y%m%d-%H%M%S', time.localtime(when))}-{n}"
            n += 1
        staging = root / f".tmp-{folder.name}"
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir(parents=True)
        if (self.path / CONFIG_FILE).is_file():
            shutil.copy2(self.path / CONFIG_FILE, staging / CONFIG_FILE)
        write_json_atomic(staging / "evaluation.json", {
            "phase3": metrics, **{k: stored.get(k) for k in PHASE3_FIELDS + ("eval_max_examples",)}})
        # the run dir's files move in last, each by one rename: a kill leaves them either here
        # (and the next start moves them) or there, never lost
        staging.rename(folder)
        for entry in outputs:
            entry.rename(folder / entry.name)
        return folder

    def logger(self, name: str = "xstilts.run", *, to_file: bool = True) -> logging.Logger:
        """The run's logger: run.log and stderr (stderr only with ``to_file`` False: the other
        processes of a multi-process run, whose rank 0 writes the log)."""
        log = logging.getLogger(f"{name}.{id(self)}")
        log.setLevel(logging.INFO)
        log.propagate = False
        if not log.handlers:
            if to_file:
                handler = logging.FileHandler(self.path / LOG_FILE, encoding="utf-8")
                handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
                log.addHandler(handler)
            stream = logging.StreamHandler(sys.stderr)
            stream.setFormatter(logging.Formatter("[xstilts] %(message)s"))
            log.addHandler(stream)
        return log

    def close_logger(self, log: logging.Logger) -> None:
        for handler in list(log.handlers):
            handler.close()
            log.removeHandler(handler)

    # metrics per phase ------------------------------------------------------------------

    def read_metrics(self) -> dict[str, Any]:
        path = self.path / METRICS_FILE
        if not path.is_file():
            return {}
        return self._read_json(
            METRICS_FILE, "the run's metrics per phase (a JSON object)",
            f"delete {path} (its per-phase metrics are lost; trained models and scores are kept) "
            "or run with a fresh --out",
        )

    def write_phase_metrics(self, phase: str, metrics: dict[str, Any]) -> None:
        data = self.read_metrics()
        data[phase] = metrics
        write_json_atomic(self.path / METRICS_FILE, data)

    def phase_done(self, phase: str) -> bool:
        return (self.path / phase / "DONE").is_file()

    def mark_phase_done(self, phase: str) -> None:
        (self.path / phase).mkdir(parents=True, exist_ok=True)
        marker = self.path / phase / "DONE"
        tmp = marker.with_name("DONE.tmp")
        tmp.write_text("done\n")
        tmp.replace(marker)
