"""Stopping cleanly when a scheduler says time is up (SIGTERM) or the user presses Ctrl-C.

SLURM, Kubernetes and systemd send SIGTERM and, some seconds later, SIGKILL. What a kill costs
depends on where it lands, so there are two behaviours:

* inside the training loop (:func:`graceful_stop`) a signal only sets a flag: the loop finishes
  the optimizer step it is in, writes a checkpoint at that step and raises
  :class:`StoppedBySignal`, so that running the same command again resumes exactly there. A
  second Ctrl-C stops at once (KeyboardInterrupt), as users expect.
* elsewhere in a run or a study (:func:`stop_on_signal`) SIGTERM raises StoppedBySignal where
  the program is, as Ctrl-C raises KeyboardInterrupt: every file is written atomically, so
  nothing is left half-written, and the directory locks are released on the way out.

StoppedBySignal derives from BaseException, as KeyboardInterrupt does, so that the code which
catches ``Exception`` to record a failed study cell does not record a stopped cell as failed.
Its ``exit_code`` is the shell's convention for "ended by signal N": 128 + N (143 for SIGTERM).
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

RESUME_HINT = "re-run the same command to resume"


class StoppedBySignal(BaseException):
    """The process was asked to stop (SIGTERM, SIGINT); what was done so far is kept."""

    def __init__(self, signum: int, step: int | None = None) -> None:
        self.signum = signum
        self.step = step
        self.exit_code = 128 + signum
        where = f" at step {step}" if step is not None else ""
        super().__init__(f"stopped by {signal_name(signum)}{where}; {RESUME_HINT}")

    def __reduce__(self) -> tuple[Any, ...]:
        # travels back from worker processes (ProcessPoolExecutor pickles a worker's exception)
        return (type(self), (self.signum, self.step))


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class StopRequest:
    """Set by :func:`graceful_stop`'s handler; the training loop reads it between steps."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def __bool__(self) -> bool:
        return self.signum is not None


def _in_main_thread() -> bool:
    # signal handlers can only be installed from the main thread (Python's rule)
    return threading.current_thread() is threading.main_thread()


def _install(signums: tuple[int, ...], handler: Any) -> dict[int, Any]:
    previous = {}
    for signum in signums:
        old = signal.getsignal(signum)
        signal.signal(signum, handler)
        previous[signum] = signal.SIG_DFL if old is None else old  # None: set outside Python
    return previous


def _restore(previous: dict[int, Any]) -> None:
    for signum, old in previous.items():
        signal.signal(signum, old)


@contextmanager
def graceful_stop(signums: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT)) -> Iterator[StopRequest]:
    """While inside: SIGTERM / SIGINT only set the returned :class:`StopRequest` (the caller stops
    at its next safe point); a second SIGINT raises KeyboardInterrupt. Handlers are restored on
    exit. Outside the main thread nothing is installed (the request then never fires)."""
    request = StopRequest()
    if not _in_main_thread():
        yield request
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if request.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # asked twice: stop now
        if request.signum is None:
            request.signum = signum

    previous = _install(signums, handler)
    try:
        yield request
    finally:
        _restore(previous)


@contextmanager
def stop_on_signal(
    signums: tuple[int, ...] = (signal.SIGTERM,), *, forward_to_children: bool = False
) -> Iterator[None]:
    """While inside: SIGTERM raises :class:`StoppedBySignal` (once; repeats are ignored while the
    program unwinds). ``forward_to_children`` first passes the signal on to this process's
    multiprocessing children (a study's CPU/GPU workers), so that they checkpoint and stop too
    when the signal was sent to the driver alone."""
    if not _in_main_thread():
        yield
        return
    fired = False

    def handler(signum: int, frame: FrameType | None) -> None:
        nonlocal fired
        if fired:
            return
        fired = True
        if forward_to_children:
            import multiprocessing

            for child in multiprocessing.active_children():
                try:
                    os.kill(child.pid, signum)
                except (ProcessLookupError, TypeError):
                    pass
        raise StoppedBySignal(signum)

    previous = _install(signums, handler)
    try:
        yield
    finally:
        _restore(previous)
