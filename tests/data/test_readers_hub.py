"""The hub loader, exercised on local parquet files (tests never touch the network)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from xstilts.data.hub import hub_spec, load_hub
from xstilts.tasks import REGISTRY
from xstilts.tasks.sources import HubTable
from xstilts.errors import ConfigError, DataFormatError


def _parquet(path: Path, rows: dict[str, list]) -> Path:
    pq.write_table(pa.table(rows), path)
    return path


def test_xnli_int_labels_use_declared_names(tmp_path: Path) -> None:
    path = _parquet(
        tmp_path / "xnli.parquet",
        {"premise": ["A man sleeps.", "A dog."], "hypothesis": ["He is awake.", "An animal."], "label": [2, 0]},
    )
    examples = load_hub("xnli", "test", "en", data_files=path, cache_dir=tmp_path / "cache")
    assert [(e.text_a, e.text_b, e.label) for e in examples] == [
        ("A man sleeps.", "He is awake.", "contradiction"),
        ("A dog.", "An animal.", "entailment"),
    ]


def test_classlabel_features_win_over_declared_names(tmp_path: Path) -> None:
    import datasets

    features = datasets.Features(
        {
            "tokens": datasets.List(datasets.Value("string")),
            "ner_tags": datasets.List(datasets.ClassLabel(names=["O", "B-LOC", "I-LOC", "B-PER", "I-PER", "B-ORG", "I-ORG"])),
        }
    )
    dataset = datasets.Dataset.from_dict(
        {"tokens": [["Berlin", "ist", "groß"]], "ner_tags": [[1, 0, 0]]}, features=features
    )
    path = tmp_path / "wikiann-de.parquet"
    dataset.to_parquet(str(path))
    (example,) = load_hub("panx", "dev", "de", data_files=path, cache_dir=tmp_path / "cache")
    assert example.tokens == ["Berlin", "ist", "groß"]
    assert example.tags == ["B-LOC", "O", "O"]  # not the declared order's "B-PER"


def test_udpos_reads_google_xtreme_pos_tags_in_the_cards_order(tmp_path: Path) -> None:
    # google/xtreme udpos.<Name>: tokens + pos_tags, 17 tags alphabetically (its dataset card)
    path = _parquet(tmp_path / "ud.parquet", {"tokens": [["du", "pain"]], "pos_tags": [[1, 7]]})
    (sentence,) = load_hub("udpos", "test", "fr", data_files=path, cache_dir=tmp_path / "cache")
    assert (sentence.tokens, sentence.tags) == (["du", "pain"], ["ADP", "NOUN"])


def test_qa_answers_and_tydiqa_language_filter(tmp_path: Path) -> None:
    path = _parquet(
        tmp_path / "tydiqa.parquet",
        {
            "id": ["swahili-1-0", "english-2-0"],
            "title": ["t1", "t2"],
            "context": ["Nairobi ni mji mkuu.", "Paris is big."],
            "question": ["Mji mkuu?", "What is big?"],
            "answers": [{"text": ["Nairobi"], "answer_start": [0]}, {"text": ["Paris"], "answer_start": [0]}],
        },
    )
    (sw,) = load_hub("tydiqa", "test", "sw", data_files=path, cache_dir=tmp_path / "cache")
    assert (sw.id, sw.title, [(a.text, a.answer_start) for a in sw.answers]) == (
        "swahili-1-0",
        "t1",
        [("Nairobi", 0)],
    )


def test_bad_answer_span_names_the_row(tmp_path: Path) -> None:
    path = _parquet(
        tmp_path / "xquad.parquet",
        {
            "id": ["a", "b"],
            "context": ["abc", "abc"],
            "question": ["?", "?"],
            "answers": [{"text": ["b"], "answer_start": [1]}, {"text": ["b"], "answer_start": [0]}],
        },
    )
    with pytest.raises(DataFormatError) as info:
        load_hub("xquad", "test", "de", data_files=path, cache_dir=tmp_path / "cache")
    assert info.value.line == 2 and "xquad.parquet" in str(info.value)


def test_tatoeba_rows_are_aligned_pairs(tmp_path: Path) -> None:
    path = _parquet(tmp_path / "t.parquet", {"source_sentence": ["Hallo.\n", "Danke.\n"], "target_sentence": ["Hello.\n", "Thanks.\n"]})
    (bitext,) = load_hub("tatoeba", "test", "de", data_files=path, cache_dir=tmp_path / "cache")
    assert bitext.source == {"0": "Hallo.", "1": "Danke."}
    assert bitext.gold == {("0", "0"), ("1", "1")}


def test_specs_cover_the_tasks_and_configs() -> None:
    with_hub_test = {
        t.name for t in REGISTRY if t.family == "xtreme" and isinstance(t.source.for_split("test"), HubTable)
    }
    assert with_hub_test == {"xnli", "pawsx", "udpos", "panx", "xquad", "mlqa", "tydiqa", "tatoeba"}
    assert hub_spec("mlqa").config_for("de") == "MLQA.de.de"
    assert hub_spec("xquad").config_for("zh") == "xquad.zh"
    assert hub_spec("tatoeba").config_for("de") == "tatoeba.deu"
    assert hub_spec("udpos").config_for("en") == "udpos.English"
    assert hub_spec("panx").config_for("de") == "PAN-X.de"
    with pytest.raises(ConfigError, match="bucc2018"):
        hub_spec("bucc2018")
    with pytest.raises(ConfigError, match="hub split"):
        load_hub("tydiqa", "dev", "fi", data_files="unused.parquet")
