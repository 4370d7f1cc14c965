"""Code task readers: the real CoNaLa, MCoNaLa, Django, CONCODE, CodeSearchNet and HumanEval
files, and written files in the official formats for MBPP, CoNaLa mined, CodeSearchNet's original
layout and malformed input."""

from __future__ import annotations

import gzip
import json

import pytest

from tests.conftest import shared_file
from xstilts.data.code_readers import find_code_files, read_code_examples, strip_python_docstring
from xstilts.data.examples import GenerationExample
from xstilts.data.readers import read_examples
from xstilts.errors import ConfigError, DataFormatError, MissingDataError
from xstilts.tasks import REGISTRY, TaskKind, get_task


def test_code_tasks_registered():
    names = set(REGISTRY.names("code"))
    assert {"conala", "conala_mined", "django", "concode", "mbpp", "humaneval", "codesearchnet",
            "codesearchnet_cxg", "mconala"} <= names  # fmt: skip
    assert get_task("mconala").languages == ("es", "ja", "ru")
    assert not get_task("mconala").has_training_data and not get_task("humaneval").has_training_data
    assert get_task("codesearchnet").splits["train"] == ("go", "java", "javascript", "php", "python", "ruby")
    assert get_task("django").kind is TaskKind.GENERATION
    assert get_task("mbpp").metric == "pass_at_k"


def test_conala_curated_train_falls_back_to_intent(shared_data):
    path = shared_file("conala_curated/train.json")
    raw = json.loads(path.read_text())
    examples = read_code_examples("conala", shared_data, "train", "en")
    assert len(examples) == len(raw) == 2379
    assert examples[0].source.startswith("Concatenate elements of a list 'x'")
    assert examples[0].target == "sum(d * 10 ** i for i, d in enumerate(x[::-1]))"
    nulls = [i for i, r in enumerate(raw) if r["rewritten_intent"] is None]
    assert len(nulls) == 79
    assert examples[nulls[0]].source == raw[nulls[0]]["intent"] == "Find next sibling element in Python Selenium?"


def test_conala_test_through_read_examples(shared_data):
    shared_file("conala/conala-test.json")
    examples = read_examples("conala", shared_data, "test", "en")
    assert len(examples) == 500
    assert isinstance(examples[0], GenerationExample)
    assert examples[0].source == "send a signal `signal.SIGUSR1` to the current process"
    assert examples[0].target == "os.kill(os.getpid(), signal.SIGUSR1)"
    assert examples[0].id == "15080500-0"


def test_mconala_es_ru(shared_data):
    shared_file("mconala/es_test.json")
    shared_file("mconala/ru_test.json")
    es = read_code_examples("mconala", shared_data, "test", "es")
    ru = read_code_examples("mconala", shared_data, "test", "ru")
    assert (len(es), len(ru)) == (341, 345)
    assert ru[0].source == "Выделить дробную часть числа `num`"
    assert ru[0].target == "math.modf(num)[0]"
    assert "\n    for k,v in d.items():" in es[0].target  # multi-line snippets keep their layout


def test_mconala_missing_language_is_reported(tmp_path):
    with pytest.raises(MissingDataError, match="ja_test.json"):
        read_code_examples("mconala", tmp_path, "test", "ja")
    with pytest.raises(ConfigError, match="no language 'de'"):
        read_code_examples("mconala", tmp_path, "test", "de")


def test_django_conventional_split(shared_data):
    shared_file("django/all.anno")
    sizes = {s: len(read_code_examples("django", shared_data, s, "en")) for s in ("train", "dev", "test")}
    assert sizes == {"train": 16000, "dev": 1000, "test": 1805}
    train = read_code_examples("django", shared_data, "train", "en")
    assert train[0].source == "from threading import local into default name space."
    assert train[0].target == "from threading import local"
    dev = read_code_examples("django", shared_data, "dev", "en")
    assert dev[0].id == "django-16001"
    assert dev[0].target == "def strip_tags ( value ) :"


def test_django_unequal_files(tmp_path):
    d = tmp_path / "django"
    d.mkdir()
    (d / "all.anno").write_text("a\n" * 18805)
    (d / "all.code").write_text("x = 1\n" * 18804)
    with pytest.raises(DataFormatError, match=r"all\.code:18805: expected as many lines"):
        read_code_examples("django", tmp_path, "train", "en")


def test_concode_dev(shared_data):
    shared_file("codexglue_concode/Text-Code/text-to-code/dataset/concode/dev.json")
    examples = read_code_examples("concode", shared_data, "dev", "en")
    assert len(examples) == 2000
    assert examples[0].language == "java"
    assert examples[0].target.startswith("int function ( ) { _total = extractList ( ) . size ( ) ;")
    assert "concode_field_sep" in examples[0].source


def test_codesearchnet_codexglue_ruby(shared_data):
    shared_file("codesearchnet/Code-Text/code-to-text/dataset/ruby/test.jsonl")
    examples = read_code_examples("codesearchnet_cxg", shared_data, "test", "ruby")
    assert len(examples) == 500
    assert examples[0].source.startswith("Outputs the deferred summary information")
    assert examples[0].target.startswith("def print_summary(status)\n      status_string")
    assert examples[0].language == "ruby"


