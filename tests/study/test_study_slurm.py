"""The SLURM executor (submitit), run on this machine with submitit's local executor: the same
code path as on a cluster, with jobs as local processes."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
from pathlib import Path

import pytest

pytest.importorskip("submitit")

import pandas as pd  # noqa: E402
from test_study_executors import calls, fake_work, study  # noqa: E402

from xstilts.study.executors import LocalExecutor  # noqa: E402
from xstilts.study.runner import make_executor, run_study  # noqa: E402
from xstilts.study.slurm import LOG_DIR, SlurmExecutor  # noqa: E402
from xstilts.train.signals import StoppedBySignal, graceful_stop  # noqa: E402

TESTS = Path(__file__).resolve().parents[1]


@pytest.fixture
def importable_tests(monkeypatch):
    """Job processes unpickle the test's work function by reference: they must import this folder."""
    repo = TESTS.parent
    here = str(Path(__file__).resolve().parent)  # this module, which the jobs unpickle from
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([here, str(TESTS), str(repo), os.environ.get("PYTHONPATH", "")]))


def scores(study_dir: Path) -> pd.DataFrame:
    con = sqlite3.connect(study_dir / "results.sqlite")
    try:
        df = pd.read_sql("SELECT cell, task, language, metric, value FROM scores", con)
    finally:
        con.close()
    return df.sort_values(["cell", "task", "language", "metric"]).reset_index(drop=True)


def local_jobs(**kw) -> SlurmExecutor:
    return SlurmExecutor(cluster="local", poll_s=0.2, cpus_per_cell=1, time_min=10, **kw)


def test_config_selects_submitit_with_the_jobs_resources():
    s = study(executor={"kind": "slurm", "gpus": 1, "partition": "gpu", "cpus_per_cell": 8, "mem_gb": 64,
                        "time_min": 600, "max_parallel": 20, "slurm_args": {"account": "xl", "qos": "high"}})
    ex = make_executor(s)
    assert isinstance(ex, SlurmExecutor) and ex.max_parallel == 20
    params = ex.parameters("xstilts-cell")
    assert params["gpus_per_node"] == 1 and params["cpus_per_task"] == 8 and params["mem_gb"] == 64
    assert params["timeout_min"] == 600 and params["slurm_partition"] == "gpu"
    assert params["slurm_additional_parameters"] == {"account": "xl", "qos": "high"}


