"""Helpers shared by the benchmarks: models, data, timing, memory, summaries.

The benchmarks run every measured setup in a fresh worker process (``python bench/X.py --worker
...``), alternating setups A B C A B C ..., so that (1) each setup's peak memory is its own (a
process's peak RSS never goes down) and (2) slow drift of a shared machine's load hits every
setup alike. Workers print one JSON line, prefixed with :data:`RESULT_TAG`, which the parent
collects.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # xstilts travels as source (e.g. to a GPU machine)
    sys.path.insert(0, str(REPO))

RESULT_TAG = "BENCH-RESULT "
DEFAULT_DATA = REPO.parent / "shared" / "data"


def data_dir(arg: str | None) -> Path:
    """The data folder: the argument, $XSTILTS_DATA, or ../shared/data next to the repo."""
    return Path(arg or os.environ.get("XSTILTS_DATA") or DEFAULT_DATA)


def set_threads(n: int) -> None:
    """The same thread count for every setup (torch intra-op and inter-op)."""
    import torch

    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set in this process
        pass


def prepare_model(spec: str, task: str, workdir: Path, corpus: Sequence[str] = ()) -> str:
    """A folder or catalogue name every worker loads the *same* encoder from.

    ``tiny``: a random tiny XLM-R (hidden 64, 2 layers) built once and saved under ``workdir``,
    with room for 512 positions so that QA windows of 384 tokens fit.
    """
    if spec != "tiny":  # a folder, or a catalogue name resolved to its converted folder
        from xstilts.models.loading import resolve_model

        return resolve_model(spec).location
    from xstilts.models.tiny import build_tiny_model

    out = workdir / "tiny-model"
    build_tiny_model(
        out,
        hidden_size=64,
        num_layers=2,
        num_heads=2,
        intermediate_size=256,
        max_position_embeddings=514,
        extra_text=list(corpus)[:2000],
        vocab_size=4000,
    )
    return str(out)


def load_encoder(location: str):
    from xstilts.models.loading import load_encoder as _load

    return _load(location)


def peak_memory_mib(device: str) -> float:
    """Peak GPU memory allocated (CUDA) or this process's peak resident set size (CPU), MiB."""
    if device == "cuda":
        import torch

        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def current_rss_mib() -> float:
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return float("nan")


def machine_info() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "host_cpus": os.cpu_count(),
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "load_avg": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def run_worker(script: Path, args: list[str], timeout: float | None = None) -> dict[str, Any]:
    """Run ``script --worker ...`` in a fresh process; its result line as a dict."""
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_TAG):
            return json.loads(line[len(RESULT_TAG) :])
    raise RuntimeError(
        f"worker {' '.join(args)} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}"
    )


def emit(result: dict[str, Any]) -> None:
    print(RESULT_TAG + json.dumps(result), flush=True)


def spread(values: Sequence[float]) -> dict[str, float]:
    """min / median / max of a few repetitions."""
    vals = [v for v in values if v is not None]
    if not vals:
        return {"min": float("nan"), "median": float("nan"), "max": float("nan")}
    return {
        "min": min(vals),
        "median": statistics.median(vals),
        "max": max(vals),
    }


def paired_ratios(
    runs: Sequence[dict[str, Any]], a: str, b: str, key: str
) -> list[float]:
    """``key`` of setup ``a`` over setup ``b`` for each repetition (pairs from the same round)."""
    by_rep: dict[int, dict[str, float]] = {}
    for r in runs:
        by_rep.setdefault(r["rep"], {})[r["setup"]] = r[key]
    return [d[a] / d[b] for d in by_rep.values() if a in d and b in d and d[b]]


def fmt(x: float, digits: int = 1) -> str:
    return f"{x:.{digits}f}"
