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

    def requested(self, accelerator) -> bool:
        """True on every process when any process got a signal (one all-reduce per call with several)."""
        if accelerator.num_processes == 1:
            return self.signal is not None
        flag = torch.tensor([float(self.signal is not None)], device=accelerator.device)
        return bool(accelerator.reduce(flag, reduction="sum").item() > 0)
