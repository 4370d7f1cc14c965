"""Readers of the NLU intermediate tasks: real files where the shared data has them, small files in
each official format written here otherwise, and the errors a malformed record must raise."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import shared_file
from xstilts.data.examples import (
    MultipleChoiceExample,
    QAExample,
    SentencePairExample,
    TaggingExample,
)
from xstilts.data.nlu_readers import (
    ccg_tag_set,
    map_unknown_tags,
    nlu_examples_from_records,
    nlu_label_set,
    parse_auto_tree,
    read_nlu_examples,
    read_nlu_path,
)
from xstilts.errors import ConfigError, DataFormatError, MissingDataError
from xstilts.tasks import get_task
from xstilts.tasks.base import TaskKind
from xstilts.tasks.intermediate import PAPER_NLU_TASKS

MNLI_FIXTURES = "mnli/tests/tasks/lib/resources/data/mnli"


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _jsonl(path: Path, records: list[dict]) -> Path:
    return _write(path, "".join(json.dumps(r) + "\n" for r in records))


# --------------------------------------------------------------------------- registry
def test_the_nine_paper_tasks_are_registered_with_their_kinds_and_metrics():
    expected = {
        "anli_plus": (TaskKind.SENTENCE_PAIR, "accuracy"),
        "mnli": (TaskKind.SENTENCE_PAIR, "accuracy"),
        "qqp": (TaskKind.SENTENCE_PAIR, "accuracy"),
        "squad_v1": (TaskKind.QA, "squad"),
        "squad_v2": (TaskKind.QA, "squad_v2"),
        "hellaswag": (TaskKind.MULTIPLE_CHOICE, "accuracy"),
        "cosmosqa": (TaskKind.MULTIPLE_CHOICE, "accuracy"),
        "commonsenseqa": (TaskKind.MULTIPLE_CHOICE, "accuracy"),
        "ccg": (TaskKind.TAGGING, "token_accuracy"),
    }
    assert set(PAPER_NLU_TASKS) == set(expected)
    for name, (kind, metric) in expected.items():
        task = get_task(name)
        assert (task.kind, task.metric, task.family) == (kind, metric, "nlu"), name
        assert task.splits["train"] == ("en",) and task.splits["dev"] == ("en",)
    assert get_task("anli_plus").extra["components"]["train"] == ("anli", "mnli", "snli")


def test_only_english(shared_data):
    with pytest.raises(ConfigError, match="English"):
        read_nlu_examples("cosmosqa", shared_data, "dev", "de")


def test_missing_files_name_the_patterns(tmp_path):
    with pytest.raises(MissingDataError, match="hellaswag_val.jsonl"):
        read_nlu_examples("hellaswag", tmp_path, "dev", "en")


# --------------------------------------------------------------------------- real files
def test_cosmosqa_real_valid_csv():
    path = shared_file("cosmosqa/data/valid.csv")
    examples = read_nlu_examples("cosmosqa", path.parents[2], "dev", "en")
    assert len(examples) == 1000
    assert Counter(ex.label for ex in examples) == {0: 240, 1: 252, 2: 279, 3: 229}
    first = examples[0]
    assert isinstance(first, MultipleChoiceExample)
    assert first.question == "Why is this person asking about divorce ?"
    assert first.choices[1] == "He wants to get married to a different person ."
    assert first.context.startswith("Do i need to go for a legal divorce ?")
    assert all(len(ex.choices) == 4 for ex in examples)


def test_commonsenseqa_real_hub_schema():
    path = shared_file("commonsenseqa/dev_rand_split.jsonl")
    examples = read_nlu_examples("commonsenseqa", path.parent, "dev", "en")
    assert len(examples) == 1221
    first = examples[0]
    assert first.id == "1afa02df02c908a558b4036e80242fac"
    assert first.choices == ["bank", "library", "department store", "mall", "new york"]
    assert first.label == 0 and first.context == ""
    assert all(len(ex.choices) == 5 and 0 <= ex.label < 5 for ex in examples)


def test_mnli_real_jiant_fixtures(shared_data):
    shared_file(f"{MNLI_FIXTURES}/mnli_val.jsonl")
    train = read_nlu_examples("mnli", shared_data, "train", "en")
    dev = read_nlu_examples("mnli", shared_data, "dev", "en")
    test = read_nlu_path("mnli", shared_data / MNLI_FIXTURES / "mnli_test.jsonl", "test")
    assert (len(train), len(dev), len(test)) == (5, 5, 5)
    # The val fixture starts with MNLI dev_matched pair 1.
    assert dev[0].text_a == "The new rights are nice enough"
    assert [ex.label for ex in dev] == [
        "neutral",
        "contradiction",
        "entailment",
        "contradiction",
        "contradiction",
    ]
    assert all(ex.label is None for ex in test)


def test_squad_v1_format_on_xquad_english():
    path = shared_file("xquad/xquad.en.json")
    examples = read_nlu_path("squad_v1", path, "dev")
    assert len(examples) == 225
    assert all(isinstance(ex, QAExample) and ex.answers and not ex.is_impossible for ex in examples)
    ex = examples[0]
    for answer in ex.answers:
        assert (
            ex.context[answer.answer_start : answer.answer_start + len(answer.text)] == answer.text
        )


# --------------------------------------------------------------------------- NLI
def _anli(root: Path, split: str, rounds=("R1", "R2", "R3")) -> None:
    labels = iter("encnec")
    for r in rounds:
        _jsonl(
            root / "anli_v1.0" / r / f"{split}.jsonl",
            [
                {"uid": f"{r}-{i}", "premise": f"p {r} {i}", "hypothesis": f"h {r} {i}", "label": next(labels),
                 "reason": "", "model_label": "e", "emturk": False, "genre": "wiki", "tag": ""}
                for i in range(2)
            ],
        )  # fmt: skip


def test_anli_reads_the_three_rounds_in_order(tmp_path):
    _anli(tmp_path, "dev")
    examples = read_nlu_examples("anli", tmp_path, "dev", "en")
    assert [ex.id for ex in examples] == ["R1-0", "R1-1", "R2-0", "R2-1", "R3-0", "R3-1"]
    assert [ex.label for ex in examples] == [
        "entailment", "neutral", "contradiction", "neutral", "entailment", "contradiction",
    ]  # fmt: skip


def test_anli_missing_round_is_an_error(tmp_path):
    _anli(tmp_path, "dev", rounds=("R1", "R2"))
    with pytest.raises(MissingDataError, match="round R3"):
        read_nlu_examples("anli", tmp_path, "dev", "en")


def test_anli_bad_label_and_bad_json_name_file_and_line(tmp_path):
    path = _write(
        tmp_path / "anli_v1.0/R1/train.jsonl",
        '{"uid": "a", "premise": "p", "hypothesis": "h", "label": "e"}\n'
        '{"uid": "b", "premise": "p", "hypothesis": "h", "label": "x"}\n',
    )
    with pytest.raises(DataFormatError, match=r"train.jsonl:2: expected 'label' in e/n/c") as err:
        read_nlu_path("anli", path, "train")
    assert err.value.line == 2
    path.write_text(
        '{"uid": "a", "premise": "p", "hypothesis": "h", "label": "e"}\n{"uid": "b", premise\n'
    )
    with pytest.raises(DataFormatError, match=r"train.jsonl:2: expected one JSON object per line"):
        read_nlu_path("anli", path, "train")
    path.write_text('{"uid": "a", "premise": "p", "label": "e"}\n')
    with pytest.raises(DataFormatError, match=r":1: expected a field 'hypothesis'"):
        read_nlu_path("anli", path, "train")


def _multinli_record(i: int, gold: str) -> dict:
    return {
        "annotator_labels": [gold], "genre": "fiction", "gold_label": gold, "pairID": f"{i}n",
        "promptID": str(i), "sentence1": f"premise {i}", "sentence2": f"hypothesis {i}",
        "sentence1_binary_parse": "( x )", "sentence1_parse": "(ROOT x)",
        "sentence2_binary_parse": "( y )", "sentence2_parse": "(ROOT y)",
    }  # fmt: skip


def test_multinli_and_snli_original_jsonl_drop_no_gold_pairs(tmp_path):
    _jsonl(
        tmp_path / "multinli_1.0/multinli_1.0_train.jsonl",
        [
            _multinli_record(1, "neutral"),
            _multinli_record(2, "-"),
            _multinli_record(3, "contradiction"),
        ],
    )
    _jsonl(
        tmp_path / "snli_1.0/snli_1.0_train.jsonl",
        [_multinli_record(7, "-"), _multinli_record(8, "entailment")],
    )
    mnli = read_nlu_examples("mnli", tmp_path, "train", "en")
    assert [(ex.id, ex.label) for ex in mnli] == [("1n", "neutral"), ("3n", "contradiction")]
    assert mnli[0].text_a == "premise 1" and mnli[0].text_b == "hypothesis 1"
    snli = read_nlu_examples("snli", tmp_path, "train", "en")
    assert [(ex.id, ex.label) for ex in snli] == [("8n", "entailment")]
    # ANLI+ training data: the three sources concatenated; its dev set is ANLI's alone.
    _anli(tmp_path, "train")
    _anli(tmp_path, "dev")
    plus_train = read_nlu_examples("anli_plus", tmp_path, "train", "en")
    assert len(plus_train) == 6 + 2 + 1
    assert [ex.id for ex in plus_train[5:]] == ["R3-1", "1n", "3n", "8n"]
    assert len(read_nlu_examples("anli_plus", tmp_path, "dev", "en")) == 6


def test_mnli_glue_tsv(tmp_path):
    header = "index\tpromptID\tpairID\tgenre\tsentence1\tsentence2\tlabel1\tgold_label"
    _write(
        tmp_path / "MNLI/dev_matched.tsv",
        f"{header}\n0\t1\t1n\tslate\tA man.\tA person.\tentailment\tentailment\n"
        "1\t2\t2n\tslate\tA cat.\tA dog.\tneutral\t-\n",
    )
    examples = read_nlu_examples("mnli", tmp_path, "dev", "en")
    assert [(ex.id, ex.text_a, ex.label) for ex in examples] == [("1n", "A man.", "entailment")]
    (tmp_path / "MNLI/dev_matched.tsv").write_text(
        f"{header}\n0\t1\t1n\tslate\tA man.\tentailment\n"
    )
    with pytest.raises(
        DataFormatError, match=r"dev_matched.tsv:2: expected 8 tab-separated fields"
    ):
        read_nlu_examples("mnli", tmp_path, "dev", "en")


# --------------------------------------------------------------------------- QQP
def test_qqp_glue_tsv(tmp_path):
    header = "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n"
    _write(
        tmp_path / "QQP/dev.tsv",
        header + "201359\t303345\t303346\tWhy are African-Americans so beautiful?\t"
        "Why are hispanics so beautiful?\t0\n"
        "263843\t69383\t380476\tI want to pursue PhD in Computer Science?\tHow do I get a PhD?\t1\n",
    )
    examples = read_nlu_examples("qqp", tmp_path, "dev", "en")
    assert [(ex.id, ex.label) for ex in examples] == [("201359", "0"), ("263843", "1")]
    assert examples[1].text_b == "How do I get a PhD?"
    (tmp_path / "QQP/dev.tsv").write_text(header + "1\t2\t3\tonly one question\t0\n")
    with pytest.raises(DataFormatError, match=r"dev.tsv:2: expected 6 tab-separated fields"):
        read_nlu_examples("qqp", tmp_path, "dev", "en")
    (tmp_path / "QQP/dev.tsv").write_text(header + "1\t2\t3\tq1\tq2\t2\n")
    with pytest.raises(
        DataFormatError, match=r"dev.tsv:2: expected is_duplicate 0 or 1, found '2'"
    ):
        read_nlu_examples("qqp", tmp_path, "dev", "en")


# --------------------------------------------------------------------------- SQuAD v2.0
SQUAD_V2 = {
    "version": "v2.0",
    "data": [
        {
            "title": "Normans",
            "paragraphs": [
                {
                    "context": "The Normans were the people who in the 10th and 11th centuries gave "
                    "their name to Normandy, a region in France.",
                    "qas": [
                        {"question": "In what country is Normandy located?", "id": "q1",
                         "answers": [{"text": "France", "answer_start": 104}], "is_impossible": False},
                        {"question": "Who gave their name to Normandy in the 1000's and 1100's",
                         "id": "q2", "answers": [], "is_impossible": True,
                         "plausible_answers": [{"text": "Normans", "answer_start": 4}]},
                    ],
                }
            ],
        }
    ],
}  # fmt: skip


def test_squad_v2_unanswerable_questions(tmp_path):
    _write(tmp_path / "squad/dev-v2.0.json", json.dumps(SQUAD_V2, indent=1))
    examples = read_nlu_examples("squad_v2", tmp_path, "dev", "en")
    assert [(ex.id, ex.is_impossible, [a.text for a in ex.answers]) for ex in examples] == [
        ("q1", False, ["France"]),
        ("q2", True, []),  # plausible answers are not gold
    ]
    # SQuAD v1.1 has no unanswerable questions: the same file is refused for squad_v1.
    with pytest.raises(DataFormatError, match="answerable questions only in squad_v1"):
        read_nlu_path("squad_v1", tmp_path / "squad/dev-v2.0.json", "dev")
    bad = json.loads(json.dumps(SQUAD_V2))
    bad["data"][0]["paragraphs"][0]["qas"][1]["answers"] = [{"text": "Normans", "answer_start": 4}]
    _write(tmp_path / "squad/dev-v2.0.json", json.dumps(bad))
    with pytest.raises(DataFormatError, match="no answers for unanswerable question q2"):
        read_nlu_examples("squad_v2", tmp_path, "dev", "en")


# --------------------------------------------------------------------------- HellaSwag
def _hellaswag(ind: int, label) -> dict:
    return {
        "ind": ind, "activity_label": "Removing ice from car",
        "ctx_a": "Then, the man writes over the snow covering the window of a car, and a woman wearing winter clothes smiles.",
        "ctx_b": "then", "ctx": "Then, the man writes ... smiles. then", "split": "val", "split_type": "indomain",
        "endings": [", the man adds wax to the windshield and cuts it.", ", a person board a ski lift, while two men supporting the head of the person wearing winter clothes snow as the we girls sled.", ", the man puts on a christmas coat, knitted with netting.", ", the man continues removing the snow on his car."],
        "source_id": "activitynet~v_-1IBHYS3L-Y", "label": label,
    }  # fmt: skip


def test_hellaswag_jsonl(tmp_path):
    _jsonl(tmp_path / "hellaswag/hellaswag_val.jsonl", [_hellaswag(24, 3), _hellaswag(25, 0)])
    examples = read_nlu_examples("hellaswag", tmp_path, "dev", "en")
    assert [(ex.id, ex.label) for ex in examples] == [("24", 3), ("25", 0)]
    # jiant's split: ctx_a is the context, ctx_b starts every choice.
    assert examples[0].question == "" and examples[0].context.startswith("Then, the man writes")
    assert examples[0].choices[3] == "then , the man continues removing the snow on his car."
    _jsonl(tmp_path / "hellaswag/hellaswag_val.jsonl", [_hellaswag(24, 3), _hellaswag(25, 4)])
    with pytest.raises(
        DataFormatError, match=r"hellaswag_val.jsonl:2: expected 'label' an integer 0..3"
    ):
        read_nlu_examples("hellaswag", tmp_path, "dev", "en")
    three = _hellaswag(26, 0)
    three["endings"] = three["endings"][:3]
    _jsonl(tmp_path / "hellaswag/hellaswag_val.jsonl", [three])
    with pytest.raises(DataFormatError, match=r":1: expected 'endings' a list of 4 strings"):
        read_nlu_examples("hellaswag", tmp_path, "dev", "en")


# --------------------------------------------------------------------------- CosmosQA
COSMOS_HEADER = "id,context,question,answer0,answer1,answer2,answer3,label\n"


def test_cosmosqa_multiline_fields_and_line_of_a_bad_record(tmp_path):
    path = _write(
        tmp_path / "cosmosqa/data/train.csv",
        COSMOS_HEADER
        + 'a1,"It rained.\nWe stayed in, ""bored"".",Why?,x,y,z,w,2\n'  # lines 2-3
        + "a2,ctx,q,x,y,z,3\n",  # line 4: one field short
    )
    with pytest.raises(DataFormatError, match=r"train.csv:4: expected 8 CSV fields") as err:
        read_nlu_examples("cosmosqa", tmp_path, "train", "en")
    assert err.value.found == "7 fields"
    path.write_text(COSMOS_HEADER + 'a1,"It rained.\nWe stayed in, ""bored"".",Why?,x,y,z,w,2\n')
    (ex,) = read_nlu_examples("cosmosqa", tmp_path, "train", "en")
    assert (
        ex.context == 'It rained.\nWe stayed in, "bored".'
        and ex.label == 2
        and ex.choices == list("xyzw")
    )
    path.write_text(COSMOS_HEADER + "a1,c,q,x,y,z,w,1\na2,c,q,x,y,z,w,4\n")
    with pytest.raises(
        DataFormatError, match=r"train.csv:3: expected 'label' an integer 0..3, found '4'"
    ):
        read_nlu_examples("cosmosqa", tmp_path, "train", "en")


# --------------------------------------------------------------------------- CommonsenseQA
def _csqa_original(ident: str, key: str) -> dict:
    return {
        "answerKey": key, "id": ident,
        "question": {"question_concept": "revolving door",
                     "choices": [{"label": k, "text": t} for k, t in zip("ABCDE", ["bank", "library", "department store", "mall", "new york"])],
                     "stem": "A revolving door is convenient for two direction travel, but it also serves as a security measure at a what?"},
    }  # fmt: skip


def test_commonsenseqa_original_jsonl(tmp_path):
    _jsonl(
        tmp_path / "train_rand_split.jsonl", [_csqa_original("x1", "A"), _csqa_original("x2", "D")]
    )
    examples = read_nlu_examples("commonsenseqa", tmp_path, "train", "en")
    assert [(ex.id, ex.label) for ex in examples] == [("x1", 0), ("x2", 3)]
    assert examples[1].question.startswith("A revolving door") and examples[1].choices[3] == "mall"
    _jsonl(
        tmp_path / "train_rand_split.jsonl", [_csqa_original("x1", "A"), _csqa_original("x2", "F")]
    )
    with pytest.raises(
        DataFormatError, match=r"train_rand_split.jsonl:2: expected answerKey one of"
    ):
        read_nlu_examples("commonsenseqa", tmp_path, "train", "en")
    four = _csqa_original("x3", "A")
    four["question"]["choices"].pop()
    _jsonl(tmp_path / "train_rand_split.jsonl", [four])
    with pytest.raises(DataFormatError, match=r":1: expected 5 choices, found 4"):
        read_nlu_examples("commonsenseqa", tmp_path, "train", "en")


# --------------------------------------------------------------------------- CCG (AUTO)
AUTO = (
    "ID=wsj_0001.2 PARSER=GOLD NUMPARSE=1\n"
    r"(<T S[dcl] 0 2> (<T S[dcl] 1 2> (<T NP 0 1> (<T N 1 2> (<L N/N NNP NNP Mr. N_142/N_142>) "
    r"(<L N NNP NNP Vinken N>) ) ) (<T S[dcl]\NP 0 2> (<L (S[dcl]\NP)/NP VBZ VBZ is (S[dcl]\NP_87/NP_88)>) "
    r"(<T NP 0 1> (<L N NN NN chairman N>) ) ) ) (<L . . . . .>) )" "\n"
    "ID=wsj_0002.1 PARSER=GOLD NUMPARSE=1\n"
    r"(<T S[dcl] 0 2> (<L N NNP NNP Vinken N>) (<L S[dcl]\NP VBZ VBZ sleeps S[dcl]\NP_1>) )" "\n"
)  # fmt: skip


def test_ccg_auto_words_and_supertags(tmp_path):
    _write(tmp_path / "ccg/train.auto", AUTO)
    first, second = read_nlu_examples("ccg", tmp_path, "train", "en")
    assert isinstance(first, TaggingExample) and first.id == "wsj_0001.2"
    assert first.tokens == ["Mr.", "Vinken", "is", "chairman", "."]
    assert first.tags == ["N/N", "N", r"(S[dcl]\NP)/NP", "N", "."]
    assert second.tokens == ["Vinken", "sleeps"] and second.tags == ["N", r"S[dcl]\NP"]
    # Tag set: the training file's tags, most frequent first; top-k maps the rest to <UNK>.
    assert ccg_tag_set([first, second]) == ["N", r"(S[dcl]\NP)/NP", ".", "N/N", r"S[dcl]\NP"]
    assert nlu_label_set("ccg", tmp_path)[0] == "N"
    (mapped,) = map_unknown_tags([first], ccg_tag_set([first, second], top_k=2))
    assert mapped.tags == ["<UNK>", "N", r"(S[dcl]\NP)/NP", "N", "<UNK>"] and first.tags[0] == "N/N"


def test_ccg_auto_errors_name_the_line(tmp_path):
    bad_leaf = AUTO.replace("(<L N NNP NNP Vinken N>) (<L S", "(<L N NNP Vinken N>) (<L S")
    _write(tmp_path / "ccg/dev.auto", bad_leaf)
    with pytest.raises(DataFormatError, match=r"dev.auto:4: expected a leaf .* with 6 fields"):
        read_nlu_examples("ccg", tmp_path, "dev", "en")
    _write(
        tmp_path / "ccg/dev.auto",
        "ID=wsj_0001.1 PARSER=GOLD NUMPARSE=1\nID=wsj_0001.2 PARSER=GOLD NUMPARSE=1\n",
    )
    with pytest.raises(DataFormatError, match=r"dev.auto:2: expected the tree of wsj_0001.1"):
        read_nlu_examples("ccg", tmp_path, "dev", "en")
    with pytest.raises(DataFormatError, match="at least one leaf"):
        parse_auto_tree("(<T S 0 2> )")


def test_ccg_from_a_ccgbank_release_reads_the_split_sections(tmp_path):
    auto = tmp_path / "ccgbank_1_1/data/AUTO"
    sentence = AUTO.split("ID=wsj_0002.1")[0]
    _write(auto / "00/wsj_0001.auto", sentence)
    _write(auto / "02/wsj_0201.auto", sentence.replace("wsj_0001.2", "wsj_0201.1"))
    _write(auto / "21/wsj_2101.auto", sentence.replace("wsj_0001.2", "wsj_2101.1"))
    _write(auto / "23/wsj_2301.auto", sentence.replace("wsj_0001.2", "wsj_2301.1"))
    assert [ex.id for ex in read_nlu_examples("ccg", tmp_path, "train", "en")] == [
        "wsj_0201.1",
        "wsj_2101.1",
    ]
    assert [ex.id for ex in read_nlu_examples("ccg", tmp_path, "dev", "en")] == ["wsj_0001.2"]
    assert [ex.id for ex in read_nlu_examples("ccg", tmp_path, "test", "en")] == ["wsj_2301.1"]


# --------------------------------------------------------------------------- hub records
def test_hub_records_become_the_same_examples():
    nli = nlu_examples_from_records(
        "mnli",
        [{"premise": "p", "hypothesis": "h", "label": 2, "pairID": "9n"},
         {"premise": "p", "hypothesis": "h", "label": -1}],
    )  # fmt: skip
    assert [(ex.id, ex.label) for ex in nli] == [("9n", "contradiction")]
    (qa,) = nlu_examples_from_records(
        "squad_v2",
        [
            {
                "id": "q",
                "title": "t",
                "context": "c",
                "question": "?",
                "answers": {"text": [], "answer_start": []},
            }
        ],
    )
    assert qa.is_impossible and qa.answers == []
    (swag,) = nlu_examples_from_records("hellaswag", [_hellaswag(1, "2")])
    assert swag.label == 2
    (csqa,) = nlu_examples_from_records(
        "commonsenseqa",
        [{"id": "i", "question": "q?", "question_concept": "c",
          "choices": {"label": list("ABCDE"), "text": list("vwxyz")}, "answerKey": "E"}],
    )  # fmt: skip
    assert csqa.label == 4 and csqa.choices == list("vwxyz")
    with pytest.raises(DataFormatError, match="label 0, 1 or 2"):
        nlu_examples_from_records(
            "anli", [{"uid": "u", "premise": "p", "hypothesis": "h", "label": 3}]
        )


def test_read_examples_dispatches_nlu_tasks(shared_data):
    from xstilts.data.readers import available, read_examples

    shared_file("cosmosqa/data/valid.csv")
    assert len(read_examples("cosmosqa", shared_data, "dev", "en")) == 1000
    assert available("commonsenseqa", shared_data) == {"dev": ["en"]}
    examples = read_examples("mnli", shared_data, "dev", "en")
    assert all(isinstance(ex, SentencePairExample) for ex in examples)


def test_hub_loader_reads_local_parquet_with_the_hub_columns(tmp_path):
    import pandas as pd

    from xstilts.data.nlu_readers import read_nlu_hub

    rows = [
        {"id": "c1", "context": "ctx", "question": "q?", "answer0": "a", "answer1": "b",
         "answer2": "c", "answer3": "d", "label": 3},
        {"id": "c2", "context": "ctx", "question": "q2?", "answer0": "a", "answer1": "b",
         "answer2": "c", "answer3": "d", "label": 0},
    ]  # fmt: skip
    pd.DataFrame(rows).to_parquet(tmp_path / "cosmos.parquet")
    examples = read_nlu_hub(
        "cosmosqa", "dev", data_files=tmp_path / "cosmos.parquet", cache_dir=tmp_path / "cache"
    )
    assert [(ex.id, ex.label, ex.choices[3]) for ex in examples] == [("c1", 3, "d"), ("c2", 0, "d")]
    from xstilts.data.hub import load_hub

    via_hub = load_hub(
        "cosmosqa",
        "dev",
        "en",
        data_files=tmp_path / "cosmos.parquet",
        cache_dir=tmp_path / "cache",
    )
    assert [ex.id for ex in via_hub] == ["c1", "c2"]


def test_cli_reports_a_bad_nlu_record_as_one_line(tmp_path, capsys):
    from xstilts.cli import main

    _write(tmp_path / "cosmosqa/valid.csv", COSMOS_HEADER + "a,c,q,x,y,z,w,1\nb,c,q,x,y,z,w,9\n")
    assert main(["data", "show", "cosmosqa", "-d", str(tmp_path), "-s", "dev"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err
    assert "cosmosqa/valid.csv:3: expected 'label' an integer 0..3, found '9'" in err
