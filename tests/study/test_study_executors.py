"""Executors with a fake unit of work: reuse, skip, resume, failure recording, exit status."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from xstilts.study.executors import LocalExecutor
from xstilts.study.runner import run_study
from xstilts.study.study_config import parse_study

LANGS = {"udpos": ["de", "fr"], "tatoeba": ["de", "fr"]}


def fake_value(setting: str, seed: int, lang: str) -> float:
    bonus = {"none": 0.0, "conala:generate": 2.0, "django:generate": -1.0}.get(setting, 0.5)
    return 50.0 + seed + bonus + (3.0 if lang == "de" else 0.0)


def fake_work(req) -> dict:
    """Stands in for the pipeline: logs its call, honours fail/sleep markers, returns scores."""
    study_dir = Path(req.study_dir)
    node = req.node
    key = node.id.replace("/", "__")
    with open(study_dir / "calls.log", "a", encoding="utf-8") as fh:
        fh.write(node.id + "\n")
    if (study_dir / "fail" / key).exists():
        raise RuntimeError(f"boom in {node.id}")
    if (study_dir / "sleep" / key).exists():
        time.sleep(60)
    run_dir = Path(req.run_dir)
    if node.phase == "intermediate":
        (run_dir / "encoder").mkdir(parents=True, exist_ok=True)
        (run_dir / "encoder" / "weights.txt").write_text(node.id)
        return {"metrics": {node.setting.split(":")[0]: {"bleu": 10.0 + node.seed, "exact_match": 1.0,
                                                         "bleu_untrained": 0.5}},
                "device": "cpu"}
    if node.depends_on:  # the phase-1 encoder must be there and be this setting's
        assert Path(req.encoder_dir, "weights.txt").read_text() == node.depends_on
    else:
        assert req.encoder_dir is None
    langs = {lang: {("f1" if node.target == "udpos" else "accuracy"): fake_value(node.setting, node.seed, lang)}
             for lang in node.languages}
    score = sum(next(iter(m.values())) for m in langs.values()) / len(langs)
    scores = {"tasks": {node.target: {"languages": langs, "score": score}}, "xtreme_score": None}
    (run_dir / "scores.json").write_text(__import__("json").dumps(scores))  # as the pipeline's run dir has
    return {"scores": scores, "device": "cpu"}


def study(**kw):
    base = {"name": "fake", "encoders": ["enc"], "intermediate": ["none", "conala:generate", "django:generate"],
            "targets": ["udpos", "tatoeba"], "languages": LANGS, "seeds": [1, 2]}
    base.update(kw)
    return parse_study(base)


def calls(study_dir: Path) -> list[str]:
    p = study_dir / "calls.log"
    return p.read_text().split() if p.exists() else []


def test_sequential_run_reuses_phase1_and_rerun_skips_everything(tmp_path):
    s = study()
    run = run_study(s, tmp_path, work=fake_work, executor=LocalExecutor())
    assert run.exit_status == 0
    made = calls(tmp_path)
    assert len(made) == 4 + 12  # 2 settings x 2 seeds phase-1 + 3 settings x 2 seeds x 2 targets
    assert len([c for c in made if c.endswith("/phase1")]) == 4
    assert len(set(made)) == len(made)  # nothing ran twice
    # a second identical run trains nothing
    run2 = run_study(s, tmp_path, work=fake_work, executor=LocalExecutor())
    assert run2.exit_status == 0 and len(calls(tmp_path)) == 16
    assert {o.status for o in run2.outcomes.values()} == {"skipped-done"}
    import sqlite3

    import pandas as pd
    con = sqlite3.connect(tmp_path / "results.sqlite")
    df = pd.read_sql("SELECT * FROM scores", con)
    cells = pd.read_sql("SELECT * FROM cells", con)
    assert set(cells.status) == {"done"} and len(cells) == 16
    row = df[(df.cell == "enc/conala-generate/s2/udpos") & (df.language == "de") & (df.metric == "score")]
    assert row.value.tolist() == [fake_value("conala:generate", 2, "de")]
    assert set(df[df.cell == "enc/conala-generate/s2/udpos"].family) == {"code"}
    avg = df[(df.cell == "enc/none/s1/tatoeba") & (df.language == "avg")].value.item()
    assert avg == pytest.approx((fake_value("none", 1, "de") + fake_value("none", 1, "fr")) / 2)
    p1 = df[df.phase == "intermediate"]
    assert set(p1.metric) == {"bleu", "exact_match", "bleu_untrained"} and len(p1) == 12
    assert df.code_version.notna().all() and df.config_hash.notna().all()


def test_failing_cells_are_recorded_and_the_rest_go_on(tmp_path):
    (tmp_path / "fail").mkdir()
    (tmp_path / "fail" / "enc__conala-generate__s1__phase1").touch()  # takes its 2 targets with it
    (tmp_path / "fail" / "enc__none__s2__udpos").touch()
    run = run_study(study(), tmp_path, work=fake_work, executor=LocalExecutor())
    failed = sorted(o.node_id for o in run.failed)
    assert failed == ["enc/conala-generate/s1/phase1", "enc/conala-generate/s1/tatoeba",
                      "enc/conala-generate/s1/udpos", "enc/none/s2/udpos"]
    assert run.exit_status == 4
    tb = (tmp_path / "runs/enc/none/s2/udpos/error.txt").read_text()
    assert "Traceback" in tb and "RuntimeError: boom in enc/none/s2/udpos" in tb
    from xstilts.study.store import ResultStore
    cells = ResultStore(tmp_path / "results.sqlite").cell_status("fake")
    assert cells["enc/none/s2/udpos"]["error"] == "RuntimeError: boom in enc/none/s2/udpos"
    assert cells["enc/conala-generate/s1/udpos"]["error"] == "phase-1 node enc/conala-generate/s1/phase1 failed"
    assert sum(c["status"] == "done" for c in cells.values()) == 12
    # fix the cause and run again: only the failed four run
    for f in (tmp_path / "fail").iterdir():
        f.unlink()
    before = len(calls(tmp_path))
    run2 = run_study(study(), tmp_path, work=fake_work, executor=LocalExecutor())
    assert run2.exit_status == 0
    assert sorted(calls(tmp_path)[before:]) == sorted(
        ["enc/conala-generate/s1/phase1", "enc/conala-generate/s1/udpos", "enc/conala-generate/s1/tatoeba",
         "enc/none/s2/udpos"])


def test_exit_status_is_capped_at_125(tmp_path):
    from xstilts.study.cells import NodeOutcome
    from xstilts.study.runner import StudyRun
    run = StudyRun({str(i): NodeOutcome(str(i), "failed") for i in range(300)}, tmp_path)
    assert run.exit_status == 125


def test_changed_config_reruns_only_affected_nodes(tmp_path):
    run_study(study(), tmp_path, work=fake_work, executor=LocalExecutor())
    n = len(calls(tmp_path))
    run_study(study(budgets={"target": {"max_steps": 5}}), tmp_path, work=fake_work, executor=LocalExecutor())
    new = calls(tmp_path)[n:]
    assert new and not any(c.endswith("/phase1") for c in new)  # phase-1 budgets unchanged
    assert not any(c.endswith("/tatoeba") for c in new)  # retrieval has no phase-2 budget
    assert len(new) == 6


def test_changed_code_default_reruns_only_affected_nodes(tmp_path, monkeypatch):
    """A default changed in the code (not in the study) is no reason to reuse a result computed
    under the old one: the nodes it decides rerun, the others are reused."""
    from xstilts.study import run_config

    run_study(study(), tmp_path, work=fake_work, executor=LocalExecutor())
    n = len(calls(tmp_path))
    monkeypatch.setitem(run_config.TARGET_DEFAULTS, "tagging", {**run_config.TARGET_DEFAULTS["tagging"], "epochs": 3})
    run_study(study(), tmp_path, work=fake_work, executor=LocalExecutor())
    new = calls(tmp_path)[n:]
    assert sorted(new) == sorted(c for c in calls(tmp_path)[:n] if c.endswith("/udpos"))  # 3 settings x 2 seeds
    assert len(new) == 6
    n = len(calls(tmp_path))
    monkeypatch.setitem(run_config.INTERMEDIATE_DEFAULTS, "learning_rate", 3e-5)
    run_study(study(), tmp_path, work=fake_work, executor=LocalExecutor())
    new = calls(tmp_path)[n:]
    assert new and all("/none/" not in c for c in new)  # no phase 1 behind them
    assert len([c for c in new if c.endswith("/phase1")]) == 4  # 2 code settings x 2 seeds
    assert len(new) == 4 * 3  # and every cell on those encoders, retrieval included
    n = len(calls(tmp_path))
    monkeypatch.setitem(run_config.RETRIEVAL_DEFAULTS, "mixed_precision", "no")
    run_study(study(), tmp_path, work=fake_work, executor=LocalExecutor())
    new = calls(tmp_path)[n:]
    assert len(new) == 6 and all(c.endswith("/tatoeba") for c in new)  # 3 settings x 2 seeds


KILL_SCRIPT = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    from test_study_executors import fake_work, study
    from xstilts.study.executors import LocalExecutor
    from xstilts.study.runner import run_study
    run = run_study(study(), {out!r}, work=fake_work, executor=LocalExecutor())
    sys.exit(run.exit_status)
""")


