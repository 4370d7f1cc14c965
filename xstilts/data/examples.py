"""Typed examples, one class per task kind. Readers produce them; featurizers consume them."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SentencePairExample:
    id: str
    text_a: str
    text_b: str
    label: str | None = None


@dataclass
class TaggingExample:
    id: str
    tokens: list[str]
    tags: list[str] | None = None


@dataclass
class QAAnswer:
    text: str
    answer_start: int


@dataclass
class QAExample:
    id: str
    question: str
    context: str
    answers: list[QAAnswer] = field(default_factory=list)
    title: str = ""
    is_impossible: bool = False


@dataclass
class MultipleChoiceExample:
    id: str
    context: str
    question: str
    choices: list[str]
    label: int | None = None


@dataclass
class BitextExample:
    """A retrieval evaluation set for one language pair.

    ``source``/``target`` hold sentences keyed by id (BUCC ids like ``de-000001``; Tatoeba line
    numbers as strings). ``gold`` holds (source id, target id) pairs.
    """

    id: str
    source: dict[str, str]
    target: dict[str, str]
    gold: set[tuple[str, str]] = field(default_factory=set)


@dataclass
class GenerationExample:
    """Natural language → code. ``tests`` holds executable checks where the dataset has them."""

    id: str
    source: str
    target: str
    language: str = "python"
    tests: str | None = None
    entry_point: str | None = None
    prompt: str | None = None
