"""The kind operations objects (xstilts.tasks.kinds): every kind has what its facts promise, and
no code outside xstilts.tasks branches on a kind."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import importlib

from xstilts.errors import ConfigError
from xstilts.tasks import REGISTRY, TaskKind, get_task
from xstilts.tasks.kinds import HEAD_KINDS, KINDS, OPERATIONS, KindOps, kind_ops, submission_format
from xstilts.tasks.sources import HubTable

PACKAGE = Path(__file__).resolve().parents[2] / "xstilts"

for _module in OPERATIONS.values():  # each registers its operations when imported
    importlib.import_module(_module)


def test_one_object_per_kind_found_from_a_task_a_kind_or_a_name():
    assert set(KINDS) == set(TaskKind)
    udpos = get_task("udpos")
    assert kind_ops(udpos) is kind_ops(TaskKind.TAGGING) is kind_ops("tagging") is kind_ops("udpos")
    assert HEAD_KINDS == (TaskKind.SENTENCE_PAIR, TaskKind.TAGGING, TaskKind.QA, TaskKind.MULTIPLE_CHOICE)


@pytest.mark.parametrize("kind", list(TaskKind), ids=lambda k: k.value)
def test_each_kind_provides_the_operations_its_facts_promise(kind):
    ops = KINDS[kind]
    needed = set()
    if ops.has_head:  # trained, predicted and scored through the generic pipeline
        needed |= {"featurize", "head", "decode", "score", "trivial"}
    if ops.encoder_only:  # a zero-shot retrieval target
        needed |= {"trivial", "hub_examples"}
    targets = [t for t in REGISTRY if t.kind is kind and t.family in ("xtreme", "xtreme-r")]
    tables = [s for t in targets if t.source for s in t.source.by_split.values() if isinstance(s, HubTable)]
    if any((table.write or "examples") == "examples" for table in tables):  # rows converted to examples
        needed.add("hub_examples")
    missing = sorted(op for op in needed if not ops.has(op))
    assert not missing, f"{kind.value} lacks {missing}"
    for t in targets:  # a target kind is scored and written like XTREME's
        assert submission_format(t) in {"label", "tags", "qa", "pairs", "index"}
        assert ops.summary({"f1": 50.0, "exact_match": 40.0, "accuracy": 30.0}) is not None


def test_the_defaults_a_kind_declares():
    qa = KINDS[TaskKind.QA]
    assert qa.max_length == 384 and qa.target_defaults["doc_stride"] == 128
    assert qa.summary({"exact_match": 40.0, "f1": 60.0}) == 50.0  # XTREME's QA number
    assert KINDS[TaskKind.TAGGING].summary({"f1": 71.0, "precision": 1.0}) == 71.0
    assert KINDS[TaskKind.RETRIEVAL].summary({"accuracy": 90.0}) == 90.0
    assert submission_format(get_task("bucc2018")) == "pairs"
    assert submission_format(get_task("tatoeba")) == "index"
    assert [kind_ops(t).formulation for t in map(get_task, ("xnli", "conala", "tatoeba"))] == [
        "head", "generate", "contrastive"]


def test_a_missing_operation_names_the_kind_and_where_it_is_registered():
    with pytest.raises(ConfigError, match=r"'generation' has no 'decode' operation .*xstilts.evaluation.predict"):
        KINDS[TaskKind.GENERATION].decode  # noqa: B018
    with pytest.raises(AttributeError):
        KINDS[TaskKind.GENERATION].no_such_thing  # noqa: B018


def test_an_operation_is_registered_once():
    ops = KindOps(TaskKind.MLM, unit="examples", gold=lambda ex: None)

    @ops.implements("decode")
    def first(d):
        return 1

    assert ops.decode is first
    with pytest.raises(ValueError, match="registered twice"):
        ops.implements("decode")(lambda d: 2)
    with pytest.raises(ValueError, match="unknown kind operation"):
        ops.implements("decoder")


def _kind_branches(path: Path, root: Path = PACKAGE.parent) -> list[str]:
    """Comparisons against a TaskKind member (``kind == TaskKind.QA``, ``kind in (TaskKind.A, ...)``)."""

    def names_a_kind(node: ast.AST) -> bool:
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "TaskKind":
            return True
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            return any(names_a_kind(e) for e in node.elts)
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("frozenset", "set", "tuple"):
            return any(names_a_kind(a) for a in node.args)
        return False

    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Compare) and any(names_a_kind(x) for x in [node.left, *node.comparators]):
            found.append(f"{path.relative_to(root)}:{node.lineno}")
        if isinstance(node, ast.Dict) and any(k is not None and names_a_kind(k) for k in node.keys):
            found.append(f"{path.relative_to(root)}:{node.lineno} (a table keyed by kind)")
    return found


def test_no_code_outside_the_tasks_branches_on_a_kind():
    branches = [b for p in sorted(PACKAGE.rglob("*.py")) if "tasks" not in p.relative_to(PACKAGE).parts
                for b in _kind_branches(p)]  # fmt: skip
    assert not branches, "branch on the kind's operations object instead (xstilts.tasks.kinds):\n" + "\n".join(branches)


def test_the_branch_finder_finds_branches(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("if t.kind is TaskKind.QA or k in (TaskKind.MLM,):\n    x = {TaskKind.QA: 1}\n")
    assert _kind_branches(sample, tmp_path) == ["sample.py:1", "sample.py:1", "sample.py:2 (a table keyed by kind)"]


def test_every_operation_names_its_module():
    for op, module in OPERATIONS.items():
        assert any(o.has(op) for o in KINDS.values()), f"{module} registers no {op!r}"


def test_an_operation_is_called_only_where_it_is_registered():
    """So it is always registered when called: ``kind_ops(t).decode`` appears only in predict."""
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Attribute) and node.attr in OPERATIONS):
                continue
            on_ops = (isinstance(node.value, ast.Call) and getattr(node.value.func, "id", None) == "kind_ops") or (
                isinstance(node.value, ast.Name) and node.value.id == "ops")
            if on_ops and module != OPERATIONS[node.attr]:
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: {node.attr}")
    assert not wrong, "\n".join(wrong)
