"""Learning-rate schedules: linear warm-up, then linear decay to zero (or constant)."""

from __future__ import annotations


def warmup_steps_for(total_steps: int, warmup_ratio: float, warmup_steps: int | None) -> int:
    """Warm-up length in optimizer steps; an explicit count wins over the ratio."""
    if warmup_steps is not None:
        return max(0, min(int(warmup_steps), total_steps))
    return int(round(total_steps * warmup_ratio))


def linear_factor(step: int, *, warmup: int, total: int) -> float:
    """The multiplier of the peak learning rate after ``step`` optimizer steps.

    Rises linearly from 0 to 1 over ``warmup`` steps, then falls linearly to 0 at ``total``
    (the schedule of BERT and of the XTREME reference scripts).
    """
    if warmup > 0 and step < warmup:
        return step / warmup
    remaining = total - step
    span = max(1, total - warmup)
    return max(0.0, remaining / span)


def build_scheduler(optimizer, *, kind: str, total_steps: int, warmup: int):
    """A ``LambdaLR`` whose state is just its step count, so it checkpoints and resumes exactly."""
    from torch.optim.lr_scheduler import LambdaLR

    if kind == "constant":
        def factor(step: int) -> float:
            return min(1.0, step / warmup) if warmup > 0 else 1.0
    else:
        def factor(step: int) -> float:
            return linear_factor(step, warmup=warmup, total=total_steps)

    return LambdaLR(optimizer, factor)
