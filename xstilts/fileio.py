"""Reading input files and writing outputs with errors that name the path and say what is wrong.

Readers call :func:`read_input_bytes` / :func:`open_input` and :func:`decode_utf8` instead of
``Path.read_text``: a missing file, a folder where a file belongs or a byte that is not UTF-8
becomes a :class:`~xstilts.errors.DataFormatError` (``FILE[:LINE]: expected …, found …``), not
a traceback. Writers call :func:`check_output_dir` before any work and
:func:`write_text_atomic` for each file: a file in the way of a folder, a folder that cannot be
created or a full disk becomes an :class:`~xstilts.errors.OutputError` naming the path, and a
failed write leaves the file that was there before untouched.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
from pathlib import Path
from typing import Any, BinaryIO

from xstilts.errors import DataFormatError, OutputError

__all__ = [
    "check_output_dir",
    "decode_utf8",
    "input_error",
    "open_input",
    "os_reason",
    "output_error",
    "read_input_bytes",
    "write_text_atomic",
]

_FULL_DISK = (errno.ENOSPC, errno.EDQUOT)


def os_reason(exc: OSError) -> str:
    """The operating system's words for an error, in lower case ("no space left on device")."""
    if exc.errno is not None:
        return os.strerror(exc.errno).lower()
    return str(exc) or type(exc).__name__


def input_error(path: str | Path, exc: OSError) -> DataFormatError:
    """The error for an input file that cannot be opened or read."""
    path = Path(path)
    if isinstance(exc, FileNotFoundError):
        return DataFormatError(path, None, "an existing file", "no such file")
    if isinstance(exc, IsADirectoryError):
        return DataFormatError(path, None, "a file", "a directory")
    if isinstance(exc, NotADirectoryError):
        blocker = _blocking_file(path)
        found = f"{blocker} is a file, not a folder" if blocker else "a path through a file"
        return DataFormatError(path, None, "an existing file", found)
    return DataFormatError(path, None, "a readable file", os_reason(exc))


def open_input(path: str | Path) -> BinaryIO:
    """``path`` opened for reading bytes; failures are :func:`input_error`."""
    path = Path(path)
    if path.is_dir():  # open() would succeed on some systems and fail on the first read
        raise input_error(path, IsADirectoryError(errno.EISDIR, "Is a directory"))
    try:
        return open(path, "rb")
    except OSError as exc:
        raise input_error(path, exc) from None


def read_input_bytes(path: str | Path) -> bytes:
    """The whole file; failures are :func:`input_error`."""
    with open_input(path) as handle:
        try:
            return handle.read()
        except OSError as exc:
            raise input_error(path, exc) from None


def decode_utf8(data: bytes, path: str | Path, *, first_line: int = 1) -> str:
    """``data`` as text (a leading UTF-8 byte-order mark dropped); a byte that is not UTF-8 is a
    DataFormatError at its line (``first_line`` is the line ``data`` starts on)."""
    try:
        return data.decode("utf-8-sig" if first_line == 1 else "utf-8")
    except UnicodeDecodeError as exc:
        line = first_line + data.count(b"\n", 0, exc.start)
        bad = data[exc.start : exc.start + 1].hex()
        raise DataFormatError(
            path, line, "UTF-8 text", f"byte 0x{bad} ({exc.reason})", hint="convert the file to UTF-8"
        ) from None


def _blocking_file(path: Path) -> Path | None:
    """The first existing ancestor of ``path`` that is not a folder (it stops ``mkdir -p``)."""
    for parent in path.parents:
        if parent.exists():
            return None if parent.is_dir() else parent
    return None


def check_output_dir(path: str | Path, what: str) -> Path:
    """Refuse, before any work, an output folder that cannot exist: an existing file, or a path
    through a file. ``what`` says what the folder is for ("the predictions"). Nothing is created."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{path}: expected a folder for {what}, found a file")
    blocker = _blocking_file(path)
    if blocker is not None:
        raise OutputError(
            f"{path}: cannot be a folder for {what}: {blocker} is a file, not a folder"
        )
    return path


def output_error(path: str | Path, exc: OSError) -> OutputError:
    """The error for an output that could not be written."""
    path = Path(path)
    if isinstance(exc, NotADirectoryError) or exc.errno == errno.ENOTDIR:
        blocker = _blocking_file(path)
        if blocker is not None:
            return OutputError(f"{path}: cannot write: {blocker} is a file, not a folder")
    message = f"{path}: cannot write: {os_reason(exc)}"
    if exc.errno in _FULL_DISK:
        message += " (free some space and run the same command again; nothing was replaced)"
    return OutputError(message)


def _write_temp(temp: Path, text: str) -> None:
    with open(temp, "w", encoding="utf-8", newline="\n") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())  # on disk before the rename makes it the file


def sha256_of(path: str | Path) -> str:
    """The hex sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8, ``\\n`` line ends) to ``path`` through a temporary file beside it,
    renamed over ``path`` once complete: a failed write (a full disk) leaves an earlier file at
    ``path`` as it was and no partial file behind. Failures are :func:`output_error`."""
    path = Path(path)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            raise IsADirectoryError(errno.EISDIR, "Is a directory", str(path))
        _write_temp(temp, text)
        os.replace(temp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise output_error(path, exc) from None
    return path


def write_json_atomic(path: str | Path, obj: Any) -> Path:
    """``obj`` as indented, key-sorted JSON through :func:`write_text_atomic` (readers see the
    old file or the new one, never a part; failures are :func:`output_error`)."""
    return write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
