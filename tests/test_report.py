"""The report: numbers equal the store, the bootstrap on hand-checkable cases, HTML self-contained."""

from __future__ import annotations

import re
import sqlite3
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import test_study_executors as fakes  # noqa: E402

from xstilts.study.executors import LocalExecutor, run_study  # noqa: E402
from xstilts.study.report import paired_bootstrap, write_report  # noqa: E402


def test_bootstrap_constant_differences_collapse_to_the_point():
    a = {(1, "de"): 60.0, (1, "fr"): 70.0, (2, "de"): 61.0}
    b = {(1, "de"): 58.0, (1, "fr"): 68.0, (2, "de"): 59.0, (3, "de"): 0.0}  # (3, de) has no pair
    ci = paired_bootstrap(a, b)
    assert (ci.delta, ci.low, ci.high, ci.n_pairs) == (2.0, 2.0, 2.0, 3)
    assert ci.significant


def test_bootstrap_two_pairs_by_hand():
    # d = {0, 2}: a resampled mean of 2 draws is 0 (p=1/4), 1 (p=1/2) or 2 (p=1/4),
    # so the 2.5th percentile is 0, the 97.5th is 2, and the interval contains 0: not significant.
    ci = paired_bootstrap({1: 10.0, 2: 12.0}, {1: 10.0, 2: 10.0}, n_resamples=20_000)
    assert ci.delta == 1.0 and ci.low == 0.0 and ci.high == 2.0
    assert not ci.significant
    assert paired_bootstrap({1: 1.0}, {2: 1.0}) is None


def test_bootstrap_matches_a_direct_computation():
    rng = np.random.default_rng(5)
    d = rng.normal(1.0, 2.0, size=12)
    a = {i: 50.0 + d[i] for i in range(12)}
    b = {i: 50.0 for i in range(12)}
    ci = paired_bootstrap(a, b, n_resamples=4000, seed=3)
    idx = np.random.default_rng(3).integers(0, 12, size=(4000, 12))
    order = sorted(range(12), key=str)  # pairs are taken in a fixed (string) key order
    means = (np.array([a[i] - b[i] for i in order]))[idx].mean(axis=1)
    assert ci.low == pytest.approx(np.percentile(means, 2.5))
    assert ci.high == pytest.approx(np.percentile(means, 97.5))


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("study")
    s = fakes.study(intermediate=["none", "conala:generate", "django:generate", "cosmosqa"], seeds=[1, 2, 3])
    run_study(s, out, work=fakes.fake_work, executor=LocalExecutor())
    return out


def _table_after(md: str, heading: str) -> list[list[str]]:
    """The first Markdown table after a heading line, as rows of cells (header row included)."""
    lines = md.splitlines()
    start = lines.index(heading)
    rows = []
    for line in lines[start + 1:]:
        if line.startswith("|"):
            if set(line.replace("|", "")) <= {"-"}:
                continue
            rows.append([c.strip() for c in line.strip("|").split("|")])
        elif rows:
            break
    return rows


def test_report_numbers_equal_the_store(study_dir):
    md_path, html_path, _ = write_report(study_dir, task="udpos")
    md = md_path.read_text()
    con = sqlite3.connect(study_dir / "results.sqlite")
    df = pd.read_sql("SELECT * FROM scores WHERE phase='target' AND metric='score'", con)
    avg = df[df.language == "avg"]
    checked = 0
    for target in ("udpos", "tatoeba"):
        rows = _table_after(md, f"### {target}")
        header, body = rows[0], rows[1:]
        assert header[:4] == ["setting", "family", "mean ± std", "Δ"]
        base = avg[(avg.task == target) & (avg.intermediate == "none")].value
        for row in body:
            vals = avg[(avg.task == target) & (avg.intermediate == row[0])].value
            assert row[2] == f"{vals.mean():.2f} ± {vals.std(ddof=1):.2f}"
            if row[0] != "none":
                assert row[3] == f"{vals.mean() - base.mean():+.2f}"
            assert row[5] == str(len(vals))
            checked += 1
    assert checked == 8
    # per-language table: mean over seeds of each language's score
    rows = _table_after(md, "## Per-language breakdown: udpos")
    header = rows[0]
    for row in rows[1:]:
        for setting, cell in zip(header[1:], row[1:]):
            vals = df[(df.task == "udpos") & (df.language == row[0]) & (df.intermediate == setting)].value
            assert cell == f"{vals.mean():.2f}"
    # XTREME score (partial): per seed mean over targets, then mean ± std
    rows = _table_after(md, "## XTREME score per intermediate setting")
    for row in rows[1:]:
        sel = avg[avg.intermediate == row[0]]
        per_seed = sel.groupby("seed").value.mean()
        assert row[2] == f"{per_seed.mean():.2f} ± {per_seed.std(ddof=1):.2f}"
    assert "**Partial**: averaged over the 2 target(s) run" in md
    # intermediate quality
    p1 = pd.read_sql("SELECT * FROM scores WHERE phase='intermediate'", con)
    rows = _table_after(md, "## Intermediate tasks: their own quality (phase 1)")
    assert rows[0][:5] == ["setting", "task", "metric", "untrained", "after phase 1 (mean ± std)"]
    assert not any(row[2].endswith("_untrained") for row in rows[1:])  # shown beside their metric
    for row in rows[1:]:
        vals = p1[(p1.intermediate == row[0]) & (p1.task == row[1]) & (p1.metric == row[2])].value
        assert row[4] == f"{vals.mean():.2f} ± {vals.std(ddof=1):.2f}"
        before = p1[(p1.intermediate == row[0]) & (p1.task == row[1]) & (p1.metric == row[2] + "_untrained")].value
        assert row[3] == (f"{before.mean():.2f} ± {before.std(ddof=1):.2f}" if len(before) else "")
    assert any(row[2] == "bleu" and row[3] == "0.50 ± 0.00" for row in rows[1:])


