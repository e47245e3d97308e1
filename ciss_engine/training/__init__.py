"""Training: prepared cases, patch sampling, the shared iteration loop, checkpoints, the base step."""
