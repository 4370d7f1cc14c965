"""``xstilts data get`` and ``hub:`` data folders, offline, against a local hub cache laid out as
``huggingface_hub`` keeps it (tests/hub_helpers.py): the real snapshot_download path runs with
HF_HUB_OFFLINE=1 (set by conftest), nothing touches the network."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from hub_helpers import COMMIT, dataset, hub_repo

from xstilts.data import fetch
from xstilts.data.hub import load_hub
from xstilts.data.readers import read_examples
from xstilts.errors import MissingDataError
from xstilts.fileio import sha256_of
from xstilts.tasks import get_task
from xstilts.tasks.sources import HubTable
from xstilts.tasks.xtreme import UPOS_LABELS, XTREME_TASKS

UPOS = sorted(UPOS_LABELS)  # google/xtreme's pos_tags order (alphabetical, 17)
NLI = ["entailment", "neutral", "contradiction"]


def _xtreme_cache(cache: Path) -> None:
    hub_repo(cache, "google/xtreme", {
        "udpos.English/train-00000-of-00001.parquet": dataset(
            {"tokens": [["The", "cat", "sleeps", "."], ["Dogs", "bark"]],
             "pos_tags": [[UPOS.index(t) for t in ("DET", "NOUN", "VERB", "PUNCT")],
                          [UPOS.index("NOUN"), UPOS.index("VERB")]]},
            {"pos_tags": UPOS}),
        "udpos.French/test-00000-of-00001.parquet": dataset(
            {"tokens": [["Le", "chat", '"dort"']], "pos_tags": [[UPOS.index("DET"), UPOS.index("NOUN"), UPOS.index("VERB")]]},
            {"pos_tags": UPOS}),
        "tatoeba.deu/validation-00000-of-00001.parquet": dataset(
            {"source_sentence": ["Hallo.\n", "Danke schön.\n"], "target_sentence": ["Hello.\n", "Thank you.\n"],
             "source_lang": ["deu", "deu"], "target_lang": ["eng", "eng"]}),
    })
    hub_repo(cache, "facebook/xnli", {
        "en/train-00000-of-00001.parquet": dataset(
            {"premise": ['He said "yes".', "A man."], "hypothesis": ["He agreed.", "A\twoman."], "label": [0, 2]},
            {"label": NLI}),
        "de/test-00000-of-00001.parquet": dataset(
            {"premise": ["Er kam."], "hypothesis": ["Er ging."], "label": [1]}, {"label": NLI}),
    })


def test_get_writes_xtreme_layouts_that_read_back_as_the_hub_rows_with_manifests(tmp_path):
    cache, out = tmp_path / "hub", tmp_path / "data"
    _xtreme_cache(cache)
    report = fetch.get(["xnli", "udpos", "tatoeba"], out, languages=["en", "de", "fr"], cache_dir=cache)
    written = {f.path for f in report.files if f.status == "written"}
    assert written == {
        "xnli/train-en.tsv", "xnli/test-de.tsv", "udpos/train-en.tsv", "udpos/test-fr.tsv",
        "tatoeba/tatoeba.deu-eng.deu", "tatoeba/tatoeba.deu-eng.eng",
    }
    # what the local readers see equals the hub conversion of the same parquet rows
    snapshot = cache / "datasets--google--xtreme" / "snapshots" / COMMIT
    hub_fr = load_hub("udpos", "test", "fr", data_files=snapshot / "udpos.French/test-00000-of-00001.parquet")
    local_fr = read_examples("udpos", out, "test", "fr")
    assert [(e.tokens, e.tags) for e in local_fr] == [(e.tokens, e.tags) for e in hub_fr]
    assert local_fr[0].tags == ["DET", "NOUN", "VERB"]
    train = read_examples("xnli", out, "train", "en")
    assert [(e.text_a, e.text_b, e.label) for e in train] == [
        ('He said "yes".', "He agreed.", "entailment"), ("A man.", "A woman.", "contradiction")]
    assert read_examples("xnli", out, "test", "de")[0].label == "neutral"  # the hub keeps test labels
    (bitext,) = read_examples("tatoeba", out, "test", "de")
    assert bitext.source == {"0": "Hallo.", "1": "Danke schön."} and bitext.target["1"] == "Thank you."
    assert bitext.gold == {("0", "0"), ("1", "1")}
    # one manifest per file: source, revision, URLs, sha256, count
    manifest = json.loads((out / "manifests" / "udpos/test-fr.tsv.json").read_text())
    assert manifest["count"] == 1 and manifest["unit"] == "sentences"
    assert manifest["sha256"] == sha256_of(out / "udpos/test-fr.tsv")
    (source,) = manifest["source"]
    assert (source["id"], source["config"], source["split"], source["revision"]) == (
        "google/xtreme", "udpos.French", "test", COMMIT)
    assert source["urls"] == [
        f"https://huggingface.co/datasets/google/xtreme/resolve/{COMMIT}/udpos.French/test-00000-of-00001.parquet"]
    # splits the copies lack are named, not silently dropped
    assert "udpos dev fr (hub:google/xtreme/udpos.French[validation]: no such split)" in report.absent
    assert any("withholds" in n for n in report.notes["xnli"])


def test_a_second_get_skips_what_is_there_without_the_network_and_refetches_a_damaged_file(tmp_path):
    cache, out = tmp_path / "hub", tmp_path / "data"
    _xtreme_cache(cache)
    fetch.get(["udpos"], out, languages=["en", "fr"], cache_dir=cache)
    stamp = (out / "udpos/train-en.tsv").stat().st_mtime_ns
    shutil.rmtree(cache)  # nothing cached and offline: only a skip can succeed
    again = fetch.get(["udpos"], out, languages=["en", "fr"], cache_dir=cache)
    assert {f.status for f in again.files} == {"present"}
    assert (out / "udpos/train-en.tsv").stat().st_mtime_ns == stamp
    # a file cut short (or edited) no longer matches its manifest: fetched again
    (out / "udpos/test-fr.tsv").write_text("Le\tDET\n")
    assert fetch.file_state(out, "udpos/test-fr.tsv") == "stale"
    with pytest.raises(MissingDataError, match=r"cannot fetch hub:google/xtreme/udpos.French\[test\]: it is not in the hub cache"):
        fetch.get(["udpos"], out, languages=["fr"], cache_dir=cache)
    _xtreme_cache(cache)
    fetch.get(["udpos"], out, languages=["fr"], cache_dir=cache)
    assert read_examples("udpos", out, "test", "fr")[0].tokens == ["Le", "chat", '"dort"']
    # a file the user put there (no manifest) is left as it is
    (out / "udpos/dev-en.tsv").write_text("Mine\tNOUN\n")
    report = fetch.get(["udpos"], out, languages=["en"], splits=["dev"], cache_dir=cache)
    assert [(f.path, f.status) for f in report.files] == [("udpos/dev-en.tsv", "user")]
    assert (out / "udpos/dev-en.tsv").read_text() == "Mine\tNOUN\n"


def test_an_interrupted_get_resumes_where_it_stopped(tmp_path):
    cache, out = tmp_path / "hub", tmp_path / "data"
    _xtreme_cache(cache)
    shutil.rmtree(cache / "datasets--facebook--xnli")  # the second task cannot be fetched
    with pytest.raises(MissingDataError, match="facebook/xnli"):
        fetch.get(["udpos", "xnli"], out, languages=["en"], cache_dir=cache)
    assert fetch.file_state(out, "udpos/train-en.tsv") == "present"  # finished before the stop
    _xtreme_cache(cache)
    report = fetch.get(["udpos", "xnli"], out, languages=["en"], cache_dir=cache)
    status = {f.path: f.status for f in report.files}
    assert status == {"udpos/train-en.tsv": "present", "xnli/train-en.tsv": "written"}
    assert not list(out.rglob("*.tmp"))


def test_intermediate_and_code_tasks_are_written_in_their_release_layouts(tmp_path):
    cache, out = tmp_path / "hub", tmp_path / "data"
    hub_repo(cache, "nyu-mll/multi_nli", {
        "data/train-00000-of-00001.parquet": dataset(
            {"premise": ["P1", "P2", "P3"], "hypothesis": ["H1", "H2", "H3"], "label": [2, -1, 0],
             "pairID": ["1e", "2n", "3c"], "genre": ["fiction"] * 3}, {"label": NLI}),
    })
    hub_repo(cache, "allenai/cosmos_qa", {
        "default/train/0000.parquet": dataset(
            {"id": ["q1"], "context": ['She said, "go",\nthen left.'], "question": ["Why?"],
             "answer0": ["a"], "answer1": ["b"], "answer2": ["c"], "answer3": ["d"], "label": [2]}),
    }, revision="refs/convert/parquet")
    hub_repo(cache, "neulab/conala", {
        "curated/train/0000.parquet": dataset(
            {"question_id": [1, 2], "intent": ["sort a list", "add"], "rewritten_intent": ["sort list `x`", None],
             "snippet": ["x.sort()", "a + b"]}),
    }, revision="refs/convert/parquet")
    hub_repo(cache, "google-research-datasets/mbpp", {
        f"full/{split}-00000-of-00001.parquet": dataset(
            {"task_id": [tid], "text": [f"Task {tid}"], "code": ["def f():\n    return 1"],
             "test_list": [["assert f() == 1"]], "test_setup_code": [""], "challenge_test_list": [[]]})
        for split, tid in (("train", 700), ("test", 11), ("validation", 520), ("prompt", 2))
    })
    report = fetch.get(["mnli", "cosmosqa", "conala", "mbpp", "ccg"], out, splits=["train", "test"], cache_dir=cache)
    written = {f.path: f.count for f in report.files if f.status == "written"}
    assert written == {
        "multinli_1.0/multinli_1.0_train.jsonl": 2,  # the pair without gold ('-') is left out
        "cosmosqa/data/train.csv": 1,
        "conala-corpus/conala-train.json": 2,
        "mbpp/mbpp.jsonl": 1,  # the train split's task ids (601-974) of the one release file
    }
    mnli = read_examples("mnli", out, "train", "en")
    assert [(e.text_a, e.label) for e in mnli] == [("P1", "contradiction"), ("P3", "entailment")]
    (cosmos,) = read_examples("cosmosqa", out, "train", "en")
    assert cosmos.context == 'She said, "go",\nthen left.' and cosmos.label == 2
    assert [e.source for e in read_examples("conala", out, "train", "en")] == ["sort list `x`", "add"]
    rows = [json.loads(line) for line in (out / "mbpp/mbpp.jsonl").read_text().splitlines()]
    assert [r["task_id"] for r in rows] == [2, 11, 520, 700]  # every hub split, in task-id order
    assert "LDC" in report.unavailable["ccg"]
    assert "conala test en (hub:neulab/conala/curated[test]: no such split)" in report.absent


def test_bucc_comes_from_the_release_archive_with_its_distractors(tmp_path, monkeypatch):
    server = tmp_path / "server"
    server.mkdir()
    files = {
        "bucc2018/de-en/de-en.sample.de": "de-000000001\tHallo Welt.\nde-000000002\tNur ein Satz.\n",
        "bucc2018/de-en/de-en.sample.en": "en-000000001\tHello world.\nen-000000002\tA distractor.\n",
        "bucc2018/de-en/de-en.sample.gold": "de-000000001\ten-000000001\n",
    }
    with tarfile.open(server / "bucc2018-de-en.sample-gold.tar.bz2", "w:bz2") as archive:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    monkeypatch.setenv("XSTILTS_BUCC2018_URL", f"file://{server}/bucc2018-{{lang}}-en.{{name}}-gold.tar.bz2")
    out = tmp_path / "data"
    report = fetch.get(["bucc2018"], out, languages=["de"], splits=["dev"])
    assert sorted(f.path for f in report.files) == sorted(files)
    (bitext,) = read_examples("bucc2018", out, "dev", "de")
    assert len(bitext.target) == 2 and bitext.gold == {("de-000000001", "en-000000001")}
    manifest = json.loads((out / "manifests" / "bucc2018/de-en/de-en.sample.en.json").read_text())
    assert manifest["source"][0]["archive_sha256"] and manifest["count"] == 2
    assert not (out / ".downloads" / "bucc2018-de-en.sample-gold.tar.bz2").exists()
    (server / "bucc2018-de-en.sample-gold.tar.bz2").unlink()  # skipped now: no download needed
    assert {f.status for f in fetch.get(["bucc2018"], out, languages=["de"], splits=["dev"]).files} == {"present"}


def test_without_network_or_cache_the_command_fails_with_one_line(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "empty")}
    result = subprocess.run(
        [sys.executable, "-m", "xstilts.cli", "data", "get", "udpos", "--languages", "fr", "--out", str(tmp_path / "d")],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: cannot fetch hub:google/xtreme/udpos.French[validation]: it is not in the hub cache")


def test_every_xtreme_task_declares_its_source_on_its_entry():
    for name in XTREME_TASKS:
        source = get_task(name).source.for_split("test")
        if name == "bucc2018":
            assert not isinstance(source, HubTable)  # the hub copies lack the distractors
            continue
        assert isinstance(source, HubTable) and source.columns, name  # the conversion is declared too


# ---------------------------------------------------------------------- a hub-sourced run
WORDS = {"NOUN": ["cat", "dog", "tree"], "VERB": ["runs", "sleeps"], "DET": ["the", "a"], "PUNCT": ["."]}


def _sentences(n: int, seed: int) -> list[tuple[list[str], list[str]]]:
    import random

    rng = random.Random(seed)
    out = []
    for _ in range(n):
        tags = ["DET", "NOUN", "VERB"] + (["PUNCT"] if rng.random() < 0.5 else [])
        out.append(([rng.choice(WORDS[t]) for t in tags], tags))
    return out


def test_a_run_on_hub_data_equals_the_same_run_on_the_local_files(tmp_path, capsys):
    pytest.importorskip("torch")
    from xstilts.cli import main
    from xstilts.models.tiny import build_tiny_model

    splits = {("English", "train"): _sentences(24, 1), ("English", "validation"): _sentences(6, 2),
              ("English", "test"): _sentences(6, 3), ("French", "test"): _sentences(6, 4)}
    cache = tmp_path / "hub"
    hub_repo(cache, "google/xtreme", {
        f"udpos.{name}/{split}-00000-of-00001.parquet": dataset(
            {"tokens": [s[0] for s in rows], "pos_tags": [[UPOS.index(t) for t in s[1]] for s in rows]},
            {"pos_tags": UPOS})
        for (name, split), rows in splits.items()
    })
    local = tmp_path / "local" / "udpos"
    local.mkdir(parents=True)
    ours = {"train": "train", "validation": "dev", "test": "test"}
    for (name, split), rows in splits.items():
        lang = "en" if name == "English" else "fr"
        text = "\n".join("".join(f"{w}\t{t}\n" for w, t in zip(*s)) for s in rows)
        (local / f"{ours[split]}-{lang}.tsv").write_text(text)
    model = tmp_path / "tiny"
    build_tiny_model(model, extra_text=[w for ws in WORDS.values() for w in ws], hidden_size=32, num_layers=2, vocab_size=300)

    def run(data_dir: str, out: Path) -> dict:
        args = ["run", "--model", str(model), "--target", "udpos", "--data-dir", data_dir, "--out", str(out),
                "--languages", "en,fr", "--seed", "2", "--epochs", "1", "--lr", "1e-3", "--batch-size", "8",
                "--max-length", "32", "--no-progress"]
        assert main(args) == 0
        return json.loads((out / "scores.json").read_text())

    os.environ["HF_HUB_CACHE"] = str(cache)  # read at call time by xstilts.data.fetch
    try:
        hub_data = tmp_path / "fetched"
        from_hub = run(f"hub:{hub_data}", tmp_path / "run-hub")
        from_files = run(str(tmp_path / "local"), tmp_path / "run-local")
        assert from_hub["tasks"] == from_files["tasks"]
        assert sorted(from_hub["tasks"]["udpos"]["languages"]) == ["en", "fr"]
        # the run records the folder it read, and `data check hub:DIR` reads the same files
        config = (tmp_path / "run-hub" / "config.yaml").read_text()
        assert str(hub_data) in config and "hub:" not in config
        capsys.readouterr()
        assert main(["data", "check", f"hub:{hub_data}", "--tasks", "udpos", "--json"]) == 0
        checked = json.loads(capsys.readouterr().out)
        assert "udpos" in json.dumps(checked) and "problems" in json.dumps(checked)
    finally:
        del os.environ["HF_HUB_CACHE"]


def test_a_study_on_hub_data_fetches_its_targets_in_its_languages(tmp_path, monkeypatch):
    from xstilts.commands.study import hub_data
    from xstilts.study.study_config import StudyConfig

    cache = tmp_path / "hub"
    _xtreme_cache(cache)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    study = StudyConfig(name="s", encoders=("tiny",), intermediate=({"name": "none"},),
                        targets=("udpos", "tatoeba"), languages={"udpos": ("fr",), "tatoeba": ("de",)})
    folder = hub_data(study, f"hub:{tmp_path / 'fetched'}")
    assert folder == tmp_path / "fetched"
    got = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and "manifests" not in p.parts)
    assert got == ["tatoeba/tatoeba.deu-eng.deu", "tatoeba/tatoeba.deu-eng.eng", "udpos/test-fr.tsv", "udpos/train-en.tsv"]
    assert hub_data(study, str(tmp_path)) == tmp_path  # a local folder is used as it is


def _qa(ids, contexts, questions, answers, titles=None):
    cols = {"id": ids, "context": contexts, "question": questions,
            "answers": [{"text": [t for t, _ in a], "answer_start": [s for _, s in a]} for a in answers]}
    if titles is not None:
        cols["title"] = titles
    return dataset(cols)


_PAIR = ("the cat sat", [("cat", 4)])
# task -> (repo, revision, {repo path: dataset}, split, language, expected count, check of the read examples)
ROUND_TRIPS = {
    "pawsx": ("google-research-datasets/paws-x", "main", lambda: {"en/train-00000-of-00001.parquet": dataset(
        {"id": [1, 2], "sentence1": ["a b", "c d"], "sentence2": ["b a", "d c"], "label": [1, -1]},
        {"label": ["0", "1"]})}, "train", "en", 1, lambda ex: ex[0].label == "1"),
    "panx": ("google/xtreme", "main", lambda: {"PAN-X.de/validation-00000-of-00001.parquet": dataset(
        {"tokens": [["Berlin", "ist", "groß"]], "ner_tags": [[5, 0, 0]], "langs": [["de"] * 3]},
        {"ner_tags": ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"]})},
        "dev", "de", 1, lambda ex: ex[0].tags == ["B-LOC", "O", "O"]),
    "xquad": ("google/xquad", "main", lambda: {"xquad.de/validation-00000-of-00001.parquet": _qa(
        ["q1", "q2"], [_PAIR[0], _PAIR[0]], ["who?", "what?"], [_PAIR[1], [("sat", 8)]])},
        "test", "de", 2, lambda ex: ex[1].answers[0].text == "sat" and ex[0].context == ex[1].context),
    "mlqa": ("google/xtreme", "main", lambda: {"MLQA.de.de/test-00000-of-00001.parquet": _qa(
        ["m1"], [_PAIR[0]], ["who?"], [_PAIR[1]], titles=["T"])}, "test", "de", 1, lambda ex: ex[0].title == "T"),
    "tydiqa": ("google-research-datasets/tydiqa", "main", lambda: {"secondary_task/validation-00000-of-00001.parquet": _qa(
        ["finnish-1", "english-2"], [_PAIR[0]] * 2, ["q", "q"], [_PAIR[1]] * 2, titles=["a", "b"])},
        "test", "fi", 1, lambda ex: ex[0].id == "finnish-1"),
    "snli": ("stanfordnlp/snli", "main", lambda: {"plain_text/test-00000-of-00001.parquet": dataset(
        {"premise": ["p"], "hypothesis": ["h"], "label": [1]}, {"label": NLI})},
        "test", "en", 1, lambda ex: ex[0].label == "neutral"),
    "anli": ("facebook/anli", "main", lambda: {f"plain_text/dev_r{r}-00000-of-00001.parquet": dataset(
        {"uid": [f"u{r}"], "premise": [f"p{r}"], "hypothesis": ["h"], "label": [r - 1], "reason": [""]},
        {"label": NLI}) for r in (1, 2, 3)}, "dev", "en", 3,
        lambda ex: [(e.id, e.label) for e in ex] == [("u1", "entailment"), ("u2", "neutral"), ("u3", "contradiction")]),
    "qqp": ("nyu-mll/glue", "main", lambda: {"qqp/validation-00000-of-00001.parquet": dataset(
        {"question1": ["Why\tso?"], "question2": ["How?"], "label": [1], "idx": [7]},
        {"label": ["not_duplicate", "duplicate"]})}, "dev", "en", 1,
        lambda ex: (ex[0].text_a, ex[0].label) == ("Why so?", "1")),
    "squad_v2": ("rajpurkar/squad_v2", "main", lambda: {"squad_v2/validation-00000-of-00001.parquet": _qa(
        ["a", "b"], [_PAIR[0]] * 2, ["q1", "q2"], [_PAIR[1], []], titles=["t", "t"])},
        "dev", "en", 2, lambda ex: [e.is_impossible for e in ex] == [False, True]),
    "hellaswag": ("Rowan/hellaswag", "refs/convert/parquet", lambda: {"default/validation/0000.parquet": dataset(
        {"ind": [4], "activity_label": ["x"], "ctx_a": ["A man"], "ctx_b": ["then"], "ctx": ["A man then"],
         "endings": [["e0", "e1", "e2", "e3"]], "source_id": ["s"], "split": ["val"], "split_type": ["indomain"],
         "label": ["2"]})}, "dev", "en", 1, lambda ex: ex[0].label == 2 and ex[0].choices[0] == "then e0"),
    "commonsenseqa": ("tau/commonsense_qa", "main", lambda: {"data/validation-00000-of-00001.parquet": dataset(
        {"id": ["c1"], "question": ["Where?"], "question_concept": ["x"],
         "choices": [{"label": list("ABCDE"), "text": list("vwxyz")}], "answerKey": ["C"]})},
        "dev", "en", 1, lambda ex: ex[0].label == 2),
    "conala_mined": ("neulab/conala", "refs/convert/parquet", lambda: {"mined/train/0000.parquet": dataset(
        {"question_id": [1], "parent_answer_post_id": [2], "prob": [0.5], "snippet": ["f()"], "intent": ["call f"],
         "id": ["1_2_0"]})}, "train", "en", 1, lambda ex: ex[0].target == "f()"),
    "mconala": ("neulab/mconala", "refs/convert/parquet", lambda: {"es/test/0000.parquet": dataset(
        {"question_id": [1], "intent": ["ordenar"], "rewritten_intent": ["ordenar `x`"], "snippet": ["x.sort()"]})},
        "test", "es", 1, lambda ex: ex[0].source == "ordenar `x`"),
    "concode": ("google/code_x_glue_tc_text_to_code", "main", lambda: {"data/validation-00000-of-00001.parquet": dataset(
        {"id": [0], "nl": ["return one"], "code": ["int f ( ) { return 1 ; }"]})}, "dev", "en", 1,
        lambda ex: ex[0].language == "java"),
    "humaneval": ("openai/openai_humaneval", "main", lambda: {"openai_humaneval/test-00000-of-00001.parquet": dataset(
        {"task_id": ["HumanEval/0"], "prompt": ["def f():\n    \"\"\"One.\"\"\"\n"], "canonical_solution": ["    return 1\n"],
         "test": ["def check(c):\n    assert c() == 1\n"], "entry_point": ["f"]})}, "test", "en", 1,
        lambda ex: ex[0].id == "HumanEval/0"),
    "codesearchnet_cxg": ("google/code_x_glue_ct_code_to_text", "main", lambda: {"python/test-00000-of-00001.parquet": dataset(
        {"id": [0], "repo": ["r"], "path": ["p.py"], "func_name": ["f"], "original_string": ["def f(): pass"],
         "language": ["python"], "code": ["def f(): pass"], "code_tokens": [["def"]], "docstring": ["Does f."],
         "docstring_tokens": [["Does"]], "sha": ["0"], "url": ["u"]})}, "test", "python", 1,
        lambda ex: ex[0].source == "Does f."),
}


@pytest.mark.parametrize("task", sorted(ROUND_TRIPS))
def test_every_hub_task_is_written_so_its_reader_reads_the_rows_back(task, tmp_path):
    repo, revision, files, split, lang, count, check = ROUND_TRIPS[task]
    cache, out = tmp_path / "hub", tmp_path / "data"
    hub_repo(cache, repo, files(), revision=revision)
    report = fetch.get([task], out, languages=[lang], splits=[split], cache_dir=cache)
    written = [f for f in report.files if f.status == "written"]
    assert written and all(f.count == count for f in written), report.to_json()
    examples = read_examples(task, out, split, lang)
    assert len(examples) == count and check(examples)
    assert {f.status for f in fetch.get([task], out, languages=[lang], splits=[split], cache_dir=cache).files} == {"present"}


def test_django_comes_from_its_release_files(tmp_path, monkeypatch):
    server = tmp_path / "server"
    server.mkdir()
    (server / "all.anno").write_text("".join(f"call f {i}\n" for i in range(18805)))
    (server / "all.code").write_text("".join(f"f({i})\n" for i in range(18805)))
    monkeypatch.setenv("XSTILTS_DJANGO_URL", f"file://{server}")
    out = tmp_path / "data"
    report = fetch.get(["django"], out)
    assert sorted(f.path for f in report.files if f.status == "written") == ["django/all.anno", "django/all.code"]
    assert len(read_examples("django", out, "test", "en")) == 18805 - 17000
    assert {f.status for f in report.files[2:]} == {"present"}  # dev and test share the files


def test_the_command_shows_progress_and_names_what_it_could_not_fetch(tmp_path, monkeypatch, capsys):
    from xstilts.cli import main

    cache, out = tmp_path / "hub", tmp_path / "data"
    _xtreme_cache(cache)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    assert main(["data", "get", "udpos,ccg", "--languages", "fr", "--splits", "test", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "udpos test fr: 1 sentences -> udpos/test-fr.tsv" in captured.err
    assert f"{out}: 1 file(s) written, 0 already there" in captured.out
    assert "cannot be fetched: ccg: CCGbank is licensed by the LDC" in captured.out
    assert main(["data", "get", "udpos", "-l", "fr", "-s", "test", "--out", str(out)]) == 0
    assert "0 file(s) written, 1 already there" in capsys.readouterr().out


def test_a_malformed_hub_row_is_one_error_line_naming_the_source_and_row(tmp_path, monkeypatch, capsys):
    from xstilts.cli import main

    cache = tmp_path / "hub"
    hub_repo(cache, "google/xquad", {"xquad.de/validation-00000-of-00001.parquet": _qa(
        ["q1", "q2"], [_PAIR[0]] * 2, ["who?", "what?"], [_PAIR[1], [("dog", 4)]])})
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    capsys.readouterr()  # the fixture's own output
    assert main(["data", "get", "xquad", "-l", "de", "-s", "test", "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: hub:google/xquad/xquad.de[validation]:2: expected answer 'dog' of question q2 "
                   "at context[4:7], found 'cat'"]
    assert not (tmp_path / "d" / "xquad").exists()  # nothing half-written


def test_files_the_reader_refuses_or_a_stop_cut_short_are_not_left_as_the_users(tmp_path, monkeypatch):
    cache, out = tmp_path / "hub", tmp_path / "data"
    _xtreme_cache(cache)
    real = fetch.read_examples

    def refuse(*args, **kwargs):
        raise MissingDataError("stopped before the read-back")

    monkeypatch.setattr(fetch, "read_examples", refuse)
    with pytest.raises(MissingDataError):
        fetch.get(["udpos"], out, languages=["fr"], splits=["test"], cache_dir=cache)
    assert not (out / "udpos/test-fr.tsv").exists() and not fetch.manifest_path(out, "udpos/test-fr.tsv").exists()
    # a file written but never read back (its manifest still pending) is fetched again
    monkeypatch.setattr(fetch, "read_examples", real)
    fetch.get(["udpos"], out, languages=["fr"], splits=["test"], cache_dir=cache)
    fetch.manifest_path(out, "udpos/test-fr.tsv").write_text('{"pending": true}')
    assert fetch.file_state(out, "udpos/test-fr.tsv") == "stale"
    report = fetch.get(["udpos"], out, languages=["fr"], splits=["test"], cache_dir=cache)
    assert [f.status for f in report.files] == ["written"]
