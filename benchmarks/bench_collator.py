"""Collator throughput on ONE core: 2 s crops, CopyPaste + energy EM on, Kaldi fbank features.

    python -m benchmarks.bench_collator [--data ../shared/data/ravdess] [--batches 30]

Uses real clips (8 speakers of the given corpus) when present, else a synthetic corpus.
Prints the machine and pairs per second (one pair = two 2 s inputs, features and mask included).
"""

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile
import torch

from benchmarks.machine import cpu_model
from data_collators import AudioStore, EISVCollator, SpeakerEmotionBatchSampler, index_dataset, load_source
from modeling_eisv import EISVFeatureExtractor

def synthetic_corpus(root: Path) -> Path:
    rng = np.random.default_rng(0)
    lines = ["file_name,speaker,emotion"]
    for s in range(8):
        for e, emotion in enumerate(["neutral", "angry", "sad", "happy"]):
            for take in range(4):
                name = f"s{s}_{emotion}_{take}.wav"
                t = np.arange(int(rng.uniform(2.0, 4.0) * 16000)) / 16000
                wave = (0.1 + 0.1 * e) * np.sin(2 * np.pi * (120 + 30 * s) * t) + 0.01 * rng.standard_normal(t.size)
                soundfile.write(root / name, wave.astype(np.float32), 16000)
                lines.append(f"{name},spk{s},{emotion}")
    (root / "metadata.csv").write_text("\n".join(lines) + "\n")
    return root


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "ravdess"
    parser.add_argument("--data", default=str(default))
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--speakers-per-batch", type=int, default=8)
    parser.add_argument("--utterances-per-speaker", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory() as scratch:
        if (Path(args.data) / "metadata.csv").is_file():
            source, origin = load_source(args.data), f"real clips from {Path(args.data).resolve()}"
            keep = sorted(set(source["speaker"]))[:8]
            source = source.filter(lambda s: s in keep, input_columns="speaker")
        else:
            source, origin = load_source(synthetic_corpus(Path(scratch))), "synthetic clips (real data not found)"
        dataset, _ = index_dataset(source)
        store = AudioStore(dataset)
    collator = EISVCollator(EISVFeatureExtractor("kaldi_fbank"), store, crop_seconds=2.0, copypaste=True,
                            copypaste_prob=1.0, em_select="energy", em_ratio=0.2, seed=0)
    sampler = SpeakerEmotionBatchSampler(dataset["speaker_id"], dataset["emotion_id"], args.speakers_per_batch,
                                         args.utterances_per_speaker, seed=0)
    batches, epoch = [], 0
    while len(batches) < args.batches:
        sampler.set_epoch(epoch)
        batches, epoch = batches + list(sampler), epoch + 1
    batches = batches[: args.batches]
    collator(batches[0])  # warm-up
    start, pairs = time.perf_counter(), 0
    for rows in batches:
        pairs += len(collator(rows)["pair_index"])
    seconds = time.perf_counter() - start

    print(f"machine: {cpu_model()}, {os.cpu_count()} logical cores, torch {torch.__version__}, "
          f"torch threads {torch.get_num_threads()}, python {platform.python_version()}")
    print(f"data: {origin}; {len(store)} clips, {store.nbytes / 1e6:.0f} MB in the audio store")
    print(f"batch: {args.speakers_per_batch} speakers x {args.utterances_per_speaker} utterances = "
          f"{args.speakers_per_batch * args.utterances_per_speaker} inputs of 2 s, CopyPaste prob 1.0, EM energy 0.2")
    print(f"collator: {pairs / seconds:.0f} pairs/s ({len(batches) / seconds:.1f} batches/s, "
          f"{pairs} pairs in {seconds:.2f} s) on one core")
    extractor, waves = collator.feature_extractor, torch.zeros(len(batches[0]), 32000)
    start = time.perf_counter()
    for _ in range(len(batches)):
        extractor.extract(waves, torch.full((len(batches[0]),), 32000))
    share = (time.perf_counter() - start) / seconds
    print(f"of which feature extraction alone: about {100 * share:.0f}% of the collator's time")


if __name__ == "__main__":
    main()
