"""The same training code under ``torchrun`` with two CPU processes (DDP over gloo)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from train_helpers import accuracy_eval, collate, synthetic_features, tiny_classifier, weights_digest
from xstilts.train.train_config import TrainConfig
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


def _torchrun(code: str, tmp_path: Path, port: int) -> list[list[str]]:
    """Run ``code`` as a script in two CPU processes; each rank's line of results, split."""
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    if torchrun is None:
        pytest.skip("torchrun not installed next to the interpreter")
    script = tmp_path / "ddp_script.py"
    script.write_text(code)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [torchrun, "--nproc_per_node", "2", "--master_port", str(port), str(script), str(tmp_path / "out")],
        env=env, capture_output=True, text=True, timeout=240, cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [(tmp_path / f"out-rank{r}").read_text().split() for r in (0, 1)]


@pytest.mark.slow
def test_two_process_ddp_trains_identical_replicas(tmp_path):
    lines = _torchrun(SCRIPT.format(tests=str(REPO / "tests")), tmp_path, 29533)
    assert [l[0] for l in lines] == ["0", "1"]
    # 64 examples / batch 8 = 8 batches per epoch, 4 per process: 8 steps over 2 epochs
    assert lines[0][1:3] == ["8", "3"] and lines[1][1:3] == ["8", "3"]
    assert lines[0][3] == lines[1][3]  # both replicas end with the same weights
    assert (tmp_path / "out" / "result.json").is_file()


PACKED_SCRIPT = """
import os, random, sys
import torch
sys.path.insert(0, {tests!r})
from train_helpers import weights_digest
from xstilts.models.packing import packed_collator
from xstilts.models.heads import build_model
from xstilts.models.tiny import build_tiny_model
from xstilts.train.train_config import TrainConfig
from xstilts.train.loop import train
encoder, _ = build_tiny_model(hidden_size=32, num_layers=2, vocab_size=300, extra_text=["a b c d e f g"])
torch.manual_seed(0)
model = build_model({task!r}, encoder, num_labels=5 if {task!r} == "udpos" else None)
start = {{k: v.clone() for k, v in model.state_dict().items()}}
rng = random.Random(1)
def sequence():
    n = rng.randint(3, 30)
    return [0] + [rng.randrange(5, 290) for _ in range(n - 2)] + [2]
feats = []
for i in range(48):
    if {task!r} == "udpos":
        ids = sequence()
        feats.append({{"input_ids": ids, "labels": [-100] + [rng.randrange(5) for _ in ids[2:]] + [-100]}})
    else:  # multiple choice: 5 choices of different lengths
        feats.append({{"input_ids": [sequence() for _ in range(5)], "labels": i % 5}})
cfg = TrainConfig(learning_rate=1e-3, batch_size=4, epochs=1, progress=False, tensorboard=False, cpu=True)
result = train(model, feats, packed_collator(encoder), cfg, out_dir=sys.argv[1], find_unused_parameters=True)  # as the pipeline
moved = max(float((v - start[k]).abs().max()) for k, v in model.state_dict().items())
with open(sys.argv[1] + "-rank" + os.environ["RANK"], "w") as fh:
    fh.write(" ".join(map(str, [os.environ["RANK"], result.global_step, moved > 1e-4, weights_digest(model)])))
"""


@pytest.mark.slow
@pytest.mark.parametrize("task", ["udpos", "commonsenseqa"])
def test_two_process_ddp_trains_packed_rows(tmp_path, task):
    """Packed rows (tagging; multiple choice) under DDP: each process packs its own batches and
    the replicas stay identical."""
    lines = _torchrun(PACKED_SCRIPT.format(tests=str(REPO / "tests"), task=task), tmp_path, 29534)
    # 48 examples / batch 4 = 12 batches, 6 per process: 6 steps; training moved the weights
    assert lines[0][1:3] == ["6", "True"] and lines[1][1:3] == ["6", "True"]
    assert lines[0][3] == lines[1][3]  # both replicas end with the same weights


