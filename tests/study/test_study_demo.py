"""The demo command: its config, and what it says when data or the model is missing."""

from __future__ import annotations

from pathlib import Path

from xstilts.cli import main
from xstilts.commands.demo import demo_config_path, needed_data
from xstilts.study.study_config import load_study

REPO = Path(__file__).resolve().parents[2]


def test_packaged_demo_config_is_identical_to_configs_demo():
    assert (REPO / "xstilts" / "study" / "demo.yaml").read_bytes() == (REPO / "configs" / "demo.yaml").read_bytes()
    assert demo_config_path() == REPO / "configs" / "demo.yaml"


def test_demo_config_is_the_question_in_small():
    study = load_study(demo_config_path())
    assert study.encoders == ("multilingual-e5-small",)
    fams = {s.name: s.family for s in study.intermediate}
    assert fams["none"] == "none" and "code" in fams.values() and "nlu" in fams.values()
    code = [s for s in study.intermediate if s.family == "code"][0]
    assert code.tasks[0].task in ("conala", "django") and code.tasks[0].formulation == "generate"
    nlu = [s for s in study.intermediate if s.family == "nlu"][0]
    assert nlu.tasks[0].task in ("cosmosqa", "commonsenseqa")
    assert set(study.targets) == {"udpos", "panx", "tatoeba"}
    assert study.executor.kind == "local" and study.executor.gpus == 0
    assert study.budgets.describe()  # capped, and the report says so
    needs = {(t, s) for t, s, _ in needed_data(study)}
    assert {("udpos", "train"), ("panx", "train"), ("panx", "dev"), ("tatoeba", "test")} <= needs


def test_demo_without_data_says_exactly_what_is_missing(tmp_path, capsys):
    empty = tmp_path / "data"
    empty.mkdir()
    assert main(["demo", "--data-dir", str(empty), "--out", str(tmp_path / "out"), "--no-get-model"]) == 2
    err = capsys.readouterr().err
    assert "the demo cannot find:" in err
    for what in ("udpos train", "panx dev", "tatoeba test", "conala train", "commonsenseqa dev"):
        assert what in err
    assert "udpos/train-{lang}.tsv" in err
    assert main(["demo", "--data-dir", str(tmp_path / "nowhere"), "--no-get-model"]) == 2
    assert "data folder not found" in capsys.readouterr().err


def test_demo_without_the_model_says_how_to_get_it(shared_data, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XSTILTS_HOME", str(tmp_path / "home"))
    code = main(["demo", "--data-dir", str(shared_data), "--out", str(tmp_path / "out"), "--no-get-model"])
    assert code == 2
    err = capsys.readouterr().err
    assert "xstilts model get multilingual-e5-small" in err
    assert not (tmp_path / "out").exists()


def test_run_config_for_a_node_caps_budgets_and_carries_the_phase1_encoder(tmp_path):
    from xstilts.study.cells import node_config_hashes, run_config_for
    from xstilts.study.executors import StudyContext
    from xstilts.study.plan import build_plan
    from xstilts.study.run_config import load_run_config

    study = load_study(demo_config_path())
    plan = build_plan(study)
    ctx = StudyContext(plan, tmp_path, Path("/data"), None, "v", node_config_hashes(plan))
    by_id = plan.by_id()
    p1 = load_run_config(run_config_for(ctx.request(by_id["multilingual-e5-small/commonsenseqa/s1/phase1"])))
    assert p1.target is None and p1.intermediate.tasks[0].train_split == "dev"
    assert p1.hyperparameters.intermediate.max_steps == 120  # 960 examples seen / batch 8, for every setting
    p1_code = load_run_config(run_config_for(ctx.request(by_id["multilingual-e5-small/conala-generate/s1/phase1"])))
    assert p1_code.hyperparameters.intermediate.max_steps == 120
    panx = load_run_config(run_config_for(ctx.request(by_id["multilingual-e5-small/conala-generate/s1/panx"])))
    assert panx.encoder_dir == str(tmp_path / "runs/multilingual-e5-small/conala-generate/s1/phase1/encoder")
    assert panx.intermediate is None and panx.eval_split == "dev" and panx.eval_max_examples == 50
    t = panx.hyperparameters.target
    assert (t.max_examples, t.epochs, t.batch_size, t.grad_accum) == (2000, 2, 16, 1)
    base = load_run_config(run_config_for(ctx.request(by_id["multilingual-e5-small/none/s1/tatoeba"])))
    assert base.encoder_dir is None and base.languages == ["de", "es", "fr", "ru", "tr", "fi", "ja", "zh"]
