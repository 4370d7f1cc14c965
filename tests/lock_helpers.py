"""A study cell for the lock and signal tests, importable by ``xstilts study --work`` in a
subprocess without the heavier test modules (``--work lock_helpers:blocking_work``)."""

from __future__ import annotations

import json
import time
from pathlib import Path


def blocking_work(req) -> dict:
    """Says it started (``STUDY/started``), then waits for ``STUDY/release`` (at most 60 s)."""
    study_dir = Path(req.study_dir)
    with open(study_dir / "calls.log", "a", encoding="utf-8") as fh:
        fh.write(req.node.id + "\n")
    (study_dir / "started").touch()
    deadline = time.time() + 60
    while not (study_dir / "release").exists() and time.time() < deadline:
        time.sleep(0.05)
    scores = {"tasks": {"udpos": {"languages": {"de": {"f1": 50.0}}, "score": 50.0}}, "xtreme_score": None}
    (Path(req.run_dir) / "scores.json").write_text(json.dumps(scores))
    return {"scores": scores, "device": "cpu"}
