"""The readers' shared text I/O: a file as text and its numbered lines.

Every failure is a :class:`~xstilts.errors.DataFormatError` naming the file (and the line, for a
byte that is not UTF-8): a missing file, a folder, an unreadable file. Lines end at ``\\n`` only
(a ``\\r`` before it is dropped), so a stray ``\\r`` or U+2028 inside a sentence does not split
it; a UTF-8 byte-order mark at the start is dropped.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from xstilts.fileio import decode_utf8, read_input_bytes


def read_text(path: Path) -> str:
    """The whole file as text."""
    return decode_utf8(read_input_bytes(path), path)


def split_lines(text: str) -> Iterator[tuple[int, str]]:
    """(1-based number, line without its end) of ``text``."""
    parts = text.split("\n")
    if parts and parts[-1] == "":
        parts.pop()
    for number, line in enumerate(parts, start=1):
        yield number, line[:-1] if line.endswith("\r") else line


def file_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(1-based number, line without its end) of the file."""
    return split_lines(read_text(path))
