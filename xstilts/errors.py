"""Errors that the command line turns into a one-line message and exit status 2."""

from __future__ import annotations

from pathlib import Path


class XstiltsError(Exception):
    """A problem the user can fix; the CLI prints it without a traceback and exits with 2."""

    exit_code = 2


class DataFormatError(XstiltsError):
    """A malformed input file: names the file, the line (1-based, when known) and what was expected.

    ``at`` names a place inside the file where lines say little (a question id in SQuAD JSON):
    ``FILE[:LINE]: AT: expected ..., found ...``; ``hint`` (how to recover) follows after "; ".
    """

    def __init__(
        self,
        path: str | Path,
        line: int | None,
        expected: str,
        found: str | None = None,
        *,
        at: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.line = line
        self.expected = expected
        self.found = found
        self.at = at  # a place inside the file that a line number does not name ("question q2")
        where = f"{self.path}:{line}" if line is not None else str(self.path)
        if at is not None:
            where += f": {at}"
        message = f"{where}: expected {expected}"
        if found is not None:
            shown = found if len(found) <= 120 else found[:117] + "..."
            message += f", found {shown}"
        if hint is not None:
            message += f"; {hint}"
        super().__init__(message)


class ConfigError(XstiltsError):
    """An invalid configuration value; the message says what is allowed."""


class NonFiniteLossError(XstiltsError):
    """The training loss became NaN or infinite: the weights after it are garbage, so training
    stops at once and nothing after the last good checkpoint is saved."""


class MissingDataError(XstiltsError):
    """Data that a command needs is not present; the message says what is missing and how to get it."""


class OutputError(XstiltsError):
    """An output that cannot be written (a full disk, a file where a folder belongs): the message
    names the path and the reason; what was there before is left as it was."""
