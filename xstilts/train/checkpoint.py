"""Checkpoints that are either complete or invisible.

A checkpoint is written into a hidden temporary folder, every file is flushed and fsync'd, the
folder is renamed to ``step-NNNNNNNN`` (an atomic rename on one file system), and only then is
the ``latest`` pointer replaced, itself by writing ``latest.tmp`` and renaming it. A process
killed at any moment therefore leaves ``latest`` pointing at a complete checkpoint (or absent);
half-written temporary folders are removed the next time the folder is opened. A write that
fails (a full disk: ENOSPC) leaves the previous checkpoint as it was, and becomes a
:class:`CheckpointWriteError` (one line, exit status 2) that says so.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

from xstilts.errors import XstiltsError

LATEST = "latest"
STATE_FILE = "state.json"  # written last inside a checkpoint: its presence marks completeness
TMP_PREFIX = ".tmp-"


class CheckpointWriteError(XstiltsError):
    """A checkpoint (or best / final weights) could not be written, typically a full disk; what
    was written before is intact, so the same command resumes once there is room."""

    @classmethod
    def of(cls, target: Path, exc: OSError, previous: Path | None = None) -> CheckpointWriteError:
        reason = exc.strerror or str(exc)
        kept = (f"the previous checkpoint {previous.name} is intact" if previous is not None
                else "nothing written before was changed")
        return cls(f"could not write {target}: {reason}; {kept}: free some space and re-run the same "
                   f"command to resume")


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # some platforms cannot open folders
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_bytes_durably(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def torch_save_durably(obj: Any, path: Path) -> None:
    import torch

    with open(path, "wb") as fh:
        torch.save(obj, fh)
        fh.flush()
        os.fsync(fh.fileno())


def step_dir_name(step: int) -> str:
    return f"step-{step:08d}"


def clean_temporaries(root: Path) -> None:
    """Remove half-written checkpoints left by a killed process."""
    if not root.is_dir():
        return
    for child in root.iterdir():
        if child.name.startswith(TMP_PREFIX):
            shutil.rmtree(child, ignore_errors=True)
    stale = root / (LATEST + ".tmp")
    if stale.exists():
        stale.unlink()


def is_complete(ckpt: Path) -> bool:
    return (ckpt / STATE_FILE).is_file()


def complete_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints under ``root``, oldest first."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.name.startswith("step-") and is_complete(p)]
    return sorted(found, key=lambda p: p.name)


def latest_checkpoint(root: str | Path, *, clean: bool = True) -> Path | None:
    """The checkpoint to resume from: the one ``latest`` names, else the newest complete one.

    ``clean`` removes half-written folders first (only one process of a group may do that).
    """
    root = Path(root)
    if clean:
        clean_temporaries(root)
    pointer = root / LATEST
    if pointer.is_file():
        named = root / pointer.read_text().strip()
        if is_complete(named):
            return named
    ckpts = complete_checkpoints(root)
    return ckpts[-1] if ckpts else None


def begin_checkpoint(root: Path, step: int) -> Path:
    """Create (empty) the temporary folder a checkpoint of ``step`` is written into."""
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f"{TMP_PREFIX}{step_dir_name(step)}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    return tmp


def commit_checkpoint(root: Path, tmp: Path, step: int, state: dict[str, Any], keep: int) -> Path:
    """Seal a temporary checkpoint folder: state file, rename, move ``latest``, prune old ones."""
    write_bytes_durably(tmp / STATE_FILE, (json.dumps(state, indent=2, sort_keys=True) + "\n").encode())
    _fsync_dir(tmp)
    final = root / step_dir_name(step)
    if final.exists():  # a re-save of the same step (e.g. after resuming exactly at it)
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync_dir(root)
    pointer_tmp = root / (LATEST + ".tmp")
    write_bytes_durably(pointer_tmp, (final.name + "\n").encode())
    os.replace(pointer_tmp, root / LATEST)
    _fsync_dir(root)
    for old in complete_checkpoints(root)[:-keep]:
        if old != final:
            shutil.rmtree(old, ignore_errors=True)
    return final


def read_state(ckpt: Path) -> dict[str, Any]:
    return json.loads((ckpt / STATE_FILE).read_text())


def capture_rng_state() -> dict[str, Any]:
    """The state of every random generator training draws from (python, numpy, torch, cuda)."""
    import numpy as np
    import torch

    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    import numpy as np
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_weights_atomic(state_dict: dict[str, Any], folder: Path, meta: dict[str, Any]) -> None:
    """Write ``folder/model.pt`` and ``folder/meta.json`` as one unit (used for best/final)."""
    folder = Path(folder)
    parent = folder.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = parent / f"{TMP_PREFIX}{folder.name}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        torch_save_durably(state_dict, tmp / "model.pt")
        write_bytes_durably(tmp / "meta.json", (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode())
        _fsync_dir(tmp)
    except OSError as exc:  # e.g. the disk is full: the folder in place is untouched
        shutil.rmtree(tmp, ignore_errors=True)
        raise CheckpointWriteError.of(folder, exc) from None
    old = parent / f"{TMP_PREFIX}{folder.name}-old"
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    _fsync_dir(parent)
    if old.exists():
        shutil.rmtree(old, ignore_errors=True)


def recover_folder(folder: Path) -> None:
    """Undo a kill between the two renames of :func:`save_weights_atomic`; drop half-writes."""
    folder = Path(folder)
    old = folder.parent / f"{TMP_PREFIX}{folder.name}-old"
    tmp = folder.parent / f"{TMP_PREFIX}{folder.name}"
    if not folder.exists() and old.exists():
        os.replace(old, folder)
    for leftover in (old, tmp):
        if leftover.exists():
            shutil.rmtree(leftover, ignore_errors=True)


def load_weights(folder: Path, map_location: str | None = "cpu") -> dict[str, Any]:
    import torch

    return torch.load(Path(folder) / "model.pt", map_location=map_location, weights_only=True)
