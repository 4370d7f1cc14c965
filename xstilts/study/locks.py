"""One owner per directory: an exclusive lock file that names its holder.

Two processes writing the same study or run directory corrupt each other's checkpoints (one
renames a folder the other is writing into) and both train the same cells. So a study directory,
a run directory and each study cell are owned by one process at a time.

The lock is ``fcntl.flock`` on a lock file (``DIR/xstilts.lock``). The kernel drops a flock when
its process ends, however it ends, so a lock never outlives its holder: a lock file left by a
killed process is simply taken over (with a note naming it). NFS clients implement flock as a
POSIX lock that the server holds for them, which gives the same guarantee across the machines of
a cluster. The file also holds the holder's pid, host, start time and command line, for the
message a second process prints. On a file system without flock (some Lustre mounts) the file
is created with ``O_CREAT | O_EXCL`` instead, and a lock whose pid no longer runs on this host
is taken over.

A process may take a lock it already holds (the ``xstilts study`` command around
:func:`~xstilts.study.runner.run_study`, which takes it too): the lock counts its holders and
is released when the outermost one lets go. This process-wide table is the module's one piece of
global state; it has to be, since flock treats two opens of the same file in one process as two
owners.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from xstilts.errors import XstiltsError

LOCK_FILE = "xstilts.lock"
WAIT_HINT = "give --wait to start once it is free, or use another directory"
POLL_SECONDS = 1.0
# errno values by which a file system says it has no flock; the O_EXCL protocol is used then
_NO_FLOCK = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}
# an O_EXCL lock file still empty after this long was left by a process killed while creating it
_EMPTY_GRACE_SECONDS = 30.0

Notify = Callable[[str], None]


def _stderr_note(message: str) -> None:
    print(f"note: {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Holder:
    """Who holds a lock, as written in the lock file."""

    pid: int
    host: str
    started: float
    command: str = ""

    @classmethod
    def me(cls) -> Holder:
        return cls(os.getpid(), socket.gethostname(), time.time(), " ".join(sys.argv)[:300])

    @classmethod
    def parse(cls, text: str) -> Holder | None:
        try:
            data = json.loads(text)
            return cls(int(data["pid"]), str(data["host"]), float(data["started"]), str(data.get("command", "")))
        except (ValueError, KeyError, TypeError):
            return None

    def to_text(self) -> str:
        return json.dumps(asdict(self)) + "\n"

    def describe(self) -> str:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started))
        text = f"pid {self.pid} on host {self.host}, since {since}"
        return text + (f": {self.command}" if self.command else "")

    def running(self) -> bool | None:
        """Whether the holder still runs: None when it is on another host (cannot be told)."""
        if self.host != socket.gethostname():
            return None
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # alive, another user's
            return True
        return True


class _Unknown:
    """A holder whose lock file names nobody (being written, or not ours)."""

    def describe(self) -> str:
        return "a process that did not write its name into the lock file"


UNKNOWN = _Unknown()


class LockHeldError(XstiltsError):
    """Another live process owns the directory; the message names it and says what to do."""

    def __init__(self, label: str, directory: Path, holder: Holder | _Unknown, hint: str = WAIT_HINT) -> None:
        self.holder = holder
        super().__init__(f"{label} {directory} is in use by another xstilts process ({holder.describe()}); {hint}")


@dataclass
class _Held:
    fd: int
    count: int
    flock: bool  # False: the O_EXCL protocol (the file is removed on release)


_HELD: dict[str, _Held] = {}


class DirLock:
    """The lock of one directory (the lock file ``name`` inside it; or ``path`` given directly).

    ``label`` names the directory in messages ("study directory", "run directory"), ``hint``
    says what to do when another process holds it."""

    def __init__(self, directory: str | Path, *, label: str = "directory", name: str = LOCK_FILE,
                 path: str | Path | None = None, notify: Notify | None = None, hint: str = WAIT_HINT) -> None:
        self.directory = Path(directory)
        self.path = Path(path) if path is not None else self.directory / name
        self.label = label
        self.hint = hint
        self.notify = notify or _stderr_note

    @property
    def _key(self) -> str:
        return os.path.realpath(self.path)

    @property
    def held(self) -> bool:
        """Whether this process holds the lock."""
        return self._key in _HELD

    def holder(self) -> Holder | None:
        """Who the lock file names (whether or not the lock is still held)."""
        try:
            return Holder.parse(self.path.read_text(encoding="utf-8"))
        except OSError:
            return None

    # -- taking and releasing ------------------------------------------------------------

    def acquire(self, *, wait: bool = False, poll: float = POLL_SECONDS) -> bool:
        """Take the lock; returns whether it had to wait. Without ``wait`` a lock held by another
        live process is a :class:`LockHeldError`; with it, the lock is retried every ``poll``
        seconds (after one note saying who holds it) until it is free."""
        key = self._key
        if key in _HELD:
            _HELD[key].count += 1
            return False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        waited = False
        while True:
            blocker = self._try_acquire()
            if blocker is None:
                return waited
            if not wait:
                raise LockHeldError(self.label, self.directory, blocker, self.hint)
            if not waited:
                self.notify(f"waiting for {self.label} {self.directory}: in use by {blocker.describe()} "
                            f"(checking every {poll:g} s)")
                waited = True
            time.sleep(poll)

    def release(self) -> None:
        key = self._key
        held = _HELD.get(key)
        if held is None:
            return
        held.count -= 1
        if held.count > 0:
            return
        del _HELD[key]
        try:
            if held.flock:
                import fcntl

                os.ftruncate(held.fd, 0)  # an empty file: nobody holds it
                fcntl.flock(held.fd, fcntl.LOCK_UN)
            else:
                self.path.unlink(missing_ok=True)
        finally:
            os.close(held.fd)

    @contextmanager
    def hold(self, *, wait: bool = False, poll: float = POLL_SECONDS) -> Iterator[bool]:
        """``with lock.hold(wait=...) as waited:`` -- released on exit, on errors too."""
        waited = self.acquire(wait=wait, poll=poll)
        try:
            yield waited
        finally:
            self.release()

    # -- the two protocols -----------------------------------------------------------------

    def _try_acquire(self) -> Holder | _Unknown | None:
        """None when taken; else who holds it (``UNKNOWN`` when the file does not say)."""
        try:
            import fcntl
        except ImportError:  # not a POSIX system
            return self._try_exclusive()
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            blocker = Holder.parse(_read_fd(fd))
            os.close(fd)
            return blocker if blocker is not None else UNKNOWN
        except OSError as exc:
            os.close(fd)
            if exc.errno in _NO_FLOCK:
                return self._try_exclusive()
            raise
        try:
            same_file = os.fstat(fd).st_ino == os.stat(self.path).st_ino
        except FileNotFoundError:
            same_file = False
        if not same_file:  # the file was removed or replaced while we waited for it: try again
            os.close(fd)
            return self._try_acquire()
        previous = Holder.parse(_read_fd(fd))
        if previous is not None:  # a holder that ended without releasing (killed)
            self.notify(f"took over {self.path}, left by {previous.describe()}, which no longer holds it")
        _write_fd(fd, Holder.me().to_text())
        _HELD[self._key] = _Held(fd, 1, flock=True)
        return None

    def _try_exclusive(self) -> Holder | _Unknown | None:
        """The O_EXCL protocol for file systems without flock: the file exists while held."""
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            text = self._read_text()
            blocker = Holder.parse(text) if text is not None else None
            if blocker is not None and blocker.running() is False:
                if self._remove_stale(text):
                    self.notify(f"took over {self.path}, left by {blocker.describe()}, which is no longer running")
                return self._try_exclusive()
            if blocker is None and text is not None and self._age() > _EMPTY_GRACE_SECONDS:
                self._remove_stale(text)  # created by a process killed before it wrote its name
                return self._try_exclusive()
            if text is None:  # removed in the meantime: try again
                return self._try_exclusive()
            return blocker if blocker is not None else UNKNOWN
        _write_fd(fd, Holder.me().to_text())
        _HELD[self._key] = _Held(fd, 1, flock=False)
        return None

    def _read_text(self) -> str | None:
        try:
            return self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None

    def _age(self) -> float:
        try:
            return time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return 0.0

    def _remove_stale(self, seen: str | None) -> bool:
        """Move a stale lock file away (one atomic rename, so two takers cannot both remove it)
        and put it back if it turned out to be a fresh lock created in between."""
        aside = self.path.with_name(f"{self.path.name}.stale-{os.getpid()}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return False
        if aside.read_text(encoding="utf-8") != seen:  # another process's new lock: give it back
            try:
                os.link(aside, self.path)
            except FileExistsError:
                pass
            aside.unlink(missing_ok=True)
            return False
        aside.unlink(missing_ok=True)
        return True


def _read_fd(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 4096):
        chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", errors="replace")


def _write_fd(fd: int, text: str) -> None:
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, text.encode("utf-8"))
    os.fsync(fd)
