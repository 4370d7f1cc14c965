"""The same training code under ``torchrun`` with two CPU processes (DDP over gloo)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from train_helpers import accuracy_eval, collate, synthetic_features, tiny_classifier, weights_digest
from xstilts.train.config import TrainConfig
from xstilts.train.loop import train
import os
model = tiny_classifier(0)
cfg = TrainConfig(learning_rate=3e-3, batch_size=8, epochs=2, eval_every=3, checkpoint_every=2,
                  metric_for_best="accuracy", progress=False, tensorboard=False, cpu=True)
result = train(model, synthetic_features(64, 1), collate, cfg,
               eval_fn=accuracy_eval(synthetic_features(16, 2)), out_dir=sys.argv[1])
with open(sys.argv[1] + "-rank" + os.environ["RANK"], "w") as fh:
    fh.write(" ".join(map(str, [os.environ["RANK"], result.global_step, len(result.eval_history), weights_digest(model)])))
"""


@pytest.mark.slow
def test_two_process_ddp_trains_identical_replicas(tmp_path):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    if torchrun is None:
        pytest.skip("torchrun not installed next to the interpreter")
    script = tmp_path / "ddp_train.py"
    script.write_text(SCRIPT.format(tests=str(REPO / "tests")))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [torchrun, "--nproc_per_node", "2", "--master_port", "29533", str(script), str(tmp_path / "out")],
        env=env, capture_output=True, text=True, timeout=240, cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [(tmp_path / f"out-rank{r}").read_text().split() for r in (0, 1)]
    assert [l[0] for l in lines] == ["0", "1"]
    # 64 examples / batch 8 = 8 batches per epoch, 4 per process: 8 steps over 2 epochs
    assert lines[0][1:3] == ["8", "3"] and lines[1][1:3] == ["8", "3"]
    assert lines[0][3] == lines[1][3]  # both replicas end with the same weights
    assert (tmp_path / "out" / "result.json").is_file()
