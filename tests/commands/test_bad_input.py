"""Malformed files: an error naming the file, the line and what was expected — from the reader
and through the CLI (exit status 2, one line on stderr, no traceback)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from xstilts.cli import main
from xstilts.data.readers import read_examples
from xstilts.errors import DataFormatError

# A SQuAD file whose second question's answer does not sit where answer_start says.
# Line numbers matter: "id": "q2" is on line 18 (errors name the line of the question id).
_BAD_SPAN_JSON = """{
  "version": "1.1",
  "data": [
    {
      "title": "t",
      "paragraphs": [
        {
          "context": "Der Berg ist 2549 m hoch.",
          "qas": [
            {
              "id": "q1",
              "question": "Wie hoch?",
              "answers": [{"text": "2549 m", "answer_start": 13}]
            },
            {
              "answers": [{"text": "Berg", "answer_start": 5}],
              "question": "Was?",
              "id": "q2"
            }
          ]
        }
      ]
    }
  ]
}
"""


def _conllu_line(wid: str, form: str, upos: str) -> str:
    return "\t".join([wid, form, "_", upos, "_", "_", "0", "root", "_", "_"])


@dataclass
class Case:
    name: str
    task: str
    relative: str
    content: bytes
    split: str
    lang: str
    line: int
    expected: str  # part of the "expected ..." text

    @property
    def id(self) -> str:
        return self.name


CASES = [
    Case(
        "truncated-json",
        "xquad",
        "xquad/xquad.de.json",
        b'{\n  "data": [\n    {\n      "title": "t",\n      "paragraphs": [',
        "test",
        "de",
        5,  # json reports the end of the truncated text: line 5, column 22
        "valid JSON",
    ),
    Case(
        "tsv-too-few-fields",
        "xnli",
        "xnli/train-en.tsv",
        b"A man sleeps.\tA man is awake.\tcontradiction\nA dog barks.\tentailment\n",
        "train",
        "en",
        2,
        "3 tab-separated fields",
    ),
    Case(
        "tagging-tsv-extra-field",
        "udpos",
        "udpos/train-en.tsv",
        b"The\tDET\ndog\tNOUN\nbarks\tVERB\textra\n",
        "train",
        "en",
        3,
        "2 tab-separated fields",
    ),
    Case(
        "tag-not-in-label-set",
        "panx",
        "panx/dev-de.tsv",
        b"Anton\tB-PER\nBerlin\tB-MISC\n\nJa\tO\n",
        "dev",
        "de",
        2,
        "a tag in {B-LOC, B-ORG, B-PER, I-LOC, I-ORG, I-PER, O}",
    ),
    Case(
        "label-not-in-label-set",
        "pawsx",
        "pawsx/dev-de.tsv",
        b"a b\tb a\t1\nc d\td c\t2\n",
        "dev",
        "de",
        2,
        "a label in {0, 1}",
    ),
    Case(
        "answer-span-mismatch",
        "xquad",
        "xquad/xquad.de.json",
        _BAD_SPAN_JSON.encode(),
        "test",
        "de",
        18,  # the line of the question's id
        "answer 'Berg' of question q2 at context[5:9]",
    ),
    Case(
        "conllu-wrong-column-count",
        "udpos",
        "UD_German-X/de_x-ud-test.conllu",
        (
            "# sent_id = 1\n"
            + _conllu_line("1", "Der", "DET")
            + "\n"
            + "2\tHund\t_\tNOUN\t_\t_\t0\troot\t_\n"  # 9 columns
            + "\n"
        ).encode(),
        "test",
        "de",
        3,
        "10 tab-separated CoNLL-U columns",
    ),
    Case(
        "bad-encoding",
        "panx",
        "panx/dev-de.tsv",
        "Anton\tB-PER\nK\u00f6ln\tB-LOC\n".encode() + b"M\xfcnchen\tB-LOC\n",  # latin-1 byte on line 3
        "dev",
        "de",
        3,
        "UTF-8 text",
    ),
    Case(
        "bucc-line-without-id",
        "bucc2018",
        "bucc2018/de-en.dev.de",
        b"de-000000001\tHallo.\nnur ein Satz ohne Kennung\n",
        "dev",
        "de",
        2,
        "id<TAB>sentence",
    ),
]


def _write_case(root: Path, case: Case) -> Path:
    path = root / case.relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(case.content)
    if case.task == "bucc2018":
        path.with_name("de-en.dev.en").write_text("en-000000001\tHello.\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_reader_names_file_line_and_expectation(tmp_path: Path, case: Case) -> None:
    path = _write_case(tmp_path, case)
    with pytest.raises(DataFormatError) as info:
        read_examples(case.task, tmp_path, case.split, case.lang)
    error = info.value
    assert error.path == path
    assert error.line == case.line
    assert case.expected in error.expected
    assert str(error).startswith(f"{path}:{case.line}: expected ")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_cli_prints_one_line_and_exits_2(
    tmp_path: Path, case: Case, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write_case(tmp_path, case)
    argv = ["data", "show", case.task, "--data-dir", str(tmp_path), "--split", case.split, "--lang", case.lang]
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"error: {path}:{case.line}: expected ")
    assert "Traceback" not in captured.err + captured.out


def test_markup_like_data_is_printed_verbatim(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A tag such as "[/x]" in a message is data, not rich markup (it used to crash the CLI)."""
    (tmp_path / "panx").mkdir()
    (tmp_path / "panx/dev-de.tsv").write_text("Anton\t[/x]\n", encoding="utf-8")
    assert main(["data", "show", "panx", "-d", str(tmp_path), "-s", "dev", "-l", "de"]) == 2
    assert "found '[/x]'" in capsys.readouterr().err


