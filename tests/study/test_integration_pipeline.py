"""Integration: phase-1 quality of an NLU intermediate task reaches metrics.json, the study store
and the report; tokenised training features are cached and shared across runs."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from conftest import shared_file  # noqa: E402
from test_pipeline import UDPOS, head_sentences  # noqa: E402

CSQA = "commonsenseqa/dev_rand_split.jsonl"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """20 real CommonsenseQA questions, a UDPOS slice and a tiny XLM-R covering their words."""
    from xstilts.models.tiny import build_tiny_model

    root = tmp_path_factory.mktemp("integration")
    data = root / "data"
    lines = shared_file(CSQA).read_text(encoding="utf-8").splitlines()[:20]
    (data / "commonsenseqa").mkdir(parents=True)
    (data / "commonsenseqa" / "dev_rand_split.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    words = []
    for line in lines:
        rec = json.loads(line)
        words.append(rec["question"])  # the hub schema: question text, choices {label, text}
        words += rec["choices"]["text"]
    for name, n in (("train-en", 24), ("dev-en", 6), ("test-fr", 6)):
        words += [" ".join(s) for s in head_sentences(shared_file(f"{UDPOS}/{name}.tsv"), data / "udpos" / f"{name}.tsv", n)]
    model_dir = root / "tiny"
    build_tiny_model(model_dir, extra_text=words, hidden_size=32, num_layers=2, vocab_size=1200)
    return {"data": data, "model": model_dir, "root": root}


HP = {"intermediate": {"learning_rate": 1e-3, "batch_size": 4, "max_steps": 3, "eval_every": 0},
      "target": {"learning_rate": 1e-3, "batch_size": 8, "grad_accum": 1, "max_steps": 2}}


def test_nlu_intermediate_quality_in_metrics_json(world, tmp_path, monkeypatch):
    from xstilts.evaluation import metrics_nlu
    from xstilts.study.pipeline import run_pipeline
    from xstilts.study.run_config import load_run_config

    scored: dict = {}
    real = metrics_nlu.score_intermediate

    def spy(task, gold, predictions):
        out = real(task, gold, predictions)
        scored.update(gold=[ex.label for ex in gold], predictions=list(predictions), out=out)
        return out

    monkeypatch.setattr(metrics_nlu, "score_intermediate", spy)
    cfg = load_run_config(
        None, model=str(world["model"]), data_dir=str(world["data"]), out=str(tmp_path / "run"), progress=False,
        intermediate={"tasks": [{"task": "commonsenseqa", "train_split": "dev", "heldout": 6}]},
        eval_max_examples=4, hyperparameters=HP,
    )
    run = run_pipeline(cfg)
    phase1 = json.loads((run / "metrics.json").read_text())["phase1"]
    assert phase1["sizes"] == {"commonsenseqa": 14}
    assert phase1["tasks"]["commonsenseqa"]["quality_examples"] == 4  # the last 6 held out, capped at 4
    quality = phase1["quality"]["commonsenseqa"]
    # the gold of the held-out questions (15th..18th of the file), read straight from the JSONL
    letters = [json.loads(l)["answerKey"] for l in (world["data"] / "commonsenseqa" / "dev_rand_split.jsonl")
               .read_text().splitlines()[14:18]]
    assert scored["gold"] == ["ABCDE".index(k) for k in letters]
    hits = sum(int(p) == g for p, g in zip(scored["predictions"], scored["gold"]))
    assert quality == {"accuracy": pytest.approx(100.0 * hits / 4)}
    assert all(0 <= int(p) < 5 for p in scored["predictions"])


def test_study_records_and_reports_nlu_quality_and_shares_the_feature_cache(world, tmp_path, monkeypatch):
    from xstilts.data import feature_cache
    from xstilts.data import features as F
    from xstilts.study.executors import LocalExecutor
    from xstilts.study.report import write_report
    from xstilts.study.runner import run_study
    from xstilts.study.study_config import parse_study

    calls: list[tuple[str, int]] = []
    real = F.featurize

    def spy(task, examples, tokenizer, **kw):
        if kw.get("for_training"):
            calls.append((getattr(task, "name", task), len(examples)))
        return real(task, examples, tokenizer, **kw)

    monkeypatch.setattr(feature_cache, "featurize", spy)  # where training features are made

    def study(seeds):
        return parse_study({
            "name": "integration", "encoders": [str(world["model"])],
            "intermediate": ["none", {"name": "csqa", "tasks": [
                {"task": "commonsenseqa", "train_split": "dev", "heldout": 6}]}],
            "targets": ["udpos"], "languages": {"udpos": ["fr"]}, "seeds": seeds,
            "budgets": {"eval_max_examples": 4}, "hyperparameters": HP,
        })

    run = run_study(study([1]), tmp_path / "study", data_dir=world["data"], executor=LocalExecutor())
    assert not run.failed, [o.error for o in run.failed]
    cache = tmp_path / "study" / "cache"
    entries = sorted(cache.glob("features-*.pkl"))
    # phase 1: CSQA train + held-out dev features; phase 2: one UDPOS entry for both cells
    # (the 'none' and the CSQA cell tokenise the same 24 English sentences with the same tokenizer)
    assert len(entries) == 3
    assert sorted(calls) == sorted([("commonsenseqa", 14), ("commonsenseqa", 6), ("udpos", 24)])
    # a second seed: same examples, same tokenizer, same settings -> no re-tokenisation at all
    calls.clear()
    run = run_study(study([1, 2]), tmp_path / "study", data_dir=world["data"], executor=LocalExecutor())
    assert not run.failed, [o.error for o in run.failed]
    assert calls == [] and sorted(cache.glob("features-*.pkl")) == entries
    # a cached entry is exactly what a fresh featurize gives
    from xstilts.data.readers import read_examples
    from xstilts.models.loading import load_encoder

    _, tok = load_encoder(str(world["model"]))
    train = read_examples("udpos", world["data"], "train", "en")
    fresh = real("udpos", train, tok, for_training=True, max_length=128, labels=None)
    cached = [pickle.loads(p.read_bytes()) for p in entries]
    assert any(c == fresh for c in cached)

    # the store and the report carry phase-1 accuracy for the CSQA setting, for both seeds
    md_path, _, _ = write_report(tmp_path / "study")
    md = Path(md_path).read_text()
    section = md.split("Intermediate tasks: their own quality (phase 1)")[1]
    row = next(l for l in section.splitlines() if l.startswith("| csqa") and "accuracy" in l)
    assert "commonsenseqa" in row and "| 2 |" in row


def _tatoeba_slice(world) -> Path:
    folder = world["data"] / "tatoeba" / "v1"
    folder.mkdir(parents=True, exist_ok=True)
    for ext in ("deu", "eng"):
        lines = shared_file(f"tatoeba/v1/tatoeba.deu-eng.{ext}").read_text(encoding="utf-8").splitlines()[:30]
        (folder / f"tatoeba.deu-eng.{ext}").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def test_tatoeba_eval_cap_searches_the_first_pairs_only(world, tmp_path):
    """With eval_max_examples, Tatoeba embeds the first N pairs and searches among those N."""
    import numpy as np

    from xstilts.evaluation.retrieval import embed
    from xstilts.models.loading import load_encoder
    from xstilts.study.pipeline import run_pipeline
    from xstilts.study.run_config import load_run_config

    folder = _tatoeba_slice(world)
    cfg = load_run_config(None, model=str(world["model"]), data_dir=str(world["data"]), out=str(tmp_path / "run"),
                          target="tatoeba", languages=["de"], eval_max_examples=7, progress=False)
    run = run_pipeline(cfg)
    labels = (run / "labels" / "tatoeba" / "test-de.tsv").read_text().split()
    assert labels == [str(i) for i in range(7)]  # Tatoeba pairs line i with line i
    # by hand: nearest German sentence (among the first 7) of each of the first 7 English ones
    enc, tok = load_encoder(str(world["model"]))
    enc.eval()
    de = (folder / "tatoeba.deu-eng.deu").read_text(encoding="utf-8").splitlines()[:7]
    en = (folder / "tatoeba.deu-eng.eng").read_text(encoding="utf-8").splitlines()[:7]
    want = np.argmax(embed(enc, tok, en, max_length=512, progress=False)
                     @ embed(enc, tok, de, max_length=512, progress=False).T, axis=1)
    preds = (run / "predictions" / "tatoeba" / "test-de.tsv").read_text().split()
    assert preds == [str(int(i)) for i in want]
    score = json.loads((run / "scores.json").read_text())["tasks"]["tatoeba"]["languages"]["de"]
    assert list(score.values())[0] == pytest.approx(100.0 * sum(int(p) == i for i, p in enumerate(preds)) / 7)


def test_torch_threads_apply_to_the_run_only(world, tmp_path, monkeypatch):
    from xstilts.study import pipeline as P
    from xstilts.study.run_config import load_run_config

    _tatoeba_slice(world)
    seen = []
    real = P.Pipeline.phase3
    monkeypatch.setattr(P.Pipeline, "phase3", lambda self, *a: seen.append(torch.get_num_threads()) or real(self, *a))
    before = torch.get_num_threads()
    want = 2 if before != 2 else 1
    cfg = load_run_config(None, model=str(world["model"]), data_dir=str(world["data"]), out=str(tmp_path / "run"),
                          target="tatoeba", languages=["de"], eval_max_examples=3, progress=False,
                          torch_threads=want)
    P.run_pipeline(cfg)
    assert seen == [want] and torch.get_num_threads() == before


def test_head_lr_scale_gives_the_fresh_head_its_own_rate(world):
    from xstilts.data.readers import read_examples
    from xstilts.models.loading import load_encoder
    from xstilts.tasks import get_task
    from xstilts.train.formulations import FormulationInput, build_head_part
    from xstilts.train.loop import parameter_groups

    enc, tok = load_encoder(str(world["model"]))
    task = get_task("commonsenseqa")
    ex = read_examples(task, world["data"], "dev", "en")
    part = build_head_part(FormulationInput(task=task, encoder=enc, tokenizer=tok, train_examples=ex[:4],
                                            dev_examples=ex[4:6], settings={"max_length": 64, "head_lr_scale": 10}))
    groups = parameter_groups(part.model, weight_decay=0.01, lr=2e-5)
    fast = {id(p) for g in groups if g.get("lr") == pytest.approx(2e-4) for p in g["params"]}
    assert fast == {id(p) for p in part.model.head.parameters()} and fast
    assert part.evaluate is not None and part.info["quality_examples"] == 2


def test_cpu_workers_give_the_sequential_scores_with_budgets_and_trivial_references(world, tmp_path):
    """Two CPU worker processes run the real pipeline to the same numbers as one process; the
    examples_seen budget fixes phase 1's steps; every target cell carries its trivial reference."""
    import sqlite3

    import pandas as pd

    from xstilts.evaluation.trivial import trivial_scores
    from xstilts.study.executors import LocalExecutor
    from xstilts.study.runner import make_executor, run_study
    from xstilts.study.study_config import parse_study

    hp = {"intermediate": {k: v for k, v in HP["intermediate"].items() if k != "max_steps"},
          "target": HP["target"]}
    spec = {
        "name": "workers", "encoders": [str(world["model"])],
        "intermediate": ["none", {"name": "csqa", "tasks": [
            {"task": "commonsenseqa", "train_split": "dev", "heldout": 6}]}],
        "targets": ["udpos"], "languages": {"udpos": ["fr"]}, "seeds": [1, 2],
        "budgets": {"eval_max_examples": 4, "intermediate": {"examples_seen": 18}}, "hyperparameters": hp,
        "executor": {"workers": 2},
    }
    study = parse_study(spec)
    two = make_executor(study)
    assert isinstance(two, LocalExecutor) and two.slots == 2
    frames = {}
    for name, executor in (("one", LocalExecutor()), ("two", two)):
        run = run_study(study, tmp_path / name, data_dir=world["data"], executor=executor)
        assert not run.failed, [o.error for o in run.failed]
        con = sqlite3.connect(tmp_path / name / "results.sqlite")
        frames[name] = pd.read_sql("SELECT cell, task, language, metric, value FROM scores", con).sort_values(
            ["cell", "task", "language", "metric"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(frames["one"], frames["two"])
    df = frames["two"]
    budget = df[df.task == "(budget)"]
    assert budget.cell.nunique() == 2  # one phase-1 run per seed
    for cell, rows in budget.groupby("cell"):  # ceil(18 / batch 4) = 5 steps = 20 examples, of 14 questions
        assert dict(zip(rows.metric, rows.value)) == {"steps": 5, "examples_seen": 20, "train_features": 14}
    trivial = df[(df.metric == "trivial") & (df.language == "fr")]
    assert len(trivial) == 4  # 2 settings x 2 seeds
    run_dir = next((tmp_path / "two" / "runs").rglob("labels"))
    from xstilts.data.readers import read_examples

    expected = trivial_scores("udpos", run_dir, read_examples("udpos", world["data"], "train", "en"))
    assert set(trivial.value) == {expected["languages"]["fr"]}


def test_ray_and_submitit_jobs_run_the_real_pipeline_to_the_local_scores(world, tmp_path, monkeypatch):
    """The same small study (tiny model, real pipeline) through the local executor, submitit's
    local jobs (the SLURM executor's code path) and a local Ray cluster: identical result stores."""
    import sqlite3

    import pandas as pd

    ray = pytest.importorskip("ray")
    pytest.importorskip("submitit")
    from xstilts.study.executors import LocalExecutor, RayExecutor
    from xstilts.study.runner import run_study
    from xstilts.study.slurm import SlurmExecutor
    from xstilts.study.study_config import parse_study

    spec = {
        "name": "executors", "encoders": [str(world["model"])],
        "intermediate": ["none", {"name": "csqa", "tasks": [
            {"task": "commonsenseqa", "train_split": "dev", "heldout": 6}]}],
        "targets": ["udpos"], "languages": {"udpos": ["fr"]}, "seeds": [1],
        "budgets": {"eval_max_examples": 4}, "hyperparameters": HP,
    }
    study = parse_study(spec)
    # job processes and Ray workers import xstilts from this checkout
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(Path(__file__).resolve().parents[2]),
                                                      os.environ.get("PYTHONPATH", "")]))
    executors = {
        "local": lambda: LocalExecutor(),
        "submitit": lambda: SlurmExecutor(cluster="local", cpus_per_cell=1, poll_s=0.5, time_min=30),
        "ray": lambda: RayExecutor(init_kwargs={"num_cpus": 2, "include_dashboard": False,
                                                "log_to_driver": False}),
    }
    frames = {}
    for name, make in executors.items():
        if name == "ray" and ray.is_initialized():
            ray.shutdown()
        run = run_study(study, tmp_path / name, data_dir=world["data"], executor=make())
        assert not run.failed, (name, [o.error for o in run.failed])
        con = sqlite3.connect(tmp_path / name / "results.sqlite")
        frames[name] = pd.read_sql("SELECT cell, task, language, metric, value FROM scores", con).sort_values(
            ["cell", "task", "language", "metric"]).reset_index(drop=True)
        con.close()
    assert len(frames["local"]) > 10 and set(frames["local"].task) >= {"udpos", "commonsenseqa"}
    pd.testing.assert_frame_equal(frames["local"], frames["submitit"])
    pd.testing.assert_frame_equal(frames["local"], frames["ray"])


