"""Train or fine-tune an emotion-invariant speaker encoder (eisv): data -> Accelerate loop -> shared checkpoint.

    python train_eisv.py                       # built-in default: fine-tune resemblyzer's GE2E on bundled EmoDB clips
    python train_eisv.py --protocol shared     # the full protocol of shared/data/README.md
    accelerate launch --num_processes 2 train_eisv.py --config recipe.yaml

`python train_eisv.py --help` documents every argument. The loop reads top to bottom: data, model,
optimizer and schedules, resume, the starting model scored as the first candidate, train with the
candidates of each epoch scored on the selection lists, interpolations with the start, test, export, push.
"""

import errno
import math
import os
import sys
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed

from data_collators import AudioStore
from data_collators.indexing import BadRowError
from eisv_tools.errors import ToolError
from eisv_training.arguments import parse_arguments
from eisv_training.candidates import CandidateJudge
from eisv_training.checkpoints import save_checkpoint
from eisv_training.data import load_training_data, resolve_defaults
from eisv_training.export import finalize_model_folder, push_folder
from eisv_training.forgetting import StartingPointPenalty, TeacherAnchor, parameter_groups
from eisv_training.interrupt import StopRequest
from eisv_training.loader import EpochTaggedBatches, RowIndices, collator_and_sampler
from eisv_training.run_folder import check_output_dir, check_push_access, quiet_libraries, resume_state
from eisv_training.schedules import MarginSchedule, lr_multiplier
from eisv_training.starting_model import build_model, mixed_precision, starting_encoder_type


def main(argv=None):
    """The run; the common mistakes (a missing file or folder, bad rows, missing columns, too few speakers, a
    bad trial list, a full disk) end in one line that names what is wrong, exit 1. EISV_DEBUG=1 shows the
    traceback instead."""
    try:
        return train(argv)
    except (ToolError, BadRowError, FileNotFoundError, ValueError, OSError, RuntimeError) as error:
        # torch.save on a full disk raises RuntimeError("... inline_container.cc ... unexpected pos ...")
        full_disk = (isinstance(error, OSError) and error.errno == errno.ENOSPC) or "unexpected pos" in str(error)
        if os.environ.get("EISV_DEBUG") or (isinstance(error, RuntimeError) and not full_disk):
            raise
        if full_disk:
            error = f"the disk is full ({error}); free space or choose another --output_dir, then --resume latest"
        print(f"train_eisv: error: {error}", file=sys.stderr)
        return 1