def test_tatoeba_sides_of_different_length(tmp_path: Path) -> None:
    (tmp_path / "tatoeba.deu-eng.deu").write_text("Eins.\nZwei.\n", encoding="utf-8")
    (tmp_path / "tatoeba.deu-eng.eng").write_text("One.\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match="expected 2 lines, one per line of tatoeba.deu-eng.deu, found 1"):
        read_examples("tatoeba", tmp_path, "test", "de")


def test_mixed_labelled_and_unlabelled_tagging_lines(tmp_path: Path) -> None:
    (tmp_path / "panx").mkdir()
    (tmp_path / "panx/test-de.tsv").write_text("Berlin\nist\tO\n", encoding="utf-8")
    with pytest.raises(DataFormatError) as info:
        read_examples("panx", tmp_path, "test", "de")
    assert info.value.line == 2 and "as on line 1" in info.value.expected


def test_real_quirks_are_accepted(tmp_path: Path) -> None:
    """What real files do and must stay readable: a final sentence with no blank line after it,
    CRLF line ends, a UTF-8 BOM, blanked test answers, XNLI's raw label spelling."""
    (tmp_path / "udpos").mkdir()
    (tmp_path / "udpos/test-fr.tsv").write_bytes("\ufeffLe\tDET\r\nchat\tNOUN\r\n\r\nOui\tINTJ".encode())
    sentences = read_examples("udpos", tmp_path, "test", "fr")
    assert [(s.tokens, s.tags) for s in sentences] == [(["Le", "chat"], ["DET", "NOUN"]), (["Oui"], ["INTJ"])]
    (tmp_path / "xnli").mkdir()
    (tmp_path / "xnli/dev-fr.tsv").write_text("a\tb\tcontradictory\n", encoding="utf-8")
    assert read_examples("xnli", tmp_path, "dev", "fr")[0].label == "contradiction"


def test_unicode_space_token_is_a_token(tmp_path: Path) -> None:
    """Only ASCII blanks separate sentences; a full-width space is a (Japanese) token."""
    (tmp_path / "udpos").mkdir()
    (tmp_path / "udpos/test-ja.tsv").write_text("猫\tNOUN\n\u3000\tPUNCT\n \t\n犬\tNOUN\n", encoding="utf-8")
    sentences = read_examples("udpos", tmp_path, "test", "ja")
    assert [s.tokens for s in sentences] == [["猫", "\u3000"], ["犬"]]
