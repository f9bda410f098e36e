"""One training step without host synchronisation: the optimizer, the encoder compiled, non-finite steps skipped
on the device and recorded later, and the step's timing.

The GPU runs ahead of the Python loop: nothing here reads a device value per step. A step whose gradient norm
is not finite becomes no update at all inside the fused AdamW kernel (its `found_inf` argument, the one AMP's
GradScaler uses), and the flags are read back together at logging steps, checkpoints and epoch ends
(`NonFiniteSteps.flush`).
"""

import statistics
import time
from dataclasses import dataclass, field
from typing import Optional

import torch


def build_optimizer(groups, args):
    """AdamW (fused: one kernel for the whole update, and a non-finite step skipped on the device) or SGD
    (momentum 0.9, nesterov; its skip is checked on the host, see `skips_on_device`)."""
    if args.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=args.learning_rate, weight_decay=args.weight_decay, fused=True)
    return torch.optim.SGD(groups, lr=args.learning_rate, momentum=0.9, nesterov=True, weight_decay=args.weight_decay)


def skips_on_device(optimizer) -> bool:
    """Whether `optimizer` (unwrapped) takes `found_inf`: fused AdamW does. Fused SGD does too, but on the
    CPU (torch 2.11) a first step skipped that way leaves its momentum buffer uninitialised; and a checkpoint
    of an older run restores `fused: False` into the groups."""
    return isinstance(optimizer, torch.optim.AdamW) and all(g.get("fused") for g in optimizer.param_groups)


def compile_encoders(network, teacher, backend: str = "inductor", say=print, mode: str = "default") -> bool:
    """`--torch_compile`: compile the ECAPA-TDNN encoder of `network` (and of the teacher) in place.

    Only the encoder: it is nearly all of the step's time, and it keeps the AAM head eager, whose margin
    is a Python float changed every step of the margin warm-up (a compiled head would recompile for each
    value), and the host-side input checks of the model's forward out of the graph. In place
    (`nn.Module.compile`), so parameter names, checkpoints and `save_pretrained` are unchanged. Shapes
    are PyTorch's automatic dynamic: a second crop length recompiles once with a dynamic time axis.
    GE2E stays eager (an LSTM gains nothing: benchmarks/bench_train_step_gpu.py). `mode` is torch.compile's:
    "reduce-overhead" replays the encoder's forward and backward as CUDA graphs, which removes cuDNN's host
    cost per convolution call (the loop's bottleneck on an H200: benchmarks/bench_train_loop_gpu.py), and
    records one graph per input shape. -> whether it compiled."""
    if network.config.encoder_type != "ecapa_tdnn":
        say(f"--torch_compile: the {network.config.encoder_type} encoder stays eager (only ECAPA-TDNN is compiled)")
        return False
    options = {"backend": backend} if mode == "default" else {"backend": backend, "mode": mode}
    network.eisv.encoder.compile(**options)
    if teacher is not None:
        teacher.teacher.encoder.compile(**options)
    return True


@dataclass
class PendingStep:
    """A step whose finiteness is still on the device: step number, 0-dim flags, and per-parameter flags."""

    step: int
    skipped: torch.Tensor  # float 1.0 when the gradient norm was not finite (the update was skipped)
    loss_finite: torch.Tensor  # bool
    names: tuple  # the parameters that had a gradient, in the order of `bad`
    bad: torch.Tensor  # (len(names),) bool: non-finite gradient


