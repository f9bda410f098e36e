"""Build the bundled default data `data/emodb-mini` from the EmoDB copy in ../shared/data.

    python scripts/make_emodb_mini.py [--source ../shared/data/emodb] [--output data/emodb-mini]

Four random clips (seed 0) per speaker and emotion, about 9 MB of 16 kHz FLAC; speakers
emodb_13..16 are held out for the trial list `trials.csv` (every pair of their clips), the other
six are for training. EmoDB is CC0 1.0 as republished by audEERING; LICENSE.md says so.
"""

import itertools
import shutil
from pathlib import Path

import pandas as pd

from eisv_io.staged_folders import apply_umask, staged_folder
from eisv_io.trial_schema import trial_condition
from mini_data import mini_data_arguments

HELD_OUT = ["emodb_13", "emodb_14", "emodb_15", "emodb_16"]
PER_SPEAKER_EMOTION = 4


def main():
    args = mini_data_arguments(__doc__, "emodb", "emodb-mini")
    metadata = pd.read_csv(args.source / "metadata.csv")
    chosen = (metadata.sample(frac=1.0, random_state=0).groupby(["speaker", "emotion"]).head(PER_SPEAKER_EMOTION)
              .sort_values("file_name").reset_index(drop=True))
    chosen["split"] = ["test" if s in HELD_OUT else "train" for s in chosen.speaker]
    with staged_folder(args.output) as staging:  # the old folder stays until the new one is complete
        for name in chosen.file_name:
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(args.source / name, staging / name)
        chosen.to_csv(staging / "metadata.csv", index=False)
        test = chosen[chosen.split == "test"].itertuples()
        trials = [dict(corpus="emodb", enroll=a.file_name, test=b.file_name, label=int(a.speaker == b.speaker),
                       condition=trial_condition(a.speaker == b.speaker, a.emotion, b.emotion)) for a, b in itertools.combinations(list(test), 2)]
        pd.DataFrame(trials).to_csv(staging / "trials.csv", index=False)
        shutil.copy2(Path(__file__).with_name("emodb_mini_LICENSE.md"), staging / "LICENSE.md")
        apply_umask(staging)
    size = sum(p.stat().st_size for p in args.output.rglob("*") if p.is_file()) / 1e6
    print(f"wrote {args.output}: {len(chosen)} clips ({(chosen.split == 'train').sum()} train), "
          f"{len(trials)} trials, {size:.1f} MB")


if __name__ == "__main__":
    main()