@pytest.mark.slow
def test_a_cell_on_two_processes_trains_with_ddp_and_counts_both_in_its_budget(world, tmp_path, monkeypatch):
    """processes_per_cell: 2 launches each training cell as two DDP processes (torchrun, gloo on
    the CPU): phase 1 and phase 2 train on both, rank 0 writes and scores; examples_seen counts
    both processes' batches, so the same budget means half the steps."""
    import sqlite3

    import pandas as pd

    from xstilts.study.executors import LocalExecutor
    from xstilts.study.runner import LAUNCH_LOG, run_study
    from xstilts.study.study_config import parse_study

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(Path(__file__).resolve().parents[2]),
                                                      os.environ.get("PYTHONPATH", "")]))
    hp = {"intermediate": {k: v for k, v in HP["intermediate"].items() if k != "max_steps"},
          "target": HP["target"]}
    spec = {
        "name": "ddp", "encoders": [str(world["model"])],
        "intermediate": [{"name": "csqa", "tasks": [{"task": "commonsenseqa", "train_split": "dev", "heldout": 6}]}],
        "targets": ["udpos"], "languages": {"udpos": ["fr"]}, "seeds": [1],
        "budgets": {"eval_max_examples": 4, "intermediate": {"examples_seen": 18}}, "hyperparameters": hp,
        "executor": {"processes_per_cell": 2},
    }
    run = run_study(parse_study(spec), tmp_path, data_dir=world["data"], executor=LocalExecutor())
    assert not run.failed, [o.error for o in run.failed]
    con = sqlite3.connect(tmp_path / "results.sqlite")
    df = pd.read_sql("SELECT cell, task, language, metric, value FROM scores", con)
    con.close()
    budget = dict(zip(df[df.task == "(budget)"].metric, df[df.task == "(budget)"].value))
    assert budget == {"steps": 3, "examples_seen": 24, "train_features": 14}  # ceil(18 / (4 x 2)) steps
    fr = df[(df.task == "udpos") & (df.language == "fr") & (df.metric == "f1")]
    assert len(fr) == 1 and 0 <= fr.value.iloc[0] <= 100
    logs = sorted(tmp_path.rglob(LAUNCH_LOG))
    assert len(logs) == 2  # phase 1 and the target cell, each a torchrun launch
    metrics = json.loads((tmp_path / "runs" / "tiny" / "csqa" / "s1" / "phase1" / "metrics.json").read_text())
    assert metrics["phase1"]["planner"]["world_size"] == 2
    # sharding: fsdp (FSDP2 over the same two processes): the same budget, the same scores to rounding
    spec["executor"] = {"processes_per_cell": 2, "sharding": "fsdp"}
    sharded = run_study(parse_study(spec), tmp_path / "fsdp", data_dir=world["data"], executor=LocalExecutor())
    assert not sharded.failed, [o.error for o in sharded.failed]
    con = sqlite3.connect(tmp_path / "fsdp" / "results.sqlite")
    df_fsdp = pd.read_sql("SELECT cell, task, language, metric, value FROM scores", con)
    con.close()
    assert dict(zip(df_fsdp[df_fsdp.task == "(budget)"].metric, df_fsdp[df_fsdp.task == "(budget)"].value)) == budget
    fr_fsdp = df_fsdp[(df_fsdp.task == "udpos") & (df_fsdp.language == "fr") & (df_fsdp.metric == "f1")]
    assert abs(fr_fsdp.value.iloc[0] - fr.value.iloc[0]) < 1e-6
    launched = (tmp_path / "fsdp" / "runs" / "tiny" / "csqa" / "s1" / "phase1" / "launch.yaml").read_text()
    assert "sharding: fsdp" in launched
