"""A catalogue of bad inputs and faults a user hits, each through the CLI: one line on stderr,
``error: FILE[:LINE]: expected …, found …``, exit status 2, no traceback, nothing of the user's
deleted. Real files are copied from ../shared/data into tmp_path and corrupted there; formats
without a real file here get small files written by the test.

The groups follow issue 16: labels and predictions checked like training data (1), blame on the
first bad line (2), empty files (3), QA questions without answers (4), a model used for another
task (5), output paths and files that are not what they should be (6), damaged run directories
(7), and encodings, byte-order marks, line ends, huge lines and NaN (8).
"""

from __future__ import annotations

import errno
import gzip
import json
import os
import re
import shutil
from pathlib import Path

import pytest
from conftest import shared_file

from xstilts.cli import main

UDPOS = "udpos/xtreme-format/download/udpos"
PANX = "panx/download/panx"
XQUAD_DE = "xquad/xquad.de.json"
HUMANEVAL = "humaneval/data/HumanEval.jsonl.gz"
UPOS_SET = "{ADJ, ADP, ADV, AUX, CCONJ, DET, INTJ, NOUN, NUM, PART, PRON, PROPN, PUNCT, SCONJ, SYM, VERB, X}"
PANX_SET = "{B-LOC, B-ORG, B-PER, I-LOC, I-ORG, I-PER, O}"
# Transformers' bar while loading weights, on stderr (not a message of ours).
PROGRESS_BAR = re.compile(r"\d+/\d+ \[[^\]]*it/s\]$")


def fails(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run the CLI; it must exit with 2 and print exactly one ``error:`` line and no traceback.
    Returns that line."""
    code = main(argv)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out, captured.err
    assert code == 2, (code, captured.out, captured.err)
    lines = [line for line in captured.err.splitlines() if line.strip() and not PROGRESS_BAR.search(line)]
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]


def copy_real(relative: str, dest: Path) -> Path:
    """A copy of a real data file (the test skips when it is absent)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shared_file(relative), dest)
    return dest


def tags_only(tagged: Path, dest: Path) -> Path:
    """The tag column of a token<TAB>tag file (a prediction file that matches it exactly)."""
    lines = tagged.read_text(encoding="utf-8").splitlines()
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text("".join((line.rsplit("\t", 1)[-1] if line.strip() else "") + "\n" for line in lines),
                    encoding="utf-8")
    return dest


def replace_line(path: Path, number: int, new: str) -> str:
    """Put ``new`` on line ``number`` (1-based); returns the old line."""
    lines = path.read_text(encoding="utf-8").split("\n")
    old = lines[number - 1]
    lines[number - 1] = new
    path.write_text("\n".join(lines), encoding="utf-8")
    return old


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------------------
# 1. `xstilts score`: label and prediction files are validated like training files
# ------------------------------------------------------------------------------------------


def test_score_label_file_with_a_tag_outside_the_label_set(tmp_path, capsys):
    """An unknown tag in a UDPOS label file (token<TAB>tag) names the file, the line and the
    allowed tags (it used to score 99.86 silently)."""
    labels = copy_real(f"{UDPOS}/test-fr.tsv", tmp_path / "labels/udpos/test-fr.tsv")
    tags_only(labels, tmp_path / "preds/udpos/test-fr.tsv")
    token = replace_line(labels, 3, "").split("\t")[0]
    replace_line(labels, 3, f"{token}\tFOO")
    line = fails(["score", "-p", str(tmp_path / "preds"), "-l", str(tmp_path / "labels"), "-t", "udpos"], capsys)
    assert line == f"error: {labels}:3: expected a tag in {UPOS_SET} (the udpos tags), found 'FOO'"


def test_score_label_file_line_without_a_tab(tmp_path, capsys):
    """A PAN-X label line without the tab that every other line has is named by its line."""
    labels = copy_real(f"{PANX}/dev-de.tsv", tmp_path / "labels/panx/test-de.tsv")
    tags_only(labels, tmp_path / "preds/panx/test-de.tsv")
    old = replace_line(labels, 4, "")
    replace_line(labels, 4, old.replace("\t", " "))
    line = fails(["score", "-p", str(tmp_path / "preds"), "-l", str(tmp_path / "labels"), "-t", "panx"], capsys)
    assert line.startswith(f"error: {labels}:4: expected token<TAB>tag as on line 1")
    assert "found 1 tab-separated field" in line


def test_score_predicted_tag_outside_the_label_set(tmp_path, capsys):
    """A predicted PAN-X tag that PAN-X does not have (B-MISC) is refused with the allowed tags."""
    labels = copy_real(f"{PANX}/dev-de.tsv", tmp_path / "labels/panx/test-de.tsv")
    preds = tags_only(labels, tmp_path / "preds/panx/test-de.tsv")
    replace_line(preds, 2, "B-MISC")
    line = fails(["score", "-p", str(tmp_path / "preds"), "-l", str(tmp_path / "labels"), "-t", "panx"], capsys)
    assert line == f"error: {preds}:2: expected a tag in {PANX_SET} (the panx tags), found 'B-MISC'"


