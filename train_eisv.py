"""Train or fine-tune an emotion-invariant speaker encoder (eisv): data -> Accelerate loop -> shared checkpoint.

    python train_eisv.py                       # built-in default: fine-tune resemblyzer's GE2E on bundled EmoDB clips
    python train_eisv.py --protocol shared     # the full protocol of shared/data/README.md
    accelerate launch --num_processes 2 train_eisv.py --config recipe.yaml

`python train_eisv.py --help` documents every argument. The loop reads top to bottom: data, model,
optimizer and schedules, resume, the starting model scored as the first candidate, train with the
candidates of each epoch scored on the selection lists (the step and the epochs: eisv_training/loop.py),
interpolations with the start, test, export, push.
"""

import errno
import math
import os
import sys
import time
import warnings
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed

from data_collators import AudioStore
from data_collators.indexing import BadRowError
from eisv_io.errors import ToolError
from eisv_training.arguments import parse_arguments
from eisv_training.candidates import CandidateJudge
from eisv_training.data import load_training_data, resolve_defaults
from eisv_training.export import finalize_model_folder, push_folder
from eisv_training.forgetting import StartingPointPenalty, TeacherAnchor, parameter_groups
from eisv_training.interrupt import StopRequest, protect_signal_frames
from eisv_training.loader import EpochTaggedBatches, RowIndices, collator_and_sampler
from eisv_training.loop import TrainingLoop
from eisv_training.run_folder import check_output_dir, check_push_access, quiet_libraries, resume_state
from eisv_training.schedules import MarginSchedule, lr_multiplier
from eisv_training.starting_model import build_model, mixed_precision, starting_encoder_type
from eisv_training.step import build_optimizer, compile_encoders


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
    # First: before any torch op starts the OpenMP threads (see eisv_training/interrupt.py).
    if not protect_signal_frames() and sys.platform == "linux":
        warnings.warn("train_eisv: torch's threads were started before train(), so a signal (Ctrl-Z/fg, SIGCHLD "
                      "of a data worker) during a CPU LSTM backward can still corrupt the heap; call "
                      "eisv_training.interrupt.protect_signal_frames() first in the process", RuntimeWarning)
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
    stop = StopRequest()  # from here on, Ctrl-C asks the loop for a resumable stop

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
    num_speakers = AudioStore.count_speakers(indexed, factors)
    model, feature_extractor = build_model(model_args, num_speakers, output_dir, accelerator)
    # Clips are held as the trained model will embed them: trimmed when its feature extractor trims.
    store = AudioStore(indexed, speed_factors=factors,
                       prepare=feature_extractor.prepare if feature_extractor.trim_long_silences else None)
    if store.num_speakers != num_speakers:
        raise RuntimeError(f"train_eisv: the audio store holds {store.num_speakers} speakers, the model was built "
                           f"for {num_speakers}")
    kept = store.lengths[:len(indexed)].sum() / store.sampling_rate / store.indexed_seconds
    say(f"Training data: {len(indexed)} clips, {len(set(indexed['speaker_id']))} speakers"
        + (f" ({num_speakers} with speed perturbation x{', x'.join(map(str, factors))})" if factors else "")
        + f", {run_data.report.num_bad_rows} bad rows dropped"
        + (f"; voice-activity trimming kept {100 * kept:.1f}% of its {store.indexed_seconds / 3600:.2f} h"
           if feature_extractor.trim_long_silences else ""))
    if model_args.init_from != "scratch":
        say(f"Starting from {model_args.init_from}: its encoder, "
            + (f"with a new AAM-softmax head for {num_speakers} speakers" if model_args.aam_weight else
               f"trained on ERL pairs + the teacher anchor ({model_args.kd_anchor}), no speaker classification"))
    collator, sampler = collator_and_sampler(store, feature_extractor, recipe, args, accelerator)

    # -- what keeps the fine-tune near its start: the start's weights, a teacher, layer rates -----------
    start_weights = {k: v.detach().cpu().clone() for k, v in model.state_dict().items() if not k.startswith("aam.")}
    teacher = TeacherAnchor(model.eisv, model_args.kd_anchor).to(accelerator.device) if model_args.kd_weight else None
    groups = parameter_groups(model, model.config.encoder_type, args.learning_rate, model_args.layer_lr_decay,
                              model_args.freeze_layers)
    l2sp = StartingPointPenalty(model.to(accelerator.device)) if model_args.l2sp_weight else None
    if args.torch_compile:
        compile_encoders(model, teacher, args.torch_compile_backend, say, args.torch_compile_mode)

    # -- optimizer and schedules (stepped per optimizer step) ----------------------------------
    steps_per_epoch = max(1, len(sampler) // args.gradient_accumulation_steps)
    total_steps = args.max_steps or steps_per_epoch * args.num_epochs
    optimizer = build_optimizer(groups, args)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_multiplier(step, total_steps, int(args.warmup_ratio * total_steps), args.lr_decay))
    margins = MarginSchedule(model_args.aam_margin, int(args.margin_warmup_ratio * total_steps))
    model, optimizer = accelerator.prepare(model, optimizer)
    network = accelerator.unwrap_model(model)

    # -- resume, then the start scored as the first candidate ------------------------------------
    state = resume_state(accelerator, args.resume, output_dir, model, optimizer,
                         {"lr_scheduler": scheduler, "margin_schedule": margins})
    trim = bool(feature_extractor.trim_long_silences)
    if state.trim_long_silences is not None and state.trim_long_silences != trim:
        raise SystemExit(f"train_eisv: --resume: the run was trained with trim_long_silences={state.trim_long_silences}, "
                         f"this one would use {trim}; resume with --trim_long_silences {state.trim_long_silences}")
    state.trim_long_silences = trim
    judge = CandidateJudge(accelerator, model, network, feature_extractor, run_data, state, output_dir, data, args)
    hparams = {k: v for group in (data, model_args, recipe, args) for k, v in vars(group).items()
               if isinstance(v, (int, float, str, bool))}
    accelerator.init_trackers("eisv", config=hparams)
    if not state.history:
        judge.consider("start", 0)

    # -- train: one loader over every remaining epoch (see EpochTaggedBatches); a resume starts it mid-epoch --
    loop = TrainingLoop(accelerator, model, network, optimizer, scheduler, margins, feature_extractor, teacher, l2sp,
                        state, args, model_args, total_steps,
                        batches_per_epoch=steps_per_epoch * args.gradient_accumulation_steps,
                        num_epochs=math.ceil(total_steps / steps_per_epoch),
                        head_only_steps=int(round(model_args.head_warmup_epochs * steps_per_epoch)),
                        output_dir=output_dir)
    batches = EpochTaggedBatches(sampler, loop.batches_per_epoch, loop.num_epochs, state.epoch, state.batches_done)
    train_loader = torch.utils.data.DataLoader(RowIndices(len(store)), batch_sampler=batches, collate_fn=collator,
                                               num_workers=args.num_workers, pin_memory=torch.cuda.is_available(),
                                               # its own generator: creating the iterator on a resume must not
                                               # draw from the global torch RNG that the checkpoint restored
                                               generator=torch.Generator().manual_seed(args.seed))
    stopped = loop.run(iter(train_loader), judge, stop)
    del train_loader  # stops the workers
    if stopped:
        accelerator.end_training()
        return stopped

    # -- interpolations with the start (WiSE-FT), then the selected model and the start tested once --
    alphas = [float(a) for a in model_args.interpolate_alphas.split(",")] if model_args.interpolate_alphas else []
    judge.interpolations(alphas, start_weights)
    judge.test(start_weights)
    best = state.best_candidate

    # -- export and push ---------------------------------------------------------------------
    stats = {**loop.stats(), "mixed_precision": precision, "wall_s": time.perf_counter() - started}
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
