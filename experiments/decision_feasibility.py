"""Can one decision keep miss and false alarms within 10 points on every corpus? (issue 14's bar)

    python -m experiments.decision_feasibility --model models/eisv-ge2e --out results/decisions/eisv-ge2e \
        --calibration_trials results/generalisation/heldout_calibration_trials.csv --trim   # the fine-tune
    eisv-convert --from resemblyzer --output outputs/ge2e-resemblyzer
    python -m experiments.decision_feasibility --model outputs/ge2e-resemblyzer \
        --out results/decisions --calibration_trials results/decisions/calibration_trials.csv \
        --cohort results/decisions/asnorm_cohort.csv --trim --sampling                        # the start

A decision at equal priors and costs accepts a trial when its LLR is at least 0. For any calibration
that is a monotone function of the score (linear, isotonic), that is one threshold on the score.
On each proxy corpus (dev EmoDB, dev RAVDESS, `neutral_trials.csv`, and one set per corpus of the
`--calibration_trials`, speakers the model never trained on) the thresholds that keep
|P_miss - P_fa| <= 10 points form one interval (`balanced_threshold_band`). If the intervals of the
corpora do not intersect, **no calibration of that score can meet the bar on them, not even one
fitted on these trials themselves**; the printed gap is how far apart they are (in score units).

Scores checked: cosine (`alpha 0`), and cosine minus `alpha` times the trial's imposter mean (the
mean of each file's top-`TOP_N` cosines against `--cohort`, averaged over enrol and test) for alpha
from -2 to 1.5 in steps of 0.05 (`ALPHAS`): a threshold on that score is what a quality-measure
calibration on the symmetric imposter mean (`llr = a*s + b + c*q`, alpha = -c/a) decides, so such
QMFs are covered to that grid; and AS-norm (top N). `--trim` repeats it with voice-activity
trimming (the `trim_long_silences` front end). A set without targets or non-targets is left out.
Each set's row also holds its mean target and non-target scores.

The proxy sets are small (the dev RAVDESS set has 6 speakers, the fine-tune's validation corpora 9
ASED and 3 RAVDESS, the start's 6 and 2), so a verdict is a point estimate on them; `--sampling`
says how much the speakers alone move a corpus's threshold.

`--sampling` adds the speaker-sampling check (meaningful for a model that never trained on the
corpora, i.e. the start): per corpus, all within-corpus pairs give the population's equal-error
threshold; over `DRAWS` random draws of k speakers, how often that threshold still keeps the gap
within 10 points, and how much the draws' own equal-error thresholds spread. A corpus of few
speakers can miss the bar at a perfectly placed threshold by the luck of its speakers.

CPU; embeddings cached per front end under `--cache_dir`; writes `OUT/decision_feasibility.json`
and prints tables. Reported, not used to choose anything.
"""

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from eisv_evaluation.calibration import decision_error_rates
from eisv_evaluation.loading import load_model, model_identity
from eisv_evaluation.scoring import (BALANCED_GAP, as_norm_scores, balanced_threshold_band, cohort_statistics,
                                   compute_eer)
from eisv_evaluation.trials import read_trials
from eisv_io.atomic_files import write_text_atomic
from experiments.calibration_transfer import FileTable
from experiments.decisions import metadata, subset
from modeling_eisv.calibration import apply_calibration, score_threshold

ALPHAS = tuple(round(0.05 * k, 2) for k in range(-40, 31))  # -2.0 ... 1.5
TOP_N = 100  # as experiments.calibration_transfer
SAMPLE_SPEAKERS = (6, 10, 20)
DRAWS = 200


def proxy_sets(data: Path, calibration_trials) -> dict:
    """-> {name: Trials}: dev EmoDB and RAVDESS, the neutral check, and `val_<corpus>` per corpus of
    the calibration trials (None: none)."""
    dev = read_trials(data / "dev_trials.csv")
    sets = {"emodb": subset(dev, dev.corpus == "emodb"), "ravdess": subset(dev, dev.corpus == "ravdess"),
            "neutral": read_trials(data / "neutral_trials.csv")}
    if calibration_trials:
        cal = read_trials(calibration_trials)
        for corpus in sorted(set(cal.corpus)):
            sets[f"val_{corpus}"] = subset(cal, cal.corpus == corpus)
    for name in [n for n, trials in sets.items() if len(set(trials.label.tolist())) < 2]:
        print(f"decision_feasibility: {name} has only {'targets' if sets[name].label[0] else 'non-targets'}; left out")
        del sets[name]
    return sets