def test_killed_study_resumes_without_redoing_finished_cells(tmp_path):
    out = tmp_path / "study"
    (out / "sleep").mkdir(parents=True)
    marker = out / "sleep" / "enc__conala-generate__s2__udpos"
    marker.touch()
    script = KILL_SCRIPT.format(tests=str(Path(__file__).resolve().parent), out=str(out))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-c", script], env=env)
    deadline = time.time() + 60
    while "enc/conala-generate/s2/udpos" not in calls(out):
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = {c for c in calls(out)} - {"enc/conala-generate/s2/udpos"}
    marker.unlink()
    n = len(calls(out))
    rerun = subprocess.run([sys.executable, "-c", script], env=env, timeout=120)
    assert rerun.returncode == 0
    again = calls(out)[n:]
    assert "enc/conala-generate/s2/udpos" in again
    assert not (set(again) & done_before)
    assert len(set(calls(out))) == 16
    from xstilts.study.store import ResultStore
    cells = ResultStore(out / "results.sqlite").cell_status("fake")
    assert len(cells) == 16 and {c["status"] for c in cells.values()} == {"done"}


def test_local_parallel_one_cell_per_worker(tmp_path):
    run = run_study(study(seeds=[1]), tmp_path, work=fake_work, executor=LocalExecutor(gpus=2))
    assert run.exit_status == 0
    assert len(calls(tmp_path)) == 2 + 6
    from xstilts.study.store import ResultStore
    assert len(ResultStore(tmp_path / "results.sqlite").cell_status("fake")) == 8