class NonFiniteSteps:
    """Skips optimizer steps with a non-finite gradient norm and records them in `state.non_finite`.

    Each record: {"step": optimizer steps done before it (0 = the first), "loss_finite": bool,
    "parameters": up to 8 names of parameters with a non-finite gradient, in model order}. With a fused
    AdamW the skip happens on the device and the records appear at the next `flush` (logging steps,
    checkpoints, epoch ends, the end of training); otherwise each step is checked on the host at once.
    """

    def __init__(self, network, optimizer, state):
        self.network, self.optimizer, self.state = network, optimizer, state
        self.on_device = skips_on_device(optimizer)
        self.pending: list[PendingStep] = []
        self.named_parameters = list(network.named_parameters())  # walked once: the module tree does not change

    def guard(self, norm: torch.Tensor, loss: torch.Tensor):
        """Call between clipping (`norm`: the 0-dim total gradient norm) and `optimizer.step()`."""
        # Which parameters have a gradient changes (LP-FT's head-only steps), so it is asked on every step.
        named = [(n, p.grad) for n, p in self.named_parameters if p.grad is not None]
        if not self.on_device:
            if not torch.isfinite(norm):
                self.state.non_finite.append({
                    "step": self.state.global_step, "loss_finite": bool(torch.isfinite(loss)),
                    "parameters": [n for n, g in named if not torch.isfinite(g).all()][:8]})
                self.optimizer.zero_grad(set_to_none=True)  # no gradient: the step leaves every parameter alone
            return
        skipped = (~torch.isfinite(norm)).float()
        self.optimizer.found_inf = skipped  # read by the fused kernel: a nonzero value skips the whole update
        # Per-parameter norms in one multi-tensor kernel; a non-finite norm is a non-finite gradient.
        bad = ~torch.isfinite(torch.stack(torch._foreach_norm([g for _, g in named]))) if named else torch.zeros(0)
        self.pending.append(PendingStep(self.state.global_step, skipped, torch.isfinite(loss).detach(),
                                        tuple(n for n, _ in named), bad))

    def flush(self):
        """Read the pending flags (one host synchronisation) and record the skipped steps."""
        if not self.pending:
            return
        skipped = torch.stack([p.skipped for p in self.pending]).cpu()
        for pending, flag in zip(self.pending, skipped.tolist()):
            if flag:
                self.state.non_finite.append({
                    "step": pending.step, "loss_finite": bool(pending.loss_finite),
                    "parameters": [n for n, b in zip(pending.names, pending.bad.tolist()) if b][:8]})
        self.pending.clear()


@dataclass
class StepTimer:
    """Throughput of the training loop, evaluation excluded, without a host synchronisation per step.

    total_s: wall time of each stretch of training (from asking for its first batch until the device has
    finished its queued steps, `close`, before an evaluation), so it is the device's time when the GPU runs
    ahead of the host. wait_s: host time blocked on the data loader. gpu_step_ms: device time of one step
    (its first kernel to its last, gaps included) at each logging step, from a pair of CUDA events read at
    the next logging step or `close`."""

    device: torch.device
    wait_s: float = 0.0
    total_s: float = 0.0
    samples: int = 0
    gpu_step_ms: list = field(default_factory=list)
    _events: Optional[tuple] = None
    _tick: float = 0.0
    _stretch: Optional[float] = None

    def start_batch(self):
        self._tick = time.perf_counter()
        if self._stretch is None:
            self._stretch = self._tick

    def got_batch(self):
        self.wait_s += time.perf_counter() - self._tick

    def count(self, samples: int):
        self.samples += samples

    def close(self):
        """End a stretch of training (before an evaluation): wait for the queued steps and count that time."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        if self._stretch is not None:
            self.total_s += time.perf_counter() - self._stretch
            self._stretch = None
        self.read_events()

    def event_start(self):
        """Before the forward of a step that ends in a logging step (CUDA only)."""
        if self.device.type == "cuda":
            self.read_events()
            self._events = (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
            self._events[0].record()

    def event_end(self):
        if self._events is not None:
            self._events[1].record()

    def read_events(self):
        """Keep the previous logging step's device time (long finished when the next logging step comes)."""
        if self._events is not None:
            self._events[1].synchronize()
            self.gpu_step_ms.append(self._events[0].elapsed_time(self._events[1]))
            self._events = None

    def stats(self) -> dict:
        """samples_per_s, data_wait_fraction (of total_s, an open stretch counted to now), gpu_step_ms (median)."""
        total = max(self.total_s + (time.perf_counter() - self._stretch if self._stretch is not None else 0.0), 1e-9)
        return {"samples_per_s": self.samples / total, "data_wait_fraction": self.wait_s / total,
                "gpu_step_ms": statistics.median(self.gpu_step_ms) if self.gpu_step_ms else None}
