"""Kill-and-resume with a real process and a real SIGKILL: same final weights and metrics."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

HELPER = Path(__file__).resolve().parents[1] / "train_helpers.py"
REPO = Path(__file__).resolve().parents[2]


def _run(out: Path, slow: float) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    return subprocess.Popen(
        [sys.executable, str(HELPER), str(out), "--slow", str(slow)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=REPO,
    )


def _finish(proc: subprocess.Popen, timeout: float = 120) -> None:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out.decode(errors="replace")[-3000:]


def test_sigkill_then_rerun_ends_like_uninterrupted(tmp_path):
    full = tmp_path / "full"
    _finish(_run(full, 0.0))
    reference = json.loads((full / "final.json").read_text())
    assert reference["resumed_from_step"] is None and reference["global_step"] == 18

    killed = tmp_path / "killed"
    proc = _run(killed, 0.05)
    pointer = killed / "train" / "checkpoints" / "latest"
    deadline = time.time() + 90
    while not pointer.exists():
        assert proc.poll() is None, "training ended before writing a checkpoint"
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not (killed / "final.json").exists()
    assert not (killed / "train" / "result.json").exists()

    _finish(_run(killed, 0.0))  # the same command again
    resumed = json.loads((killed / "final.json").read_text())
    assert resumed["resumed_from_step"] is not None and 3 <= resumed["resumed_from_step"] < 18
    assert resumed["digest"] == reference["digest"]
    assert resumed["eval_history"] == reference["eval_history"]
    assert resumed["train_loss"] == pytest.approx(reference["train_loss"], abs=1e-6)
    assert resumed["best_metric"] == reference["best_metric"]
    log_full = (full / "train" / "log.jsonl").read_text()
    assert (killed / "train" / "log.jsonl").read_text() == log_full