def test_cli_exit_status_is_the_number_of_failed_cells(tmp_path, capsys):
    import yaml

    from xstilts.cli import main

    cfg = tmp_path / "s.yaml"
    cfg.write_text(yaml.safe_dump({"name": "fake", "encoders": ["enc"], "intermediate": ["none", "conala:generate"],
                                   "targets": ["udpos", "tatoeba"], "languages": LANGS, "seeds": [1]}))
    out = tmp_path / "out"
    (out / "fail").mkdir(parents=True)
    (out / "fail" / "enc__conala-generate__s1__phase1").touch()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    args = ["study", str(cfg), "--out", str(out), "--data-dir", str(tmp_path), "--work", "test_study_executors:fake_work"]
    assert main(args) == 3
    text = capsys.readouterr().out
    assert "FAILED enc/conala-generate/s1/phase1" in text and "RuntimeError: boom" in text
    assert (out / "report.md").is_file() and (out / "report.html").is_file()
    (out / "fail" / "enc__conala-generate__s1__phase1").unlink()
    assert main(args) == 0
    assert "already done enc/none/s1/udpos" in capsys.readouterr().out
    # no data folder: the dry-run prints the plan, then refuses (the real pipeline could read nothing)
    assert main(["study", str(cfg), "--out", str(out), "--dry-run"]) == 2
    captured = capsys.readouterr()
    plan = captured.out
    assert "intermediate training" in plan and "throughput for enc: measured" in plan
    assert "error: the study needs a data folder" in captured.err


