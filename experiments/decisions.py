"""Measurements behind the decision defaults of issue 14: voice-activity trimming, calibration, domain
centring / whitening, emotion NAP, for the pretrained GE2E and for the shipped fine-tune.

    python -m experiments.decisions --model results/generalisation/ge2e-resemblyzer --out results/decisions  # the start (eisv-convert --from resemblyzer)
    python -m experiments.decisions --model models/eisv-ge2e --out results/decisions/eisv-ge2e \
        --calibration_trials results/generalisation/heldout_calibration_trials.csv      # the fine-tune

Every file is embedded once per front end (trim off / on) with the tools' windowed embedding on CPU;
the transforms are then applied to those unit-norm file embeddings in numpy, which is what the
model's `EmbeddingTransform` computes for files of one window (all files here are < 10 s).
Writes `OUT/calibration_trials.csv` (training speakers only: ASED + RAVDESS actors 1-18, in their
proportions; never dev; `--calibration_trials` replaces it with a given list, e.g. a fine-tune's held-out
validation speakers, which it never trained on) and `OUT/decisions.json`; prints a table of EER (%) on dev ALL, EmoDB,
RAVDESS and neutral_trials.csv.
"""

import argparse
import json
from pathlib import Path

import datasets
import numpy as np
import pandas as pd

from eisv_evaluation.calibration import fit_linear_calibration
from eisv_evaluation.evaluation import verification_metrics
from eisv_evaluation.loading import load_model
from eisv_evaluation.trials import read_trials
from eisv_evaluation.windowed_embedding import embed_paths
from eisv_io.atomic_files import write_text_atomic
from eisv_training.validation_split import make_validation_trials
from modeling_eisv.embedding_transform import compose, fit_mean, fit_nap, fit_whitening

CAL_SPEAKERS = {"ased": 6, "ravdess": 2}  # 65 : 18 training speakers -> 6 : 2 (plus seed-chosen ones)


def metadata(data: Path, corpus: str) -> pd.DataFrame:
    frame = pd.read_csv(data / corpus / "metadata.csv", dtype=str)
    frame["path"] = corpus + "/" + frame["file_name"]
    return frame


def ravdess_actor(speaker: str) -> int:
    return int(speaker.rsplit("_", 1)[-1])