FSDP_SCRIPT = """
import os, signal, sys
import torch
sys.path.insert(0, {tests!r})
from train_helpers import accuracy_eval, collate, synthetic_features, tiny_classifier, weights_digest
from xstilts.train.loop import shard_units, train
from xstilts.train.signals import StoppedBySignal
from xstilts.train.train_config import TrainConfig
out = sys.argv[1]
feats, dev = synthetic_features(64, 1), synthetic_features(16, 2)
def config(sharding):  # accumulation, clipping, warm-up, evaluation, best weights, checkpoints
    return TrainConfig(learning_rate=3e-3, batch_size=4, grad_accum=2, epochs=3, warmup_ratio=0.1,
                       max_grad_norm=0.5, eval_every=3, checkpoint_every=2, metric_for_best="accuracy",
                       load_best_at_end=False, progress=False, tensorboard=False, cpu=True,
                       sharding=sharding)
def fresh():
    return tiny_classifier(0, dropout=0.1)  # dropout on: resume must restore every rank's RNG
assert len(shard_units(fresh())) == 1  # the one transformer layer, then the root
results = {{}}
for sharding in ("ddp", "fsdp"):
    model = fresh()
    r = train(model, feats, collate, config(sharding), eval_fn=accuracy_eval(dev), out_dir=out + "/" + sharding)
    results[sharding] = (model, r)
# interrupted: SIGTERM on every rank at its 7th batch; the ranks agree to stop at step 10
count = [0]
def stopping_collate(batch):
    count[0] += 1
    if count[0] == 7:
        os.kill(os.getpid(), signal.SIGTERM)
    return collate(batch)
model = fresh()
try:
    train(model, feats, stopping_collate, config("fsdp"), eval_fn=accuracy_eval(dev), out_dir=out + "/resumed")
    stopped = -1
except StoppedBySignal as exc:
    stopped = exc.step
model = fresh()
resumed = train(model, feats, collate, config("fsdp"), eval_fn=accuracy_eval(dev), out_dir=out + "/resumed")
ddp, fsdp = results["ddp"][0].state_dict(), results["fsdp"][0].state_dict()
gap = max(float((ddp[k] - fsdp[k]).abs().max()) for k in ddp)
saved = fresh()
saved.load_state_dict(torch.load(out + "/fsdp/final/model.pt", weights_only=True))  # one process, no FSDP
with open(out + "-rank" + os.environ["RANK"], "w") as fh:
    fh.write(" ".join(map(str, [os.environ["RANK"], results["fsdp"][1].global_step, results["ddp"][1].global_step,
                                len(results["fsdp"][1].eval_history), gap < 1e-5, weights_digest(results["fsdp"][0]),
                                stopped, resumed.resumed_from_step, weights_digest(model) == weights_digest(results["fsdp"][0]),
                                weights_digest(saved) == weights_digest(results["fsdp"][0]),
                                results["fsdp"][1].eval_history == resumed.eval_history])))
"""


@pytest.mark.slow
def test_two_process_fsdp_trains_as_ddp_resumes_exactly_and_saves_whole_weights(tmp_path):
    """sharding: fsdp (FSDP2 over gloo): the same weights as DDP to float rounding, after
    accumulation, clipping and evaluation; a run stopped by SIGTERM resumes to the weights of an
    uninterrupted one; final/model.pt loads into the plain model in one process."""
    lines = _torchrun(FSDP_SCRIPT.format(tests=str(REPO / "tests")), tmp_path, 29535)
    for rank, line in enumerate(lines):
        # 64 examples / batch 4 = 16 batches, 8 per process, 4 steps of 2 per epoch: 12 steps
        assert line[:5] == [str(rank), "12", "12", "4", "True"], line
        assert line[6:] == ["10", "10", "True", "True", "True"], line
    assert lines[0][5] == lines[1][5]  # every rank gets the same whole weights back
