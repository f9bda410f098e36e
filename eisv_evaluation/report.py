"""Writing evaluation results: `results.json`, `results.md`, `scores.csv` (all atomic).

`scores.csv` columns: `corpus, enroll, test, label, condition, score` (the primary score) plus
`cosine` and, with a cohort, `as_norm`.
"""

import csv
import io
import json

from eisv_io.atomic_files import write_text_atomic

from .scoring import BALANCED_GAP

# Every file eisv-eval writes into its output folder.
OUTPUT_FILES = ("results.json", "results.md", "scores.csv", "det.png", "score_histograms.png")

METRIC_COLUMNS = (("num_targets", "targets", "{}"), ("num_nontargets", "non-targets", "{}"), ("eer", "EER %", "{:.2f}"),
                  ("min_dcf_0.01", "minDCF 0.01", "{:.4f}"), ("min_dcf_0.05", "minDCF 0.05", "{:.4f}"),
                  ("eer_threshold", "threshold at EER", "{:.4f}"), ("min_cllr", "min Cllr", "{:.3f}"),
                  ("cllr", "Cllr", "{:.3f}"), ("actual_dcf_0.01", "actDCF 0.01", "{:.4f}"),
                  ("miss_at_p0.5", "miss % at p 0.5", "{:.1f}"), ("false_alarm_at_p0.5", "FA % at p 0.5", "{:.1f}"))


UNBALANCED_POINTS = 100 * BALANCED_GAP  # a corpus whose calibrated decision leaves miss and FA further apart is named


def unbalanced_corpora(groups: dict, max_points: float = UNBALANCED_POINTS) -> list:
    """-> [(corpus, miss %, FA %)]: the corpora whose calibrated decision at p 0.5 leaves miss and
    false alarms more than `max_points` apart (none without a calibration)."""
    out = []
    for name, metrics in groups["by_corpus"].items():
        miss, false_alarm = metrics.get("miss_at_p0.5"), metrics.get("false_alarm_at_p0.5")
        if miss is not None and false_alarm is not None and abs(miss - false_alarm) > max_points:
            out.append((name, miss, false_alarm))
    return out


def decision_note(results: dict):
    """One sentence naming the corpora on which the model's calibrated decision is unbalanced, or None.
    The decision is read on the scores the calibration is for (cosine when AS-norm is the primary score)."""
    calibration = results.get("calibration")
    groups = results["metrics"].get(calibration["scores"]) if calibration else None
    if groups is None:
        return None
    corpora = unbalanced_corpora(groups)
    if not corpora:
        return None
    listed = ", ".join(f"{name} (miss {miss:.1f}%, false alarms {false_alarm:.1f}%)" for name, miss, false_alarm in corpora)
    return (f"the calibrated decision at p 0.5 leaves miss and false alarms more than {UNBALANCED_POINTS:.0f} points "
            f"apart on {listed}: the calibration does not hold on that audio; fit one on labelled trials of it "
            f"(eisv-calibrate) before relying on the decisions")


def public_results(results: dict) -> dict:
    """The JSON-serialisable part of `evaluate_trials` output (drops arrays)."""
    return {key: value for key, value in results.items() if key not in ("trials", "scores")}


def results_rows(groups: dict):
    """-> [(row name, metrics)] in reading order: all, corpora, conditions."""
    rows = [("all", groups["overall"])]
    rows += [(f"corpus {name}", metrics) for name, metrics in groups["by_corpus"].items()]
    rows += [(f"condition {name}", metrics) for name, metrics in groups["by_condition"].items()]
    return rows


def markdown_table(groups: dict) -> str:
    lines = ["| group | " + " | ".join(title for _, title, _ in METRIC_COLUMNS) + " |",
             "|---|" + "---:|" * len(METRIC_COLUMNS)]
    for name, metrics in results_rows(groups):
        cells = ["n/a" if metrics.get(key) is None else fmt.format(metrics[key]) for key, _, fmt in METRIC_COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown_report(results: dict, title="Speaker verification results") -> str:
    parts = [f"# {title}", ""]
    for key in ("model", "trials_file", "root"):
        if results.get(key):
            parts.append(f"- {key.replace('_', ' ')}: `{results[key]}`")
    parts.append(f"- trials: {results['num_trials']} over {results['num_files']} files"
                 + (f" (random subset, seed {results['seed']})" if results.get("max_trials") else ""))
    if results.get("as_norm"):
        norm = results["as_norm"]
        parts.append(f"- AS-norm: cohort `{norm['cohort']}` ({norm['cohort_size']} embeddings), top {norm['top_n']}")
    if results.get("calibration"):
        cal = results["calibration"]
        parts.append(f"- calibration (model config): llr = {cal['scale']:.4g} * {cal['scores']} score + "
                     f"{cal['offset']:.4g}; fitted on {cal.get('source') or 'unrecorded trials'}")
    if results.get("adaptation"):
        adapt = results["adaptation"]
        overlap = adapt["overlap"]
        parts.append(f"- adaptation ({adapt['kind']}) on `{adapt['source']}`: {adapt['files']} files, "
                     f"{adapt['speakers'] if adapt['speakers'] is not None else 'unknown'} speakers; "
                     f"{overlap['shared_files']} of them are trial files"
                     + (" (OVERLAPS the trials)" if overlap["overlaps"] else " (disjoint from the trials)"))
    parts.append("- target conditions: that condition's targets against all non-targets of the same corpora")
    for scoring, groups in results["metrics"].items():
        parts += ["", f"## {scoring} scores", "", markdown_table(groups)]
    note = decision_note(results)
    if note:
        parts += ["", "## Decisions", "", note[0].upper() + note[1:] + "."]
    return "\n".join(parts) + "\n"


def write_results(output_dir, results: dict):
    """Write results.json, results.md and (when scores are present) scores.csv into `output_dir`."""
    write_text_atomic(output_dir / "results.json", json.dumps(public_results(results), indent=2) + "\n")
    write_text_atomic(output_dir / "results.md", markdown_report(results))
    if "scores" in results:
        trials, scores = results["trials"], results["scores"]
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        names = list(scores)
        writer.writerow(["corpus", "enroll", "test", "label", "condition", "score", *names])
        primary = scores[results["scoring"]]
        for i in range(len(trials)):
            writer.writerow([trials.corpus[i], trials.enroll[i], trials.test[i], int(trials.label[i]),
                             trials.condition[i], f"{primary[i]:.6f}", *(f"{scores[n][i]:.6f}" for n in names)])
        write_text_atomic(output_dir / "scores.csv", text.getvalue())
