#!/usr/bin/env bash
# One prepared GPU benchmark run (see bench/gpu_bench.py): XLM-R-Large shapes, bf16, seq 128.
# Installs nothing; uses the machine's own python/torch/transformers; xstilts runs from source.
# Writes $OUT/gpu_bench.json (or bench-out/ when OUT is unset) and the log next to it.
#   bash bench/gpu.sh            # on a GPU machine, < 8 minutes
#   bash bench/gpu.sh --smoke    # same code on CPU with a tiny model (to test the script)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-$(command -v python3 || command -v python)}"  # PYTHON=.venv/bin/python here
OUT_DIR="${OUT:-bench-out}"
mkdir -p "$OUT_DIR"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYTHONUNBUFFERED=1
if [[ "${1:-}" == "--smoke" ]]; then
  export OMP_NUM_THREADS=1
fi
{
  echo "date: $(date -u +%FT%TZ)"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || echo "no nvidia-smi"
  "$PY" - <<'PYEOF'
import importlib
for m in ("torch", "transformers", "accelerate", "tokenizers", "numpy"):
    try:
        print(m, importlib.import_module(m).__version__)
    except Exception as e:
        print(m, "MISSING", e)
import torch
print("cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
PYEOF
} 2>&1 | tee "$OUT_DIR/gpu_env.txt" || true
# 450 s for the benchmark itself; each section writes the JSON as it finishes.
timeout --signal=TERM --kill-after=20 450 "$PY" bench/gpu_bench.py --out "$OUT_DIR/gpu_bench.json" "$@" \
  2>&1 | tee "$OUT_DIR/gpu_bench.log"
echo "results: $OUT_DIR/gpu_bench.json"
