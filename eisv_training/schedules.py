"""Per-iteration schedules: learning rate (warm-up then decay) and AAM margin (warm-up from 0)."""

import math


def lr_multiplier(step: int, total_steps: int, warmup_steps: int, decay: str = "cosine", min_ratio: float = 0.05) -> float:
    """Factor on the peak learning rate at optimizer step `step` (0-based).

    Linear warm-up from ~0 over `warmup_steps`, then `decay` down to `min_ratio` at `total_steps`:
    "cosine", "linear" or "constant".
    """
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if decay == "constant" or total_steps <= warmup_steps:
        return 1.0
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    if decay == "linear":
        shape = 1.0 - progress
    elif decay == "cosine":
        shape = 0.5 * (1.0 + math.cos(math.pi * progress))
    else:
        raise ValueError(f"lr decay {decay!r}: choose cosine, linear or constant")
    return min_ratio + (1.0 - min_ratio) * shape


class MarginSchedule:
    """AAM margin at each optimizer step: 0 until `start_step`, then a linear ramp to `final_margin`
    over `warmup_steps` (as WeSpeaker's margin scheduler, stepped per iteration).

    `state_dict()` is a JSON-able dict, which `eisv_training.checkpoints.save_checkpoint` stores as
    JSON (never pickled); `load_state_dict` takes it back.
    """

    def __init__(self, final_margin: float, warmup_steps: int, start_step: int = 0):
        self.final_margin = final_margin
        self.warmup_steps = warmup_steps
        self.start_step = start_step
        self.step_count = 0

    def margin(self, step: int = None) -> float:
        step = self.step_count if step is None else step
        if step < self.start_step:
            return 0.0
        if self.warmup_steps <= 0:
            return self.final_margin
        return self.final_margin * min(1.0, (step - self.start_step) / self.warmup_steps)

    def step(self):
        self.step_count += 1

    def state_dict(self):
        return {"step_count": self.step_count}

    def load_state_dict(self, state):
        self.step_count = int(state["step_count"])