def test_score_predicted_label_outside_the_label_set(tmp_path, capsys):
    """Sentence-pair predictions too: PAWS-X has the labels 0 and 1 only."""
    for root in ("labels", "preds"):
        (tmp_path / root / "pawsx").mkdir(parents=True)
        (tmp_path / root / "pawsx/test-de.tsv").write_text("0\n1\n1\n", encoding="utf-8")
    (tmp_path / "preds/pawsx/test-de.tsv").write_text("0\n1\n2\n", encoding="utf-8")
    line = fails(["score", "-p", str(tmp_path / "preds"), "-l", str(tmp_path / "labels"), "-t", "pawsx"], capsys)
    assert line == (f"error: {tmp_path / 'preds/pawsx/test-de.tsv'}:3: expected a label in {{0, 1}} "
                    "(the pawsx labels), found '2'")


def _tatoeba_world(tmp_path: Path) -> tuple[Path, Path]:
    """Real LASER Tatoeba files (German) and a prediction file that is entirely right."""
    data = tmp_path / "data"
    src = copy_real("tatoeba/v1/tatoeba.deu-eng.deu", data / "tatoeba.deu-eng.deu")
    copy_real("tatoeba/v1/tatoeba.deu-eng.eng", data / "tatoeba.deu-eng.eng")
    n = len(src.read_text(encoding="utf-8").splitlines())
    preds = tmp_path / "preds/tatoeba/test-de.tsv"
    preds.parent.mkdir(parents=True)
    preds.write_text("".join(f"{i}\n" for i in range(n)), encoding="utf-8")
    return data, preds


def test_score_tatoeba_index_beyond_the_pool(tmp_path, capsys):
    """A Tatoeba prediction must index one of the pool's English sentences."""
    data, preds = _tatoeba_world(tmp_path)
    n = len(preds.read_text().splitlines())
    argv = ["score", "-p", str(tmp_path / "preds"), "--data", str(data), "-t", "tatoeba", "--json"]
    assert main(argv) == 0  # the intact copy scores
    assert json.loads(capsys.readouterr().out)["tasks"]["tatoeba"]["languages"]["de"]["accuracy"] == 100.0
    replace_line(preds, 7, str(n))
    line = fails(argv, capsys)
    assert line == (f"error: {preds}:7: expected a target index in 0..{n - 1} "
                    f"(the pool holds {n} English sentences), found {n}")


@pytest.mark.parametrize("bad", ["-1", "3.0", "nan", "inf", "7 "])
def test_score_tatoeba_index_negative_or_not_an_integer(tmp_path, capsys, bad):
    """Negative, fractional, NaN and infinite indices are refused at their line (a trailing
    blank is stripped, as evaluate.py strips it, and then read)."""
    data, preds = _tatoeba_world(tmp_path)
    replace_line(preds, 5, bad)
    argv = ["score", "-p", str(tmp_path / "preds"), "--data", str(data), "-t", "tatoeba"]
    if bad == "7 ":
        assert main(argv) == 0
        return
    line = fails(argv, capsys)
    assert line == f"error: {preds}:5: expected a plain non-negative integer (target index), found {bad!r}"


# ------------------------------------------------------------------------------------------
# 2. The first bad line is the one blamed
# ------------------------------------------------------------------------------------------


def test_first_line_without_a_tab_is_blamed_not_the_lines_after_it(tmp_path, capsys):
    """Line 1 of a UDPOS file lost its tab: the error names line 1 (it used to name line 2, as
    if every correct line after it were wrong) — in data files and in label files alike."""
    data = copy_real(f"{UDPOS}/test-fr.tsv", tmp_path / "data/udpos/test-fr.tsv")
    old = replace_line(data, 1, "")
    replace_line(data, 1, old.split("\t")[0])
    line = fails(["data", "show", "udpos", "-d", str(tmp_path / "data"), "-s", "test", "-l", "fr"], capsys)
    assert line.startswith(f"error: {data}:1: expected 2 tab-separated fields (token<TAB>tag) as on line 2")
    labels = tmp_path / "labels/udpos/test-fr.tsv"
    labels.parent.mkdir(parents=True)
    shutil.copyfile(data, labels)
    tags_only(copy_real(f"{UDPOS}/test-fr.tsv", tmp_path / "x.tsv"), tmp_path / "preds/udpos/test-fr.tsv")
    line = fails(["score", "-p", str(tmp_path / "preds"), "-l", str(tmp_path / "labels"), "-t", "udpos"], capsys)
    assert line.startswith(f"error: {labels}:1: expected token<TAB>tag as on line 2")