def common_band(bands: dict) -> dict:
    """{set: (low, high) or None} (`balanced_threshold_band`: low exclusive, high inclusive) ->
    {"feasible", "gap", "gap_in_widths", "low", "high", "apart"}: the thresholds every set accepts
    (`low` < t <= `high` when feasible); `gap` = max(low) - min(high) >= 0 when they are disjoint,
    `gap_in_widths` the same over the median width of the finite bands (comparable between scores
    of different scales), and `apart` names the two sets that are furthest apart."""
    if any(band is None for band in bands.values()):
        return {"feasible": False, "gap": None, "gap_in_widths": None, "low": None, "high": None,
                "apart": [name for name, band in bands.items() if band is None]}
    top = max(bands, key=lambda name: bands[name][0])
    bottom = min(bands, key=lambda name: bands[name][1])
    low, high = bands[top][0], bands[bottom][1]
    widths = [band[1] - band[0] for band in bands.values() if np.isfinite(band[0])]
    width = float(np.median(widths)) if widths else float("nan")
    return {"feasible": bool(low < high), "gap": float(low - high), "gap_in_widths": float((low - high) / width),
            "low": float(low), "high": float(high), "apart": [bottom, top]}


class Scorer:
    """Trial scores of one front end: cosine, cosine - alpha * imposter mean, AS-norm."""

    def __init__(self, files: FileTable, cohort_keys, top_n: int = TOP_N):
        self.files, self.cohort, self.top_n = files, files.get(list(cohort_keys))[0], top_n
        self._cache = {}  # id(trials) -> (trials, cosine scores, the enrol and test files' cohort statistics)

    def __call__(self, trials, alpha=0.0):
        if id(trials) not in self._cache:
            enroll, test = self.files.get(list(trials.enroll))[0], self.files.get(list(trials.test))[0]
            self._cache[id(trials)] = (trials, np.einsum("nd,nd->n", enroll, test),
                                       [cohort_statistics(x, self.cohort, self.top_n) for x in (enroll, test)])
        _, scores, stats = self._cache[id(trials)]
        if alpha == 0.0:
            return scores
        if alpha == "as_norm":
            return as_norm_scores(scores, *stats)
        return scores - float(alpha) * 0.5 * (stats[0][0] + stats[1][0])

    def pair_mean(self, trials) -> float:
        """Mean cosine over every pair of the distinct files of `trials`: what unlabelled audio of
        that domain tells about its scores (mostly non-target pairs)."""
        embeddings = self.files.get(sorted(set(trials.enroll) | set(trials.test)))[0]
        first, second = np.triu_indices(len(embeddings), 1)
        return float(np.einsum("nd,nd->n", embeddings[first], embeddings[second]).mean())


def feasibility(scorer: Scorer, sets: dict, calibration=None) -> dict:
    """-> {score variant: {"sets": {name: {eer, band}}, **common_band}}; with `calibration` (scale,
    offset of cosine scores) also the model's own decision (miss / FA %) on each set, and
    `unlabelled_shift`: its threshold moved by the set's `pair_mean` minus the mean of the `val_*`
    sets' (the domain's unlabelled audio, here the set's own files: the best case for it)."""
    out = {}
    for alpha in (*ALPHAS, "as_norm"):
        row = {}
        for name, trials in sets.items():
            scores = scorer(trials, alpha)
            eer, eer_threshold = compute_eer(scores, trials.label)
            row[name] = {"eer": eer, "eer_threshold": eer_threshold,
                         "band": balanced_threshold_band(scores, trials.label, BALANCED_GAP),
                         "target_mean": float(scores[trials.label == 1].mean()),
                         "nontarget_mean": float(scores[trials.label == 0].mean())}
            if alpha == 0.0 and calibration is not None:
                miss, false_alarm = decision_error_rates(apply_calibration(scores, *calibration), trials.label, 0.5)
                row[name].update(threshold=score_threshold(*calibration), miss=100 * miss, false_alarm=100 * false_alarm)
        variant = "as_norm" if alpha == "as_norm" else f"alpha_{alpha}"
        out[variant] = {"sets": row, **common_band({name: cell["band"] for name, cell in row.items()})}
    reference = [name for name in sets if name.startswith("val_")]
    if calibration is not None and reference:
        means = {name: scorer.pair_mean(trials) for name, trials in sets.items()}
        shift = {name: mean - float(np.mean([means[r] for r in reference])) for name, mean in means.items()}
        threshold = score_threshold(*calibration)
        out["unlabelled_shift"] = {"reference_sets": reference, "sets": {}}
        for name, trials in sets.items():
            scores = scorer(trials)
            miss, false_alarm = decision_error_rates(scores - shift[name] - threshold, trials.label, 0.5)
            out["unlabelled_shift"]["sets"][name] = {"pair_mean": means[name], "threshold": threshold + shift[name],
                                                     "miss": 100 * miss, "false_alarm": 100 * false_alarm}
    return out


