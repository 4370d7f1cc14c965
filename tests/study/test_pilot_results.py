"""The committed pilot study (results/pilot, configs/pilot.yaml) is what this code computes.

Cheap checks, always run while results/pilot is in the repository:

* every committed cell was computed under the config that ``configs/pilot.yaml`` gives with the
  current code: its recorded config hash equals the hash the planner computes now (the hash
  covers the study's settings for the cell, its phase-1 cell and the code's defaults), so
  ``xstilts study configs/pilot.yaml`` would reuse it rather than compute something else;
* the result store holds exactly the numbers of the committed ``scores.json`` files.

The expensive check re-runs one cell from scratch and compares its scores with the committed
ones to the last digit; it takes minutes on a CPU, so it runs only when asked:

    XSTILTS_PILOT_RECHECK=multilingual-e5-small/none/s1/udpos python -m pytest tests/study/test_pilot_results.py
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest
import yaml

from conftest import SHARED_DATA

REPO = Path(__file__).resolve().parents[2]
PILOT = REPO / "results" / "pilot"
CONFIG = REPO / "configs" / "pilot.yaml"

pytestmark = pytest.mark.skipif(not (PILOT / "results.sqlite").is_file(), reason="results/pilot is not committed")


def committed_cells() -> dict[str, dict]:
    cells = {}
    for node_file in sorted((PILOT / "runs").rglob("node.json")):
        record = json.loads(node_file.read_text())
        if (node_file.parent / "DONE.json").is_file():
            cells[record["node"]] = record
    return cells


def test_every_committed_cell_has_the_hash_the_pilot_config_gives_now():
    from xstilts.study.cells import node_config_hashes
    from xstilts.study.plan import build_plan
    from xstilts.study.study_config import load_study

    plan = build_plan(load_study(CONFIG))
    hashes = node_config_hashes(plan)
    cells = committed_cells()
    assert cells, "no finished cell under results/pilot/runs"
    assert set(cells) <= set(hashes), sorted(set(cells) - set(hashes))
    stale = {cell: (rec["config_hash"], hashes[cell]) for cell, rec in cells.items() if rec["config_hash"] != hashes[cell]}
    assert not stale, f"cells computed under another config than configs/pilot.yaml gives now: {stale}"


def test_the_store_holds_the_committed_scores():
    con = sqlite3.connect(PILOT / "results.sqlite")
    try:
        rows = con.execute("SELECT run_dir, task, language, metric, value FROM scores").fetchall()
    finally:
        con.close()
    stored = {(d, t, l, m): v for d, t, l, m, v in rows}
    checked = 0
    for scores_file in sorted((PILOT / "runs").rglob("scores.json")):
        rel = scores_file.parent.relative_to(PILOT).as_posix()
        for task, entry in json.loads(scores_file.read_text())["tasks"].items():
            for lang, metrics in entry["languages"].items():
                for metric, value in metrics.items():
                    assert stored[(rel, task, lang, metric)] == pytest.approx(value, abs=1e-9), (rel, task, lang, metric)
                    checked += 1
    assert checked > 100


@pytest.mark.skipif(not os.environ.get("XSTILTS_PILOT_RECHECK"), reason="set XSTILTS_PILOT_RECHECK=CELL to re-run a cell")
def test_a_rerun_cell_gives_the_committed_scores(tmp_path):
    """Re-run one committed cell from its config (a fresh run directory, same seed, CPU) and
    compare every score. A target cell after phase 1 first re-trains its phase-1 cell."""
    from xstilts.study.run_config import load_run_config
    from xstilts.study.pipeline import run_pipeline

    cell = os.environ["XSTILTS_PILOT_RECHECK"]
    committed = PILOT / "runs" / cell
    config = yaml.safe_load((committed / "config.yaml").read_text())
    config["out"] = str(tmp_path / "cell")
    config["data_dir"] = str(SHARED_DATA)
    if config.get("encoder_dir"):  # the phase-1 encoder is not committed: train it again
        phase1 = yaml.safe_load((committed.parent / "phase1" / "config.yaml").read_text())
        phase1["out"] = str(tmp_path / "phase1")
        phase1["data_dir"] = config["data_dir"]
        config["encoder_dir"] = str(Path(run_pipeline(load_run_config(phase1))) / "encoder")
    fresh = json.loads((Path(run_pipeline(load_run_config(config))) / "scores.json").read_text())
    assert fresh["tasks"] == json.loads((committed / "scores.json").read_text())["tasks"]