# ------------------------------------------------------------------------------------------
# 3. Empty files
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("content", [b"", b"\n \n\t\n\n"], ids=["empty", "blank-lines"])
def test_data_check_reports_an_empty_test_file(tmp_path, capsys, content):
    """`data check` lists an empty (or blank-only) test file as a problem; it said "no problems"."""
    copy_real(f"{UDPOS}/test-en.tsv", tmp_path / "udpos/test-en.tsv")
    empty = tmp_path / "udpos/test-fr.tsv"
    empty.write_bytes(content)
    assert main(["data", "check", str(tmp_path), "--tasks", "udpos"]) == 2
    out = capsys.readouterr().out
    assert "no problems found" not in out
    found = "an empty file" if not content else "an empty file (only blank lines)"
    assert f"error: {empty}: expected at least one sentence (token<TAB>tag lines), found {found}" in out.splitlines()


def test_reading_an_empty_test_file_for_evaluation_is_an_error(tmp_path, capsys):
    """Read for evaluation (`score --data`, `predict`, a run's phase 3) an empty test file stops
    with its name instead of scoring that language F1 0.0 inside the average."""
    copy_real(f"{UDPOS}/test-en.tsv", tmp_path / "data/udpos/test-en.tsv")
    empty = tmp_path / "data/udpos/test-fr.tsv"
    empty.write_text("\n\n", encoding="utf-8")
    tags_only(tmp_path / "data/udpos/test-en.tsv", tmp_path / "preds/udpos/test-en.tsv")
    (tmp_path / "preds/udpos/test-fr.tsv").write_text("", encoding="utf-8")
    line = fails(["score", "-p", str(tmp_path / "preds"), "--data", str(tmp_path / "data"), "-t", "udpos"], capsys)
    assert line == f"error: {empty}: expected at least one sentence (token<TAB>tag lines), found an empty file (only blank lines)"


def test_run_with_an_empty_test_file_stops_before_training(tmp_path, capsys, tiny_udpos_model):
    """`xstilts run` checks every input first: the empty file is named, nothing is trained."""
    data = tmp_path / "data/udpos"
    for name in ("train-en", "test-en"):
        copy_real(f"{UDPOS}/{name}.tsv", data / f"{name}.tsv")
    (data / "test-fr.tsv").write_text("", encoding="utf-8")
    out = tmp_path / "run"
    line = fails(["run", "--model", str(tiny_udpos_model / "encoder"), "--target", "udpos", "--data-dir",
                  str(tmp_path / "data"), "--out", str(out), "--no-progress"], capsys)
    assert f"{data / 'test-fr.tsv'}: expected at least one sentence" in line and "found an empty file" in line
    assert not (out / "phase2").exists()


def test_score_empty_label_file(tmp_path, capsys):
    """An empty gold file in a label folder is an error too (there is nothing to score against)."""
    for root in ("labels", "preds"):
        (tmp_path / root / "xnli").mkdir(parents=True)
        (tmp_path / root / "xnli/test-de.tsv").write_text("", encoding="utf-8")
    line = fails(["score", "-p", str(tmp_path / "preds"), "-l", str(tmp_path / "labels"), "-t", "xnli"], capsys)
    assert line == f"error: {tmp_path / 'labels/xnli/test-de.tsv'}: expected at least one label, found an empty file"


def test_code_eval_empty_humaneval_file(tmp_path, capsys):
    """A HumanEval.jsonl.gz that decompresses to nothing (pass@k over no problem was 0 problems)."""
    gz = tmp_path / "humaneval/data/HumanEval.jsonl.gz"
    gz.parent.mkdir(parents=True)
    gz.write_bytes(gzip.compress(b"\n"))
    line = fails(_humaneval_args(tmp_path, tmp_path / "samples.jsonl"), capsys)
    assert line == f"error: {gz}: expected at least one humaneval record, found an empty file"


# ------------------------------------------------------------------------------------------
# 4. An XQuAD question without answers
# ------------------------------------------------------------------------------------------


def _xquad_without_answers(dest: Path) -> tuple[Path, str, int]:
    """A copy of the real German XQuAD file with the answers of its second question removed
    (the copy keeps the original formatting); returns it, the question's id and its line."""
    text = shared_file(XQUAD_DE).read_text(encoding="utf-8")
    data = json.loads(text)
    qa = data["data"][0]["paragraphs"][0]["qas"][1]
    qid = qa["id"]
    start = text.index(json.dumps(qid))
    answers_at = text.rindex('"answers"', 0, start)  # XQuAD writes a question's answers before its id
    end = text.index("]", answers_at) + 1
    cut = text[:answers_at] + '"no_answers": []' + text[end:]
    assert "answers" not in json.loads(cut)["data"][0]["paragraphs"][0]["qas"][1]
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(cut, encoding="utf-8")
    return dest, qid, cut.count("\n", 0, cut.index(json.dumps(qid))) + 1


