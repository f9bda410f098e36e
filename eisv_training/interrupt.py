"""Ctrl-C and SIGTERM (a cluster scheduler's notice before it kills a job) as a request the loop honours, and
signal frames kept off the stacks of the threads that run oneDNN's GEMM.

Why the second: oneDNN's AVX-512 "nocopy" SGEMM kernel (jit_avx512_common_gemm_f32, used by the LSTM backward
on the CPU: the GE2E encoder) points the stack pointer at a malloc'd workspace when K > 2048. A signal that
has a handler and arrives meanwhile makes the kernel write its frame (several kB of AVX-512 state) just below
that pointer, over the heap: "corrupted size vs. prev_size while consolidating" or a segfault later. Python
installs every handler with SA_ONSTACK, so a thread with an alternate signal stack takes the frame there; the
signals that have handlers in a training are SIGCHLD (PyTorch's, for DataLoader workers: any stop/continue of
a worker, e.g. Ctrl-Z / fg), SIGINT and SIGTERM (StopRequest). Upstream: oneDNN issue #4845, fixed by #4855
(AVX2 and AVX-512 kernels; backported to v3.11 in #4859); torch 2.11 bundles oneDNN v3.10.2, without it.
"""

import ctypes
import os
import signal
import sys

import torch

ALTERNATE_STACK_BYTES = 256 * 1024  # a signal frame is a few kB (AVX-512: ~3 kB; AMX: ~11 kB)
# Faults are delivered to the thread that caused them; blocking one would kill the process instead.
_SYNCHRONOUS = {signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE, signal.SIGILL, signal.SIGTRAP, signal.SIGABRT,
                signal.SIGSYS, signal.SIGKILL, signal.SIGSTOP}
_kept = []  # the alternate stack's memory, alive as long as the process


class _StackT(ctypes.Structure):
    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t)]


_SS_DISABLE = 2  # Linux


def protect_signal_frames() -> bool:
    """Call first in a training process (before any torch op starts OpenMP threads): gives this (main) thread
    an alternate signal stack, and starts torch's OpenMP threads with the catchable asynchronous signals
    blocked, so such a signal is taken by a thread that either has that stack or runs no oneDNN kernel.
    -> whether it did (Linux only; False elsewhere, or when the OpenMP threads already existed)."""
    if sys.platform != "linux":
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    current = _StackT()
    if libc.sigaltstack(None, ctypes.byref(current)) != 0:
        return False
    if current.ss_flags & _SS_DISABLE:  # none yet (faulthandler.enable() installs one of its own)
        memory = ctypes.create_string_buffer(ALTERNATE_STACK_BYTES)
        stack = _StackT(ctypes.cast(memory, ctypes.c_void_p), 0, ALTERNATE_STACK_BYTES)
        if libc.sigaltstack(ctypes.byref(stack), None) != 0:
            return False
        _kept.append(memory)
    # Threads inherit the mask of the thread that creates them: OpenMP's are created by the first parallel
    # region, here, with the mask blocked; this thread then unblocks.
    threads_before = _thread_count()
    blocked = signal.valid_signals() - _SYNCHRONOUS
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
    try:
        torch.ones(torch.get_num_threads() * 65536).sum()  # one parallel region over every thread
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    return torch.get_num_threads() == 1 or _thread_count() > threads_before


def _thread_count() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 0


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
