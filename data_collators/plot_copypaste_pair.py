"""Draw one CopyPaste pair so a person can look and listen.

    python -m data_collators.plot_copypaste_pair --data ../shared/data/emodb --output /tmp/pair

writes `copypaste_pair.png` (waveforms, fbank with the EM mask over it, frame energy) and
`pair_first.wav` / `pair_second.wav` (16 kHz, 16-bit), each to a temporary name then renamed.
"""

import argparse
import os
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import soundfile  # noqa: E402
import torch  # noqa: E402

from modeling_eisv import EISVFeatureExtractor  # noqa: E402

from .audio_store import AudioStore  # noqa: E402
from .copypaste import PATTERNS, CopyPaste  # noqa: E402
from .emotion_masking import emotion_aware_mask, frame_rms  # noqa: E402
from .indexing import index_dataset  # noqa: E402
from .sources import load_source  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="AudioFolder / CSV / folder of AudioFolders")
    parser.add_argument("--output", required=True, help="folder for the PNG and the two WAVs")
    parser.add_argument("--speaker", help="speaker name (default: the first with a neutral and an emotional clip)")
    parser.add_argument("--pattern", default="neutral_emotional", choices=PATTERNS)
    parser.add_argument("--crop-seconds", type=float, default=2.0)
    parser.add_argument("--em-select", default="energy", choices=["energy", "random"])
    parser.add_argument("--em-ratio", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    source = load_source(args.data)
    speaker = args.speaker or _speaker_with_both(source)
    source = source.filter(lambda s: s == speaker, input_columns="speaker")
    if len(source) == 0:
        raise SystemExit(f"{args.data}: no rows for speaker {speaker!r}")
    dataset, _ = index_dataset(source, skip_bad_rows=True)
    store = AudioStore(dataset)
    rng = np.random.default_rng(args.seed)
    crop = int(args.crop_seconds * store.sampling_rate)
    rows = rng.permutation(len(store))
    pair = CopyPaste(store, crop, pattern_probs={args.pattern: 1.0}).make_pair(rows[0], rows[-1], rng)

    fe = EISVFeatureExtractor("kaldi_fbank")
    waves = [pair.first, pair.second]
    num_samples = torch.tensor([w.size for w in waves])
    padded = torch.zeros(2, int(num_samples.max()))
    for b, w in enumerate(waves):
        padded[b, : w.size] = torch.from_numpy(w)
    features, attention = fe.extract(padded, num_samples)
    energy = frame_rms(fe, padded, features.shape[1])
    mask = emotion_aware_mask(energy, attention.sum(1), args.em_ratio, args.em_select, rng=rng)

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    label = lambda row: f"{store.emotions[store.emotion_ids[row]]} ({Path(store.paths[row]).stem})"  # noqa: E731
    titles = [f"first (original): {label(pair.first_row)}",
              f"second (CopyPaste, {pair.pattern}): {label(pair.second_rows[0])} | {label(pair.second_rows[1])}"]
    figure, axes = plt.subplots(3, 2, figsize=(15, 8), sharex="col")
    for col in range(2):
        n, frames = int(num_samples[col]), int(attention[col].sum())
        seconds = np.arange(n) / store.sampling_rate
        axes[0, col].plot(seconds, waves[col], linewidth=0.4)
        axes[0, col].set_title(titles[col], fontsize=9)
        axes[0, col].set_ylabel("amplitude")
        frame_t = (np.arange(frames) * fe.hop_length + fe.win_length / 2) / store.sampling_rate
        axes[1, col].imshow(features[col, :frames].T.numpy(), origin="lower", aspect="auto", cmap="magma",
                            extent=(0, frame_t[-1], 0, features.shape[-1]))
        hidden = mask[col, :frames].numpy()
        axes[1, col].imshow(np.where(hidden, 1.0, np.nan)[None], aspect="auto", cmap="Greys", alpha=0.55,
                            vmin=0, vmax=1, extent=(0, frame_t[-1], 0, features.shape[-1]))
        axes[1, col].set_ylabel(f"fbank bin (grey: EM {args.em_select}, {hidden.sum()} frames)")
        axes[2, col].plot(frame_t, energy[col, :frames].numpy(), color="k", linewidth=0.8)
        axes[2, col].fill_between(frame_t, 0, energy[col, :frames].max().item(), where=hidden, color="tab:red",
                                  alpha=0.25, label="masked")
        axes[2, col].axhline(energy[col, :frames].mean().item(), color="tab:blue", linestyle="--", label="mean")
        axes[2, col].set_ylabel("frame RMS")
        axes[2, col].set_xlabel("time (s)")
        axes[2, col].legend(fontsize=8, loc="upper right")
        if col == 1:
            for ax in axes[:, 1]:
                ax.axvline(pair.second_split / store.sampling_rate, color="tab:green", linewidth=1.5)
    figure.suptitle(f"speaker {speaker}: CopyPaste pair, green line = join", fontsize=11)
    figure.tight_layout()
    _atomic(out / "copypaste_pair.png", lambda path: figure.savefig(path, dpi=110, format="png"))
    for name, wave in (("pair_first.wav", pair.first), ("pair_second.wav", pair.second)):
        _atomic(out / name, lambda path, w=wave: soundfile.write(path, w, store.sampling_rate, subtype="PCM_16",
                                                                 format="WAV"))
    print(f"wrote {out / 'copypaste_pair.png'}, {out / 'pair_first.wav'}, {out / 'pair_second.wav'}")


def _speaker_with_both(source):
    """First speaker (sorted) with a neutral and a non-neutral clip."""
    emotions = {}
    for speaker, emotion in zip(source["speaker"], source["emotion"]):
        emotions.setdefault(speaker, set()).add((emotion or "").lower() == "neutral")
    for speaker in sorted(s for s in emotions if s):
        if emotions[speaker] == {True, False}:
            return speaker
    raise SystemExit("no speaker has both a neutral and an emotional clip; pass --speaker")


def _atomic(target: Path, write):
    handle, temporary = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
    os.close(handle)
    try:
        write(temporary)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual mode
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


if __name__ == "__main__":
    main()