def test_code_vs_nlu_table(study_dir):
    md_path, _, _ = write_report(study_dir)
    md = md_path.read_text()
    rows = _table_after(md, "## Code generation vs language understanding")
    assert rows[0][:3] == ["target", "NLU mean Δ", "code mean Δ"]
    udpos = next(r for r in rows if r[0] == "udpos")
    # fake values: conala +2, django -1, cosmosqa (any other) +0.5 on every (seed, language)
    assert udpos[1] == "+0.50" and udpos[2] == "+0.50"
    assert udpos[3] == "cosmosqa (+0.50)" and udpos[4] == "conala:generate (+2.00)"
    assert udpos[5] == "+0.00" and udpos[6] == "[+0.00, +0.00]"


def test_html_is_self_contained_with_embedded_figure(study_dir):
    _, html_path, report = write_report(study_dir)
    page = html_path.read_text()
    assert "data:image/png;base64," in page
    assert not re.search(r"<img[^>]+src=['\"](?!data:)", page)
    assert "<table>" in page and "Key table" in page
    assert (study_dir / "figures" / "heatmap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert report.key_table.headers[-1] == "mean of targets (partial XTREME)"


def test_report_without_store_says_what_to_do(tmp_path):
    from xstilts.errors import MissingDataError
    with pytest.raises(MissingDataError, match="xstilts study CONFIG.yaml"):
        write_report(tmp_path)


def test_report_checks_the_store_against_the_run_directories(tmp_path):
    s = fakes.study(seeds=[1], intermediate=["none", "conala:generate"])
    run_study(s, tmp_path, work=fakes.fake_work, executor=LocalExecutor())
    md = write_report(tmp_path)[0].read_text()
    assert "Checked: the store equals the `scores.json` of all 4 finished run directories." in md
    con = sqlite3.connect(tmp_path / "results.sqlite")
    con.execute("UPDATE scores SET value = value + 1 WHERE cell='enc/none/s1/udpos' AND language='de' AND metric='f1'")
    con.commit()
    md = write_report(tmp_path)[0].read_text()
    assert "**Warning**: 1 store value(s) differ from the run directories: enc/none/s1/udpos udpos de f1" in md


def test_xlmr_large_studies_show_published_numbers_with_sources(tmp_path):
    s = fakes.study(encoders=["FacebookAI/xlm-roberta-large"], seeds=[1], intermediate=["none", "conala:generate"])
    run_study(s, tmp_path, work=fakes.fake_work, executor=LocalExecutor())
    md = write_report(tmp_path)[0].read_text()
    rows = _table_after(md, "## Published numbers side by side (XLM-R Large)")
    assert rows[0][:3] == ["target", "ours: none", "ours: best setting"]
    tatoeba = next(r for r in rows if r[0] == "tatoeba")
    assert tatoeba[3] == "57.30" and tatoeba[4] == "n/a"  # XLM-R published; X-STILTs not confirmed
    udpos = next(r for r in rows if r[0] == "udpos")
    assert udpos[3] == "n/a"  # unsure of the published figure: not shown
    assert "Hu et al. 2020" in md and "Phang et al. 2020" in md
    assert "Published numbers" not in write_report(_other_study(tmp_path))[0].read_text()


def _other_study(tmp_path):
    out = tmp_path / "small"
    run_study(fakes.study(seeds=[1], intermediate=["none"]), out, work=fakes.fake_work, executor=LocalExecutor())
    return out
