"""Does a calibration fitted on some corpora keep its decisions balanced on others? (issue 14)

    python -m experiments.calibration_transfer [--data ../shared/data] [--model models/eisv-ge2e]
        [--out results/decisions] [--cache outputs/calibration_transfer/embeddings.npz]

Variants of score -> LLR calibration of the pretrained GE2E (cosine scores):

- `linear`: `llr = a*s + b` (what the shipped folder carries);
- `qmf_<measures>`: quality-measure calibration, `llr = a*s + b + sum_k c_k*q_k` (Thienpondt et al.
  2021, IDLab VoxSRC-21; NIST SRE practice), fitted by the same prior-weighted logistic regression.
  Each q is symmetric in enrol and test, from the trial's own embeddings and a cohort of other
  speakers (`eisv_evaluation.quality_measures`): `imposter_mean` (mean top-N cosine against the
  cohort), `mean_cosine` (cosine to the cohort's mean embedding), `log_speech` (log active seconds);
- `as_norm+linear`: AS-norm against the same cohort (top N), then `a*s + b`.

**Leave-one-corpus-out transfer, validation data only.** The training speakers of each training
corpus (ASED; RAVDESS actors 1-18) are split in two by a seeded draw: half give the cohort (up to
`COHORT_FILES` files each), half the trials (`make_validation_trials`). A calibration is fitted on
one corpus's trials with that corpus's cohort alone (the held-out corpus is unseen, as a user's
corpus would be) and measured on the other corpus's trials and on `neutral_trials.csv`: miss / false
alarm at p 0.5, Cllr, min Cllr. The pick is the variant with the smallest worst |miss - FA| over
the held-out sets, stated in the JSON. Then every variant is fitted on `OUT/calibration_trials.csv`
with the cohort `OUT/asnorm_cohort.csv` (the shipped protocol) and reported on dev ALL, RAVDESS,
EmoDB and neutral: reported, never used to choose.

Every file of the four corpora is embedded once (CPU, the tools' windowed embedding) and cached in
`--cache`; writes `OUT/calibration_transfer.json` and prints the tables.
"""

import argparse
import json
from pathlib import Path

import datasets
import numpy as np
import pandas as pd
import soundfile

from eisv_evaluation.calibration import fit_quality_calibration
from eisv_evaluation.evaluation import verification_metrics
from eisv_evaluation.quality_measures import trial_qualities
from eisv_evaluation.scoring import as_norm_scores, cohort_statistics
from eisv_evaluation.trials import read_trials
from eisv_evaluation.windowed_embedding import embed_paths
from eisv_io.atomic_files import atomic_path, write_text_atomic
from eisv_training.validation_split import make_validation_trials
from experiments.decisions import metadata, ravdess_actor, subset
from modeling_eisv.speech_activity import active_seconds

CORPORA = ("ased", "ravdess", "emodb", "librispeech")
COHORT_FILES = 6  # per cohort speaker, as results/decisions/asnorm_cohort.csv
TOP_N = 100  # cohort scores averaged per file (imposter mean, AS-norm); fixed before any measurement
VARIANTS = {"linear": (), "qmf_imposter_mean": ("imposter_mean",), "qmf_mean_cosine": ("mean_cosine",),
            "qmf_log_speech": ("log_speech",), "qmf_imposter_mean+log_speech": ("imposter_mean", "log_speech"),
            "qmf_all": ("imposter_mean", "mean_cosine", "log_speech"), "as_norm+linear": ()}


class FileTable:
    """Every file of the corpora -> unit-norm embedding (D,) and active speech (seconds), cached in an .npz.
    `trim_long_silences` sets the feature extractor's voice-activity trimming (the cache is per front end);
    `identity` (`eisv_evaluation.loading.model_identity`), when given, is stored and a cache of another model
    is refused."""

    def __init__(self, data: Path, model_path: str, cache: Path, trim_long_silences: bool = False, identity=None):
        keys = [key for corpus in CORPORA for key in metadata(data, corpus).path]
        if cache.is_file():
            stored = np.load(cache)
            if list(stored["keys"]) != keys:
                raise SystemExit(f"{cache}: holds other files than {data}; delete it to re-embed")
            stored_trim = bool(stored["trim_long_silences"]) if "trim_long_silences" in stored.files else False
            if stored_trim != trim_long_silences:
                raise SystemExit(f"{cache}: embedded with trim_long_silences={not trim_long_silences}; "
                                 f"delete it or use another cache path")
            stored_identity = str(stored["identity"]) if "identity" in stored.files else None
            if identity is not None and stored_identity != identity:
                raise SystemExit(f"{cache}: embedded by another model than {model_path} (or before caches named "
                                 f"their model); delete it or use another cache path")
            embeddings, speech = stored["embeddings"], stored["speech_s"]
        else:
            import torch

            from eisv_evaluation.loading import load_model

            torch.set_num_threads(2)
            model, feature_extractor = load_model(model_path, "cpu")
            feature_extractor.trim_long_silences = trim_long_silences
            embeddings = embed_paths(model, feature_extractor, [str(data / k) for k in keys], progress=True,
                                     batch_size=32)
            speech = np.array([active_seconds(*soundfile.read(data / k, dtype="float32")) for k in keys])
            with atomic_path(cache) as temporary, open(temporary, "wb") as handle:
                np.savez(handle, keys=np.array(keys), embeddings=embeddings, speech_s=speech,
                         trim_long_silences=np.array(trim_long_silences),
                         **({"identity": np.array(identity)} if identity is not None else {}))
        self.row = {key: i for i, key in enumerate(keys)}
        self.embeddings, self.speech = np.asarray(embeddings, np.float64), np.asarray(speech, np.float64)

    def get(self, keys):
        rows = [self.row[k] for k in keys]
        return self.embeddings[rows], self.speech[rows]