def test_data_check_xquad_question_without_answers(tmp_path, capsys):
    """`data check` names the file, the question's line and its id (it exited 0)."""
    path, qid, line_no = _xquad_without_answers(tmp_path / "xquad/xquad.de.json")
    assert main(["data", "check", str(tmp_path), "--tasks", "xquad"]) == 2
    out = capsys.readouterr().out
    assert f"error: {path}:{line_no}: question {qid}: expected answers, found none" in out.splitlines()


def test_score_xquad_question_without_answers(tmp_path, capsys):
    """`score` with the file as gold (a label folder, or a data folder) says the same (it
    ended in a traceback)."""
    path, qid, line_no = _xquad_without_answers(tmp_path / "data/xquad/xquad.de.json")
    preds = tmp_path / "preds/xquad/test-de.json"
    preds.parent.mkdir(parents=True)
    preds.write_text(json.dumps({qid: "x"}), encoding="utf-8")
    line = fails(["score", "-p", str(tmp_path / "preds"), "--data", str(tmp_path / "data"), "-t", "xquad"], capsys)
    assert line == f"error: {path}:{line_no}: question {qid}: expected answers, found none"
    labels = tmp_path / "labels/xquad/test-de.json"
    labels.parent.mkdir(parents=True)
    shutil.copyfile(path, labels)
    line = fails(["score", "-p", str(tmp_path / "preds"), "-l", str(tmp_path / "labels"), "-t", "xquad"], capsys)
    assert line == f"error: {labels}:{line_no}: question {qid}: expected answers, found none"


def test_score_xquad_hidden_test_answers(tmp_path, capsys):
    """XTREME blanks hidden test answers ("text": ""): readable for prediction, but as gold of
    `score --data` it is an error naming the question, not a traceback."""
    hidden = {"data": [{"title": "t", "paragraphs": [{"context": "Ein Satz.", "qas": [
        {"id": "h1", "question": "Was?", "answers": [{"text": "", "answer_start": 0}]}]}]}]}
    path = tmp_path / "data/xquad/xquad.de.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(hidden), encoding="utf-8")
    (tmp_path / "preds/xquad").mkdir(parents=True)
    (tmp_path / "preds/xquad/test-de.json").write_text('{"h1": "Satz"}', encoding="utf-8")
    line = fails(["score", "-p", str(tmp_path / "preds"), "--data", str(tmp_path / "data"), "-t", "xquad"], capsys)
    assert line.startswith(f"error: {path}: question h1: expected at least one gold answer, found none")


# ------------------------------------------------------------------------------------------
# 5. A model trained for one task, asked to predict another
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_udpos_model(tmp_path_factory) -> Path:
    """A task model folder with a (random) UDPOS tagging head, as `xstilts run` writes it."""
    from xstilts.models.heads import build_model
    from xstilts.models.tiny import build_tiny_model

    encoder, tokenizer = build_tiny_model(seed=0)
    folder = tmp_path_factory.mktemp("udpos-model")
    build_model("udpos", encoder).save(folder, tokenizer=tokenizer)
    return folder


def _first_sentences(src: Path, dest: Path, n: int) -> Path:
    blocks = src.read_text(encoding="utf-8").split("\n\n")[:n]
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text("\n\n".join(blocks) + "\n\n", encoding="utf-8")
    return dest


def test_predict_udpos_model_for_panx_is_refused(tmp_path, capsys, tiny_udpos_model):
    """A UDPOS tagger asked for PAN-X would write POS tags as entity predictions (exit 0): it
    is refused, naming both label sets, before anything is predicted."""
    _first_sentences(shared_file(f"{PANX}/dev-de.tsv"), tmp_path / "data/panx/dev-de.tsv", 5)
    out = tmp_path / "out"
    line = fails(["predict", "--model", str(tiny_udpos_model), "--task", "panx", "--data-dir",
                  str(tmp_path / "data"), "--split", "dev", "--out", str(out), "--no-progress"], capsys)
    assert line.startswith(f"error: {tiny_udpos_model / 'head.json'}: expected a tagging head with panx's "
                           "7 labels (B-LOC B-ORG B-PER I-LOC I-ORG I-PER O) to predict panx, found a "
                           "tagging head with 17 labels (ADJ ADP")
    assert "(a udpos model)" in line
    assert not out.exists()


def test_predict_udpos_model_for_xquad_is_refused(tmp_path, capsys, tiny_udpos_model):
    """A tagging head asked for extractive QA ended in an AttributeError traceback."""
    copy_real(XQUAD_DE, tmp_path / "data/xquad/xquad.de.json")
    line = fails(["predict", "--model", str(tiny_udpos_model), "--task", "xquad", "--data-dir",
                  str(tmp_path / "data"), "--out", str(tmp_path / "out"), "--no-progress"], capsys)
    assert line.startswith(f"error: {tiny_udpos_model / 'head.json'}: expected a qa head to predict xquad, "
                           "found a tagging head with 17 labels")


