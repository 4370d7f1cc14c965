"""The training loop (Accelerate), schedules, checkpoints and exact resume, MLM."""
