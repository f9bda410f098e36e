"""Build the bundled neutral forgetting check `data/librispeech-mini` from ../shared/data/librispeech.

    python scripts/make_librispeech_mini.py [--source ../shared/data/librispeech] [--output data/librispeech-mini]

The first four utterances of each of the 10 LibriSpeech test-other speakers, cut to their first 8 s
(about 4 MB of 16 kHz FLAC), and `trials.csv` with every pair of them (60 same-speaker, 720
different-speaker). Training uses it, by default, as a selection list beside the validation speakers:
a fine-tune that loses general speaker knowledge shows it here. LibriSpeech is CC BY 4.0.
"""

import itertools

import pandas as pd
import soundfile as sf

from eisv_io.staged_folders import apply_umask, staged_folder
from eisv_io.trial_schema import trial_condition
from mini_data import mini_data_arguments

PER_SPEAKER = 4
MAX_SECONDS = 8.0

LICENSE = """# librispeech-mini: licence and citation

Four utterances per speaker (cut to their first 8 s) of the 10 LibriSpeech test-other speakers that
the resemblyzer repository redistributes, 16 kHz mono FLAC. **CC BY 4.0** (LibriSpeech, Panayotov et
al.). Bundled with eisv as the default neutral forgetting check (`trials.csv`). Made by
`scripts/make_librispeech_mini.py`.

V. Panayotov, G. Chen, D. Povey and S. Khudanpur, "LibriSpeech: an ASR corpus based on public domain
audio books", Proc. ICASSP 2015, pp. 5206–5210.
"""


def main():
    args = mini_data_arguments(__doc__, "librispeech", "librispeech-mini")
    metadata = pd.read_csv(args.source / "metadata.csv").sort_values("file_name")
    chosen = metadata.groupby("speaker").head(PER_SPEAKER).reset_index(drop=True)
    with staged_folder(args.output) as staging:  # the old folder stays until the new one is complete
        for index, row in chosen.iterrows():
            audio, rate = sf.read(args.source / row.file_name, dtype="int16")
            audio = audio[: int(MAX_SECONDS * rate)]
            (staging / row.file_name).parent.mkdir(parents=True, exist_ok=True)
            sf.write(staging / row.file_name, audio, rate, format="FLAC", subtype="PCM_16")
            chosen.loc[index, "duration_s"] = round(len(audio) / rate, 3)
        chosen.to_csv(staging / "metadata.csv", index=False)
        trials = [dict(corpus="librispeech", enroll=a.file_name, test=b.file_name, label=int(a.speaker == b.speaker),
                       condition=trial_condition(a.speaker == b.speaker, "neutral", "neutral"))
                  for a, b in itertools.combinations(list(chosen.itertuples()), 2)]
        pd.DataFrame(trials).to_csv(staging / "trials.csv", index=False)
        (staging / "LICENSE.md").write_text(LICENSE)
        apply_umask(staging)
    size = sum(p.stat().st_size for p in args.output.rglob("*") if p.is_file()) / 1e6
    print(f"wrote {args.output}: {len(chosen)} clips, {len(trials)} trials, {size:.1f} MB")


if __name__ == "__main__":
    main()
