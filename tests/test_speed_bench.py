"""The benchmark scripts: their arithmetic by hand, and one end-to-end run each (slow)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))


def test_paired_ratios_pair_setups_of_the_same_round():
    import common

    runs = [
        {"rep": 0, "setup": "A", "x": 10.0}, {"rep": 0, "setup": "B", "x": 4.0},
        {"rep": 1, "setup": "A", "x": 9.0}, {"rep": 1, "setup": "B", "x": 3.0},
        {"rep": 2, "setup": "A", "x": 8.0},  # no B in round 2: no pair
    ]  # fmt: skip
    assert common.paired_ratios(runs, "A", "B", "x") == [2.5, 3.0]
    assert common.spread([3.0, 1.0, 2.0]) == {"min": 1.0, "median": 2.0, "max": 3.0}


def test_peak_flops_by_device_name():
    import gpu_bench

    assert gpu_bench.peak_tflops("NVIDIA H100 80GB HBM3") == 989.4
    assert gpu_bench.peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert gpu_bench.peak_tflops("NVIDIA H200") == 989.4
    assert gpu_bench.peak_tflops("Some GPU") is None


def test_pad_to_max_length_pads_every_key_with_its_fill():
    import train

    feats = [{"input_ids": [0, 5, 2], "attention_mask": [1, 1, 1], "labels": [-100, 3, -100]}]
    (out,) = train.pad_to(feats, 5, pad_id=1)
    assert out == {"input_ids": [0, 5, 2, 1, 1], "attention_mask": [1, 1, 1, 0, 0],
                   "labels": [-100, 3, -100, -100, -100]}  # fmt: skip


def test_non_embedding_parameters_of_the_large_shape():
    """XLM-R Large has ~303M non-embedding parameters (24 x 12.6M per layer)."""
    import gpu_bench

    d, ff, layers = 1024, 4096, 24
    per_layer = 4 * (d * d + d) + (d * ff + ff) + (ff * d + d) + 2 * 2 * d
    assert layers * per_layer == pytest.approx(302.3e6, rel=1e-3)
    tiny = gpu_bench.build_encoder(gpu_bench.TINY, "cpu")
    d, ff, n = 64, 128, 2
    expected = n * (4 * (d * d + d) + (d * ff + ff) + (ff * d + d) + 4 * d)
    assert gpu_bench.non_embedding_params(tiny) == expected


def _run(args, timeout=600):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=REPO)  # fmt: skip


@pytest.mark.slow
def test_train_benchmark_end_to_end(shared_data):
    proc = _run(["bench/train.py", "--model", "tiny", "--steps", "2", "--reps", "1",
                 "--batch-size", "4", "--data", str(shared_data), "--json"])  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout[proc.stdout.index("{") :])
    assert set(out["setups"]) == {"A", "B", "C"}
    by = {r["setup"]: r for r in out["runs"]}
    assert by["B"]["padding_fraction"] > by["A"]["padding_fraction"]  # B pads to 128
    assert by["A"]["rows_collated"] == 8
    assert out["ratios"]["A/B"]["median"] > 0


@pytest.mark.slow
def test_gpu_script_smoke_mode(tmp_path):
    env_py = sys.executable
    proc = subprocess.run(
        ["bash", "bench/gpu.sh", "--smoke", "--sections", "mfu,tagging,predict"],
        capture_output=True, text=True, timeout=600, cwd=REPO,
        env=dict(os.environ, OUT=str(tmp_path), PYTHON=env_py),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((tmp_path / "gpu_bench.json").read_text())
    for name in ("mfu", "tagging", "predict"):
        assert "error" not in result["sections"][name], result["sections"][name].get("traceback")
    assert result["sections"]["mfu"]["A"]["tokens_per_s"] > 0
    assert result["sections"]["tagging"]["A/B"] > 0 and result["sections"]["tagging"]["A/Ag"] > 0
    predict = result["sections"]["predict"]
    assert all(predict[f"{x}/P"] > 0 for x in ("X", "Xf", "X4096", "X32"))
    # float32 on CPU (auto adds no autocast there): the padded loop's tags exactly, whatever the batches
    assert all(predict[f"{x}_same_tags_as_P"] == 1.0 for x in ("X", "Xf", "X4096", "X32"))
    retrieval = predict["retrieval"]
    assert retrieval["sentences"] > 0 and retrieval["X/P"] > 0 and retrieval["Xf/P"] > 0
    assert retrieval["X_max_abs_diff"] < 1e-4 and retrieval["Xf_max_abs_diff"] < 1e-4  # float32 on CPU


@pytest.mark.slow
def test_launch_count_benchmark():
    """bench/launches.py: packed rows in the blocked form add few operators over padding."""
    proc = _run(["bench/launches.py", "--layers", "4", "--batch-size", "8", "--json"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout[proc.stdout.index("{") :])["per_step"]
    padded, blocked = out["padded"]["kernels"], out["blocked"]["kernels"]
    assert 0 < padded < blocked < padded * 1.1
    assert out["per-sequence"]["kernels"] > blocked  # one attention call per sequence
