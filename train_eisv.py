"""Train or fine-tune an emotion-invariant speaker encoder (eisv): data -> Accelerate loop -> shared checkpoint.

    python train_eisv.py                       # built-in default: fine-tune resemblyzer's GE2E on bundled EmoDB clips
    python train_eisv.py --protocol shared     # the full protocol of shared/data/README.md
    accelerate launch --num_processes 2 train_eisv.py --config recipe.yaml

`python train_eisv.py --help` documents every argument. The loop reads top to bottom: data, model,
optimizer and schedules, resume, train with evaluation after each epoch, export, push.
"""

import json
import math
import shutil
import sys
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from tqdm.auto import tqdm

from data_collators import AudioStore, EISVCollator, SpeakerEmotionBatchSampler, index_dataset, load_source
from data_collators.sources import load_protocol_split
from eisv_tools.atomic_files import atomic_path
from eisv_tools.trials import read_trials
from eisv_training.arguments import parse_arguments
from eisv_training.checkpoints import latest_checkpoint, read_progress, save_checkpoint
from eisv_training.distributed_evaluation import evaluate_during_training
from eisv_training.export import export_model, finalize_model_folder, push_folder
from eisv_training.schedules import MarginSchedule, lr_multiplier
from eisv_training.validation_split import carve_validation_speakers, make_validation_trials
from modeling_eisv import EISVConfig, EISVFeatureExtractor, EISVForSpeakerVerification


class RowIndices(torch.utils.data.Dataset):
    """The DataLoader's dataset: `(row, epoch)` -> `{"row_index", "epoch"}` for the collator, which
    seeds each batch from its rows and epoch, so persistent workers need no `set_epoch`."""

    def __init__(self, num_rows):
        self.num_rows = num_rows

    def __len__(self):
        return self.num_rows

    def __getitem__(self, key):
        row, epoch = key
        return {"row_index": row, "epoch": epoch}


class EpochTaggedBatches(torch.utils.data.Sampler):
    """All remaining epochs of the speaker batch sampler as one stream of `[(row, epoch), ...]`
    batches, `batches_per_epoch` per epoch, from batch `skip` of epoch `start_epoch` on.

    One stream, iterated once, lets the loader's workers prepare the next epoch's first batches
    while this one ends and is evaluated: with a loader per epoch, every epoch would begin by
    waiting for a worker to build a whole batch (costly when an epoch is a few dozen steps)."""

    def __init__(self, sampler, batches_per_epoch, num_epochs, start_epoch=0, skip=0):
        self.sampler, self.batches_per_epoch, self.num_epochs = sampler, batches_per_epoch, num_epochs
        self.start_epoch, self.skip = start_epoch, skip

    def __iter__(self):
        for epoch in range(self.start_epoch, self.num_epochs):
            self.sampler.set_epoch(epoch)
            batches = list(self.sampler)[: self.batches_per_epoch]
            for batch in batches[self.skip if epoch == self.start_epoch else 0:]:
                yield [(int(row), epoch) for row in batch]

    def __len__(self):
        return (self.num_epochs - self.start_epoch) * self.batches_per_epoch - self.skip


def trial_files(trials_path, trials_root) -> set:
    """Absolute paths of every file a trial list uses."""
    trials = read_trials(trials_path)
    return {str((Path(trials_root) / name).resolve()) for name in set(trials.enroll) | set(trials.test)}


