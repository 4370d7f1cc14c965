"""The sandbox for generated code: each hostile program is stopped, counted as a failure, leaves
nothing behind, and the scorer survives. Limits are small so that each test takes a second or two."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from pathlib import Path

import pytest

from xstilts.evaluation.execution import Sandbox, SandboxConfig, processes_with_marker, run_program

FAST = SandboxConfig(timeout_s=1.5, memory_mb=256, file_size_mb=1)


@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    return Sandbox(FAST)


def _namespaces_available() -> bool:
    return Sandbox(SandboxConfig()).uses_namespaces


def _readonly_available() -> bool:
    return Sandbox(SandboxConfig()).readonly_fs


def test_ordinary_program_passes_with_output_captured(sandbox):
    r = sandbox.run("import math, collections\nprint(math.factorial(5))\nimport sys; print('err', file=sys.stderr)")
    assert r.passed and r.status == "passed" and r.returncode == 0
    assert r.stdout == "120\n" and r.stderr == "err\n"


def test_failing_assertion_is_a_failure(sandbox):
    r = sandbox.run("assert 1 + 1 == 3")
    assert not r.passed and r.status == "failed" and r.returncode == 1
    assert "AssertionError" in r.stderr


def test_empty_private_working_directory_and_home(sandbox):
    r = sandbox.run(
        "import os\nprint(os.listdir('.'))\nprint(os.environ['HOME'] == os.getcwd())\n"
        "open(os.path.expanduser('~/notes.txt'), 'w').write('ok')\nprint(sorted(os.listdir('.')))"
    )
    assert r.passed, r.stderr
    assert r.stdout.splitlines() == ["[]", "True", "['notes.txt']"]


@pytest.mark.parametrize("code", ["while True:\n    pass", "import time\ntime.sleep(30)"])
def test_infinite_loop_and_sleep_time_out(sandbox, code):
    start = time.monotonic()
    r = sandbox.run(code)
    assert r.status == "timeout" and not r.passed
    assert time.monotonic() - start < FAST.timeout_s + 3


def test_unbounded_allocation_is_stopped(sandbox):
    r = sandbox.run("blocks = []\nwhile True:\n    blocks.append(bytearray(50 * 1024 * 1024))")
    assert not r.passed and r.status == "failed"
    assert "memory" in r.reason.lower()


def test_writing_outside_the_directory_is_refused(sandbox, tmp_path):
    target = tmp_path / "evil.txt"
    home_target = Path.home() / f"xstilts-sandbox-test-{uuid.uuid4().hex}.txt"
    for path in (target, home_target):
        r = sandbox.run(f"open({str(path)!r}, 'w').write('pwned')")
        assert r.status == "blocked" and not r.passed, r.stderr
        assert not path.exists()
    victim = tmp_path / "keep.txt"
    victim.write_text("precious")
    for code in (
        f"import os\nos.remove({str(victim)!r})",
        f"import shutil\nshutil.rmtree({str(tmp_path)!r})",
        f"import os\nos.chdir({str(tmp_path)!r})\nopen('x.txt', 'w')",
        f"import os\nfd = os.open({str(tmp_path)!r}, os.O_RDONLY)",
    ):
        r = sandbox.run(code)
        assert r.status == "blocked", (code, r.stderr)
    assert victim.read_text() == "precious" and not (tmp_path / "x.txt").exists()


def test_read_only_mounts_stop_writes_even_without_the_hook(tmp_path):
    if not _readonly_available():
        pytest.skip("no mount namespace here (unshare --mount)")
    box = Sandbox(SandboxConfig(timeout_s=3, audit_hook=False))
    target = tmp_path / "evil.txt"
    home_target = Path.home() / f"xstilts-sandbox-test-{uuid.uuid4().hex}.txt"
    for path in (target, home_target, Path("/dev/shm") / f"xstilts-{uuid.uuid4().hex}"):
        r = box.run(f"open({str(path)!r}, 'w').write('pwned')")
        assert not r.passed and "Read-only file system" in r.stderr, r.stderr
        assert not path.exists()
    r = box.run("import os\nopen('here.txt', 'w').write('fine')\nos.mkdir('d')\nprint(sorted(os.listdir()))")
    assert r.passed and r.stdout == "['d', 'here.txt']\n", r.stderr


def test_hook_cannot_be_reached_or_bypassed(sandbox, tmp_path):
    target = tmp_path / "x.txt"
    for code in (
        "import gc\ngc.get_objects()",
        # Monkeypatching os.path after the hook is installed does not fool it.
        f"import os.path\nos.path.realpath = lambda p: os.getcwd()\nopen({str(target)!r}, 'w')",
    ):
        r = sandbox.run(code)
        assert r.status == "blocked", (code, r.stderr)
    assert not target.exists()


def test_large_output_is_capped(sandbox):
    r = sandbox.run("import sys\nwhile True:\n    sys.stdout.write('x' * 65536)")
    assert not r.passed
    assert len(r.stdout) <= FAST.max_output_bytes + 100


@pytest.mark.parametrize(
    "code",
    [
        "import os\nwhile True:\n    os.fork()",
        "import subprocess\nsubprocess.run(['sleep', '10'])",
        "import os\nos.system('sleep 10')",
        "import ctypes",
        "import multiprocessing",
    ],
)
def test_process_creation_is_refused(sandbox, code):
    marker = uuid.uuid4().hex
    r = sandbox.run(code, marker=marker)
    assert r.status == "blocked" and not r.passed, r.stderr
    assert processes_with_marker(marker) == []


# A fork bomb bounded by the test itself (2**6 = 64 processes at most), each child leaving the
# process group with setsid, run with the audit hook off: only the OS layers contain it.
BOUNDED_BOMB = """
import os, time
for _ in range(6):
    if os.fork() == 0:
        os.setsid()
