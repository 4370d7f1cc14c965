"""``xstilts code-eval``: HumanEval canonical solutions score 100, empty bodies 0, bodies that exit
with status 0 before the checks finish 0, hostile samples are contained; MBPP on a written file;
malformed samples exit with status 2 and file:line."""

from __future__ import annotations

import gzip
import json
import time

import pytest

from tests.conftest import shared_file
from xstilts.cli import main


def _humaneval_problems():
    path = shared_file("humaneval/data/HumanEval.jsonl.gz")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _run_json(capsys, args):
    code = main(["code-eval", *args, "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    return json.loads(out.out)


def test_humaneval_canonical_solutions_pass_all(tmp_path, capsys, shared_data):
    problems = _humaneval_problems()
    samples = _write(tmp_path / "s.jsonl", [{"task_id": p["task_id"], "completion": p["canonical_solution"]} for p in problems])
    start = time.monotonic()
    report = _run_json(capsys, ["--dataset", "humaneval", "--samples", str(samples), "--k", "1", "--data-dir", str(shared_data)])
    elapsed = time.monotonic() - start
    assert report["n_problems"] == 164 and report["missing_problems"] == 0
    assert report["overall"] == {"pass@1": 100.0}
    assert all(row["correct"] == 1 for row in report["problems"].values())
    assert elapsed < 90  # 6 s on two idle cores with two workers, about 20 s when they are busy


def test_humaneval_empty_bodies_score_zero(tmp_path, capsys, shared_data):
    # The first 40 problems (every one fails the same way; the full set is the canonical test's job).
    problems = _humaneval_problems()[:40]
    samples = _write(tmp_path / "s.jsonl", [{"task_id": p["task_id"], "completion": "    pass\n"} for p in problems])
    report = _run_json(capsys, ["--dataset", "humaneval", "--samples", str(samples), "--k", "1", "--partial",
                                "--data-dir", str(shared_data)])  # fmt: skip
    assert report["n_problems"] == 40
    assert report["overall"] == {"pass@1": 0.0}


# Completion bodies that end the process with status 0 (or try to fake the end) before check()
# has run all its asserts. The second item is what the reason must contain.
EXIT_BODIES = {
    "sys.exit(0)": ("    import sys; sys.exit(0)\n", "(SystemExit(0))"),
    "os._exit(0)": ("    import os; os._exit(0)\n", "status 0 before the checks finished"),
    "raise SystemExit(0)": ("    raise SystemExit(0)\n", "(SystemExit(0))"),
    "sys.exit in finally": ("    try:\n        raise ValueError\n    finally:\n        import sys; sys.exit(0)\n",
                            "(SystemExit(0))"),
    "atexit os._exit(0)": ("    import atexit, os; atexit.register(lambda: os._exit(0)); raise ValueError\n",
                           "status 0 before the checks finished"),
    "atexit sys.exit(0)": ("    import atexit, sys; atexit.register(sys.exit, 0); raise ValueError\n", "SystemExit"),
    "signal handler": ("    import os, signal; signal.signal(signal.SIGTERM, lambda *a: os._exit(0)); "
                       "signal.raise_signal(signal.SIGTERM)\n", "status 0 before the checks finished"),
    "fake completion": ("    import os\n    for fd in range(3, 64):\n        try:\n            os.write(fd, b'0' * 32)\n"
                        "        except OSError:\n            pass\n    os._exit(0)\n", "completion channel"),
}


def test_humaneval_bodies_that_exit_early_score_zero(tmp_path, capsys, shared_data):
    # The first 10 problems, each with its canonical solution (the control: it must still pass in
    # the same run) and every early exit as the body.
    problems = _humaneval_problems()[:10]
    rows = []
    for p in problems:
        rows.append({"task_id": p["task_id"], "completion": p["canonical_solution"]})
        rows.extend({"task_id": p["task_id"], "completion": body} for body, _ in EXIT_BODIES.values())
    samples = _write(tmp_path / "s.jsonl", rows)
    results = tmp_path / "results.jsonl"
    report = _run_json(capsys, ["--dataset", "humaneval", "--samples", str(samples), "--k", "1", "--partial",
                                "--data-dir", str(shared_data), "--results", str(results)])  # fmt: skip
    n = 1 + len(EXIT_BODIES)
    assert report["n_problems"] == 10
    assert all((row["n"], row["correct"]) == (n, 1) for row in report["problems"].values())
    assert report["overall"]["pass@1"] == pytest.approx(100 / n)
    per_sample = [json.loads(line) for line in results.read_text().splitlines()]
    for i, row in enumerate(per_sample):
        if i % n == 0:
            assert row["passed"] and row["status"] == "passed", row
            continue
        name, (_, reason) = list(EXIT_BODIES.items())[i % n - 1]
        assert not row["passed"] and row["status"] == "failed", (name, row)
        assert reason in row["reason"], (name, row)


def test_hostile_samples_are_contained_and_counted(tmp_path, capsys, shared_data):
    problems = {p["task_id"]: p for p in _humaneval_problems()}
    canonical = problems["HumanEval/0"]["canonical_solution"]
    home_file = tmp_path / "home-escape.txt"
    hostile = [
        "    while True:\n        pass\n",
        "    import os\n    while True:\n        os.fork()\n",
        "    x = bytearray(10 ** 11)\n",
        f"    open({str(home_file)!r}, 'w').write('x')\n    return True\n",
        "    import socket\n    socket.create_connection(('1.1.1.1', 80), timeout=1)\n",
    ]
    rows = [{"task_id": "HumanEval/0", "completion": c} for c in [canonical, *hostile]]
    rows.append({"task_id": "HumanEval/2", "completion": problems["HumanEval/2"]["canonical_solution"]})
    samples = _write(tmp_path / "s.jsonl", rows)
    results = tmp_path / "results.jsonl"
    report = _run_json(
        capsys,
        ["--dataset", "humaneval", "--samples", str(samples), "--k", "1,2", "--data-dir", str(shared_data),
         "--partial", "--timeout", "2", "--results", str(results)],
    )  # fmt: skip
    p0 = report["problems"]["HumanEval/0"]
    assert (p0["n"], p0["correct"]) == (6, 1)
    assert p0["pass@1"] == pytest.approx(100 / 6)
    assert p0["pass@2"] == pytest.approx(100 * (1 - (5 * 4) / (6 * 5)))  # 1 - C(5,2)/C(6,2)
    # HumanEval/2 has one sample: pass@2 is undefined there, so overall only reports pass@1.
    assert report["overall"] == {"pass@1": pytest.approx((100 / 6 + 100) / 2)}
    assert not home_file.exists()
    statuses = [json.loads(line)["status"] for line in results.read_text().splitlines()]
    assert statuses == ["passed", "timeout", "blocked", "failed", "blocked", "blocked", "passed"]


def test_missing_problems_need_partial(tmp_path, capsys, shared_data):
    shared_file("humaneval/data/HumanEval.jsonl.gz")
    samples = _write(tmp_path / "s.jsonl", [{"task_id": "HumanEval/3", "completion": "    return False\n"}])
    assert main(["code-eval", "--dataset", "humaneval", "--samples", str(samples), "--data-dir", str(shared_data)]) == 2
    assert "163 of 164 problems have no sample" in capsys.readouterr().err


def test_bad_sample_lines_name_file_and_line(tmp_path, capsys, shared_data):
    shared_file("humaneval/data/HumanEval.jsonl.gz")
    samples = tmp_path / "s.jsonl"
    samples.write_text('{"task_id": "HumanEval/0", "completion": "  pass"}\n{"task_id": "HumanEval/999", "completion": ""}\n')
    assert main(["code-eval", "--dataset", "humaneval", "--samples", str(samples), "--data-dir", str(shared_data)]) == 2
    assert "s.jsonl:2: expected a task_id of the dataset" in capsys.readouterr().err
    samples.write_text('{"task_id": "HumanEval/0"}\n')
    assert main(["code-eval", "--dataset", "humaneval", "--samples", str(samples), "--data-dir", str(shared_data)]) == 2
    assert "s.jsonl:1: expected fields 'task_id' and 'completion'" in capsys.readouterr().err


def test_mbpp_written_file(tmp_path, capsys):
    records = []
    for task_id in (11, 12, 13):
        records.append({
            "task_id": task_id, "text": f"Return x plus {task_id}.",
            "code": f"def plus_{task_id}(x):\n    return x + {task_id}",
            "test_list": [f"assert plus_{task_id}(1) == {task_id + 1}", f"assert plus_{task_id}(0) == {task_id}"],
            "test_setup_code": "", "challenge_test_list": [],
        })  # fmt: skip
    records.append({**records[0], "task_id": 700})  # a training problem: not scored with test samples
    _write(tmp_path / "mbpp.jsonl", records)
    samples = _write(tmp_path / "s.jsonl", [
        {"task_id": 11, "completion": "def plus_11(x):\n    return x + 11"},
        {"task_id": 11, "completion": "def plus_11(x):\n    return x + 1"},
        {"task_id": 12, "completion": "def plus_12(x):\n    return 12 + x"},
        {"task_id": 12, "completion": "def plus_12(x):\n    return 12 + x"},
        {"task_id": 13, "completion": "def plus_13(x):\n    return 0"},
        {"task_id": 13, "completion": "def plus_13(x):\n    return 0"},
    ])  # fmt: skip
    report = _run_json(capsys, ["--dataset", "mbpp", "--samples", str(samples), "--k", "1,2", "--data-dir", str(tmp_path)])
    assert report["n_problems"] == 3
    assert report["overall"]["pass@1"] == pytest.approx((50 + 100 + 0) / 3)
    assert report["overall"]["pass@2"] == pytest.approx((100 + 100 + 0) / 3)


def test_table_output(tmp_path, capsys):
    _write(tmp_path / "mbpp.jsonl", [{"task_id": 11, "text": "t", "code": "def f():\n    return 1",
                                       "test_list": ["assert f() == 1"], "test_setup_code": "", "challenge_test_list": []}])  # fmt: skip
    samples = _write(tmp_path / "s.jsonl", [{"task_id": 11, "completion": "def f():\n    return 1"}])
    assert main(["code-eval", "--dataset", "mbpp", "--samples", str(samples), "--k", "1", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "pass@1" in out and "100.00" in out