def test_submitit_sbatch_script_carries_the_cells_resources(tmp_path, monkeypatch):
    """submitit's SLURM executor renders the sbatch header from these parameters (no cluster is
    needed to render it, only an ``srun`` on PATH): the job asks for what the study config says."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")
    (bin_dir / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    ex = SlurmExecutor(cluster="slurm", gpus=2, cpus_per_cell=8, partition="gpu", time_min=90, mem_gb=32,
                       slurm_args={"account": "xl"})
    job = ex.job_executor(tmp_path, "xstilts-x")
    text = job._executor._make_submission_file_text("python -m x", "uid")  # what sbatch would get
    for line in ("#SBATCH --partition=gpu", "#SBATCH --gpus-per-node=2", "#SBATCH --cpus-per-task=8",
                 "#SBATCH --time=90", "#SBATCH --mem=32GB", "#SBATCH --account=xl",
                 "#SBATCH --signal=USR2@120", "#SBATCH --job-name=xstilts-x"):
        assert line in text, text


def test_local_jobs_give_the_local_executors_results(tmp_path, importable_tests):
    s = study()
    run_study(s, tmp_path / "seq", work=fake_work, executor=LocalExecutor())
    run = run_study(s, tmp_path / "jobs", work=fake_work, executor=local_jobs())
    assert run.exit_status == 0, [o.error for o in run.failed]
    pd.testing.assert_frame_equal(scores(tmp_path / "seq"), scores(tmp_path / "jobs"))
    assert sorted(calls(tmp_path / "seq")) == sorted(calls(tmp_path / "jobs"))
    # every cell's job log is in its run directory
    cell = next(n for n in run.outcomes if n.endswith("/udpos"))
    logs = list((tmp_path / "jobs" / "runs").rglob(f"{LOG_DIR}/*_log.out"))
    assert len(logs) == len(run.outcomes) and any(cell.split("/")[-2] in str(p) for p in logs)
    # a second run submits nothing: finished cells are settled by the driver
    again = run_study(s, tmp_path / "jobs", work=fake_work, executor=local_jobs())
    assert {o.status for o in again.outcomes.values()} == {"skipped-done"}
    assert len(list((tmp_path / "jobs" / "runs").rglob(f"{LOG_DIR}/*_log.out"))) == len(logs)


def test_a_failing_cell_fails_alone_and_its_targets_are_not_submitted(tmp_path, importable_tests):
    s = study(intermediate=["none", "conala:generate"], targets=["udpos"], languages={"udpos": ["de", "fr"]}, seeds=[1])
    (tmp_path / "fail").mkdir(parents=True)
    (tmp_path / "fail" / "enc__conala-generate__s1__phase1").touch()
    run = run_study(s, tmp_path, work=fake_work, executor=local_jobs())
    failed = {o.node_id: o.error for o in run.failed}
    assert any("boom" in e for e in failed.values())
    assert any("phase-1 node" in e for e in failed.values()), failed
    assert run.exit_status == 2  # the phase-1 cell and its one target


def job_dies(req) -> dict:
    os._exit(3)  # the job's process dies: no outcome comes back


def test_a_job_that_dies_is_a_failed_cell_naming_its_log(tmp_path, importable_tests):
    s = study(intermediate=["none"], targets=["udpos"], languages={"udpos": ["de", "fr"]}, seeds=[1])
    run = run_study(s, tmp_path, work=job_dies, executor=local_jobs())
    (outcome,) = run.failed
    assert outcome.error.startswith("job ") and "_log.err" in outcome.error


def stopped_once(req) -> dict:
    """Stands in for a training loop: on its first attempt the job is 'preempted' (submitit's
    USR2), checkpoints at its next safe point and stops; the requeued attempt resumes from it."""
    run_dir = Path(req.run_dir)
    ckpt = run_dir / "checkpoint.json"
    attempts = run_dir / "attempts.log"
    with open(attempts, "a") as fh:
        fh.write(f"{os.getpid()}\n")
    if not ckpt.exists():
        with graceful_stop() as stop:
            os.kill(os.getpid(), signal.SIGUSR2)  # what SLURM sends before a preemption / time limit
            for _ in range(500):
                if stop:
                    ckpt.write_text(json.dumps({"step": 7}))
                    raise StoppedBySignal(stop.signum, 7)
                import time

                time.sleep(0.01)
        raise AssertionError("the preemption signal never reached the training loop")
    step = json.loads(ckpt.read_text())["step"]
    return fake_work(req) | {"resumed_from": step}


def test_a_preempted_job_checkpoints_requeues_and_resumes(tmp_path, importable_tests):
    s = study(intermediate=["none"], targets=["udpos"], languages={"udpos": ["de", "fr"]}, seeds=[1])
    run = run_study(s, tmp_path, work=stopped_once, executor=local_jobs())
    assert run.exit_status == 0, [o.error for o in run.failed]
    (outcome,) = run.outcomes.values()
    assert outcome.status == "done" and outcome.result["resumed_from"] == 7
    run_dir = next((tmp_path / "runs").rglob("attempts.log")).parent
    pids = (run_dir / "attempts.log").read_text().split()
    assert len(pids) == 2 and pids[0] != pids[1]  # a second process: the requeued job
    log = "\n".join(p.read_text() for p in (run_dir / LOG_DIR).glob("*_log.err"))
    assert "Caught signal SIGUSR2" in log  # submitit took it as a time limit and requeued the job
    assert not scores(tmp_path).empty


def test_processes_per_cell_needs_as_many_gpus_and_groups_them_per_worker():
    from xstilts.errors import ConfigError

    with pytest.raises(ConfigError, match="processes_per_cell 4 needs as many GPUs per cell; gpus is 2"):
        study(executor={"gpus": 2, "processes_per_cell": 4})
    ex = make_executor(study(executor={"gpus": 8, "processes_per_cell": 4}))
    assert isinstance(ex, LocalExecutor) and ex.slots == 2  # two cells at once, four GPUs each
    assert make_executor(study(executor={"gpus": 2, "processes_per_cell": 2})).slots == 1



def test_fsdp_needs_several_processes_and_changes_only_its_own_hashes():
    from xstilts.errors import ConfigError
    from xstilts.study.cells import node_config_hashes
    from xstilts.study.plan import build_plan
    from xstilts.train.train_config import TrainConfig

    with pytest.raises(ConfigError, match="sharding: fsdp shards a cell over its processes"):
        study(executor={"sharding": "fsdp"})
    with pytest.raises(ConfigError, match="fp16 .* is not supported"):
        TrainConfig(sharding="fsdp", mixed_precision="fp16")
    ddp, fsdp = (study(executor={"gpus": 2, "processes_per_cell": 2, "sharding": s}) for s in ("ddp", "fsdp"))
    implicit = study(executor={"gpus": 2, "processes_per_cell": 2})
    assert node_config_hashes(build_plan(ddp)) == node_config_hashes(build_plan(implicit))
    h_ddp, h_fsdp = node_config_hashes(build_plan(ddp)), node_config_hashes(build_plan(fsdp))
    for node in build_plan(fsdp).nodes:  # every cell that trains is another run; retrieval is one process
        assert (h_ddp[node.id] != h_fsdp[node.id]) == (node.phase != "retrieval" or node.depends_on is not None)


def stopped_by_sigterm(req) -> dict:
    """A job cancelled (scancel sends SIGTERM): the training loop checkpoints and stops."""
    with graceful_stop() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(500):
            if stop:
                raise StoppedBySignal(stop.signum, 3)
            import time

            time.sleep(0.01)
    raise AssertionError("SIGTERM never reached the training loop")


def test_a_cancelled_job_is_an_interrupted_cell_and_the_study_stops_resumably(tmp_path, importable_tests):
    from xstilts.study.store import ResultStore

    s = study(intermediate=["none"], targets=["udpos"], languages={"udpos": ["de", "fr"]}, seeds=[1])
    with pytest.raises(StoppedBySignal):
        run_study(s, tmp_path, work=stopped_by_sigterm, executor=local_jobs())
    status = ResultStore(tmp_path / "results.sqlite").cell_status("fake")
    assert [row["status"] for row in status.values()] == ["interrupted"]
    # the same command resumes it (here with a unit of work that finishes)
    run = run_study(s, tmp_path, work=fake_work, executor=local_jobs())
    assert run.exit_status == 0
    assert [row["status"] for row in ResultStore(tmp_path / "results.sqlite").cell_status("fake").values()] == ["done"]
