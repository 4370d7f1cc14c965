"""The masked-LM model around an encoder (phase 0, MLM co-training, code infilling): the
encoder is shared, not copied, and a saved LM head is loaded where the encoder's folder has one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from xstilts.errors import ConfigError


def checkpoint_state(source: str | Path | None) -> dict[str, Any]:
    """The tensors of a local Hugging Face folder (safetensors or bin); empty if none."""
    if source is None:
        return {}
    folder = Path(source)
    if not folder.is_dir():
        return {}
    state: dict[str, Any] = {}
    for f in sorted(folder.glob("*.safetensors")):
        from safetensors.torch import load_file

        state.update(load_file(str(f)))
    if not state:
        for f in sorted(folder.glob("pytorch_model*.bin")):
            import torch

            state.update(torch.load(f, map_location="cpu", weights_only=True))
    return state


def build_mlm_model(encoder: Any, source: str | Path | None = None):
    """``(mlm_model, head_loaded)``: an MLM model around ``encoder`` (shared, not copied).

    ``source`` is the local folder the encoder came from; its LM-head tensors (the keys outside
    the base model) are loaded when present. ``head_loaded`` says whether any were.
    """
    from transformers import AutoModelForMaskedLM

    try:
        mlm = AutoModelForMaskedLM.from_config(encoder.config)
    except ValueError as exc:
        raise ConfigError(f"no masked-LM model class for {type(encoder).__name__}: {exc}") from None
    prefix = mlm.base_model_prefix
    setattr(mlm, prefix, encoder)
    if getattr(encoder.config, "tie_word_embeddings", True) and mlm.get_output_embeddings() is not None:
        mlm.get_output_embeddings().weight = encoder.get_input_embeddings().weight
    embedding_ptr = encoder.get_input_embeddings().weight.data_ptr()
    head_keys = {
        k for k, v in mlm.state_dict().items()
        if not k.startswith(prefix + ".") and v.data_ptr() != embedding_ptr  # not the tied decoder
    }
    saved = checkpoint_state(source)
    head_state = {k: v for k, v in saved.items() if k in head_keys}
    tied = mlm.get_output_embeddings()
    if head_state:
        missing, unexpected = mlm.load_state_dict(head_state, strict=False)
        del missing, unexpected
        if getattr(encoder.config, "tie_word_embeddings", True) and tied is not None:
            tied.weight = encoder.get_input_embeddings().weight
    mlm.to(next(encoder.parameters()).device)
    return mlm, bool(head_state)