def calibration_trials(data: Path, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ased, ravdess = metadata(data, "ased"), metadata(data, "ravdess")
    ravdess = ravdess[ravdess.speaker.map(ravdess_actor) <= 18]
    rows = []
    for frame, corpus in ((ased, "ased"), (ravdess, "ravdess")):
        chosen = rng.choice(sorted(frame.speaker.unique()), CAL_SPEAKERS[corpus], replace=False)
        rows.append(frame[frame.speaker.isin(chosen)])
    rows = pd.concat(rows)
    trials = make_validation_trials(datasets.Dataset.from_pandas(rows[["path", "speaker", "emotion", "corpus"]],
                                                                 preserve_index=False), max_targets=3000, seed=seed)
    return trials


class Embeddings:
    def __init__(self, model, fe, data):
        self.model, self.fe, self.data, self.cache = model, fe, data, {}

    def get(self, keys):
        missing = sorted(set(keys) - set(self.cache))
        if missing:
            vectors = embed_paths(self.model, self.fe, [str(self.data / k) for k in missing], batch_size=32)
            self.cache.update(zip(missing, vectors))
        return np.stack([self.cache[k] for k in keys])


def score(emb, trials, mean=None, matrix=None):
    def t(x):
        if mean is not None:
            x = (x - mean) @ matrix.T
        return x / np.linalg.norm(x, axis=1, keepdims=True)
    a, b = t(emb.get(list(trials.enroll))), t(emb.get(list(trials.test)))
    return np.einsum("nd,nd->n", a, b)


def table_row(emb, sets, mean=None, matrix=None, calibration=None):
    out = {}
    for name, trials in sets.items():
        s = score(emb, trials, mean, matrix)
        out[name] = verification_metrics(s, trials.label, calibration)
    return out


def subset(trials, mask):
    from eisv_evaluation.trials import Trials
    return Trials(**{f: getattr(trials, f)[mask] for f in ("corpus", "enroll", "test", "label", "condition", "line")},
                  source=trials.source)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--model", default="models/eisv-ge2e")
    parser.add_argument("--out", default="results/decisions")
    parser.add_argument("--calibration_trials", default=None,
                        help="trial list (paths under --data) to fit the calibration on, instead of drawing one "
                             "from the training speakers")
    args = parser.parse_args(argv)
    data, out = Path(args.data), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.calibration_trials:
        cal_path = Path(args.calibration_trials)
    else:
        cal_path = out / "calibration_trials.csv"
        write_text_atomic(cal_path, calibration_trials(data).to_csv(index=False))
    dev, neutral, cal = read_trials(data / "dev_trials.csv"), read_trials(data / "neutral_trials.csv"), read_trials(cal_path)
    sets = {"dev_all": dev, "emodb": subset(dev, dev.corpus == "emodb"), "ravdess": subset(dev, dev.corpus == "ravdess"),
            "neutral": neutral}
    model, fe = load_model(args.model, "cpu")
    results = {}
    embs = {}
    for trim in (False, True):
        fe.trim_long_silences = trim
        embs[trim] = emb = Embeddings(model, fe, data)
        tag = "vad" if trim else "plain"
        results[f"{tag}"] = table_row(emb, sets)
        # calibration fitted on training speakers
        scale, offset = fit_linear_calibration(score(emb, cal), cal.label)
        results[f"{tag}+calibration"] = table_row(emb, sets, calibration=(scale, offset))
        results[f"{tag}+calibration"]["fit"] = {"scale": scale, "offset": offset, "trials": str(cal_path),
                                                "num_trials": len(cal)}
        # domain centring with disjoint adaptation audio: RAVDESS actors 1-18 (18 speakers, none in dev)
        rav = metadata(data, "ravdess")
        adapt_keys = list(rav[rav.speaker.map(ravdess_actor) <= 18].path)
        mean = fit_mean(emb.get(adapt_keys))
        results[f"{tag}+centre(ravdess 1-18)"] = table_row(emb, sets, *compose(256, mean))
        white = fit_whitening(emb.get(adapt_keys), mean)
        results[f"{tag}+centre+whiten(ravdess 1-18)"] = table_row(emb, sets, *compose(256, mean, white))
        # emotion NAP on labelled training speakers: ASED + RAVDESS 1-18
        ased = metadata(data, "ased")
        train = pd.concat([ased, rav[rav.speaker.map(ravdess_actor) <= 18]])
        for dims in (5, 10):
            proj, _, explained = fit_nap(emb.get(list(train.path)), list(train.speaker), list(train.emotion), dims)
            results[f"{tag}+nap{dims}(ased+ravdess 1-18)"] = table_row(emb, sets, *compose(256, None, None, proj))
    write_text_atomic(out / "decisions.json", json.dumps(results, indent=2, default=float) + "\n")
    print("| option | dev ALL | EmoDB | RAVDESS | neutral | dev Cllr | dev miss/FA % at p 0.5 |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, row in results.items():
        d = row["dev_all"]
        cal_cells = (f"{d['cllr']:.3f} | {d['miss_at_p0.5']:.1f} / {d['false_alarm_at_p0.5']:.1f}"
                     if "cllr" in d else f"min {d['min_cllr']:.3f} | -")
        print(f"| {name} | {d['eer']:.2f} | {row['emodb']['eer']:.2f} | {row['ravdess']['eer']:.2f} | "
              f"{row['neutral']['eer']:.2f} | {cal_cells} |")


if __name__ == "__main__":
    main()