def speaker_sampling(files: FileTable, data: Path, corpora=("ased", "ravdess", "emodb", "librispeech"),
                     sizes=SAMPLE_SPEAKERS, draws=DRAWS, seed=0) -> dict:
    """Per corpus: the population's equal-error threshold over all within-corpus pairs, and for k
    speakers drawn at random: P(|miss - FA| <= 10 points at that threshold), the spread of the
    draws' own equal-error thresholds."""
    rng = np.random.default_rng(seed)
    out = {}
    for corpus in corpora:
        frame = metadata(data, corpus)
        embeddings = files.get(list(frame.path))[0]
        speakers = np.asarray(frame.speaker, dtype=object)
        first, second = np.triu_indices(len(frame), 1)
        scores = np.einsum("nd,nd->n", embeddings[first], embeddings[second])
        labels = (speakers[first] == speakers[second]).astype(int)
        eer, threshold = compute_eer(scores, labels)
        row = {"speakers": int(len(set(speakers))), "pairs": int(len(scores)), "eer": eer,
               "threshold": float(threshold)}
        for k in sizes:
            if k >= row["speakers"]:
                continue
            within, thresholds = 0, []
            for _ in range(draws):
                chosen = np.isin(speakers, rng.choice(sorted(set(speakers)), k, replace=False))
                keep = chosen[first] & chosen[second]
                band = balanced_threshold_band(scores[keep], labels[keep], BALANCED_GAP)
                within += band is not None and band[0] < threshold <= band[1]
                thresholds.append(compute_eer(scores[keep], labels[keep])[1])
            row[f"{k}_speakers"] = {"p_within_bar": within / draws, "threshold_sd": float(np.std(thresholds))}
        out[corpus] = row
    return out


SET_NAMES = {"emodb": "EmoDB", "ravdess": "RAVDESS", "neutral": "neutral", "val_ased": "val ASED",
             "val_ravdess": "val RAVDESS"}
FRONT_ENDS = {"plain": "plain", "vad": "VAD trim"}


def band_cell(cell) -> str:
    return "none" if cell["band"] is None else f"{cell['band'][0]:.3f}–{cell['band'][1]:.3f}".replace("-", "−")


def best_alpha(rows: dict) -> str:
    """The imposter-mean variant (alpha != 0) whose corpora lie closest together (smallest gap in band widths)."""
    candidates = [v for v in rows if v.startswith("alpha_") and v != "alpha_0.0" and rows[v]["gap_in_widths"] is not None]
    return min(candidates, key=lambda v: rows[v]["gap_in_widths"])


def score_label(variant: str, best: str) -> str:
    if variant == "alpha_0.0":
        return "cosine"
    if variant == "as_norm":
        return "AS-norm"
    alpha = float(variant.split("_", 1)[1])
    return (f"cosine {'−' if alpha > 0 else '+'} {abs(alpha):g} · imposter mean"
            + (" (the α closest to one threshold)" if variant == best else ""))


def verdict(row) -> str:
    if row["feasible"]:
        return f"{row['low']:.3f}–{row['high']:.3f}"
    if row["gap"] is None:
        return "none: " + ", ".join(SET_NAMES.get(n, n) for n in row["apart"]) + " keep no threshold"
    return (f"{SET_NAMES.get(row['apart'][0], row['apart'][0])} / {SET_NAMES.get(row['apart'][1], row['apart'][1])}: "
            f"{row['gap']:.3f} ({row['gap_in_widths']:.1f})")


def table_rows(label: str, results: dict, variants=("alpha_0.0", "best", "as_norm"), front_ends=("plain", "vad")) -> list:
    """Markdown rows `| label, front end, score | band per set ... | furthest apart: gap (widths) |`."""
    rows = []
    for front_end in front_ends:
        found = results["front_ends"].get(front_end)
        if found is None:
            continue
        best = best_alpha(found)
        for variant in variants:
            variant = best if variant == "best" else variant
            row = found[variant]
            cells = " | ".join(band_cell(row["sets"][n]) for n in row["sets"])
            rows.append(f"| {label}, {FRONT_ENDS[front_end]}, {score_label(variant, best)} | {cells} | {verdict(row)} |")
    return rows


def table_header(results: dict) -> list:
    names = list(next(iter(next(iter(results["front_ends"].values())).values()))["sets"])
    return ["| model, front end, score | " + " | ".join(SET_NAMES.get(n, n) for n in names)
            + " | furthest apart: gap (in band widths) |", "|---|" + "---:|" * len(names) + "---|"]