def test_phase1_quality_reads_the_pipelines_metrics_json():
    from xstilts.study.executors import phase1_quality

    metrics = {
        "phase1": {
            "quality": {"cosmosqa": {"accuracy": 31.5, "n_examples": 200}},
            "quality_before": {"cosmosqa": {"accuracy": 24.0, "n_examples": 200}},
            "metrics": {"cosmosqa": {"dev_loss": 1.38}},
            "tasks": {"cosmosqa": {"decoder_parameters": 1000}},  # model info, not quality
            "train": {"train_loss": 1.41, "train_seconds": 10.0},
            "sizes": {"cosmosqa": 800},
            "seconds": 12.0,
        },
        "phase2": {"seconds": 3.0},
    }
    assert phase1_quality(metrics) == {"cosmosqa": {"accuracy": 31.5, "n_examples": 200.0, "dev_loss": 1.38,
                                                    "accuracy_untrained": 24.0, "n_examples_untrained": 200.0,
                                                    "train_loss": 1.41}}
    mix = {"phase1": {"train": {"train_loss": 2.0}, "sizes": {"a": 1, "b": 2}}}
    assert phase1_quality(mix) == {"(mixture)": {"train_loss": 2.0}}
    assert phase1_quality({"phase2": {}}) == {}


def test_examples_seen_sets_the_steps_from_each_phase_batch_shape():
    """The same examples-seen budget for every setting: steps = ceil(N / (batch x accumulation)),
    with the study's batch shape or the phase's default (tagging fine-tuning: 8 x 4)."""
    from xstilts.study.cells import run_config_for
    from xstilts.study.executors import StudyContext
    from xstilts.study.plan import build_plan

    s = study(seeds=[1], budgets={"intermediate": {"examples_seen": 100, "max_steps": 1000},
                                  "target": {"examples_seen": 100}},
              hyperparameters={"intermediate": {"batch_size": 8}})
    plan = build_plan(s)
    ctx = StudyContext(plan, Path("/tmp/s"), Path("/tmp/d"), None, "v", {})  # type: ignore[arg-type]
    by_id = {n.id: n for n in plan.nodes}
    p1 = run_config_for(ctx.request(by_id["enc/conala-generate/s1/phase1"]))
    assert p1["hyperparameters"]["intermediate"]["max_steps"] == 13  # ceil(100 / 8)
    tgt = run_config_for(ctx.request(by_id["enc/none/s1/udpos"]))
    assert tgt["hyperparameters"]["target"]["max_steps"] == 4  # ceil(100 / (8 x 4))
    assert "100 training examples seen" in " ".join(s.budgets.describe())


def test_cpu_workers_split_the_cores_and_run_cells_at_once(tmp_path):
    ex = LocalExecutor(workers=2, threads=1)
    assert ex.slots == 2 and LocalExecutor(workers=2).threads == max(1, (os.cpu_count() or 1) // 2)
    run = run_study(study(seeds=[1]), tmp_path, work=fake_work, executor=ex)
    assert run.exit_status == 0 and len(calls(tmp_path)) == 2 + 6
    with pytest.raises(Exception, match="workers must be >= 1"):
        LocalExecutor(workers=0)


def test_a_ray_task_stopped_by_sigterm_is_interrupted_not_failed():
    """Ray wraps a task's exception (RayTaskError with .cause): a SIGTERM-stopped task is found
    inside and re-raised, so the study records the cell as interrupted, not as a dead worker."""
    from xstilts.study.executors import _stopped_cause
    from xstilts.train.signals import StoppedBySignal

    class FakeRayTaskError(Exception):
        def __init__(self, cause):
            super().__init__("task failed")
            self.cause = cause

    stop = StoppedBySignal(signal.SIGTERM, step=7)
    assert _stopped_cause(FakeRayTaskError(stop)) is stop
    assert _stopped_cause(FakeRayTaskError(RuntimeError("boom"))) is None
    assert _stopped_cause(RuntimeError("boom")) is None
