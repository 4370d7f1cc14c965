"""``xstilts data check``: splits present, example counts and every problem, per task and language."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import shared_file

from xstilts.cli import main
from xstilts.data.check import check_data


def test_check_shared_data_counts(shared_data: Path) -> None:
    for relative in (
        "udpos/xtreme-format/download/udpos/train-en.tsv",
        "xquad/xquad.de.json",
        "tatoeba/v1/tatoeba.deu-eng.deu",
        "panx/download/panx/dev-de.tsv",
    ):
        shared_file(relative)
    report = check_data(shared_data, ["udpos", "xquad", "tatoeba", "panx", "mlqa", "xnli"])
    assert report.problems == []
    tasks = report.tasks
    # expected counts from MANIFEST.md
    assert tasks["udpos"].languages["en"]["train"].count == 1000
    assert tasks["udpos"].languages["en"]["dev"].count == 200
    assert tasks["udpos"].unit == "sentences"
    assert {lang: s["test"].count for lang, s in tasks["xquad"].languages.items()} == {
        lang: 225 for lang in tasks["xquad"].languages
    }
    assert tasks["xquad"].unit == "questions"
    deu = tasks["tatoeba"].languages["de"]["test"]
    assert (deu.count, deu.gold) == (1000, 1000)
    assert tasks["tatoeba"].languages["jv"]["test"].count == 205
    assert tasks["panx"].languages["de"]["dev"].count == 200
    assert "de" in tasks["panx"].missing["test"]  # PAN-X test labels are withheld
    assert tasks["mlqa"].languages["vi"]["test"].count == 2
    assert tasks["xnli"].languages == {} and len(tasks["xnli"].missing["test"]) == 15


def test_cli_check_json_on_shared_data(shared_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shared_file("xquad/xquad.en.json")
    assert main(["data", "check", str(shared_data), "--tasks", "xquad,tydiqa", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["tasks"]) == {"xquad", "tydiqa"}
    assert report["problem_count"] == 0
    en = report["tasks"]["xquad"]["languages"]["en"]["test"]
    assert en["count"] == 225 and en["files"][0].endswith("xquad/xquad.en.json") and en["problems"] == []
    assert report["tasks"]["tydiqa"]["languages"]["sw"]["test"]["count"] == 1


@pytest.fixture()
def broken_tree(tmp_path: Path) -> Path:
    """Good XNLI and PAN-X files, and one PAN-X file with two bad lines."""
    (tmp_path / "xnli").mkdir()
    (tmp_path / "xnli/train-en.tsv").write_text("a\tb\tneutral\nc\td\tentailment\n", encoding="utf-8")
    (tmp_path / "xnli/test-de.tsv").write_text("a\tb\n", encoding="utf-8")
    (tmp_path / "panx").mkdir()
    (tmp_path / "panx/train-en.tsv").write_text("Paris\tB-LOC\n\nYes\tO\n", encoding="utf-8")
    (tmp_path / "panx/dev-de.tsv").write_text(
        "Berlin\tB-LOC\nist\tO\tX\n\nKöln\tB-CITY\n\nJa\tO\n", encoding="utf-8"
    )
    return tmp_path


def test_check_collects_every_problem(broken_tree: Path) -> None:
    report = check_data(broken_tree, ["xnli", "panx"])
    bad = broken_tree / "panx/dev-de.tsv"
    assert report.problems == [
        f"{bad}:2: expected 2 tab-separated fields (token<TAB>tag) as on line 1, found 3 fields: 'ist\\tO\\tX'",
        f"{bad}:4: expected a tag in {{B-LOC, B-ORG, B-PER, I-LOC, I-ORG, I-PER, O}}, found 'B-CITY'",
    ]
    panx = report.tasks["panx"]
    assert panx.languages["en"]["train"].count == 2
    assert panx.languages["en"]["train"].problems == []
    # the bad lines are left out and reading goes on: "Berlin" and "Ja" remain
    assert panx.languages["de"]["dev"].count == 2
    xnli = report.tasks["xnli"]
    assert (xnli.languages["en"]["train"].count, xnli.languages["de"]["test"].count) == (2, 1)
    assert xnli.problems == []


def test_cli_check_exit_status_and_text(broken_tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "check", str(broken_tree), "-t", "xnli", "-t", "panx"]) == 2
    out = capsys.readouterr().out
    assert "panx (sentences; 2 files present, 2 problems)" in out
    assert "2 problems:" in out
    assert f"error: {broken_tree / 'panx/dev-de.tsv'}:4: expected a tag" in out
    assert "Traceback" not in out
    # without the broken file everything is fine: exit 0
    (broken_tree / "panx/dev-de.tsv").unlink()
    assert main(["data", "check", str(broken_tree), "--tasks", "xnli,panx"]) == 0
    assert "no problems found" in capsys.readouterr().out


def test_check_reports_unreadable_files_and_missing_partners(tmp_path: Path) -> None:
    (tmp_path / "xquad").mkdir()
    (tmp_path / "xquad/xquad.de.json").write_text('{"data": [', encoding="utf-8")
    (tmp_path / "bucc2018").mkdir()
    (tmp_path / "bucc2018/fr-en.dev.fr").write_text("fr-1\tBonjour.\n", encoding="utf-8")
    report = check_data(tmp_path, ["xquad", "bucc2018"])
    assert len(report.problems) == 2
    assert report.problems[0].startswith(f"{tmp_path / 'xquad/xquad.de.json'}:1: expected valid JSON")
    assert "BUCC English side not found" in report.problems[1]
    assert report.tasks["xquad"].languages["de"]["test"].count == 0


def test_check_unknown_task_and_missing_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "check", str(tmp_path), "--tasks", "nosuchtask"]) == 2
    assert "unknown task 'nosuchtask'" in capsys.readouterr().err
    assert main(["data", "check", str(tmp_path / "absent")]) == 2
    assert "data directory not found" in capsys.readouterr().err