def scored(files: FileTable, trials, cohort_keys, variant: str, top_n=TOP_N):
    """-> (scores (N,), qualities (N, K)) of `trials` for `variant`, against the cohort files."""
    enroll, enroll_speech = files.get(list(trials.enroll))
    test, test_speech = files.get(list(trials.test))
    cohort, _ = files.get(list(cohort_keys))
    scores = np.einsum("nd,nd->n", enroll, test)
    if variant == "as_norm+linear":
        stats = [cohort_statistics(x, cohort, top_n) for x in (enroll, test)]
        return as_norm_scores(scores, *stats), np.zeros((len(scores), 0))
    return scores, trial_qualities(VARIANTS[variant], enroll, test, enroll_speech, test_speech, cohort, top_n)


def fit(files, trials, cohort_keys, variant, top_n=TOP_N):
    scores, qualities = scored(files, trials, cohort_keys, variant, top_n)
    scale, offset, weights = fit_quality_calibration(scores, qualities, trials.label)
    return {"scale": scale, "offset": offset, "weights": dict(zip(VARIANTS[variant], weights.tolist()))}


def measure(files, trials, cohort_keys, variant, calibration, top_n=TOP_N) -> dict:
    """Metrics of `trials` with the LLRs of a fitted `calibration` (the model's own decision at p 0.5)."""
    scores, qualities = scored(files, trials, cohort_keys, variant, top_n)
    llrs = calibration["scale"] * scores + calibration["offset"] + qualities @ np.array(
        [calibration["weights"][q] for q in VARIANTS[variant]] or np.zeros(0))
    metrics = verification_metrics(llrs, trials.label, (1.0, 0.0))  # EER and min Cllr of the LLRs themselves
    metrics["gap"] = abs(metrics["miss_at_p0.5"] - metrics["false_alarm_at_p0.5"])
    return metrics


def leave_one_corpus_out(files, splits, neutral, variant, top_n=TOP_N) -> dict:
    """Fit `variant` on each training corpus's split, measure it on the other one and on `neutral`
    -> {"fit_<corpus>": {fit, num_fit_trials, cohort_files, on_<other>, on_neutral}, worst_gap, mean_cllr}."""
    out = {}
    for fit_on, (fit_trials, cohort) in splits.items():
        held_out = next(c for c in splits if c != fit_on)
        calibration = fit(files, fit_trials, cohort, variant, top_n)
        out[f"fit_{fit_on}"] = {
            "fit": calibration, "num_fit_trials": len(fit_trials), "cohort_files": len(cohort),
            "on_" + held_out: measure(files, splits[held_out][0], cohort, variant, calibration, top_n),
            "on_neutral": measure(files, neutral, cohort, variant, calibration, top_n)}
    held = [metrics for row in out.values() for key, metrics in row.items() if key.startswith("on_")]
    out["worst_gap"] = max(m["gap"] for m in held)
    out["mean_cllr"] = float(np.mean([m["cllr"] for m in held]))
    return out


def as_trials(frame: pd.DataFrame, seed: int):
    rows = datasets.Dataset.from_pandas(frame[["path", "speaker", "emotion", "corpus"]], preserve_index=False)
    return read_trials(make_validation_trials(rows, max_targets=3000, seed=seed))


