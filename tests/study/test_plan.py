"""The plan: each (encoder, setting, seed) phase-1 node once, reused by every target."""

from __future__ import annotations

from collections import Counter

from xstilts.study.plan import build_plan, default_tokens_per_second, estimate
from xstilts.study.study_config import parse_study


def _study(**kw):
    base = {
        "name": "p", "encoders": ["enc-a", "enc-b"],
        "intermediate": ["none", "conala:generate", "django:generate", {"name": "mix", "tasks": ["conala", "django"]}],
        "targets": ["udpos", "panx", "xnli", "tatoeba", "bucc2018"], "seeds": [1, 2, 3],
    }
    base.update(kw)
    return parse_study(base)


def test_phase1_trained_once_per_encoder_setting_seed_and_reused():
    plan = build_plan(_study())
    counts = plan.counts()
    # 2 encoders x 3 settings with tasks x 3 seeds
    assert counts["intermediate"] == 18
    # targets with English training data: udpos panx xnli; retrieval: tatoeba bucc2018
    assert counts["target"] == 2 * 4 * 3 * 3
    assert counts["retrieval"] == 2 * 4 * 3 * 2
    phase1 = [n for n in plan.nodes if n.phase == "intermediate"]
    keys = Counter((n.encoder, n.setting, n.seed) for n in phase1)
    assert max(keys.values()) == 1
    # every non-baseline target/retrieval node depends on exactly its own phase-1 node
    by_id = plan.by_id()
    users = Counter(n.depends_on for n in plan.nodes if n.depends_on)
    assert set(users) == {n.id for n in phase1}
    assert set(users.values()) == {5}  # reused by all five targets
    for n in plan.nodes:
        if n.depends_on:
            dep = by_id[n.depends_on]
            assert (dep.encoder, dep.setting, dep.seed) == (n.encoder, n.setting, n.seed)
        elif n.phase != "intermediate":
            assert n.setting == "none"
    assert len({n.rel_dir for n in plan.nodes}) == len(plan.nodes)


def test_status_and_estimate_skip_done_nodes(tmp_path):
    plan = build_plan(_study(encoders=["multilingual-e5-small"], seeds=[1]))
    status = plan.status(tmp_path)
    assert set(status.values()) == {"todo"}
    full = estimate(plan, status)
    first = plan.nodes[0]
    d = first.run_dir(tmp_path)
    d.mkdir(parents=True)
    (d / "DONE.json").write_text("{}")
    status = plan.status(tmp_path)
    assert status[first.id] == "done"
    rest = estimate(plan, status)
    rate = default_tokens_per_second("multilingual-e5-small", "cpu")
    assert abs((full.seconds - rest.seconds) - first.est_tokens / rate) < 1e-6
    assert "default" in rest.source["multilingual-e5-small"]


def test_budget_caps_shrink_the_estimate():
    capped = build_plan(_study(budgets={"target": {"max_steps": 10}}, hyperparameters={"target": {"batch_size": 8}}))
    free = build_plan(_study())
    c = {n.id: n.est_tokens for n in capped.nodes if n.phase == "target"}
    f = {n.id: n.est_tokens for n in free.nodes if n.phase == "target"}
    assert all(c[k] < f[k] for k in c)


REPO = __import__("pathlib").Path(__file__).resolve().parents[2]


def test_paper_config_trains_each_intermediate_checkpoint_once_per_seed():
    from xstilts.study.study_config import load_study

    study = load_study(REPO / "configs" / "paper.yaml")
    plan = build_plan(study)
    settings = [s for s in study.intermediate if not s.is_none]
    nlu = {s.name for s in settings if s.family == "nlu"}
    assert nlu == {"anli_plus", "mnli", "qqp", "squad_v1", "squad_v2", "hellaswag", "cosmosqa", "commonsenseqa", "ccg"}
    assert {s.family for s in settings} == {"nlu", "code"}
    assert len(study.targets) == 9 and study.seeds == (1, 2, 3)
    phase1 = [n for n in plan.nodes if n.phase == "intermediate"]
    assert len(phase1) == len(settings) * 3
    assert Counter((n.setting, n.seed) for n in phase1) == Counter({(s.name, seed): 1 for s in settings for seed in (1, 2, 3)})
    users = Counter(n.depends_on for n in plan.nodes if n.depends_on)
    assert set(users.values()) == {9}


def test_ready_configs_validate_and_print_a_plan(tmp_path):
    from typer.testing import CliRunner

    from xstilts.cli import app
    from xstilts.errors import MissingDataError

    runner = CliRunner()
    for name in ("paper", "code-vs-nlu", "demo"):
        result = runner.invoke(app, ["study", str(REPO / "configs" / f"{name}.yaml"), "--dry-run",
                                     "--out", str(tmp_path / name)])
        # no data folder: the plan is printed, then the dry run refuses as the study would (a
        # MissingDataError, which xstilts.cli.main prints as one line with exit status 2)
        assert isinstance(result.exception, MissingDataError), result.output
        assert "intermediate training" in result.output and "est. compute" in result.output
        assert "the study needs a data folder" in str(result.exception)
    assert not any((tmp_path / n).exists() for n in ("paper", "code-vs-nlu", "demo"))  # a dry run writes nothing
