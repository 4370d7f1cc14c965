"""Where a model runs and in which precision: one rule for training, prediction and retrieval."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

from xstilts.errors import ConfigError


def resolve_device(device: Any = None, *, cpu: bool = False):
    """A torch device: ``device`` as given (a name or a torch.device); ``None``/``"auto"``: the
    GPU when there is one and ``cpu`` is not forced, else the CPU."""
    import torch

    if isinstance(device, torch.device):
        return device
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() and not cpu else "cpu")
    return torch.device(device)


def resolve_mixed_precision(setting: str, cpu: bool = False) -> str:
    """``auto`` -> bf16 on a GPU that has it, fp16 on other GPUs, none on CPU."""
    if setting != "auto":
        return setting
    import torch

    if cpu or not torch.cuda.is_available():
        return "no"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


PRECISIONS = ("auto", "no", "bf16", "fp16")


def check_precision(precision: str) -> None:
    """A clear error for a precision that is not one of :data:`PRECISIONS`."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")


def autocast_for(precision: str, device: Any):
    """The autocast context prediction runs under. ``auto``: bf16 on a GPU that has it (fp16 on
    other GPUs), as training's ``mixed_precision="auto"`` does; nothing on CPU. ``no`` adds no
    autocast of its own (an enclosing one, such as the training loop's during evaluation, still
    applies)."""
    import torch

    check_precision(precision)
    precision = resolve_mixed_precision(precision, cpu=device.type != "cuda")
    if precision == "no":
        return nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)
