"""Ctrl-C and SIGTERM (a cluster scheduler's notice before it kills a job) as a request the loop honours."""

import signal

import torch


class StopRequest:
    """SIGINT / SIGTERM set a flag that the loop checks after each step, so it can save a resumable checkpoint
    and exit 130 instead of dying mid-write. A second Ctrl-C stops at once."""

    def __init__(self):
        self.signal = None
        for number in (signal.SIGINT, signal.SIGTERM):
            signal.signal(number, self._handle)

    def _handle(self, number, frame):
        if self.signal is not None:
            raise KeyboardInterrupt
        self.signal = number

    def requested(self, accelerator, step: int, every: int = 1) -> bool:
        """True on every process when any process got a signal. Call it after an optimizer step (never
        mid-accumulation, whose gradients a checkpoint would not hold). With several processes the flag is
        all-reduced, a host synchronisation, so only every `every` steps (and honoured up to `every` steps
        late); one process checks at every step for free."""
        if accelerator.num_processes == 1:
            return self.signal is not None
        if step % max(1, every):
            return False
        flag = torch.tensor([float(self.signal is not None)], device=accelerator.device)
        return bool(accelerator.reduce(flag, reduction="sum").item() > 0)
