"""Tokenise once: features of (task, examples, tokenizer, settings) cached on disk.

A study fine-tunes the same target task many times (seeds x intermediate tasks) with the same
tokenizer, and SQuAD-sized featurization takes minutes, so :func:`cached_featurize` stores the
features of :func:`xstilts.data.features.featurize` under a key that covers everything they
depend on: the examples' content, the tokenizer (its full serialisation), every featurization
setting, and the source of ``features.py`` itself (a code change invalidates old entries).
A hit returns exactly what a fresh call would (tests/data/test_speed_cache.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pickle
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from xstilts.data import features
from xstilts.data.features import featurize
from xstilts.tasks.kinds import resolve_kind


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A digest of everything in a tokenizer that decides its output."""
    h = hashlib.sha256(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        # truncation/padding are per-call state (every call sets them) that save_pretrained keeps:
        # left in, a phase-1 encoder's saved tokenizer would never share the original's entries
        state = json.loads(backend.to_str())
        state.pop("truncation", None)
        state.pop("padding", None)
        h.update(json.dumps(state, sort_keys=True).encode())
    else:  # slow tokenizer: its vocabulary
        h.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    h.update(json.dumps({
        "inputs": list(getattr(tokenizer, "model_input_names", [])),
        "padding_side": getattr(tokenizer, "padding_side", None),
        "model_max_length": getattr(tokenizer, "model_max_length", None),
        "special": {k: str(v) for k, v in sorted(tokenizer.special_tokens_map.items())},
    }, sort_keys=True, default=str).encode())  # fmt: skip
    return h.hexdigest()


def examples_fingerprint(examples: Sequence[Any]) -> str:
    h = hashlib.sha256()
    for ex in examples:
        d = dataclasses.asdict(ex) if dataclasses.is_dataclass(ex) else ex
        h.update(type(ex).__name__.encode())
        h.update(json.dumps(d, sort_keys=True, default=str, ensure_ascii=False).encode())
        h.update(b"\x00")
    return h.hexdigest()


def _code_fingerprint() -> str:
    return hashlib.sha256(Path(features.__file__).read_bytes()).hexdigest()


def cache_key(task: Any, examples: Sequence[Any], tokenizer: Any, settings: dict) -> str:
    kind, t = resolve_kind(task)
    parts = {
        "task": t.name if t is not None else None,
        "kind": kind.value,
        "labels": list(t.labels) if t is not None and t.labels else None,
        "settings": settings,
        "examples": examples_fingerprint(examples),
        "tokenizer": tokenizer_fingerprint(tokenizer),
        "code": _code_fingerprint(),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def cached_featurize(
    task: Any,
    examples: Sequence[Any],
    tokenizer: Any,
    *,
    cache_dir: str | os.PathLike | None,
    **settings: Any,
) -> list[dict]:
    """:func:`~xstilts.data.features.featurize` with an on-disk cache (``cache_dir=None``: off).

    ``settings`` are featurize's keyword arguments (``max_length``, ``for_training``...).
    """

    if cache_dir is None:
        return featurize(task, examples, tokenizer, **settings)
    folder = Path(cache_dir)
    path = folder / f"features-{cache_key(task, examples, tokenizer, settings)}.pkl"
    if path.is_file():
        try:
            with open(path, "rb") as fh:
                return pickle.load(fh)
        except (OSError, EOFError, pickle.UnpicklingError):
            pass  # a damaged entry: rebuild it below
    features = featurize(task, examples, tokenizer, **settings)
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-features-")
    try:
        with os.fdopen(fd, "wb") as fh:
            pickle.dump(features, fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)  # atomic: concurrent runs never read half a file
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return features
