"""The result store: pandas reads it; two processes writing at once lose nothing."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap

import pandas as pd

from xstilts.study.store import ResultStore, ScoreRow

WRITER = textwrap.dedent("""
    import sys
    from xstilts.study.store import ResultStore, ScoreRow
    path, who, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    store = ResultStore(path, timeout=60)
    for i in range(n):
        rows = [ScoreRow("target", "udpos", f"l{j}", "score", float(i * 10 + j)) for j in range(5)]
        store.mark_cell("s", f"{who}-{i}", "running")
        store.record_cell("s", f"{who}-{i}", rows, cell_fields={"seconds": 1.0},
                          score_fields={"seed": i, "encoder": who})
""")


def test_two_processes_writing_at_once_lose_nothing(tmp_path):
    path = tmp_path / "results.sqlite"
    ResultStore(path)  # schema first, as run_study does
    n = 60
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), who, str(n)]) for who in ("a", "b")]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    con = sqlite3.connect(path)
    df = pd.read_sql("SELECT * FROM scores", con)
    assert len(df) == 2 * n * 5
    assert df.groupby("encoder").size().to_dict() == {"a": n * 5, "b": n * 5}
    cells = pd.read_sql("SELECT * FROM cells", con)
    assert len(cells) == 2 * n and set(cells.status) == {"done"}
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_recording_a_cell_again_replaces_its_rows(tmp_path):
    store = ResultStore(tmp_path / "r.sqlite")
    store.record_cell("s", "c", [ScoreRow("target", "panx", "de", "f1", 1.0)] * 3, cell_fields={}, score_fields={})
    store.record_cell("s", "c", [ScoreRow("target", "panx", "de", "f1", 2.0)], cell_fields={}, score_fields={})
    df = store.scores_frame("s")
    assert df.value.tolist() == [2.0]
    assert store.cell_status("s")["c"]["status"] == "done"


def test_throughput_from_finished_cells(tmp_path):
    store = ResultStore(tmp_path / "r.sqlite")
    assert store.throughput("enc") is None
    store.record_cell("s", "a", [], cell_fields={"encoder": "enc", "est_tokens": 1000.0, "seconds": 10.0}, score_fields={})
    store.record_cell("s", "b", [], cell_fields={"encoder": "enc", "est_tokens": 3000.0, "seconds": 10.0}, score_fields={})
    store.mark_cell("s", "c", "failed", encoder="enc", est_tokens=5000.0, seconds=1.0)
    assert store.throughput("enc") == 200.0  # (1000 + 3000) / (10 + 10); failed cells do not count