def test_predict_with_a_damaged_head_json(tmp_path, capsys, tiny_udpos_model):
    """A cut-off head.json names its line instead of a JSONDecodeError traceback."""
    model = tmp_path / "model"
    shutil.copytree(tiny_udpos_model, model)
    text = (model / "head.json").read_text()
    (model / "head.json").write_text(text[: len(text) // 2])
    _first_sentences(shared_file(f"{UDPOS}/test-fr.tsv"), tmp_path / "data/udpos/test-fr.tsv", 3)
    line = fails(["predict", "--model", str(model), "--task", "udpos", "--data-dir", str(tmp_path / "data"),
                  "--out", str(tmp_path / "out"), "--no-progress"], capsys)
    assert line.startswith(f"error: {model / 'head.json'}:")
    assert "expected valid JSON (a task model's head description)" in line


# ------------------------------------------------------------------------------------------
# 6. Output paths, folders where files belong, missing and broken files, a full disk
# ------------------------------------------------------------------------------------------


def _udpos_predict_args(tmp_path: Path, model: Path, out: Path) -> list[str]:
    _first_sentences(shared_file(f"{UDPOS}/test-fr.tsv"), tmp_path / "data/udpos/test-fr.tsv", 3)
    return ["predict", "--model", str(model), "--task", "udpos", "--data-dir", str(tmp_path / "data"),
            "--out", str(out), "--no-progress"]


def test_predict_out_is_an_existing_file(tmp_path, capsys, tiny_udpos_model):
    """--out naming a file is refused before the model is loaded; the file is left as it was."""
    out = tmp_path / "notes.txt"
    out.write_text("mine\n")
    line = fails(_udpos_predict_args(tmp_path, tiny_udpos_model, out), capsys)
    assert line == f"error: {out}: expected a folder for the predictions, found a file"
    assert out.read_text() == "mine\n"


def test_predict_out_below_a_file(tmp_path, capsys, tiny_udpos_model):
    """A folder that cannot be created because a file is in its path (root can write anywhere,
    so this is the unwritable folder every user can hit)."""
    blocker = tmp_path / "notes.txt"
    blocker.write_text("mine\n")
    out = blocker / "sub"
    line = fails(_udpos_predict_args(tmp_path, tiny_udpos_model, out), capsys)
    assert line == f"error: {out}: cannot be a folder for the predictions: {blocker} is a file, not a folder"


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="runs as root, for whom a folder without write permission is still writable")
def test_predict_into_an_unwritable_folder(tmp_path, capsys, tiny_udpos_model):
    """A folder without write permission: the path and "permission denied"."""
    out = tmp_path / "locked"
    out.mkdir()
    out.chmod(0o500)
    try:
        line = fails(_udpos_predict_args(tmp_path, tiny_udpos_model, out), capsys)
    finally:
        out.chmod(0o700)
    assert line.startswith(f"error: {out / 'udpos'}") and "permission denied" in line


def test_run_out_is_an_existing_file(tmp_path, capsys):
    """`xstilts run --out FILE` is refused before anything is read or trained."""
    out = tmp_path / "notes.txt"
    out.write_text("mine\n")
    copy_real(f"{UDPOS}/test-en.tsv", tmp_path / "data/udpos/test-en.tsv")
    line = fails(["run", "--model", "no-such-model", "--target", "udpos", "--data-dir", str(tmp_path / "data"),
                  "--out", str(out), "--no-progress"], capsys)
    assert line == f"error: {out}: expected a folder for the run directory (--out), found a file"
    assert out.read_text() == "mine\n"


@pytest.mark.parametrize("side", ["preds", "labels"])
def test_score_a_folder_where_a_prediction_or_label_file_belongs(tmp_path, capsys, side):
    """`test-fr.tsv` that is a folder, in the prediction or the label tree."""
    labels = copy_real(f"{UDPOS}/test-fr.tsv", tmp_path / "labels/udpos/test-fr.tsv")
    tags_only(labels, tmp_path / "preds/udpos/test-fr.tsv")
    target = tmp_path / side / "udpos/test-fr.tsv"
    target.unlink()
    target.mkdir()
    line = fails(["score", "-p", str(tmp_path / "preds"), "-l", str(tmp_path / "labels"), "-t", "udpos"], capsys)
    assert line == f"error: {target}: expected a file, found a directory"


def _humaneval_args(data: Path, samples: Path) -> list[str]:
    return ["code-eval", "--dataset", "humaneval", "--samples", str(samples), "--data-dir", str(data)]


def test_code_eval_samples_is_a_directory(tmp_path, capsys):
    """--samples naming a folder."""
    data = shared_file(HUMANEVAL).parents[1]
    line = fails(_humaneval_args(data, tmp_path), capsys)
    assert line == f"error: {tmp_path}: expected a file, found a directory"


def test_code_eval_missing_samples_file(tmp_path, capsys):
    """--samples naming a file that is not there."""
    data = shared_file(HUMANEVAL).parents[1]
    missing = tmp_path / "samples.jsonl"
    line = fails(_humaneval_args(data, missing), capsys)
    assert line == f"error: {missing}: expected an existing file, found no such file"


def test_humaneval_file_that_is_not_gzip(tmp_path, capsys):
    """A HumanEval.jsonl.gz that holds plain JSONL (a traceback before)."""
    gz = tmp_path / "humaneval/data/HumanEval.jsonl.gz"
    gz.parent.mkdir(parents=True)
    gz.write_bytes(gzip.decompress(shared_file(HUMANEVAL).read_bytes()))
    line = fails(_humaneval_args(tmp_path, tmp_path / "samples.jsonl"), capsys)
    assert line == f"error: {gz}: expected gzip-compressed data (the name ends in .gz), found a file that is not gzip"


def test_humaneval_truncated_gzip(tmp_path, capsys):
    """A cut-off download printed only "Aborted.": now the file, the line reached and what to do."""
    real = shared_file(HUMANEVAL).read_bytes()
    gz = copy_real(HUMANEVAL, tmp_path / "humaneval/data/HumanEval.jsonl.gz")
    gz.write_bytes(real[: len(real) // 2])
    complete_lines = 0
    with gzip.open(gz, "rb") as handle:
        try:
            for _ in handle:
                complete_lines += 1
        except EOFError:
            pass
    line = fails(_humaneval_args(tmp_path, tmp_path / "samples.jsonl"), capsys)
    assert line == (f"error: {gz}:{complete_lines + 1}: expected the rest of the gzip stream, found the end "
                    "of the data (a truncated file?); download the file again")


def test_predict_full_disk_keeps_the_earlier_predictions(tmp_path, capsys, tiny_udpos_model, monkeypatch):
    """No space left while writing: one line with the path and "no space left on device"; the
    prediction file written before is intact and no partial file is left."""
    import xstilts.fileio

    out = tmp_path / "out"
    earlier = out / "udpos/test-fr.tsv"
    earlier.parent.mkdir(parents=True)
    earlier.write_text("NOUN\n\n", encoding="utf-8")

    def full_disk(temp: Path, text: str) -> None:
        temp.write_text(text[:5], encoding="utf-8")  # part of it went out, then the disk filled
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(temp))

    monkeypatch.setattr(xstilts.fileio, "_write_temp", full_disk)
    line = fails(_udpos_predict_args(tmp_path, tiny_udpos_model, out), capsys)
    assert line.startswith(f"error: {earlier}: cannot write: no space left on device")
    assert earlier.read_text(encoding="utf-8") == "NOUN\n\n"
    assert sorted(p.name for p in earlier.parent.iterdir()) == ["test-fr.tsv"]


# ------------------------------------------------------------------------------------------
# 7. Hand-damaged run directories
# ------------------------------------------------------------------------------------------


@pytest.fixture
def finished_run(tmp_path) -> tuple[list[str], Path]:
    """A run directory as a finished `xstilts run` leaves it (config, versions, metrics, scores,
    run.json), and the command that made it. Made without training: only reading is tested."""
    from xstilts.fileio import write_json_atomic
    from xstilts.study.run_config import load_run_config
    from xstilts.study.rundir import RunDir

    data = tmp_path / "data"
    copy_real(f"{UDPOS}/test-fr.tsv", data / "udpos/test-fr.tsv")
    out = tmp_path / "run"
    model = str(tmp_path / "model")
    cfg = load_run_config(None, model=model, target="udpos", data_dir=str(data), out=str(out), progress=False)
    rd = RunDir(out)
    rd.open(json.loads(cfg.model_dump_json()))
    scores = {"tasks": {"udpos": {"languages": {"fr": {"f1": 50.0}}, "score": 50.0}}, "xtreme_score": None}
    write_json_atomic(out / "scores.json", scores)
    write_json_atomic(out / "metrics.json", {"phase3": {"split": "test", "languages": ["fr"]}})
    write_json_atomic(out / "run.json", {"encoder": model, "scores": scores, "seconds": {}})
    argv = ["run", "--model", model, "--target", "udpos", "--data-dir", str(data), "--out", str(out),
            "--no-progress"]
    return argv, out


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_finished_run_directory_is_read(finished_run, capsys):
    """The control: the intact run directory is read, not re-run."""
    argv, out = finished_run
    assert main(argv + ["--json"]) == 0
    assert json.loads(capsys.readouterr().out)["tasks"]["udpos"]["score"] == 50.0


def test_truncated_run_json(finished_run, capsys):
    """A cut-off run.json: its line, and to delete it (the trained model is reused)."""
    argv, out = finished_run
    _truncate(out / "run.json")
    before = snapshot(out)
    line = fails(argv, capsys)
    assert line.startswith(f"error: {out / 'run.json'}:")
    assert "expected the finished run's summary (a JSON object), found invalid JSON" in line
    assert line.endswith(f"; delete {out / 'run.json'} and run the same command again: what was trained is "
                         "reused and only the unfinished steps (evaluation) run again")
    assert snapshot(out) == before


def test_truncated_scores_json(finished_run, capsys):
    """A cut-off scores.json was printed as the run's result (--json, exit 0)."""
    argv, out = finished_run
    _truncate(out / "scores.json")
    before = snapshot(out)
    line = fails(argv + ["--json"], capsys)
    assert line.startswith(f"error: {out / 'scores.json'}:")
    assert "expected the run's scores (a JSON object with \"tasks\"), found invalid JSON" in line
    assert f"delete {out / 'scores.json'} and {out / 'run.json'} and run the same command again" in line
    assert snapshot(out) == before


@pytest.mark.parametrize("cut", ["half", "last-lines", "empty"])
def test_truncated_config_yaml(finished_run, capsys, cut):
    """A cut-off config.yaml often still parses (its last fields are just gone): it is named,
    with "restore it or use a fresh --out", not answered with "delete the folder"."""
    argv, out = finished_run
    path = out / "config.yaml"
    lines = path.read_text().splitlines(keepends=True)
    if cut == "half":
        _truncate(path)
    elif cut == "last-lines":  # cut at a line end: valid YAML, fields missing
        path.write_text("".join(lines[: len(lines) // 3]))
    else:
        path.write_text("")
    before = snapshot(out)
    line = fails(argv, capsys)
    assert line.startswith(f"error: {path}")
    assert "expected the run's configuration" in line
    assert f"restore {path}, or run with a fresh --out" in line
    assert snapshot(out) == before


def test_truncated_metrics_json(finished_run, capsys):
    """A cut-off metrics.json (read with the scores when a study collects a run)."""
    argv, out = finished_run
    _truncate(out / "metrics.json")
    before = snapshot(out)
    line = fails(argv, capsys)
    assert line.startswith(f"error: {out / 'metrics.json'}:")
    assert f"delete {out / 'metrics.json'} (its per-phase metrics are lost" in line
    assert snapshot(out) == before


# ------------------------------------------------------------------------------------------
# 8. Encodings, byte-order marks, line ends, huge lines, NaN
# ------------------------------------------------------------------------------------------


def test_label_file_not_utf8(tmp_path, capsys):
    """A Latin-1 label file: the file, the line and the encoding expected."""
    labels = copy_real(f"{PANX}/dev-de.tsv", tmp_path / "labels/panx/test-de.tsv")
    tags_only(labels, tmp_path / "preds/panx/test-de.tsv")
    lines = labels.read_bytes().split(b"\n")
    token = lines[5].split(b"\t")[0]
    lines[5] = lines[5].replace(token, b"M\xfcnchen", 1)
    labels.write_bytes(b"\n".join(lines))
    line = fails(["score", "-p", str(tmp_path / "preds"), "-l", str(tmp_path / "labels"), "-t", "panx"], capsys)
    assert line.startswith(f"error: {labels}:6: expected UTF-8 text, found byte 0xfc")
    assert line.endswith("; convert the file to UTF-8")


def test_bom_and_crlf_in_prediction_and_label_files_are_accepted(tmp_path, capsys):
    """A UTF-8 BOM and CRLF line ends (Windows editors) score like the plain files."""
    labels = copy_real(f"{UDPOS}/test-fr.tsv", tmp_path / "labels/udpos/test-fr.tsv")
    preds = tags_only(labels, tmp_path / "preds/udpos/test-fr.tsv")
    for path in (labels, preds):
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes().replace(b"\n", b"\r\n"))
    assert main(["score", "-p", str(tmp_path / "preds"), "-l", str(tmp_path / "labels"), "-t", "udpos",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["tasks"]["udpos"]["languages"]["fr"]["f1"] == 100.0


def test_bom_and_crlf_in_a_data_file_are_accepted(tmp_path, capsys):
    """The same for a data file read by the readers (`data check` finds no problem)."""
    path = copy_real(f"{PANX}/dev-de.tsv", tmp_path / "panx/dev-de.tsv")
    n_sentences = path.read_text(encoding="utf-8").strip().count("\n\n") + 1
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes().replace(b"\n", b"\r\n"))
    assert main(["data", "check", str(tmp_path), "--tasks", "panx", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["tasks"]["panx"]["languages"]["de"]["dev"]["count"] == n_sentences


def test_huge_single_line_prediction_file(tmp_path, capsys):
    """A 20 MB file without a newline (a dump gone wrong): one short error line, no crash."""
    for root in ("labels", "preds"):
        (tmp_path / root / "xnli").mkdir(parents=True)
    (tmp_path / "labels/xnli/test-de.tsv").write_text("entailment\nneutral\n", encoding="utf-8")
    (tmp_path / "preds/xnli/test-de.tsv").write_text("entailment" * 2_000_000, encoding="utf-8")
    line = fails(["score", "-p", str(tmp_path / "preds"), "-l", str(tmp_path / "labels"), "-t", "xnli"], capsys)
    assert line.startswith(f"error: {tmp_path / 'preds/xnli/test-de.tsv'}:1: expected a label in "
                           "{contradiction, entailment, neutral} (the xnli labels), found 'entailmententailment")
    assert len(line) < 400


def test_huge_single_line_data_file(tmp_path, capsys):
    """A data file whose one line is 5 MB (no newline at all) is read without a crash: one
    sentence of one very long token, which featurization splits into windows."""
    (tmp_path / "udpos").mkdir()
    (tmp_path / "udpos/test-fr.tsv").write_text("x" * 5_000_000 + "\tNOUN", encoding="utf-8")
    assert main(["data", "check", str(tmp_path), "--tasks", "udpos", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["tasks"]["udpos"]["languages"]["fr"]["test"]["count"] == 1


def test_nan_in_a_qa_prediction_file(tmp_path, capsys):
    """Python's json reads NaN, JSON has none: a QA prediction of NaN is refused at its line."""
    gold = copy_real(XQUAD_DE, tmp_path / "labels/xquad/test-de.json")
    qids = [qa["id"] for a in json.loads(gold.read_text())["data"] for p in a["paragraphs"] for qa in p["qas"]]
    preds = tmp_path / "preds/xquad/test-de.json"
    preds.parent.mkdir(parents=True)
    preds.write_text("{\n" + ",\n".join(f'"{q}": "x"' for q in qids[:3]) + f',\n"{qids[3]}": NaN\n}}',
                     encoding="utf-8")
    line = fails(["score", "-p", str(tmp_path / "preds"), "-l", str(tmp_path / "labels"), "-t", "xquad"], capsys)
    assert line == f"error: {preds}:5: expected valid JSON (a number or a string), found NaN"


def test_samples_file_not_utf8(tmp_path, capsys):
    """A samples JSONL line in Latin-1: its file and line (a UnicodeDecodeError traceback before)."""
    data = shared_file(HUMANEVAL).parents[1]
    samples = tmp_path / "samples.jsonl"
    samples.write_bytes(b'{"task_id": "HumanEval/0", "completion": "    return 1\\n"}\n'
                        b'{"task_id": "HumanEval/1", "completion": "    # gr\xfc\xdfe\\n"}\n')
    line = fails(_humaneval_args(data, samples), capsys)
    assert line == (f"error: {samples}:2: expected UTF-8 text, found byte 0xfc (invalid start byte); "
                    "convert the file to UTF-8")


def test_samples_file_with_bom_and_crlf_is_read(tmp_path):
    """A samples file saved with a BOM and CRLF line ends is read as the plain one."""
    from xstilts.evaluation.code_metrics import read_samples

    samples = tmp_path / "samples.jsonl"
    samples.write_bytes(b'\xef\xbb\xbf{"task_id": "HumanEval/0", "completion": "x"}\r\n'
                        b'{"task_id": "HumanEval/1", "completion": "y"}\r\n')
    assert read_samples(samples, {"HumanEval/0", "HumanEval/1"}) == [("HumanEval/0", "x"), ("HumanEval/1", "y")]


def test_code_eval_results_path_that_is_a_folder_is_refused_before_running(tmp_path, capsys):
    """--results naming a folder (or a path through a file) stops before any program runs."""
    samples = tmp_path / "samples.jsonl"
    samples.write_text(json.dumps({"task_id": "HumanEval/0", "completion": "    pass\n"}) + "\n")
    folder = tmp_path / "results"
    folder.mkdir()
    args = ["code-eval", "--dataset", "humaneval", "--samples", str(samples), "--data-dir",
            str(shared_file(HUMANEVAL).parents[2]), "--partial", "--results"]
    line = fails([*args, str(folder)], capsys)
    assert line == f"error: {folder}: expected a file for the per-sample results (--results), found a folder"
    blocker = tmp_path / "notes.txt"
    blocker.write_text("mine\n")
    line = fails([*args, str(blocker / "r.jsonl")], capsys)
    assert line == f"error: {blocker}: expected a folder for the per-sample results (--results), found a file"
    assert blocker.read_text() == "mine\n"


def test_study_out_that_is_a_file_is_refused(tmp_path, capsys):
    """`xstilts study --out FILE`: one line, nothing written, the file untouched."""
    import yaml

    cfg = tmp_path / "s.yaml"
    cfg.write_text(yaml.safe_dump({"name": "s", "encoders": ["enc"], "intermediate": ["none"],
                                   "targets": ["udpos"], "seeds": [1]}))
    out = tmp_path / "notes.txt"
    out.write_text("mine\n")
    line = fails(["study", str(cfg), "--out", str(out), "--data-dir", str(tmp_path)], capsys)
    assert line == f"error: {out}: expected a folder for the study directory (--out), found a file"
    assert out.read_text() == "mine\n"