def load_training_data(data, output_dir, accelerator):
    """-> (indexed Dataset, IndexReport, names of speakers dropped because they are in the trial list,
    validation trial CSV or None, validation speaker names)."""
    if data.protocol == "shared":
        dataset = load_protocol_split(data.shared_data, "train")
    else:
        mapping = json.loads(data.column_mapping) if data.column_mapping else None
        dataset = load_source(data.data if len(data.data) > 1 else data.data[0], column_mapping=mapping)
    held_out = []
    if data.trials:
        in_trials = trial_files(data.trials, data.trials_root)
        paths = [str(Path(p).resolve()) for p in dataset["path"]]
        held_out = sorted({s for s, p in zip(dataset["speaker"], paths) if p in in_trials})
        if held_out:
            dataset = dataset.filter(lambda s: s not in set(held_out), input_columns="speaker")
    validation_trials, validation_speakers = None, []
    if data.validation_speakers:
        try:
            dataset, validation, validation_speakers = carve_validation_speakers(dataset, data.validation_speakers,
                                                                                data.validation_seed)
        except ValueError as error:
            raise SystemExit(f"train_eisv: --validation_speakers: {error}") from None
        with accelerator.main_process_first():
            validation, _ = index_dataset(validation, neutral_emotions=(data.neutral_label,),
                                          skip_bad_rows=data.skip_bad_rows,
                                          bad_rows_log=Path(output_dir) / "bad_rows_validation.csv")
        validation_trials = Path(output_dir) / "validation_trials.csv"
        if accelerator.is_main_process:
            trials = make_validation_trials(validation.map(lambda p: {"path": str(Path(p).resolve())},
                                                           input_columns="path"),
                                            data.validation_max_targets, data.validation_seed, (data.neutral_label,))
            with atomic_path(validation_trials) as staging:
                trials.to_csv(staging, index=False)
        accelerator.wait_for_everyone()
    with accelerator.main_process_first():
        indexed, report = index_dataset(dataset, neutral_emotions=(data.neutral_label,),
                                        skip_bad_rows=data.skip_bad_rows, bad_rows_log=Path(output_dir) / "bad_rows.csv")
    return indexed, report, held_out, validation_trials, validation_speakers


def build_model(model_args, num_speakers, output_dir, accelerator):
    """-> (EISVForSpeakerVerification with a fresh head for `num_speakers`, its feature extractor)."""
    overrides = dict(num_speakers=num_speakers, aam_margin=model_args.aam_margin, aam_scale=model_args.aam_scale,
                     erl_weight=model_args.erl_weight)
    source = model_args.init_from
    if source == "resemblyzer":
        from modeling_eisv.convert_resemblyzer import convert

        source = Path(output_dir) / "init-resemblyzer"
        if accelerator.is_main_process:
            convert(source)
        accelerator.wait_for_everyone()
    if source == "scratch":
        config = EISVConfig(encoder_type=model_args.encoder_type, ecapa_channels=model_args.ecapa_channels,
                            embedding_size=model_args.embedding_size, **overrides)
        return EISVForSpeakerVerification(config), EISVFeatureExtractor(config.frontend)
    model = EISVForSpeakerVerification.from_pretrained(source, **overrides)
    try:
        extractor = EISVFeatureExtractor.from_pretrained(source)
    except OSError:
        extractor = EISVFeatureExtractor(model.config.frontend)
    return model, extractor