def train(argv=None):
    data, model_args, recipe, args = parse_arguments(argv)
    resolve_defaults(data)
    output_dir = Path(args.output_dir)
    quiet_libraries()
    check_output_dir(output_dir, resume=args.resume, overwrite=args.overwrite_output_dir)
    if args.push_to_hub:
        check_push_access(args.hub_model_id, private=args.hub_private)
    precision = mixed_precision(args.mixed_precision, starting_encoder_type(model_args))
    # cpu=True without a GPU lets several launched processes (accelerate launch / torchrun) train on
    # CPUs together over gloo, instead of each running alone.
    accelerator = Accelerator(gradient_accumulation_steps=args.gradient_accumulation_steps, cpu=not torch.cuda.is_available(),
                              mixed_precision=precision, log_with="tensorboard", project_dir=str(output_dir))
    say = accelerator.print
    set_seed(args.seed)
    stop = StopRequest()

    # -- data: training rows, the lists that pick the model, the list that tests it -------------------
    output_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    run_data = load_training_data(data, output_dir, accelerator)
    if run_data.held_out:
        say(f"Held out of training because the test trials use them: {', '.join(run_data.held_out)}")
    if run_data.validation_speakers:
        say(f"Validation speakers (held out of training, for selection): {', '.join(run_data.validation_speakers)}")
    say("Selection lists (the model is picked on these): " + ", ".join(s.name for s in run_data.selection))
    if run_data.test and data.select_on_trials:
        say(f"Note: --select_on_trials: the model is picked on {data.trials}, the list it is tested on")
    indexed = run_data.indexed
    factors = [float(f) for f in data.speed_perturb.split(",")] if data.speed_perturb else []
    store = AudioStore(indexed, speed_factors=factors)
    num_speakers = store.num_speakers
    say(f"Training data: {len(indexed)} clips, {len(set(indexed['speaker_id']))} speakers"
        + (f" ({num_speakers} with speed perturbation x{', x'.join(map(str, factors))})" if factors else "")
        + f", {run_data.report.num_bad_rows} bad rows dropped")
    model, feature_extractor = build_model(model_args, num_speakers, output_dir, accelerator)
    if model_args.init_from != "scratch":
        say(f"Starting from {model_args.init_from}: its encoder, with a new AAM-softmax head for {num_speakers} speakers")
    collator, sampler = collator_and_sampler(store, feature_extractor, recipe, args, accelerator)

    # -- what keeps the fine-tune near its start: the start's weights, a teacher, layer rates -----------
    start_weights = {k: v.detach().cpu().clone() for k, v in model.state_dict().items() if not k.startswith("aam.")}
    teacher = TeacherAnchor(model.eisv, model_args.kd_anchor).to(accelerator.device) if model_args.kd_weight else None
    groups = parameter_groups(model, model.config.encoder_type, args.learning_rate, model_args.layer_lr_decay,
                              model_args.freeze_layers)
    encoder_parameters = [p for p in model.eisv.parameters() if p.requires_grad]
    l2sp = StartingPointPenalty(model.to(accelerator.device)) if model_args.l2sp_weight else None

    # -- optimizer and schedules (stepped per optimizer step) ----------------------------------
    steps_per_epoch = max(1, len(sampler) // args.gradient_accumulation_steps)
    batches_per_epoch = steps_per_epoch * args.gradient_accumulation_steps
    total_steps = args.max_steps or steps_per_epoch * args.num_epochs
    num_epochs = math.ceil(total_steps / steps_per_epoch)
    if args.optimizer == "adamw":
        optimizer = torch.optim.AdamW(groups, lr=args.learning_rate, weight_decay=args.weight_decay)
    else:
        optimizer = torch.optim.SGD(groups, lr=args.learning_rate, momentum=0.9, nesterov=True,
                                    weight_decay=args.weight_decay)
    warmup = int(args.warmup_ratio * total_steps)
    head_only_steps = int(round(model_args.head_warmup_epochs * steps_per_epoch))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_multiplier(step, total_steps, warmup, args.lr_decay))
    margins = MarginSchedule(model_args.aam_margin, int(args.margin_warmup_ratio * total_steps))
    model, optimizer = accelerator.prepare(model, optimizer)
    network = accelerator.unwrap_model(model)

    # -- resume, then the start scored as the first candidate ------------------------------------
    state = resume_state(accelerator, args.resume, output_dir, model, optimizer,
                         {"lr_scheduler": scheduler, "margin_schedule": margins})
    judge = CandidateJudge(accelerator, model, network, feature_extractor, run_data, state, output_dir, data, args)
    hparams = {k: v for group in (data, model_args, recipe, args) for k, v in vars(group).items()
               if isinstance(v, (int, float, str, bool))}
    accelerator.init_trackers("eisv", config=hparams)
    if not state.history:
        judge.consider("start", 0)

    # -- train ---------------------------------------------------------------------------------
    # One loader over every remaining epoch (see EpochTaggedBatches); a resume starts it mid-epoch.
    batches = EpochTaggedBatches(sampler, batches_per_epoch, num_epochs, state.epoch, state.batches_done)
    train_loader = torch.utils.data.DataLoader(RowIndices(len(store)), batch_sampler=batches, collate_fn=collator,
                                               num_workers=args.num_workers, pin_memory=torch.cuda.is_available(),
                                               # its own generator: creating the iterator on a resume must not
                                               # draw from the global torch RNG that the checkpoint restored
                                               generator=torch.Generator().manual_seed(args.seed))
    stream = iter(train_loader)
    timing = {"wait": 0.0, "total": 0.0, "samples": 0}
    clock, first_step = time.perf_counter(), state.global_step
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()

    checkpoints_dir = output_dir / "checkpoints"

    def checkpoint():
        save_checkpoint(accelerator, checkpoints_dir, state.global_step, model, optimizer, state.to_dict(),
                        {"lr_scheduler": scheduler.state_dict(), "margin_schedule": margins.state_dict()},
                        keep=args.checkpoints_total_limit)

    for epoch in range(state.epoch, num_epochs):
        model.train()
        tick = time.perf_counter()
        # A checkpoint taken on an epoch's last step resumes here with the epoch done but not yet scored.
        while state.batches_done < batches_per_epoch and state.global_step < total_steps:
            batch = next(stream)
            batch = {key: value.to(accelerator.device, non_blocking=True) for key, value in batch.items()}
            waited = time.perf_counter() - tick
            if "waveforms" in batch:
                batch["input_features"], batch["attention_mask"] = feature_extractor.extract(
                    batch.pop("waveforms"), batch.pop("num_samples"))
            neutral_rows = batch.pop("neutral_rows")
            with accelerator.accumulate(model):
                network.set_aam_margin(margins.margin())
                with accelerator.autocast():
                    output = model(**batch)
                    loss = output.loss
                    if teacher is not None:
                        anchors = teacher.anchors(batch["input_features"], batch["attention_mask"], batch["labels"],
                                                  neutral_rows)
                        kd_loss = teacher.loss(output.embeddings, anchors)
                        loss = loss + model_args.kd_weight * kd_loss
                    if l2sp is not None:
                        l2sp_loss = l2sp(network)
                        loss = loss + model_args.l2sp_weight * l2sp_loss
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    if state.global_step < head_only_steps:  # LP-FT: the head learns first, the encoder waits
                        for parameter in encoder_parameters:
                            parameter.grad = None
                    # The norm is of the all-reduced gradients, so every process skips the same steps.
                    norm = accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm or float("inf"))
                    if not torch.isfinite(norm):
                        state.non_finite.append({
                            "step": state.global_step, "loss_finite": bool(torch.isfinite(loss)),
                            "parameters": [n for n, p in network.named_parameters()
                                           if p.grad is not None and not torch.isfinite(p.grad).all()][:8]})
                        optimizer.zero_grad(set_to_none=True)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            state.batches_done += 1
            if accelerator.sync_gradients:
                scheduler.step()
                margins.step()
                state.global_step += 1
                step = state.global_step
                if step % args.logging_steps == 0 or step == total_steps:
                    logs = {"loss": loss.item(), "aam_loss": output.aam_loss.item(), "erl_loss": output.erl_loss.item(),
                            "lr": scheduler.get_last_lr()[-1], "margin": network.aam.margin,
                            "samples_per_s": timing["samples"] / max(timing["total"], 1e-9),
                            "skipped_steps": len(state.non_finite),
                            "data_wait_fraction": timing["wait"] / max(timing["total"], 1e-9)}
                    if teacher is not None:
                        logs["kd_loss"] = kd_loss.item()
                    if l2sp is not None:
                        logs["l2sp_distance"] = l2sp_loss.item()
                    accelerator.log(logs, step=step)
                    # The pace since this process started, evaluations included, so the ETA is of the whole run.
                    elapsed = time.perf_counter() - clock
                    eta = elapsed / max(1, step - first_step) * (total_steps - step)
                    say(f"step {step}/{total_steps}  loss {logs['loss']:.3f}  margin {logs['margin']:.2f}  "
                        f"elapsed {elapsed:.0f} s  ETA {eta:.0f} s")
                if args.checkpointing_steps and step % args.checkpointing_steps == 0:
                    checkpoint()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            now = time.perf_counter()
            timing["wait"] += waited
            timing["total"] += now - tick
            timing["samples"] += batch["labels"].shape[0] * accelerator.num_processes
            tick = time.perf_counter()
            if accelerator.sync_gradients and stop.requested(accelerator, state.global_step, args.logging_steps):
                checkpoint()
                say(f"Stopped by signal: saved step {state.global_step} in {checkpoints_dir}; "
                    f"resume with --resume latest --output_dir {output_dir}")
                accelerator.end_training()
                return 130
        state.epoch, state.batches_done = epoch + 1, 0
        judge.consider(f"epoch {epoch + 1}", epoch + 1)
        if not args.checkpointing_steps or state.global_step >= total_steps:
            checkpoint()
        if state.global_step >= total_steps:
            break
    del stream, train_loader  # stops the workers

    # -- interpolations with the start (WiSE-FT), then the selected model and the start tested once --
    alphas = [float(a) for a in model_args.interpolate_alphas.split(",")] if model_args.interpolate_alphas else []
    judge.interpolations(alphas, start_weights)
    judge.test(start_weights)
    best = state.best_candidate

    # -- export and push ---------------------------------------------------------------------
    stats = {"samples_per_s": timing["samples"] / max(timing["total"], 1e-9),
             "data_wait_fraction": timing["wait"] / max(timing["total"], 1e-9),
             "peak_gpu_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None,
             "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
             "num_processes": accelerator.num_processes, "mixed_precision": precision,
             "skipped_non_finite_steps": len(state.non_finite),
             "wall_s": time.perf_counter() - started}
    exit_code = 0
    if accelerator.is_main_process:
        final = output_dir / "model"
        finalize_model_folder(output_dir / "best_model", final, state, stats, (data, model_args, recipe, args),
                              num_speakers, network.num_parameters(), indexed, run_data, argv)
        say(f"Selected: {best.name} (selection score {best.score:+.3f}); model in {final}")
        if state.test_results:
            line = f"Test EER on {data.trials}: {state.test_results['overall']['eer']:.2f}%"
            if state.start_test_results:
                line += f" (the starting model: {state.start_test_results['overall']['eer']:.2f}%)"
            say(line)
        say(f"Throughput {stats['samples_per_s']:.1f} samples/s, data wait {100 * stats['data_wait_fraction']:.1f}% "
            f"of step time, device {stats['device']}, {len(state.non_finite)} skipped non-finite steps")
        if args.push_to_hub:
            exit_code = push_folder(final, args.hub_model_id, private=args.hub_private)
    accelerator.wait_for_everyone()
    accelerator.end_training()  # closes the trackers and the process group: last
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