def loco_splits(data: Path, seed=0) -> dict:
    """-> {corpus: (trials over half its training speakers, cohort file keys of the other half)}."""
    rng = np.random.default_rng(seed)
    ravdess = metadata(data, "ravdess")
    training = {"ased": metadata(data, "ased"), "ravdess": ravdess[ravdess.speaker.map(ravdess_actor) <= 18]}
    out = {}
    for corpus, frame in training.items():
        speakers = rng.permutation(sorted(frame.speaker.unique()))
        cohort_speakers, trial_speakers = speakers[: len(speakers) // 2], speakers[len(speakers) // 2:]
        cohort = [key for _, group in frame[frame.speaker.isin(cohort_speakers)].groupby("speaker")
                  for key in rng.choice(sorted(group.path), min(COHORT_FILES, len(group)), replace=False)]
        out[corpus] = (as_trials(frame[frame.speaker.isin(trial_speakers)], seed), cohort)
    return out


def summary_line(name, metrics):
    return (f"| {name} | {metrics['eer']:.2f} | {metrics['cllr']:.3f} | {metrics['min_cllr']:.3f} | "
            f"{metrics['miss_at_p0.5']:.1f} / {metrics['false_alarm_at_p0.5']:.1f} |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--model", default="models/eisv-ge2e")
    parser.add_argument("--out", default="results/decisions")
    parser.add_argument("--cache", default="outputs/calibration_transfer/embeddings.npz")
    args = parser.parse_args(argv)
    data, out = Path(args.data), Path(args.out)
    files = FileTable(data, args.model, Path(args.cache))
    neutral = read_trials(data / "neutral_trials.csv")
    splits = loco_splits(data)

    loco = {variant: leave_one_corpus_out(files, splits, neutral, variant) for variant in VARIANTS}
    top_n_check = {f"{variant}@top_n={top_n}": {k: leave_one_corpus_out(files, splits, neutral, variant, top_n)[k]
                                                   for k in ("worst_gap", "mean_cllr")}
                   for variant in ("qmf_imposter_mean", "as_norm+linear") for top_n in (10, 30, 300)}
    other_splits = {seed: loco_splits(data, seed) for seed in (1, 2)}
    seed_check = {variant: {f"seed_{seed}": leave_one_corpus_out(files, other, neutral, variant)["worst_gap"]
                            for seed, other in other_splits.items()} for variant in VARIANTS}
    chosen = min(VARIANTS, key=lambda v: (loco[v]["worst_gap"], loco[v]["mean_cllr"]))

    dev = read_trials(data / "dev_trials.csv")
    sets = {"dev_all": dev, "ravdess": subset(dev, dev.corpus == "ravdess"),
            "emodb": subset(dev, dev.corpus == "emodb"), "neutral": neutral}
    cal = read_trials(out / "calibration_trials.csv")
    cohort = list(pd.read_csv(out / "asnorm_cohort.csv").path)
    shipped = {}
    for variant in VARIANTS:
        calibration = fit(files, cal, cohort, variant)
        shipped[variant] = {"fit": calibration, **{name: measure(files, trials, cohort, variant, calibration)
                                                   for name, trials in sets.items()}}
    results = {"protocol": {"top_n": TOP_N, "cohort_files_per_speaker": COHORT_FILES,
                            "loco": "fit on one training corpus (half its speakers; cohort: the other half), "
                                    "measured on the other training corpus and neutral_trials.csv",
                            "pick": "smallest worst |miss - FA| at p 0.5 over the LOCO held-out sets, then mean Cllr",
                            "final_fit": "calibration_trials.csv, cohort asnorm_cohort.csv"},
               "loco": loco, "chosen": chosen, "loco_top_n_check": top_n_check,
               "loco_worst_gap_other_splits": seed_check, "final": shipped}
    write_text_atomic(out / "calibration_transfer.json", json.dumps(results, indent=2, default=float) + "\n")

    print("LOCO (validation data): miss / FA % at p 0.5 and Cllr on the held-out sets")
    print("| variant | ASED->RAVDESS | ASED->neutral | RAVDESS->ASED | RAVDESS->neutral | worst gap | mean Cllr |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for variant, row in loco.items():
        cells = [f"{m['miss_at_p0.5']:.1f} / {m['false_alarm_at_p0.5']:.1f} ({m['cllr']:.3f})"
                 for m in (row["fit_ased"]["on_ravdess"], row["fit_ased"]["on_neutral"],
                           row["fit_ravdess"]["on_ased"], row["fit_ravdess"]["on_neutral"])]
        print(f"| {variant} | {' | '.join(cells)} | {row['worst_gap']:.1f} | {row['mean_cllr']:.3f} |")
    print(f"chosen by LOCO: {chosen}")
    print("top-N check (LOCO worst gap, mean Cllr):", {k: (round(v["worst_gap"], 1), round(v["mean_cllr"], 3))
                                                     for k, v in top_n_check.items()})
    print("other speaker splits (LOCO worst gap):", {k: {s: round(g, 1) for s, g in v.items()}
                                                     for k, v in seed_check.items()}, "\n")
    for variant, row in shipped.items():
        print(f"{variant}: fit {row['fit']}")
        print("| set | EER % | Cllr | min Cllr | miss / FA % at p 0.5 |\n|---|---:|---:|---:|---:|")
        for name in sets:
            print(summary_line(name, row[name]))
        print()


if __name__ == "__main__":
    main()
