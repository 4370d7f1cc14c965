"""The result store: one SQLite file per study that pandas reads with ``pd.read_sql``.

Why SQLite: one file, in the standard library, readable by pandas, and safe for several writers
at once. Every write is one transaction (``BEGIN IMMEDIATE``), the journal is WAL (readers never
block the writer) and a busy timeout makes a second writer wait for the lock instead of failing;
so two processes recording cells at the same time lose nothing.

Tables:

``scores``  one row per number: study, cell, phase (``intermediate`` = phase-1 quality,
            ``target`` = zero-shot scores after phase 2/3), task, language (``avg`` for the
            task-level score), seed, metric, value, config_hash, code_version, seconds,
            intermediate (setting name), family (none | nlu | code | mixed), encoder, target,
            run_dir, recorded_at. The metric ``score`` is the number that enters the XTREME
            score (F1 for QA, accuracy, seqeval F1...), per language and averaged.
``cells``   one row per plan node: status (running | done | failed), a one-line error, timing,
            estimated tokens (for throughput), device.

Recording a cell replaces its earlier rows (delete + insert in one transaction), so re-ingesting
a finished run dir is idempotent.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCORE_COLUMNS = (
    "study", "cell", "phase", "task", "language", "seed", "metric", "value", "config_hash",
    "code_version", "seconds", "intermediate", "family", "encoder", "target", "run_dir", "recorded_at",
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS scores (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    study TEXT NOT NULL, cell TEXT NOT NULL, phase TEXT NOT NULL, task TEXT NOT NULL,
    language TEXT NOT NULL, seed INTEGER, metric TEXT NOT NULL, value REAL,
    config_hash TEXT, code_version TEXT, seconds REAL, intermediate TEXT, family TEXT,
    encoder TEXT, target TEXT, run_dir TEXT, recorded_at REAL
);
CREATE INDEX IF NOT EXISTS scores_cell ON scores (study, cell);
CREATE TABLE IF NOT EXISTS cells (
    study TEXT NOT NULL, cell TEXT NOT NULL, phase TEXT, status TEXT NOT NULL, error TEXT,
    seconds REAL, est_tokens REAL, device TEXT, encoder TEXT, intermediate TEXT, family TEXT,
    target TEXT, seed INTEGER, config_hash TEXT, code_version TEXT, run_dir TEXT,
    started_at REAL, finished_at REAL,
    PRIMARY KEY (study, cell)
);
"""

# A phase-1 metric measured before any phase-1 step (fresh head or decoder) is stored as
# METRIC + this suffix, beside the metric after phase 1.
UNTRAINED_SUFFIX = "_untrained"
# A target's trivial reference (what a predictor that learnt nothing scores on the same gold) is
# stored as this metric, per language and as ``avg``.
TRIVIAL_METRIC = "trivial"
# Phase-1 rows of the budget a run used (steps, examples_seen, train_features) carry this task.
BUDGET_TASK = "(budget)"


@dataclass(frozen=True)
class ScoreRow:
    """One number; the store fills study/cell/timing columns it is given with the cell."""

    phase: str
    task: str
    language: str
    metric: str
    value: float | None


class ResultStore:
    """A study's SQLite store. Open one per process; each method is one transaction."""

    def __init__(self, path: str | Path, *, timeout: float = 60.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.timeout = timeout
        with self._connect() as con:
            con.execute("PRAGMA journal_mode=WAL")
            con.executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
        con.execute(f"PRAGMA busy_timeout={int(self.timeout * 1000)}")
        con.execute("PRAGMA synchronous=NORMAL")
        return con

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` takes the write lock up front, so no transaction fails half-way."""
        con = self._connect()
        try:
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
        finally:
            con.close()

    # -- writing ---------------------------------------------------------------------------

    def mark_cell(self, study: str, cell: str, status: str, **fields: Any) -> None:
        """Insert or update a cell's status row (running | done | failed) with any known fields."""
        cols = {"study": study, "cell": cell, "status": status, **fields}
        names = ", ".join(cols)
        marks = ", ".join("?" for _ in cols)
        update = ", ".join(f"{k}=excluded.{k}" for k in cols if k not in ("study", "cell"))
        with self.transaction() as con:
            con.execute(
                f"INSERT INTO cells ({names}) VALUES ({marks}) "
                f"ON CONFLICT(study, cell) DO UPDATE SET {update}",
                tuple(cols.values()),
            )

    def record_cell(
        self,
        study: str,
        cell: str,
        rows: Iterable[ScoreRow],
        *,
        cell_fields: dict[str, Any],
        score_fields: dict[str, Any],
    ) -> int:
        """Replace the cell's scores with ``rows`` and mark it done, atomically. Returns rows written."""
        now = time.time()
        base = {k: score_fields.get(k) for k in SCORE_COLUMNS}
        base.update(study=study, cell=cell, recorded_at=now)
        values = []
        for r in rows:
            d = dict(base, phase=r.phase, task=r.task, language=r.language, metric=r.metric,
                     value=None if r.value is None else float(r.value))
            values.append(tuple(d[c] for c in SCORE_COLUMNS))
        cols = {"study": study, "cell": cell, "status": "done", "error": None, "finished_at": now,
                **cell_fields}
        with self.transaction() as con:
            con.execute("DELETE FROM scores WHERE study=? AND cell=?", (study, cell))
            con.executemany(
                f"INSERT INTO scores ({', '.join(SCORE_COLUMNS)}) VALUES ({', '.join('?' for _ in SCORE_COLUMNS)})",
                values,
            )
            update = ", ".join(f"{k}=excluded.{k}" for k in cols if k not in ("study", "cell"))
            con.execute(
                f"INSERT INTO cells ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)}) "
                f"ON CONFLICT(study, cell) DO UPDATE SET {update}",
                tuple(cols.values()),
            )
        return len(values)

    # -- reading ---------------------------------------------------------------------------

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        con = self._connect()
        con.row_factory = sqlite3.Row
        try:
            return list(con.execute(sql, params))
        finally:
            con.close()

    def cell_status(self, study: str) -> dict[str, sqlite3.Row]:
        return {r["cell"]: r for r in self.query("SELECT * FROM cells WHERE study=?", (study,))}

    def scores_frame(self, study: str | None = None):
        """All scores as a pandas DataFrame (``pd.read_sql``)."""
        import pandas as pd

        con = self._connect()
        try:
            if study is None:
                return pd.read_sql("SELECT * FROM scores", con)
            return pd.read_sql("SELECT * FROM scores WHERE study=?", con, params=(study,))
        finally:
            con.close()

    def cells_frame(self, study: str | None = None):
        import pandas as pd

        con = self._connect()
        try:
            if study is None:
                return pd.read_sql("SELECT * FROM cells", con)
            return pd.read_sql("SELECT * FROM cells WHERE study=?", con, params=(study,))
        finally:
            con.close()

    def throughput(self, encoder: str, device: str | None = None) -> float | None:
        """Measured tokens/s of finished cells of an encoder (sum of tokens / sum of seconds)."""
        sql = ("SELECT SUM(est_tokens), SUM(seconds) FROM cells WHERE status='done' AND encoder=? "
               "AND est_tokens > 0 AND seconds > 0")
        params: tuple[Any, ...] = (encoder,)
        if device is not None:
            sql += " AND device=?"
            params += (device,)
        row = self.query(sql, params)[0]
        if row[0] and row[1]:
            return float(row[0]) / float(row[1])
        return None
