"""Issue 16: one owner per directory, inputs checked before training, clean stops (SIGTERM, full disk).

Real processes where the behaviour is about processes (a second ``xstilts`` on the same directory,
SIGTERM from a scheduler); the tiny XLM-R and the UDPOS / PAN-X slices of test_pipeline elsewhere.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from lock_helpers import blocking_work
from test_pipeline import small_world  # noqa: F401 - the fixture (tiny model + data slices)

from xstilts.cli import main
from xstilts.study.locks import DirLock, LockHeldError

TESTS = Path(__file__).resolve().parents[1]
REPO = TESTS.parent
ENV = dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{TESTS}", OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1",
           HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")


# -- helpers -------------------------------------------------------------------------------


def fake_study_yaml(tmp_path: Path) -> Path:
    cfg = tmp_path / "study.yaml"
    cfg.write_text(yaml.safe_dump({"name": "locks", "encoders": ["enc"], "intermediate": ["none"],
                                   "targets": ["udpos"], "languages": {"udpos": ["de"]}, "seeds": [1]}))
    return cfg


def study_cmd(cfg: Path, out: Path, data: Path, *extra: str) -> list[str]:
    return ["study", str(cfg), "--out", str(out), "--data-dir", str(data), "--no-report",
            "--work", "lock_helpers:blocking_work", *extra]


def spawn_cli(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "xstilts.cli", *args], env=ENV, cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"process ended early ({proc.returncode}): {out[-2000:]} {err[-2000:]}")
        assert time.time() < deadline, f"{path} did not appear"
        time.sleep(0.05)


HOLD_SCRIPT = """
import sys, time
from pathlib import Path
from xstilts.study.locks import DirLock
DirLock(sys.argv[1], path=sys.argv[2] if sys.argv[2] != "-" else None).acquire()
Path(sys.argv[3]).write_text("held")
while not Path(sys.argv[4]).exists():
    time.sleep(0.05)
"""


def hold_lock(directory: Path, tmp_path: Path, lock_path: Path | None = None) -> tuple[subprocess.Popen, Path]:
    """Another process holding a directory's lock until the returned release file is touched."""
    held, release = tmp_path / "held.flag", tmp_path / "release.flag"
    proc = subprocess.Popen([sys.executable, "-c", HOLD_SCRIPT, str(directory), str(lock_path or "-"), str(held),
                             str(release)], env=ENV, cwd=REPO)
    wait_for(held, proc)
    return proc, release


def can_take_in_another_process(directory: Path) -> bool:
    code = ("import sys\nfrom xstilts.study.locks import DirLock, LockHeldError\n"
            f"try:\n    DirLock({str(directory)!r}).acquire()\nexcept LockHeldError:\n    sys.exit(3)\n")
    return subprocess.run([sys.executable, "-c", code], env=ENV, cwd=REPO).returncode == 0


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def run_args(world: dict, out: Path, *extra: str) -> list[str]:
    return ["run", "--model", str(world["model"]), "--target", "udpos", "--data-dir", str(world["data"]),
            "--out", str(out), "--seed", "3", "--lr", "1e-3", "--batch-size", "8", "--max-length", "64",
            "--no-progress", *extra]


def one_error_line(err: str) -> str:
    """The one ``error:`` line that ends stderr (the run's log lines may come before it)."""
    lines = [line for line in err.strip().splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0] and "Traceback" not in err, err
    return errors[0]


# -- 1. one owner per directory ----------------------------------------------------------------


def test_second_study_process_refuses_naming_the_holder(tmp_path, capsys):
    cfg, out = fake_study_yaml(tmp_path), tmp_path / "out"
    first = spawn_cli(study_cmd(cfg, out, tmp_path))
    try:
        wait_for(out / "started", first)
        assert main(study_cmd(cfg, out, tmp_path)) == 2
        line = one_error_line(capsys.readouterr().err)
        assert f"study directory {out.resolve()} is in use by another xstilts process" in line
        assert f"pid {first.pid} on host {socket.gethostname()}, since " in line and "--wait" in line
    finally:
        (out / "release").touch()
        first.communicate(timeout=60)
    assert first.returncode == 0
    assert (out / "calls.log").read_text().split() == ["enc/none/s1/udpos"]  # the second trained nothing


