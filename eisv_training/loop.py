"""The Accelerate loop of `train_eisv.py`: each batch's step, and the epochs around it (logging, checkpoints,
Ctrl-C, the candidate scored after each epoch).

`TrainingLoop` holds what the step needs (prepared model and optimizer, schedules, teacher, timing); one
`run` trains every remaining epoch from the run's `TrainingState` (a resume starts mid-epoch).
"""

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch

from .checkpoints import save_checkpoint
from .step import NonFiniteSteps, StepTimer
from .training_state import TrainingState


@dataclass
class TrainingLoop:
    """accelerator; model and optimizer (prepared) and network (unwrapped); scheduler (LR, per optimizer
    step) and margins (AAM margin warm-up); feature_extractor (features on the device when the collator
    returns waveforms); teacher (TeacherAnchor or None) and l2sp (StartingPointPenalty or None), the anchors
    to the start; state; args and model_args (training and model
    arguments); total_steps, batches_per_epoch, num_epochs, head_only_steps (LP-FT: encoder gradients
    dropped before this step); output_dir."""

    accelerator: Any
    model: Any
    network: Any
    optimizer: Any
    scheduler: Any
    margins: Any
    feature_extractor: Any
    teacher: Any
    l2sp: Any
    state: TrainingState
    args: Any
    model_args: Any
    total_steps: int
    batches_per_epoch: int
    num_epochs: int
    head_only_steps: int
    output_dir: Path
    timer: StepTimer = field(init=False)
    non_finite: NonFiniteSteps = field(init=False)
    _clock: float = field(init=False, default=0.0)
    _first_step: int = field(init=False, default=0)

    def __post_init__(self):
        self.timer = StepTimer(self.accelerator.device)
        # AcceleratedOptimizer wraps the torch optimizer that takes `found_inf`
        self.non_finite = NonFiniteSteps(self.network, getattr(self.optimizer, "optimizer", self.optimizer), self.state)
        self.encoder_parameters = [p for p in self.network.eisv.parameters() if p.requires_grad]

    # -- one batch ------------------------------------------------------------------------------

    def step(self, batch: dict) -> Optional[dict]:
        """Forward, loss, backward; on an accumulation's last batch also clip, skip if non-finite, and step
        the optimizer and schedules. -> the step's loss terms (0-dim device tensors) after an optimizer
        step, else None."""
        accelerator, state, args = self.accelerator, self.state, self.args
        num_samples = batch.pop("num_samples", None)  # stays on the host: the frame count needs no device read
        batch = {key: value.to(accelerator.device, non_blocking=True) for key, value in batch.items()}
        if "waveforms" in batch:
            batch["input_features"], batch["attention_mask"] = self.feature_extractor.extract(
                batch.pop("waveforms"), num_samples)
        neutral_rows = batch.pop("neutral_rows")
        with accelerator.accumulate(self.model):
            timed = accelerator.sync_gradients and (state.global_step + 1) % args.logging_steps == 0
            if timed:
                self.timer.event_start()
            self.network.set_aam_margin(self.margins.margin())
            with accelerator.autocast():
                output = self.model(**batch)
                terms = {"aam_loss": output.aam_loss, "erl_loss": output.erl_loss}
                loss = output.loss
                # The terms that hold the fine-tune near its start are added to the loss here.
                if self.teacher is not None:
                    anchors = self.teacher.anchors(batch["input_features"], batch["attention_mask"], batch["labels"],
                                                   neutral_rows)
                    terms["kd_loss"] = self.teacher.loss(output.embeddings, anchors)
                    loss = loss + self.model_args.kd_weight * terms["kd_loss"]
                    if self.model_args.kd_contrast_weight:
                        terms["kd_contrast_loss"] = self.teacher.contrast_loss(output.embeddings, anchors,
                                                                               batch["labels"])
                        loss = loss + self.model_args.kd_contrast_weight * terms["kd_contrast_loss"]
                if self.l2sp is not None:
                    terms["l2sp_distance"] = self.l2sp()
                    loss = loss + self.model_args.l2sp_weight * terms["l2sp_distance"]
            accelerator.backward(loss)
            if accelerator.sync_gradients:
                if state.global_step < self.head_only_steps:  # LP-FT: the head learns first, the encoder waits
                    for parameter in self.encoder_parameters:
                        parameter.grad = None
                # The norm is of the all-reduced gradients, so every process skips the same steps.
                norm = accelerator.clip_grad_norm_(self.model.parameters(), args.max_grad_norm or float("inf"))
                self.non_finite.guard(norm, loss)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            if timed:
                self.timer.event_end()
        state.batches_done += 1
        self.timer.count(batch["labels"].shape[0] * accelerator.num_processes)
        if not accelerator.sync_gradients:
            return None
        self.scheduler.step()
        self.margins.step()
        state.global_step += 1
        return {"loss": loss, **terms}

    # -- around the steps -----------------------------------------------------------------------

    def log(self, terms: dict):
        """Every --logging_steps optimizer steps (and the last): losses, LR, margin, pace, skipped steps."""
        step = self.state.global_step
        self.non_finite.flush()
        stats = self.timer.stats()
        logs = {name: value.item() for name, value in terms.items()}
        logs.update(lr=self.scheduler.get_last_lr()[-1], margin=self.network.aam.margin,
                    samples_per_s=stats["samples_per_s"], skipped_steps=len(self.state.non_finite),
                    data_wait_fraction=stats["data_wait_fraction"])
        if self.timer.gpu_step_ms:
            logs["gpu_step_ms"] = self.timer.gpu_step_ms[-1]
        self.accelerator.log(logs, step=step)
        # The pace since this process started, evaluations included, so the ETA is of the whole run.
        elapsed = time.perf_counter() - self._clock
        eta = elapsed / max(1, step - self._first_step) * (self.total_steps - step)
        self.accelerator.print(f"step {step}/{self.total_steps}  loss {logs['loss']:.3f}  margin {logs['margin']:.2f}  "
                               f"elapsed {elapsed:.0f} s  ETA {eta:.0f} s")

    def checkpoint(self):
        self.non_finite.flush()
        save_checkpoint(self.accelerator, self.output_dir / "checkpoints", self.state.global_step, self.model,
                        self.optimizer, self.state.to_dict(),
                        {"lr_scheduler": self.scheduler.state_dict(), "margin_schedule": self.margins.state_dict()},
                        keep=self.args.checkpoints_total_limit)

    def run(self, stream, judge, stop) -> Optional[int]:
        """Train the remaining epochs from `stream` (batches of the collator); after each epoch the network is
        scored as a candidate and checkpointed. -> 130 when
        stopped by a signal (a resumable checkpoint saved), else None."""
        state, args, accelerator = self.state, self.args, self.accelerator
        self._clock, self._first_step = time.perf_counter(), state.global_step
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        for epoch in range(state.epoch, self.num_epochs):
            self.model.train()
            # A checkpoint taken on an epoch's last step resumes here with the epoch done but not yet scored.
            while state.batches_done < self.batches_per_epoch and state.global_step < self.total_steps:
                self.timer.start_batch()
                batch = next(stream)
                self.timer.got_batch()
                terms = self.step(batch)
                if terms is None:
                    continue
                step = state.global_step
                if step % args.logging_steps == 0 or step == self.total_steps:
                    self.log(terms)
                if args.checkpointing_steps and step % args.checkpointing_steps == 0:
                    self.checkpoint()
                if stop.requested(accelerator, step, args.logging_steps):
                    self.checkpoint()
                    accelerator.print(f"Stopped by signal: saved step {step} in {self.output_dir / 'checkpoints'}; "
                                      f"resume with --resume latest --output_dir {self.output_dir}")
                    return 130
            self.timer.close()
            self.non_finite.flush()
            state.epoch, state.batches_done = epoch + 1, 0
            judge.consider(f"epoch {epoch + 1}", epoch + 1)
            if not args.checkpointing_steps or state.global_step >= self.total_steps:
                self.checkpoint()
            if state.global_step >= self.total_steps:
                break
        return None

    def stats(self) -> dict:
        """Throughput (samples/s of training time), data wait fraction, device step time (ms), peak memory."""
        cuda = torch.cuda.is_available()
        return {**self.timer.stats(),
                "peak_gpu_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
                "device": torch.cuda.get_device_name() if cuda else "cpu",
                "num_processes": self.accelerator.num_processes,
                "skipped_non_finite_steps": len(self.state.non_finite)}