print(os.getpid(), flush=True)
time.sleep(30)
"""


@pytest.mark.parametrize("namespaces", [True, False])
def test_fork_bomb_is_contained_by_the_os_layers(namespaces):
    if namespaces and not _namespaces_available():
        pytest.skip("unshare --net --pid is not available here")
    box = Sandbox(SandboxConfig(timeout_s=1.5, memory_mb=256, audit_hook=False, namespaces=namespaces))
    marker = uuid.uuid4().hex
    start = time.monotonic()
    r = box.run(BOUNDED_BOMB, marker=marker)
    assert r.status == "timeout" and not r.passed
    assert len(set(r.stdout.split())) >= 32  # the bomb really ran (64 processes when unhindered)
    assert processes_with_marker(marker) == []
    assert time.monotonic() - start < 6


@pytest.fixture()
def listener():
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(5)
    server.settimeout(0.2)
    accepted: list = []
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                accepted.append(conn)
            except OSError:
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], accepted
    stop.set()
    thread.join(2)
    server.close()


@pytest.mark.parametrize("audit_hook,namespaces", [(True, False), (False, True)])
def test_no_network(listener, audit_hook, namespaces):
    if namespaces and not _namespaces_available():
        pytest.skip("unshare --net is not available here")
    port, accepted = listener
    box = Sandbox(SandboxConfig(timeout_s=3, audit_hook=audit_hook, namespaces=namespaces))
    r = box.run(f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1).sendall(b'hi')")
    assert not r.passed
    time.sleep(0.3)
    assert accepted == []
    # The same program reaches the listener when nothing stands in its way (the test is real).
    open_box = Sandbox(SandboxConfig(timeout_s=3, audit_hook=False, namespaces=False))
    assert open_box.run(f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)").passed
    time.sleep(0.3)
    assert len(accepted) == 1


def test_scorer_survives_a_mixed_batch():
    programs = [
        "print('ok')",
        "while True: pass",
        "x = bytearray(8 * 1024 ** 3)",
        "import os\nos.fork()",
        "raise SystemExit(0)",
        "import sys\nsys.stdout.close()\nraise KeyboardInterrupt",
    ]
    results = Sandbox(SandboxConfig(timeout_s=1, memory_mb=256)).run_many(programs, workers=2)
    assert [r.passed for r in results] == [True, False, False, False, True, False]
    assert results[1].status == "timeout" and results[3].status == "blocked"


def test_run_program_convenience():
    assert run_program("print(2 ** 10)", FAST).stdout == "1024\n"
