"""XCOPA (XTREME-R) as a target: the registry entry, its reader on the real files of
../shared/data/xcopa (11 languages), a run that scores every language, and its sources."""

from __future__ import annotations

import io
import json
import random
import zipfile
from pathlib import Path

import pytest

from conftest import shared_file
from xstilts.data.readers import read_examples
from xstilts.errors import DataFormatError
from xstilts.tasks import get_task

LANGS = ["et", "ht", "id", "it", "qu", "sw", "ta", "th", "tr", "vi", "zh"]


def _xcopa() -> Path:
    return shared_file("xcopa/data/et/test.et.jsonl").parents[2]


def _english_copa(path: Path, n: int = 40) -> None:
    """Small English COPA-format training data (no COPA release file is in ../shared/data)."""
    rng = random.Random(0)
    facts = [("turned on the faucet.", "Water flowed out.", "The sink was dry.", "effect"),
             ("felt tired.", "They went to bed.", "They ran a marathon.", "effect"),
             ("was hungry.", "They skipped lunch.", "They ate a big lunch.", "cause"),
             ("got wet.", "It was raining.", "The sun was shining.", "cause")]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for i in range(n):
            premise, right, wrong, question = rng.choice(facts)
            label = rng.randrange(2)
            choices = [right, wrong] if label == 0 else [wrong, right]
            handle.write(json.dumps({"premise": f"{rng.choice(['A man', 'A child'])} {premise}",
                                     "choice1": choices[0], "choice2": choices[1],
                                     "question": question, "label": label, "idx": i}) + "\n")


def test_xcopa_is_a_registered_target_with_its_eleven_languages(capsys):
    from xstilts.cli import main

    task = get_task("xcopa")
    assert (task.kind.value, task.metric, task.family) == ("multiple-choice", "accuracy", "xtreme-r")
    assert list(task.splits["test"]) == LANGS and task.splits["train"] == ("en",)
    assert main(["tasks", "--json"]) == 0
    entry = next(t for t in json.loads(capsys.readouterr().out) if t["name"] == "xcopa")
    assert sorted(entry["splits"]["test"]) == LANGS


def test_the_reader_reads_the_real_files_and_data_check_counts_them(capsys):
    from xstilts.cli import main

    root = _xcopa()
    (first, *_rest) = read_examples("xcopa", root, "test", "et")
    assert len(_rest) == 499
    raw = json.loads((root / "data/et/test.et.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert first.context == raw["premise"] and first.choices == [raw["choice1"], raw["choice2"]]
    assert first.label == raw["label"]
    assert first.question == ("What was the cause?" if raw["question"] == "cause" else "What happened as a result?")
    assert main(["data", "check", str(root), "--tasks", "xcopa", "--json"]) == 0
    languages = json.loads(capsys.readouterr().out)["tasks"]["xcopa"]["languages"]
    assert sorted(languages) == LANGS
    for lang in LANGS:
        assert (languages[lang]["dev"]["count"], languages[lang]["test"]["count"]) == (100, 500)
        assert languages[lang]["dev"]["problems"] == languages[lang]["test"]["problems"] == []


def test_a_malformed_record_names_the_file_and_line(tmp_path):
    bad = tmp_path / "xcopa" / "test.et.jsonl"
    bad.parent.mkdir()
    bad.write_text('{"premise": "a", "choice1": "b", "choice2": "c", "question": "effect", "label": 1}\n'
                   '{"premise": "a", "choice1": "b", "choice2": "c", "question": "why", "label": 0}\n')
    with pytest.raises(DataFormatError) as info:
        read_examples("xcopa", tmp_path, "test", "et")
    assert str(info.value) == f"{bad}:2: expected question 'cause' or 'effect', found 'why'"


def test_a_run_scores_all_eleven_languages_on_the_real_test_files(tmp_path):
    pytest.importorskip("torch")
    from xstilts.cli import main
    from xstilts.models.tiny import build_tiny_model

    root = _xcopa()
    data = tmp_path / "data"
    _english_copa(data / "COPA" / "train.jsonl")
    (data / "xcopa").symlink_to(root, target_is_directory=True)
    model = tmp_path / "tiny"
    words = (data / "COPA" / "train.jsonl").read_text().split()
    build_tiny_model(model, extra_text=words, hidden_size=32, num_layers=2, vocab_size=800)
    out = tmp_path / "run"
    assert main(["run", "--model", str(model), "--target", "xcopa", "--data-dir", str(data), "--out", str(out),
                 "--epochs", "1", "--batch-size", "8", "--max-length", "64", "--no-progress"]) == 0
    scores = json.loads((out / "scores.json").read_text())["tasks"]["xcopa"]
    assert sorted(scores["languages"]) == LANGS
    for lang in LANGS:  # accuracy over all 500 test examples, recomputed from the files
        predicted = [int(x) for x in (out / "predictions/xcopa" / f"test-{lang}.tsv").read_text().split()]
        gold = [json.loads(line)["label"] for line in
                (root / "data" / lang / f"test.{lang}.jsonl").read_text(encoding="utf-8").splitlines()]
        assert len(predicted) == len(gold) == 500
        expected = 100.0 * sum(p == g for p, g in zip(predicted, gold)) / 500
        assert scores["languages"][lang]["accuracy"] == pytest.approx(expected)
    assert scores["score"] == pytest.approx(sum(s["accuracy"] for s in scores["languages"].values()) / 11, abs=0.01)


def test_xcopa_is_fetched_from_the_hub_and_copa_from_its_release(tmp_path, monkeypatch):
    from hub_helpers import dataset, hub_repo
    from xstilts.data import fetch

    cache, out = tmp_path / "hub", tmp_path / "data"
    rows = {"premise": ["P"], "choice1": ["a"], "choice2": ["b"], "question": ["cause"], "label": [1],
            "idx": [0], "changed": [False]}
    hub_repo(cache, "cambridgeltl/xcopa", {"et/test-00000-of-00001.parquet": dataset(rows)})
    english = io.BytesIO()
    with zipfile.ZipFile(english, "w") as archive:
        archive.writestr("COPA/train.jsonl", json.dumps({k: v[0] for k, v in rows.items() if k != "changed"}) + "\n")
        archive.writestr("COPA/test.jsonl", "")
    (tmp_path / "COPA.zip").write_bytes(english.getvalue())
    monkeypatch.setenv("XSTILTS_XCOPA_URL", f"file://{tmp_path}/COPA.zip")
    report = fetch.get(["xcopa"], out, languages=["en", "et"], splits=["train", "test"], cache_dir=cache)
    assert sorted(f.path for f in report.files) == ["COPA/train.jsonl", "xcopa/data/et/test.et.jsonl"]
    assert read_examples("xcopa", out, "test", "et")[0].label == 1
    assert read_examples("xcopa", out, "train", "en")[0].choices == ["a", "b"]
    assert not (out / "COPA" / "test.jsonl").exists()  # only the member the task reads is kept