def print_tables(results: dict, label: str = "model"):
    print("\n".join(table_header(results) + table_rows(label, results)))
    for front_end, rows in results["front_ends"].items():
        own = rows["alpha_0.0"]["sets"]
        if "miss" in next(iter(own.values())):
            print(f"{front_end}: the model's own decision (miss / FA %): "
                  + ", ".join(f"{n} {c['miss']:.1f} / {c['false_alarm']:.1f}" for n, c in own.items()))
        if "unlabelled_shift" in rows:
            print(f"{front_end}: its threshold shifted by each set's unlabelled pair mean (miss / FA %): "
                  + ", ".join(f"{n} {c['miss']:.1f} / {c['false_alarm']:.1f}"
                              for n, c in rows["unlabelled_shift"]["sets"].items()))
    for corpus, row in results.get("speaker_sampling", {}).items():
        draws = ", ".join(f"{k.split('_')[0]} speakers: P(within) {v['p_within_bar']:.2f}, threshold sd "
                          f"{v['threshold_sd']:.3f}" for k, v in row.items() if k.endswith("_speakers"))
        print(f"{corpus}: {row['speakers']} speakers, EER {row['eer']:.2f}, threshold {row['threshold']:.3f}; {draws}")


def readme_table(named: dict) -> str:
    """{label: (results JSON path, front ends)} -> the table of docs/decisions.md, every row from the JSON."""
    loaded = {label: (json.loads(Path(path).read_text()), front_ends) for label, (path, front_ends) in named.items()}
    lines = table_header(next(iter(loaded.values()))[0])
    for label, (results, front_ends) in loaded.items():
        lines += table_rows(label, results, front_ends=front_ends)
    return "\n".join(lines) + "\n"


README_TABLE = {"fine-tune": ("results/decisions/eisv-ge2e/decision_feasibility.json", ("plain", "vad")),
                "start": ("results/decisions/decision_feasibility.json", ("plain", "vad"))}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--model", default="models/eisv-ge2e")
    parser.add_argument("--out", default="results/decisions/eisv-ge2e")
    parser.add_argument("--calibration_trials", default=None,
                        help="labelled trials over speakers the model never trained on (paths under --data): "
                             "one proxy set per corpus")
    parser.add_argument("--cohort", default="results/decisions/eisv-ge2e/asnorm_cohort.csv",
                        help="CSV with a `path` column (under --data): the cohort of the imposter mean / AS-norm")
    parser.add_argument("--trim", action="store_true", help="also with voice-activity trimming")
    parser.add_argument("--sampling", action="store_true", help="add the speaker-sampling check")
    parser.add_argument("--cache_dir", default="outputs/decision_feasibility")
    parser.add_argument("--readme_table", action="store_true",
                        help="print only the table of docs/decisions.md, from the committed JSON (README_TABLE)")
    args = parser.parse_args(argv)
    if args.readme_table:
        print(readme_table(README_TABLE), end="")
        return
    data, out = Path(args.data), Path(args.out)
    model, feature_extractor = load_model(args.model, "cpu")
    native_trim = bool(feature_extractor.trim_long_silences)  # the front end the folder's calibration is for
    identity = model_identity(model, feature_extractor)
    config = model.config
    calibration = ((config.calibration_scale, config.calibration_offset)
                   if getattr(config, "calibration_scale", None) is not None else None)
    if calibration is not None and getattr(config, "calibration_scores", "cosine") != "cosine":
        raise SystemExit(f"decision_feasibility: {args.model} is calibrated on {config.calibration_scores} scores; "
                         f"this check reads cosine decisions")
    del model
    sets = proxy_sets(data, args.calibration_trials)
    cohort = list(pd.read_csv(args.cohort).path)
    tag = Path(args.model).name
    results = {"protocol": {"max_gap": BALANCED_GAP, "alphas": list(ALPHAS), "top_n": TOP_N, "cohort": args.cohort,
                            "calibration_trials": args.calibration_trials, "model": args.model,
                            "own_calibration": calibration},
               "front_ends": {}}
    for trim in (False, True) if args.trim else (False,):
        files = FileTable(data, args.model, Path(args.cache_dir) / f"{tag}-{'vad' if trim else 'plain'}.npz",
                          trim_long_silences=trim, identity=identity)
        own = calibration if trim == native_trim else None  # the folder's calibration is for its own front end
        results["front_ends"]["vad" if trim else "plain"] = feasibility(Scorer(files, cohort), sets, own)
        if args.sampling and not trim:
            results["speaker_sampling"] = speaker_sampling(files, data)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "decision_feasibility.json", json.dumps(results, indent=2) + "\n")
    print_tables(results, Path(args.model).name)


if __name__ == "__main__":
    main()