def test_codesearchnet_original_sharded_layout(tmp_path):
    shard_dir = tmp_path / "python" / "final" / "jsonl" / "train"
    shard_dir.mkdir(parents=True)
    code = 'def add(a, b):\n    """Add two numbers."""\n    return a + b'
    records = [
        {"docstring": "Add two numbers.", "code": code, "language": "python", "url": "u1"},
        {"docstring": "", "code": "def f():\n    pass", "language": "python", "url": "u2"},  # no NL: left out
    ]
    for i, rec in enumerate(records):
        with gzip.open(shard_dir / f"python_train_{i}.jsonl.gz", "wt") as f:
            f.write(json.dumps(rec) + "\n")
    assert len(find_code_files("codesearchnet", tmp_path, "train", "python")) == 2
    examples = read_code_examples("codesearchnet", tmp_path, "train", "python")
    assert [e.id for e in examples] == ["u1"]
    assert examples[0].target == "def add(a, b):\n    return a + b"


def test_strip_python_docstring_keeps_other_code():
    code = "def f(x) -> int:\n    '''Doc.\n    more'''\n    y = '''not a docstring'''\n    return x"
    assert strip_python_docstring(code) == "def f(x) -> int:\n    y = '''not a docstring'''\n    return x"


def test_humaneval(shared_data):
    shared_file("humaneval/data/HumanEval.jsonl.gz")
    problems = read_code_examples("humaneval", shared_data, "test", "en")
    assert len(problems) == 164
    assert problems[0].id == "HumanEval/0" and problems[0].entry_point == "has_close_elements"
    assert "def check(candidate):" in problems[0].tests
    assert problems[0].prompt.startswith("from typing import List")


def _mbpp_record(task_id: int) -> dict:
    return {
        "task_id": task_id,
        "text": f"Write a function to add {task_id}.",
        "code": f"def add_{task_id}(x):\r\n  return x + {task_id}",
        "test_list": [f"assert add_{task_id}(1) == {task_id + 1}"],
        "test_setup_code": "",
        "challenge_test_list": [],
    }


def test_mbpp_splits_by_task_id(tmp_path):
    ids = [1, 10, 11, 510, 511, 600, 601, 974]
    (tmp_path / "mbpp.jsonl").write_text("".join(json.dumps(_mbpp_record(i)) + "\n" for i in ids))
    got = {s: [e.id for e in read_code_examples("mbpp", tmp_path, s, "en")] for s in ("prompt", "test", "dev", "train")}
    assert got == {"prompt": ["1", "10"], "test": ["11", "510"], "dev": ["511", "600"], "train": ["601", "974"]}
    ex = read_code_examples("mbpp", tmp_path, "test", "en")[0]
    assert ex.entry_point == "add_11" and ex.target == "def add_11(x):\n  return x + 11"
    assert ex.tests == "assert add_11(1) == 12\n"
    assert "Your code should pass these tests:" in ex.prompt


def test_mbpp_bad_record_names_line(tmp_path):
    bad = _mbpp_record(12)
    bad["test_list"] = "assert x"
    (tmp_path / "mbpp.jsonl").write_text(json.dumps(_mbpp_record(11)) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(DataFormatError, match=r"mbpp\.jsonl:2: expected 'test_list' as list"):
        read_code_examples("mbpp", tmp_path, "test", "en")


def test_conala_mined_jsonl(tmp_path):
    rows = [{"parent_answer_post_id": 1, "intent": "sort a list", "snippet": "sorted(l)", "id": "1_0", "prob": 0.9,
             "question_id": 7}]  # fmt: skip
    (tmp_path / "conala-mined.jsonl").write_text(json.dumps(rows[0]) + "\n\n{broken\n")
    with pytest.raises(DataFormatError, match=r"conala-mined\.jsonl:3: expected one JSON object per line"):
        read_code_examples("conala_mined", tmp_path, "train", "en")
    (tmp_path / "conala-mined.jsonl").write_text(json.dumps(rows[0]) + "\n")
    (ex,) = read_code_examples("conala_mined", tmp_path, "train", "en")
    assert (ex.id, ex.source, ex.target) == ("1_0", "sort a list", "sorted(l)")


def test_conala_json_missing_snippet_names_record_line(tmp_path):
    d = tmp_path / "conala"
    d.mkdir()
    (d / "conala-test.json").write_text(
        '[\n  {"intent": "a", "rewritten_intent": null, "snippet": "x", "question_id": 1},\n'
        '  {"intent": "b",\n   "rewritten_intent": "c", "question_id": 2}\n]\n'
    )
    with pytest.raises(DataFormatError, match=r"conala-test\.json:3: expected field 'snippet'"):
        read_code_examples("conala", tmp_path, "test", "en")


def test_conala_json_syntax_error_line(tmp_path):
    d = tmp_path / "conala"
    d.mkdir()
    (d / "conala-test.json").write_text('[\n  {"intent": "a", "snippet": "x"},\n  {"intent": }\n]\n')
    with pytest.raises(DataFormatError, match=r"conala-test\.json:3: expected a JSON value"):
        read_code_examples("conala", tmp_path, "test", "en")


def test_hub_rows_use_the_same_converters(tmp_path):
    from xstilts.data.code_readers import read_code_hub

    rows = [{"func_documentation_string": "Adds.", "func_code_string": "def add(a, b):\n    return a + b",
             "language": "python", "url": "u"}]  # fmt: skip
    path = tmp_path / "csn.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (ex,) = read_code_hub("codesearchnet", "test", "python", data_files=path)
    assert (ex.source, ex.target) == ("Adds.", "def add(a, b):\n    return a + b")
    mbpp = tmp_path / "mbpp.jsonl"
    mbpp.write_text(json.dumps(_mbpp_record(601)) + "\n")
    (ex,) = read_code_hub("mbpp", "train", data_files=mbpp)
    assert ex.entry_point == "add_601"
    with pytest.raises(ConfigError, match="no hub copy"):
        read_code_hub("django", "train", data_files=mbpp)
