"""Study config validation: what is accepted, and errors that say what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from xstilts.errors import ConfigError
from xstilts.study.study_config import load_study, parse_study

BASE = {"name": "t", "encoders": ["enc"], "intermediate": ["none"], "targets": ["udpos"]}


def _with(**kw):
    return {**BASE, **kw}


def test_shorthand_and_mixture_settings_parse_with_families():
    cfg = parse_study(_with(intermediate=[
        "none",
        "conala:generate",
        "django",  # a code task without formulation defaults to generate
        {"name": "mix", "tasks": ["conala:infill", {"task": "django", "weight": 2}], "sampling": "temperature",
         "temperature": 3.0, "mlm": {"probability": 0.25}},
    ], seeds=[1, 2, 3]))
    names = [s.name for s in cfg.intermediate]
    assert names == ["none", "conala:generate", "django", "mix"]
    assert [s.family for s in cfg.intermediate] == ["none", "code", "code", "code"]
    assert cfg.setting("django").tasks[0].formulation == "generate"
    mix = cfg.setting("mix")
    assert [t.label for t in mix.tasks] == ["conala:infill", "django:generate"]
    assert mix.mlm.probability == 0.25 and mix.sampling == "temperature"
    assert cfg.seeds == (1, 2, 3)


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ({"intermediate": ["none", "conala:gen"]}, "allowed: generate, contrastive, match, infill"),
        ({"intermediate": ["none", "nosuchtask"]}, "unknown intermediate task 'nosuchtask'; allowed:"),
        ({"targets": ["udpos", "squadx"]}, "unknown target task(s) squadx; allowed: xnli, pawsx"),
        ({"budgets": {"target": {"max_stepz": 3}}}, "budgets.target.max_stepz: unknown key; allowed keys: max_steps, epochs, max_examples"),
        ({"bogus": 1}, "bogus: unknown key; allowed keys: name,"),
        ({"languages": {"udpos": ["xx"]}}, "languages xx are not udpos languages; allowed: af ar"),
        ({"hyperparameters": {"target": {"lr": 1e-5}}}, "unknown hyperparameter(s) lr; allowed: learning_rate"),
        ({"executor": {"kind": "kubernetes"}}, "executor.kind"),
        ({"seeds": [1, 1]}, "seeds lists 1 more than once"),
        ({"intermediate": ["none", "none"]}, "names must be unique; repeated: none"),
        ({"budgets": {"target": {"max_steps": 0}}}, "budgets.target.max_steps"),
    ],
)
def test_invalid_configs_say_what_is_allowed(override, needle):
    with pytest.raises(ConfigError) as err:
        parse_study(_with(**override))
    assert needle in str(err.value)


def test_missing_key_is_named():
    with pytest.raises(ConfigError, match="encoders: required key is missing"):
        parse_study({"name": "t", "intermediate": ["none"], "targets": ["udpos"]})


def test_yaml_errors_name_file_and_line(tmp_path: Path):
    path = tmp_path / "s.yaml"
    path.write_text("name: t\nencoders: [a\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"s\.yaml:\d+: not valid YAML"):
        load_study(path)
    with pytest.raises(ConfigError, match="study config not found"):
        load_study(tmp_path / "missing.yaml")


def test_global_language_list_is_intersected_per_target():
    cfg = parse_study(_with(targets=["udpos", "tatoeba"], languages=["de", "en", "yo"]))
    assert cfg.languages_for("udpos") == ("de", "en", "yo")
    assert cfg.languages_for("tatoeba") == ("de",)  # tatoeba has no en or yo


def test_budgets_describe_what_was_capped():
    cfg = parse_study(_with(budgets={"intermediate": {"max_steps": 100}, "target": {"max_examples": 500, "epochs": 1},
                                    "eval_max_examples": 200}))
    text = " | ".join(cfg.budgets.describe())
    assert "phase 1 (intermediate): max 100 steps" in text
    assert "phase 2 (target fine-tuning): 1 epoch(s), first 500 training examples" in text
    assert "at most 200 examples per language" in text
