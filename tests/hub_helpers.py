"""A local Hugging Face hub cache, laid out as ``huggingface_hub`` keeps it, for offline tests.

``HF_HUB_CACHE/datasets--ORG--NAME/refs/REVISION`` holds the commit hash and
``snapshots/COMMIT/`` the repository's files (parquet under the dataset's repo layout), each a
link to ``blobs/SHA256`` as the cache holds them. With
``HF_HUB_OFFLINE=1``, ``snapshot_download`` resolves a revision to that folder exactly as it
does after a real download.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Any

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def hub_repo(cache: Path, repo: str, files: dict[str, Any], *, revision: str = "main",
             commit: str = COMMIT) -> Path:
    """Put ``files`` (repo path -> ``datasets.Dataset`` (written as parquet) or bytes) into the
    cache as ``repo`` at ``revision``; returns the snapshot folder."""
    base = cache / ("datasets--" + repo.replace("/", "--"))
    ref = base / "refs" / revision
    ref.parent.mkdir(parents=True, exist_ok=True)
    ref.write_text(commit)
    snapshot = base / "snapshots" / commit
    blobs = base / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    for rel, content in files.items():
        if not isinstance(content, bytes):
            buffer = io.BytesIO()
            content.to_parquet(buffer)
            content = buffer.getvalue()
        blob = blobs / hashlib.sha256(content).hexdigest()  # the cache keeps content by hash
        blob.write_bytes(content)
        path = snapshot / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink() or path.exists():
            path.unlink()
        path.symlink_to(os.path.relpath(blob, path.parent))  # and links the snapshot to it
    return snapshot


def dataset(columns: dict[str, list], features: dict[str, Any] | None = None):
    """A ``datasets.Dataset`` of ``columns``; ``features`` names ClassLabel columns
    (column -> label names) or gives a feature object."""
    import datasets

    if features:
        spec = {}
        for name, values in columns.items():
            given = features.get(name)
            if isinstance(given, (list, tuple)):
                first = values[0] if values else None
                label = datasets.ClassLabel(names=list(given))
                spec[name] = datasets.Sequence(label) if isinstance(first, list) else label
            elif given is not None:
                spec[name] = given
            else:
                spec[name] = None
        inferred = datasets.Dataset.from_dict(
            {k: v for k, v in columns.items() if spec[k] is None}
        ).features
        full = datasets.Features({k: spec[k] if spec[k] is not None else inferred[k] for k in columns})
        return datasets.Dataset.from_dict(columns, features=full)
    return datasets.Dataset.from_dict(columns)