def main(argv=None):
    data, model_args, recipe, args = parse_arguments(argv)
    if data.protocol == "shared":
        shared = Path(data.shared_data)
        data.trials, data.trials_root = str(shared / "dev_trials.csv"), str(shared)
    if data.trials and data.trials_root is None:
        data.trials_root = str(Path(data.trials).parent)
    output_dir = Path(args.output_dir)
    mixed_precision = args.mixed_precision if args.mixed_precision != "auto" else ("bf16" if torch.cuda.is_available() else "no")
    # cpu=True without a GPU lets several launched processes (accelerate launch / torchrun) train on
    # CPUs together over gloo, instead of each running alone.
    accelerator = Accelerator(gradient_accumulation_steps=args.gradient_accumulation_steps, cpu=not torch.cuda.is_available(),
                              mixed_precision=mixed_precision, log_with="tensorboard", project_dir=str(output_dir))
    say = accelerator.print
    set_seed(args.seed)

    # -- data ------------------------------------------------------------------------------
    output_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    indexed, report, held_out, validation_trials, validation_speakers = load_training_data(data, output_dir, accelerator)
    if held_out:
        say(f"Held out of training because the trial list uses them: {', '.join(held_out)}")
    if validation_trials:
        say(f"Validation speakers (best epoch picked on them): {', '.join(validation_speakers)}")
    # The trial list the best epoch is picked on, and the one the selected model is tested on at the end.
    selection_trials = (str(validation_trials), "/") if validation_trials else (data.trials, data.trials_root)
    test_trials = (data.trials, data.trials_root) if validation_trials and data.trials and data.test_on_trials else None
    num_speakers = len(set(indexed["speaker_id"]))
    say(f"Training data: {len(indexed)} clips, {num_speakers} speakers, {report.num_bad_rows} bad rows dropped")
    model, feature_extractor = build_model(model_args, num_speakers, output_dir, accelerator)
    store = AudioStore(indexed)
    # On a GPU the data workers can leave the FFTs to the GPU (see EISVCollator). "auto" does so for the
    # fbank frontend only. For GE2E the features are identical either way (checked on an H200, and a
    # 40-step loop matches to float precision), yet full fine-tunes at lr 2e-4 went unstable with
    # them on the GPU and not in the workers: the GE2E fine-tune is fragile to tiny numeric changes at
    # that rate, so it keeps the configuration whose results we report until the LR sweep is done.
    on_gpu = accelerator.device.type == "cuda"
    features_on_device = {"auto": on_gpu and feature_extractor.feature_type == "kaldi_fbank", "yes": True,
                          "no": False}[args.features_on_device]
    patterns = json.loads(recipe.copypaste_patterns) if recipe.copypaste_patterns else None
    collator = EISVCollator(feature_extractor, store, crop_seconds=recipe.crop_seconds, copypaste=recipe.copypaste,
                            copypaste_prob=recipe.copypaste_prob, pattern_probs=patterns,
                            pair_without_copypaste=recipe.pair_without_copypaste, em_select=recipe.em_select,
                            em_ratio=recipe.em_ratio, em_contiguous=recipe.em_contiguous, em_members=recipe.em_members,
                            seed=args.seed, return_waveforms=features_on_device)
    sampler = SpeakerEmotionBatchSampler(indexed["speaker_id"], indexed["emotion_id"], args.speakers_per_batch,
                                         args.utterances_per_speaker, seed=args.seed,
                                         num_replicas=accelerator.num_processes, rank=accelerator.process_index)
    if len(sampler) == 0:
        raise SystemExit(f"train_eisv: no full batch of {args.speakers_per_batch} speakers per process; "
                         f"lower --speakers_per_batch (the data has {num_speakers} speakers)")

    # -- optimizer and schedules (stepped per optimizer step) ----------------------------------
    steps_per_epoch = max(1, len(sampler) // args.gradient_accumulation_steps)
    batches_per_epoch = steps_per_epoch * args.gradient_accumulation_steps
    total_steps = args.max_steps or steps_per_epoch * args.num_epochs
    num_epochs = math.ceil(total_steps / steps_per_epoch)
    if args.optimizer == "adamw":
        optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, weight_decay=args.weight_decay)
    else:
        optimizer = torch.optim.SGD(model.parameters(), lr=args.learning_rate, momentum=0.9, nesterov=True,
                                    weight_decay=args.weight_decay)
    warmup = int(args.warmup_ratio * total_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_multiplier(step, total_steps, warmup, args.lr_decay))
    margins = MarginSchedule(model_args.aam_margin, int(args.margin_warmup_ratio * total_steps))
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.register_for_checkpointing(scheduler, margins)
    network = accelerator.unwrap_model(model)

    # -- resume --------------------------------------------------------------------------------
    progress = {"epoch": 0, "batches_done": 0, "global_step": 0, "best_eer": None, "history": []}
    checkpoints_dir = output_dir / "checkpoints"
    if args.resume:
        checkpoint = latest_checkpoint(checkpoints_dir) if args.resume == "latest" else Path(args.resume)
        if checkpoint is None or not checkpoint.is_dir():
            raise SystemExit(f"train_eisv: --resume {args.resume}: no complete checkpoint in {checkpoints_dir}")
        accelerator.load_state(str(checkpoint))
        progress = read_progress(checkpoint)
        say(f"Resumed from {checkpoint} (epoch {progress['epoch']}, step {progress['global_step']})")

    def evaluate(tag, trials=selection_trials, network_to_test=model, name="validation" if validation_trials else "dev"):
        if not trials[0]:
            return None
        results = evaluate_during_training(accelerator, network_to_test, feature_extractor, trials[0], trials[1],
                                           args.eval_batch_size, data.eval_max_trials, args.seed)
        overall = results["overall"]
        say(f"[{tag}] {name} EER {overall['eer']:.2f}%  minDCF(0.01) {overall['min_dcf_0.01']:.4f}  "
            f"({results['num_trials_scored']} trials)")
        return results

    hparams = {k: v for group in (data, model_args, recipe, args) for k, v in vars(group).items()
               if isinstance(v, (int, float, str, bool))}
    accelerator.init_trackers("eisv", config=hparams)
    if not progress["history"]:
        before = evaluate("before training")
        progress["history"].append({"epoch": 0, "step": 0, "results": before})

    # -- train ---------------------------------------------------------------------------------
    # One loader over every remaining epoch (see EpochTaggedBatches); a resume starts it mid-epoch.
    batches = EpochTaggedBatches(sampler, batches_per_epoch, num_epochs, progress["epoch"], progress["batches_done"])
    train_loader = torch.utils.data.DataLoader(RowIndices(len(store)), batch_sampler=batches, collate_fn=collator,
                                               num_workers=args.num_workers, pin_memory=torch.cuda.is_available())
    stream = iter(train_loader)
    bar = tqdm(total=total_steps, initial=progress["global_step"], disable=not accelerator.is_local_main_process,
               desc="training", dynamic_ncols=True)
    timing = {"wait": 0.0, "total": 0.0, "samples": 0}
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    for epoch in range(progress["epoch"], num_epochs):
        model.train()
        tick = time.perf_counter()
        for batch in stream:
            batch = {key: value.to(accelerator.device, non_blocking=True) for key, value in batch.items()}
            waited = time.perf_counter() - tick
            if "waveforms" in batch:
                batch["input_features"], batch["attention_mask"] = feature_extractor.extract(
                    batch.pop("waveforms"), batch.pop("num_samples"))
            with accelerator.accumulate(model):
                network.set_aam_margin(margins.margin())
                with accelerator.autocast():
                    output = model(**batch)
                accelerator.backward(output.loss)
                if accelerator.sync_gradients:
                    # The norm is of the all-reduced gradients, so every process skips the same steps.
                    norm = accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm or float("inf"))
                    if not torch.isfinite(norm):
                        progress["skipped_steps"] = progress.get("skipped_steps", 0) + 1
                        optimizer.zero_grad(set_to_none=True)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            progress["batches_done"] += 1
            if accelerator.sync_gradients:
                scheduler.step()
                margins.step()
                progress["global_step"] += 1
                bar.update(1)
                step = progress["global_step"]
                if step % args.logging_steps == 0 or step == total_steps:
                    logs = {"loss": output.loss.item(), "aam_loss": output.aam_loss.item(),
                            "erl_loss": output.erl_loss.item(), "lr": scheduler.get_last_lr()[0],
                            "margin": network.aam.margin,
                            "samples_per_s": timing["samples"] / max(timing["total"], 1e-9),
                            "skipped_steps": progress.get("skipped_steps", 0),
                            "data_wait_fraction": timing["wait"] / max(timing["total"], 1e-9)}
                    accelerator.log(logs, step=step)
                    bar.set_postfix(loss=f"{logs['loss']:.3f}", margin=f"{logs['margin']:.2f}")
                if args.checkpointing_steps and step % args.checkpointing_steps == 0:
                    save_checkpoint(accelerator, checkpoints_dir, step, progress, args.checkpoints_total_limit)
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            now = time.perf_counter()
            timing["wait"] += waited
            timing["total"] += now - tick
            timing["samples"] += batch["labels"].shape[0] * accelerator.num_processes
            tick = time.perf_counter()
            # An epoch ends on an optimizer step, so no partial accumulation leaks into the next one.
            if progress["global_step"] >= total_steps or progress["batches_done"] >= batches_per_epoch:
                break
        progress["epoch"], progress["batches_done"] = epoch + 1, 0
        results = evaluate(f"epoch {epoch + 1}")
        progress["history"].append({"epoch": epoch + 1, "step": progress["global_step"], "results": results})
        if results is not None:
            accelerator.log({"dev_eer": results["overall"]["eer"], "dev_min_dcf": results["overall"]["min_dcf_0.01"]},
                            step=progress["global_step"])
        is_best = results is None or progress["best_eer"] is None or results["overall"]["eer"] < progress["best_eer"]
        if is_best:
            progress["best_eer"] = None if results is None else results["overall"]["eer"]
            progress["best_epoch"] = epoch + 1
            if accelerator.is_main_process:
                export_model(network, feature_extractor, output_dir / "best_model", results)
        if not args.checkpointing_steps or progress["global_step"] >= total_steps:
            save_checkpoint(accelerator, checkpoints_dir, progress["global_step"], progress, args.checkpoints_total_limit)
        if progress["global_step"] >= total_steps:
            break
    bar.close()
    del stream, train_loader  # stops the workers
    if test_trials and (output_dir / "best_model").is_dir():
        # The model picked on the validation speakers, tested once on the evaluation trials.
        selected = EISVForSpeakerVerification.from_pretrained(output_dir / "best_model").to(accelerator.device)
        progress["test_results"] = evaluate(f"epoch {progress['best_epoch']}, selected on validation", test_trials,
                                            selected, name="test")
        del selected

    # -- export and push ---------------------------------------------------------------------
    stats = {"samples_per_s": timing["samples"] / max(timing["total"], 1e-9),
             "data_wait_fraction": timing["wait"] / max(timing["total"], 1e-9),
             "peak_gpu_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None,
             "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
             "num_processes": accelerator.num_processes, "mixed_precision": mixed_precision,
             "skipped_non_finite_steps": progress.get("skipped_steps", 0),
             "wall_s": time.perf_counter() - started}
    exit_code = 0
    if accelerator.is_main_process:
        final = output_dir / "model"
        finalize_model_folder(output_dir / "best_model", final, progress, stats, (data, model_args, recipe, args),
                              num_speakers, network.num_parameters(), indexed, held_out, argv,
                              validation_speakers=validation_speakers)
        history = [h for h in progress["history"] if h["results"]]
        if history:
            first, best = history[0]["results"]["overall"]["eer"], progress["best_eer"]
            say(f"{'Validation' if validation_trials else 'Dev'} EER before training {first:.2f}% -> best after "
                f"training {best:.2f}% (epoch {progress['best_epoch']}); model in {final}")
        if progress.get("test_results"):
            say(f"Test EER of the selected model on {data.trials}: {progress['test_results']['overall']['eer']:.2f}%")
        say(f"Throughput {stats['samples_per_s']:.1f} samples/s, data wait {100 * stats['data_wait_fraction']:.1f}% "
            f"of step time, device {stats['device']}")
        if args.push_to_hub:
            exit_code = push_folder(final, args.hub_model_id, private=args.hub_private)
    accelerator.wait_for_everyone()
    accelerator.end_training()  # closes the trackers and the process group: last
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
