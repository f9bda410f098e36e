"""The training DataLoader's pieces: the collator and speaker batch sampler, row indices tagged with their
epoch, and one batch stream over all epochs."""

import json

import torch

from data_collators import EISVCollator, SpeakerEmotionBatchSampler


def collator_and_sampler(store, feature_extractor, recipe, args, accelerator):
    """-> (EISVCollator, SpeakerEmotionBatchSampler) of the recipe's settings, sharded over the processes.

    On a GPU the data workers can leave the FFTs to the GPU (see EISVCollator); `features_on_device` "auto"
    does so for the fbank frontend only (GE2E features stay in the workers, the configuration its results
    were made with). `speakers_per_batch` None becomes min(32, speakers per process)."""
    on_gpu = accelerator.device.type == "cuda"
    features_on_device = {"auto": on_gpu and feature_extractor.feature_type == "kaldi_fbank", "yes": True,
                          "no": False}[args.features_on_device]
    patterns = json.loads(recipe.copypaste_patterns) if recipe.copypaste_patterns else None
    collator = EISVCollator(feature_extractor, store, crop_seconds=recipe.crop_seconds, copypaste=recipe.copypaste,
                            copypaste_prob=recipe.copypaste_prob, pattern_probs=patterns,
                            pair_without_copypaste=recipe.pair_without_copypaste, em_select=recipe.em_select,
                            em_ratio=recipe.em_ratio, em_contiguous=recipe.em_contiguous, em_members=recipe.em_members,
                            seed=args.seed, return_waveforms=features_on_device)
    if args.speakers_per_batch is None:
        args.speakers_per_batch = min(32, store.num_speakers // accelerator.num_processes)
    sampler = SpeakerEmotionBatchSampler(store.speaker_ids, store.emotion_ids, args.speakers_per_batch,
                                         args.utterances_per_speaker, seed=args.seed,
                                         num_replicas=accelerator.num_processes, rank=accelerator.process_index)
    if len(sampler) == 0:
        raise SystemExit(f"train_eisv: no full batch of {args.speakers_per_batch} speakers per process; "
                         f"lower --speakers_per_batch (the data has {store.num_speakers} speakers)")
    return collator, sampler


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
