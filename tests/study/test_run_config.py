"""RunConfig: validation messages that say what is allowed, defaults, flags over YAML."""

from __future__ import annotations

from pathlib import Path

import pytest

from xstilts.errors import ConfigError
from xstilts.study.run_config import RunConfig, load_run_config

BASE = {"model": "m", "data_dir": "d", "out": "o"}


def test_unknown_target_lists_the_allowed_ones():
    with pytest.raises(ConfigError, match=r"unknown target task 'udpo'; allowed: bucc2018, mlqa, panx"):
        load_run_config(dict(BASE, target="udpo"))


def test_unknown_intermediate_and_language_and_key(tmp_path):
    with pytest.raises(ConfigError, match=r"intermediate.tasks.0.task: unknown intermediate task 'mnly'; allowed: .*mnli"):
        load_run_config(dict(BASE, target="udpos", intermediate="mnly"))
    with pytest.raises(ConfigError, match=r"languages: udpos test has no language xx; allowed: af ar"):
        load_run_config(dict(BASE, target="udpos", languages=["fr", "xx"]))
    path = tmp_path / "c.yaml"
    path.write_text("model: m\ndata_dir: d\nout: o\ntarget: udpos\nhyperparameters:\n  target:\n    lr: 1\n")
    with pytest.raises(ConfigError, match=r"c.yaml: unknown key 'hyperparameters.target.lr'; allowed keys here: learning_rate"):
        load_run_config(path)
    path.write_text("model: m\ndata_dir: d\nout: o\ntarget: udpos\nepochz: 3\n")
    with pytest.raises(ConfigError, match=r"unknown key 'epochz'; allowed keys here: model, encoder_dir, target"):
        load_run_config(path)
    with pytest.raises(ConfigError, match="eval_split: 'train2' is not a split of panx"):
        load_run_config(dict(BASE, target="panx", eval_split="train2"))
    with pytest.raises(ConfigError, match="nothing to run"):
        load_run_config(dict(BASE))
    with pytest.raises(ConfigError, match="config file not found"):
        load_run_config(tmp_path / "missing.yaml")


def test_defaults_follow_the_reference_scripts_and_overrides_win():
    cfg = RunConfig(**BASE, target="udpos")
    tag = cfg.phase_settings("target", "tagging")
    assert (tag["learning_rate"], tag["batch_size"], tag["grad_accum"], tag["epochs"], tag["max_length"]) == (
        2e-5, 8, 4, 10, 128)
    qa = cfg.phase_settings("target", "qa")
    assert (qa["learning_rate"], qa["max_length"], qa["doc_stride"], qa["epochs"]) == (3e-5, 384, 128, 3)
    inter = cfg.phase_settings("intermediate", "sentence-pair")
    assert (inter["learning_rate"], inter["batch_size"], inter["warmup_ratio"], inter["patience"]) == (1e-5, 4, 0.1, 30)
    assert cfg.phase_settings("intermediate", "qa")["max_length"] == 384
    cfg2 = RunConfig(**BASE, target="udpos", hyperparameters={"target": {"learning_rate": 5e-5, "epochs": 2}})
    tag2 = cfg2.phase_settings("target", "tagging")
    assert tag2["learning_rate"] == 5e-5 and tag2["epochs"] == 2 and tag2["batch_size"] == 8


def test_flags_override_yaml_and_intermediate_forms(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        "model: m\ndata_dir: d\nout: o\ntarget: udpos\nseed: 7\n"
        "intermediate:\n  tasks: [mnli, squad_v1]\n  sampling: temperature\n"
        "hyperparameters:\n  target:\n    learning_rate: 1.0e-5\n    epochs: 4\n"
    )
    cfg = load_run_config(path, seed=2, **{"hyperparameters.target.learning_rate": 5e-5, "out": "o2"})
    assert cfg.seed == 2 and cfg.out == "o2"
    assert cfg.hyperparameters.target.learning_rate == 5e-5 and cfg.hyperparameters.target.epochs == 4
    assert [t.task for t in cfg.intermediate.tasks] == ["mnli", "squad_v1"]
    assert cfg.intermediate.sampling == "temperature" and cfg.intermediate.label == "mnli+squad_v1"
    # "none" removes phase 1; "task:formulation" strings parse
    assert load_run_config(path, intermediate="none").intermediate is None
    code = load_run_config(dict(BASE, target="udpos", intermediate=["conala:generate"]))
    assert code.intermediate.tasks[0].formulation == "generate"


@pytest.mark.parametrize("name", ["django-generate", "cosmosqa"])
def test_check_configs_load(name):
    """configs/checks/*.yaml (the run configs behind the README's intermediate-task figures)."""
    repo = Path(__file__).resolve().parents[2]
    cfg = load_run_config(repo / "configs" / "checks" / f"{name}.yaml")
    assert cfg.intermediate is not None and cfg.target is None and cfg.eval_max_examples


def test_batching_switches_reach_the_trainer():
    from xstilts.study.pipeline import train_config

    cfg = load_run_config(None, model="m", target="udpos", data_dir="d", out="o",
                          hyperparameters={"target": {"group_by_length": True, "mega_batch_mult": 4}})
    tconf = train_config(cfg.phase_settings("target", "tagging"), cfg)
    assert tconf.group_by_length is True and tconf.mega_batch_mult == 4
    default = train_config(load_run_config(None, model="m", target="udpos", data_dir="d", out="o")
                           .phase_settings("target", "tagging"), cfg)
    assert default.group_by_length is False and default.mega_batch_mult == 50  # random batches unless asked
