"""One small study with 1 CPU worker and with 2, alternated: wall time and the result stores.

Each round runs the same study (a tiny model by default: the real pipeline, phase 1 on 20 real
CommonsenseQA questions, UDPOS fine-tuning and zero-shot French, 2 settings x 2 seeds = 6 cells)
into a fresh directory with ``executor: {workers: 1}`` and ``{workers: 2}``, alternating which
goes first, and reports each round's wall time, the ratio t(1) / t(2), and whether the two
result stores are identical.

    python bench/workers.py --rounds 3 --json > bench/results/workers-$(date +%F).json
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

CSQA = "commonsenseqa/dev_rand_split.jsonl"
UDPOS = "udpos/xtreme-format/download/udpos"


def build_world(root: Path, data: Path) -> tuple[Path, Path]:
    """A data folder of real slices and a tiny XLM-R covering their words."""
    from xstilts.models.tiny import build_tiny_model

    out = root / "data"
    lines = (data / CSQA).read_text(encoding="utf-8").splitlines()[:20]
    (out / "commonsenseqa").mkdir(parents=True)
    (out / "commonsenseqa" / "dev_rand_split.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    words = []
    for line in lines:
        rec = json.loads(line)
        words += [rec["question"], *rec["choices"]["text"]]
    (out / "udpos").mkdir()
    for name, n in (("train-en", 200), ("dev-en", 20), ("test-fr", 40)):
        kept, sentences = [], 0
        for line in (data / UDPOS / f"{name}.tsv").read_text(encoding="utf-8").splitlines():
            kept.append(line)
            if not line.strip():
                sentences += 1
                if sentences == n:
                    break
        (out / "udpos" / f"{name}.tsv").write_text("\n".join(kept) + "\n", encoding="utf-8")
        words += [l.split("\t")[0] for l in kept if l.strip()]
    model = root / "tiny"
    build_tiny_model(model, extra_text=[" ".join(words)], hidden_size=64, num_layers=2, vocab_size=2000)
    return out, model


def run_once(workers: int, out: Path, data: Path, model: Path) -> float:
    from xstilts.study.runner import run_study
    from xstilts.study.study_config import parse_study

    study = parse_study({
        "name": "bench-workers", "encoders": [str(model)],
        "intermediate": ["none", {"name": "csqa", "tasks": [
            {"task": "commonsenseqa", "train_split": "dev", "heldout": 6}]}],
        "targets": ["udpos"], "languages": {"udpos": ["fr"]}, "seeds": [1, 2, 3],
        "budgets": {"intermediate": {"examples_seen": 400}, "target": {"epochs": 3}},
        "hyperparameters": {"intermediate": {"learning_rate": 1e-3, "batch_size": 4, "eval_every": 0},
                            "target": {"learning_rate": 1e-3, "batch_size": 8, "grad_accum": 1}},
        "executor": {"workers": workers},
    })
    t = time.perf_counter()
    run = run_study(study, out, data_dir=data)
    seconds = time.perf_counter() - t
    if run.failed:
        raise SystemExit(f"cells failed: {[o.error for o in run.failed]}")
    return seconds


def store(path: Path) -> list[tuple]:
    con = sqlite3.connect(path / "results.sqlite")
    try:
        return sorted(con.execute("SELECT cell, task, language, metric, value FROM scores").fetchall())
    finally:
        con.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    data = common.data_dir(args.data)
    rounds = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        world, model = build_world(root, data)
        for r in range(args.rounds):
            order = (1, 2) if r % 2 == 0 else (2, 1)
            times, stores = {}, {}
            for w in order:
                out = root / f"r{r}-w{w}"
                times[w] = run_once(w, out, world, model)
                stores[w] = store(out)
            rounds.append({"round": r, "order": list(order), "seconds_1_worker": round(times[1], 2),
                           "seconds_2_workers": round(times[2], 2), "ratio": round(times[1] / times[2], 3),
                           "identical_scores": stores[1] == stores[2], "rows": len(stores[1]),
                           "load_average": os.getloadavg()})
    ratios = [x["ratio"] for x in rounds]
    summary = {"bench": "workers", "cpu_count": os.cpu_count(), "rounds": rounds,
               "ratio_median": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
               "all_identical": all(x["identical_scores"] for x in rounds), "machine": common.machine_info()}
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        for x in rounds:
            print(f"round {x['round']}: 1 worker {x['seconds_1_worker']} s, 2 workers {x['seconds_2_workers']} s, "
                  f"ratio {x['ratio']}, identical {x['identical_scores']}")
        print(f"t(1 worker) / t(2 workers): median {summary['ratio_median']} "
              f"[{summary['ratio_min']}-{summary['ratio_max']}]; identical scores: {summary['all_identical']}")


if __name__ == "__main__":
    main()