def test_wait_waits_for_the_holder_then_proceeds(tmp_path):
    cfg, out = fake_study_yaml(tmp_path), tmp_path / "out"
    first = spawn_cli(study_cmd(cfg, out, tmp_path))
    second = None
    try:
        wait_for(out / "started", first)
        second = spawn_cli(study_cmd(cfg, out, tmp_path, "--wait"))
        # its stderr is read as it comes: the holder is released only once the second says it
        # waits (a fixed sleep raced a slow start on a loaded machine)
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(second.stderr), daemon=True)
        reader.start()
        deadline = time.time() + 60
        while not any("waiting for study directory" in line for line in lines):
            assert second.poll() is None, f"the second run ended ({second.returncode}): {''.join(lines)}"
            assert time.time() < deadline, "the second run never said it was waiting"
            time.sleep(0.05)
        assert second.poll() is None  # still waiting, not refused
        (out / "release").touch()
        out1, err1 = first.communicate(timeout=60)
        second.wait(timeout=60)
        reader.join(timeout=10)
        out2, err2 = second.stdout.read(), "".join(lines)
    finally:
        (out / "release").touch()
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
    assert first.returncode == 0 and second.returncode == 0, err2
    assert f"waiting for study directory {out.resolve()}: in use by pid {first.pid}" in err2
    assert "already done enc/none/s1/udpos" in out2  # it proceeded, and found the cell finished
    assert (out / "calls.log").read_text().split() == ["enc/none/s1/udpos"]


