"""Where readers report malformed records: raise at the first one (reading) or collect them all
(``xstilts data check``). One sink for every reader (XTREME targets, NLU and code tasks)."""

from __future__ import annotations

from xstilts.errors import DataFormatError


class ProblemSink:
    """Where readers report malformed records. Strict (the default for reading) raises the first
    one; collecting mode keeps going past a bad record so a check can list every problem."""

    def __init__(self, strict: bool = True, limit: int = 200) -> None:
        self.strict = strict
        self.limit = limit
        self.problems: list[DataFormatError] = []
        self.dropped = 0

    def add(self, error: DataFormatError) -> None:
        if self.strict:
            raise error
        if len(self.problems) < self.limit:
            self.problems.append(error)
        else:
            self.dropped += 1

    @classmethod
    def strict_unless(cls, sink: "ProblemSink | None") -> "ProblemSink":
        """``sink``, or a strict one (raise at the first problem) when the caller gave none."""
        return sink if sink is not None else cls(strict=True)
