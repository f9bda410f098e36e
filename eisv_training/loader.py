"""The training DataLoader's pieces: row indices tagged with their epoch, and one batch stream over all epochs."""

import torch


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