def test_second_run_on_the_same_run_dir_refuses(small_world, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "run"
    out.mkdir()
    holder, release = hold_lock(out, tmp_path)
    try:
        assert main(run_args(small_world, out, "--epochs", "1")) == 2
        line = one_error_line(capsys.readouterr().err)
        assert f"run directory {out} is in use by another xstilts process (pid {holder.pid} on host" in line
        assert not (out / "config.yaml").exists() and not (out / "phase2").exists()
    finally:
        release.touch()
        holder.wait(timeout=30)


def test_a_cell_held_by_another_worker_is_not_run_twice(tmp_path):
    """A node whose lock another process holds (say a worker left over from a killed driver) is
    reported, and its run dir is left alone."""
    from xstilts.study.cells import execute_node, make_request, node_lock
    from xstilts.study.plan import build_plan
    from xstilts.study.study_config import parse_study

    plan = build_plan(parse_study({"name": "x", "encoders": ["enc"], "intermediate": ["none"],
                                   "targets": ["udpos"], "languages": {"udpos": ["de"]}}))
    node = plan.nodes[0]
    request = make_request(plan, tmp_path, tmp_path, node, "h1", "t1")
    run_dir = Path(request.run_dir)
    holder, release = hold_lock(run_dir, tmp_path, lock_path=node_lock(run_dir).path)
    try:
        outcome = execute_node(blocking_work, request)
    finally:
        release.touch()
        holder.wait(timeout=30)
    assert outcome.status == "failed" and f"in use by another xstilts process (pid {holder.pid}" in outcome.error
    assert not run_dir.exists() and not (tmp_path / "calls.log").exists()


def test_lock_left_by_a_dead_process_is_taken_over_with_a_note(tmp_path):
    pid = dead_pid()
    (tmp_path / "xstilts.lock").write_text(json.dumps({"pid": pid, "host": socket.gethostname(),
                                                       "started": time.time() - 60, "command": "xstilts run"}))
    notes: list[str] = []
    lock = DirLock(tmp_path, notify=notes.append)
    lock.acquire()
    try:
        assert notes and f"left by pid {pid} on host {socket.gethostname()}" in notes[0]
        assert json.loads((tmp_path / "xstilts.lock").read_text())["pid"] == os.getpid()
    finally:
        lock.release()


def test_without_flock_a_dead_pid_is_taken_over_and_a_live_one_refused(tmp_path, monkeypatch):
    """File systems without flock: the O_EXCL lock file and a pid check on this host."""
    import fcntl

    def no_flock(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    me = socket.gethostname()
    (tmp_path / "xstilts.lock").write_text(json.dumps({"pid": dead_pid(), "host": me, "started": 1.0}))
    notes: list[str] = []
    with DirLock(tmp_path, notify=notes.append).hold():
        assert "no longer running" in notes[0]
    assert not (tmp_path / "xstilts.lock").exists()  # released: removed
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (tmp_path / "xstilts.lock").write_text(json.dumps({"pid": live.pid, "host": me, "started": 1.0}))
        with pytest.raises(LockHeldError, match=f"pid {live.pid} on host {me}"):
            DirLock(tmp_path).acquire()
    finally:
        live.kill()
        live.wait()


def test_lock_is_released_on_exception_and_on_normal_exit(tmp_path):
    from test_study_executors import fake_work, study

    from xstilts.study.executors import LocalExecutor
    from xstilts.study.runner import run_study

    with pytest.raises(RuntimeError, match="boom"):
        with DirLock(tmp_path / "a").hold():
            raise RuntimeError("boom")
    assert can_take_in_another_process(tmp_path / "a")
    run_study(study(seeds=[1]), tmp_path / "b", work=fake_work, executor=LocalExecutor())
    assert (tmp_path / "b" / "xstilts.lock").read_text() == ""  # the holder's name is gone too
    assert can_take_in_another_process(tmp_path / "b")


# -- 2. inputs checked before training ----------------------------------------------------------


def test_run_lists_every_missing_or_malformed_input_before_training(small_world, tmp_path, capsys):  # noqa: F811
    data = tmp_path / "data"
    shutil.copytree(small_world["data"], data)
    (data / "udpos" / "test-fr.tsv").unlink()
    train = data / "udpos" / "train-en.tsv"
    lines = train.read_text(encoding="utf-8").splitlines()
    lines[3] = "word\tNOT-A-TAG"
    train.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "run"
    args = run_args({**small_world, "data": data}, out, "--epochs", "1", "--languages", "fr,es")
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("error: 2 problems with the inputs of the run")
    assert err[1].startswith("  phase 2: ") and f"{train}:4" in err[1]
    assert err[2].startswith("  phase 3: no udpos test file for language 'fr'")
    assert len(err) == 3 and not out.exists()  # nothing was created, nothing trained


def test_study_dry_run_and_run_refuse_missing_data_and_unknown_pipeline_keys(tmp_path, capsys):
    base = {"name": "pre", "encoders": ["no-model-needed"], "intermediate": ["none"], "targets": ["panx"],
            "eval_splits": {"panx": "test"}, "languages": {"panx": ["de", "fr"]}, "seeds": [1]}
    cfg = tmp_path / "s.yaml"
    out = tmp_path / "out"
    cfg.write_text(yaml.safe_dump(base))
    assert main(["study", str(cfg), "--out", str(out), "--dry-run"]) == 2  # no data folder at all
    assert "error: the study needs a data folder" in capsys.readouterr().err
    assert main(["study", str(cfg), "--out", str(out), "--dry-run", "--data-dir", str(tmp_path / "nope")]) == 2
    assert "error: data folder not found" in capsys.readouterr().err
    data = tmp_path / "data" / "panx"
    data.mkdir(parents=True)
    (data / "train-en.tsv").write_text("EU\tB-ORG\nrejects\tO\n\n", encoding="utf-8")
    for dry in (["--dry-run"], []):  # the dry run and the real study alike: exit 2, nothing trained
        assert main(["study", str(cfg), "--out", str(out), "--data-dir", str(tmp_path / "data"), *dry]) == 2
        err = capsys.readouterr().err
        assert "no panx test file for language 'de'" in err and "no panx test file for language 'fr'" in err
        assert "[cell no-model-needed/none/s1/panx]" in err
        assert not (out / "runs").exists()
    cfg.write_text(yaml.safe_dump({**base, "pipeline": {"dev_evl": False}}))
    assert main(["study", str(cfg), "--out", str(out), "--dry-run", "--data-dir", str(tmp_path / "data")]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "pipeline: unknown key(s) dev_evl; allowed: cache_dir, cpu, dev_eval" in line


def test_demo_dry_run_reads_every_input_of_the_real_data_and_writes_nothing(shared_data, tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["study", str(REPO / "configs" / "demo.yaml"), "--dry-run", "--data-dir", str(shared_data),
                 "--out", str(out)]) == 0
    assert "inputs checked: every file the 11 cell(s) to run will read is there and parses" in capsys.readouterr().out
    assert not out.exists()


def test_new_eval_split_and_languages_reuse_the_trained_model(small_world, tmp_path):  # noqa: F811
    """Phase-3 settings never retrain: the finished phase 2 is evaluated again, and the earlier
    predictions and scores are kept under evaluations/."""
    out = tmp_path / "run"
    assert main(run_args(small_world, out, "--epochs", "1", "--languages", "fr")) == 0
    model = out / "phase2" / "model" / "head.safetensors"
    stamp = model.stat().st_mtime_ns
    first_scores = json.loads((out / "scores.json").read_text())
    assert main(run_args(small_world, out, "--epochs", "1", "--eval-split", "dev", "--languages", "en")) == 0
    assert model.stat().st_mtime_ns == stamp  # not trained again
    scores = json.loads((out / "scores.json").read_text())
    assert set(scores["tasks"]["udpos"]["languages"]) == {"en"}
    assert (out / "predictions-dev" / "udpos" / "test-en.tsv").is_file() and not (out / "predictions").exists()
    (kept,) = (out / "evaluations").iterdir()
    assert kept.name.startswith("test-")
    assert json.loads((kept / "scores.json").read_text()) == first_scores
    assert (kept / "predictions" / "udpos" / "test-fr.tsv").is_file()
    assert yaml.safe_load((kept / "config.yaml").read_text())["languages"] == ["fr"]
    assert yaml.safe_load((out / "config.yaml").read_text())["eval_split"] == "dev"
    # a change that does train differently is still refused
    assert main(run_args(small_world, out, "--epochs", "2", "--eval-split", "dev", "--languages", "en")) == 2


def test_study_language_change_reevaluates_in_place_and_training_change_starts_afresh(small_world, tmp_path):  # noqa: F811
    """The real pipeline in a study (study lock, cell lock, run-dir lock in one process): new
    evaluation languages re-evaluate the trained cell; a new training budget trains anew."""
    from xstilts.study.runner import run_study
    from xstilts.study.study_config import parse_study

    def study(langs, steps=4):
        return parse_study({"name": "re", "encoders": [str(small_world["model"])], "intermediate": ["none"],
                            "targets": ["udpos"], "languages": {"udpos": langs}, "seeds": [1],
                            "budgets": {"target": {"max_steps": steps}},
                            "hyperparameters": {"target": {"learning_rate": 1e-3, "batch_size": 8, "grad_accum": 1,
                                                           "max_length": 64}}})

    from xstilts.study.plan import build_plan

    out = tmp_path / "study"
    assert run_study(study(["fr"]), out, data_dir=small_world["data"]).exit_status == 0
    (node,) = build_plan(study(["fr"])).nodes
    cell = node.run_dir(out.resolve())
    stamp = (cell / "phase2" / "model" / "head.safetensors").stat().st_mtime_ns
    assert run_study(study(["es"]), out, data_dir=small_world["data"]).exit_status == 0
    assert (cell / "phase2" / "model" / "head.safetensors").stat().st_mtime_ns == stamp
    assert set(json.loads((cell / "scores.json").read_text())["tasks"]["udpos"]["languages"]) == {"es"}
    assert len(list((cell / "evaluations").iterdir())) == 1
    assert not list(cell.parent.glob("udpos.old-*"))
    assert run_study(study(["es"], steps=5), out, data_dir=small_world["data"]).exit_status == 0
    assert len(list(cell.parent.glob("udpos.old-*"))) == 1  # trained anew; the old run kept aside


def test_eval_split_counts_in_the_node_hash_and_neither_it_nor_an_upgrade_retrains(tmp_path):
    """A changed eval split reruns the cells it decides, in place (the pipeline re-evaluates);
    cells recorded before the split counted in the hash are not moved aside on upgrade."""
    from test_study_executors import calls, fake_work, study

    from xstilts.study.cells import node_legacy_hashes
    from xstilts.study.executors import LocalExecutor
    from xstilts.study.plan import DONE_FILE, build_plan
    from xstilts.study.runner import run_study

    first = study(seeds=[1], eval_splits={"udpos": "test"})
    run_study(first, tmp_path, work=fake_work, executor=LocalExecutor())
    legacy = node_legacy_hashes(build_plan(first))
    for node in build_plan(first).nodes:  # as the code before this change recorded them
        done = tmp_path / node.rel_dir / DONE_FILE
        record = json.loads(done.read_text())
        record.pop("training_hash")
        record["config_hash"] = legacy[node.id]
        done.write_text(json.dumps(record))
    n = len(calls(tmp_path))
    run_study(first, tmp_path, work=fake_work, executor=LocalExecutor())
    assert sorted(calls(tmp_path)[n:]) == ["enc/conala-generate/s1/udpos", "enc/django-generate/s1/udpos",
                                           "enc/none/s1/udpos"]  # only where the hash formula changed
    n = len(calls(tmp_path))
    run_study(study(seeds=[1], eval_splits={"udpos": "dev"}), tmp_path, work=fake_work, executor=LocalExecutor())
    assert sorted(calls(tmp_path)[n:]) == ["enc/conala-generate/s1/udpos", "enc/django-generate/s1/udpos",
                                           "enc/none/s1/udpos"]
    assert not list(tmp_path.rglob("*.old-*"))  # nothing moved aside: no trained model was dropped


# -- 4. SIGTERM and a full disk -------------------------------------------------------------------


SLOW_RUN = """
import sys, time
import xstilts.train.loop as loop
real = loop.get_loss
def slow(output):
    time.sleep(0.15)
    return real(output)
loop.get_loss = slow
from xstilts.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_sigterm_checkpoints_exits_143_and_the_rerun_ends_like_an_uninterrupted_run(small_world, tmp_path):  # noqa: F811
    reference = tmp_path / "reference"
    assert main(run_args(small_world, reference, "--epochs", "3")) == 0
    out = tmp_path / "stopped"
    args = run_args(small_world, out, "--epochs", "3")
    proc = subprocess.Popen([sys.executable, "-c", SLOW_RUN, *args], env=ENV, cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for(out / "phase2" / "train" / "log.jsonl", proc)  # step 10 logged: training is under way
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err[-3000:]
    assert "Traceback" not in err
    line = [x for x in err.splitlines() if x.startswith("stopped by SIGTERM")][-1]
    step = int(line.split("at step ")[1].split(";")[0])
    assert line == f"stopped by SIGTERM at step {step}; re-run the same command to resume"
    ckpts = out / "phase2" / "train" / "checkpoints"
    assert (ckpts / "latest").read_text().strip() == f"step-{step:08d}"
    assert not (out / "run.json").exists()
    assert main(args) == 0  # the same command: resumes at that step
    metrics = json.loads((out / "metrics.json").read_text())["phase2"]["train"]
    assert metrics["resumed_from_step"] == step
    weights = sorted((reference / "phase2" / "model").glob("*.safetensors"))
    assert weights and all((out / "phase2" / "model" / w.name).read_bytes() == w.read_bytes() for w in weights)
    assert json.loads((out / "scores.json").read_text()) == json.loads((reference / "scores.json").read_text())


def test_study_sigterm_records_running_cells_as_interrupted_not_failed(tmp_path):
    from xstilts.study.store import ResultStore

    cfg, out = fake_study_yaml(tmp_path), tmp_path / "out"
    proc = spawn_cli(study_cmd(cfg, out, tmp_path))
    wait_for(out / "started", proc)
    proc.send_signal(signal.SIGTERM)
    stdout, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, stdout + err
    assert "Traceback" not in err and "stopped by SIGTERM; re-run the same command to resume" in stdout
    cells = ResultStore(out / "results.sqlite").cell_status("locks")
    assert cells["enc/none/s1/udpos"]["status"] == "interrupted"
    run_dir = out / "runs" / "enc" / "none" / "s1" / "udpos"
    assert not (run_dir / "error.txt").exists() and not (run_dir / "DONE.json").exists()
    (out / "release").touch()
    assert main(study_cmd(cfg, out, tmp_path)) == 0  # the same command finishes it
    assert ResultStore(out / "results.sqlite").cell_status("locks")["enc/none/s1/udpos"]["status"] == "done"


def test_sigterm_to_a_driver_with_cpu_workers_stops_them_and_records_interrupted(tmp_path):
    """The driver passes SIGTERM on to its worker processes; each stops its cell, none is failed."""
    from xstilts.study.store import ResultStore

    cfg, out = tmp_path / "s.yaml", tmp_path / "out"
    cfg.write_text(yaml.safe_dump({"name": "par", "encoders": ["enc"], "intermediate": ["none"],
                                   "targets": ["udpos", "panx"], "languages": {"udpos": ["de"], "panx": ["de"]},
                                   "seeds": [1], "executor": {"workers": 2}}))
    proc = spawn_cli(study_cmd(cfg, out, tmp_path))
    deadline = time.time() + 60
    while len((out / "calls.log").read_text().split() if (out / "calls.log").exists() else []) < 2:
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)  # to the driver alone
    stdout, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, stdout + err
    cells = ResultStore(out / "results.sqlite").cell_status("par")
    assert {c: r["status"] for c, r in cells.items()} == {"enc/none/s1/udpos": "interrupted",
                                                         "enc/none/s1/panx": "interrupted"}
    assert not list((out / "runs").rglob("error.txt"))


def test_full_disk_during_a_checkpoint_keeps_the_previous_one(small_world, tmp_path, monkeypatch, capsys):  # noqa: F811
    from xstilts.train import checkpoint as ck

    real = ck.torch_save_durably
    optimizer_saves = []

    def disk_fills(obj, path):
        if Path(path).name == "optimizer.pt":
            optimizer_saves.append(path)
            if len(optimizer_saves) == 2:  # the second checkpoint (end of epoch 2), after model.pt
                Path(path).write_bytes(b"half")
                raise OSError(errno.ENOSPC, "No space left on device")
        return real(obj, path)

    monkeypatch.setattr(ck, "torch_save_durably", disk_fills)
    out = tmp_path / "run"
    args = run_args(small_world, out, "--epochs", "3")
    assert main(args) == 2
    line = one_error_line(capsys.readouterr().err)
    ckpts = out / "phase2" / "train" / "checkpoints"
    first = (ckpts / "latest").read_text().strip()
    assert "No space left on device" in line and f"the previous checkpoint {first} is intact" in line
    assert ck.is_complete(ckpts / first) and [p.name for p in ckpts.iterdir() if p.is_dir()] == [first]
    monkeypatch.setattr(ck, "torch_save_durably", real)
    assert main(args) == 0  # room again: the same command resumes from it
    assert json.loads((out / "metrics.json").read_text())["phase2"]["train"]["resumed_from_step"] == int(first[5:])


def test_the_dry_run_counts_finished_cells_whose_training_changed_as_to_do(tmp_path, capsys):
    """A new phase-1 budget retrains every cell below a phase-1 node: the dry run's plan says so
    (it read DONE.json alone and showed them done, with 0 s to compute), and the run agrees."""
    import test_study_executors as fakes

    from xstilts.commands.study import print_plan
    from xstilts.study.cells import plan_status
    from xstilts.study.executors import LocalExecutor
    from xstilts.study.plan import build_plan
    from xstilts.study.runner import run_study

    first = fakes.study(seeds=[1])
    run_study(first, tmp_path, work=fakes.fake_work, executor=LocalExecutor())
    assert set(plan_status(build_plan(first), tmp_path).values()) == {"done"}
    bigger = fakes.study(seeds=[1], budgets={"intermediate": {"examples_seen": 64}})
    status = plan_status(build_plan(bigger), tmp_path)
    changed = sorted(str(n.rel_dir).removeprefix("runs/") for n in build_plan(bigger).nodes
                     if status[n.id] == "changed")
    assert changed == ["enc/conala-generate/s1/phase1", "enc/conala-generate/s1/tatoeba",
                       "enc/conala-generate/s1/udpos", "enc/django-generate/s1/phase1",
                       "enc/django-generate/s1/tatoeba", "enc/django-generate/s1/udpos"]
    assert {status[n.id] for n in build_plan(bigger).nodes if n.setting == "none"} == {"done"}
    from rich.console import Console

    console = Console(record=True, width=200)
    print_plan(bigger, tmp_path, console)
    text = console.export_text()
    assert "6 finished phase run(s) whose training settings changed will be trained afresh" in text
    import sqlite3

    seen: dict[str, str] = {}

    def watched(req):  # the store's status of the cell while its work runs
        con = sqlite3.connect(tmp_path / "results.sqlite")
        (seen[req.node.id],) = con.execute("SELECT status FROM cells WHERE cell = ?", (req.node.id,)).fetchone()
        con.close()
        return fakes.fake_work(req)

    n = len(fakes.calls(tmp_path))
    run_study(bigger, tmp_path, work=watched, executor=LocalExecutor())
    assert sorted(fakes.calls(tmp_path)[n:]) == changed  # what the dry run said, no more, no less
    assert len(seen) == 6 and set(seen.values()) == {"running"}  # marked running, not left "done"
