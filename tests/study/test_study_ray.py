"""The Ray executor on a local Ray cluster of this machine (2 CPUs), with the fake unit of work."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

sys.path.insert(0, str(Path(__file__).resolve().parent))  # test_study_executors beside it
import test_study_executors as fakes  # noqa: E402

from xstilts.study.executors import RayExecutor  # noqa: E402
from xstilts.study.runner import run_study  # noqa: E402


def test_ray_executor_runs_reuses_records_failures_and_skips(tmp_path):
    ray.cloudpickle.register_pickle_by_value(fakes)  # workers cannot import the tests folder
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        (tmp_path / "fail").mkdir()
        (tmp_path / "fail" / "enc__django-generate__s1__phase1").touch()
        s = fakes.study(seeds=[1])
        run = run_study(s, tmp_path, work=fakes.fake_work, executor=RayExecutor())
        assert run.exit_status == 3  # the phase-1 node and its two targets
        made = fakes.calls(tmp_path)
        assert sorted(c for c in made if c.endswith("phase1")) == ["enc/conala-generate/s1/phase1",
                                                                    "enc/django-generate/s1/phase1"]
        assert len(made) == 2 + 4  # the two targets of the failed node never ran
        from xstilts.study.store import ResultStore
        cells = ResultStore(tmp_path / "results.sqlite").cell_status("fake")
        assert sum(c["status"] == "done" for c in cells.values()) == 5
        (tmp_path / "fail" / "enc__django-generate__s1__phase1").unlink()
        run2 = run_study(s, tmp_path, work=fakes.fake_work, executor=RayExecutor())
        assert run2.exit_status == 0
        assert sorted(fakes.calls(tmp_path)[len(made):]) == [
            "enc/django-generate/s1/phase1", "enc/django-generate/s1/tatoeba", "enc/django-generate/s1/udpos"]
    finally:
        ray.shutdown()
