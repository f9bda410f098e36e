"""Render the ablation JSON (experiments/ablation.py) as Markdown tables.

    python -m experiments.render_ablation --output results/ablation [--readme docs/results.md]

Writes OUTPUT/table.md: per encoder, EER (%) and minDCF(0.01) on the evaluation trials, mean ± std
over seeds, overall and per target condition, the relative EER change against row 1, a verdict per
component (its row against the row before, judged against the seed spread), and the sweep on
the validation speakers. With --readme (the page that shows them: docs/results.md), the text between
`<!-- ablation:start -->` and `<!-- ablation:end -->` in that file is replaced by the same tables.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from eisv_io.atomic_files import write_text_atomic

CONDITIONS = (("same_emotion", "same emo."), ("neutral_vs_emotional", "neutral vs emo."),
              ("emotional_vs_emotional", "emo. vs emo."))
CORPORA = (("ravdess", "RAVDESS"), ("emodb", "EmoDB"))
ENCODER_TITLES = {"ge2e": "GE2E (resemblyzer weights, fine-tuned)", "ecapa": "ECAPA-TDNN C=512 (from scratch)"}
START, END = "<!-- ablation:start -->", "<!-- ablation:end -->"


def load(output: Path):
    runs = [json.loads(path.read_text()) for path in sorted((output / "json").glob("*.json"))]
    chosen = json.loads((output / "chosen.json").read_text()) if (output / "chosen.json").exists() else {}
    return runs, chosen


def mean_std(values):
    values = np.asarray([v for v in values if v is not None], dtype=float)
    if values.size == 0:
        return None, None
    return float(values.mean()), float(values.std(ddof=1)) if values.size > 1 else 0.0


def fmt(mean, std, digits=2):
    if mean is None:
        return "–"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def row_stats(runs):
    """-> {metric name: (mean, std)} over the seeds of one row, on the evaluation (test) trials."""
    tests = [run["test"] for run in runs]
    stats = {"eer": mean_std([t["overall"]["eer"] for t in tests]),
             "min_dcf": mean_std([t["overall"]["min_dcf_0.01"] for t in tests]),
             "validation_eer": mean_std([run["validation"]["best_eer"] for run in runs])}
    for condition, _ in CONDITIONS:
        stats[condition] = mean_std([t["by_condition"].get(condition, {}).get("eer") for t in tests])
    for corpus, _ in CORPORA:
        stats[f"corpus/{corpus}"] = mean_std([t.get("by_corpus", {}).get(corpus, {}).get("eer") for t in tests])
    stats["seeds"] = len(runs)
    return stats


def verdict(current, previous):
    """'helped' / 'hurt' when the mean EER moved by more than the larger seed std, else 'no clear effect'."""
    (mean, std), (prev_mean, prev_std) = current["eer"], previous["eer"]
    spread = max(std, prev_std)
    change = mean - prev_mean
    if abs(change) <= spread:
        return f"no clear effect ({change:+.2f} points, seed std ≤ {spread:.2f})"
    return f"{'helped' if change < 0 else 'hurt'} ({change:+.2f} points, seed std ≤ {spread:.2f})"


def encoder_tables(encoder, runs, chosen) -> list:
    rows = {}
    for run in runs:
        if run["encoder"] == encoder and run["stage"] == "table" and run.get("test"):
            rows.setdefault(run["row"], []).append(run)
    if not rows:
        return []
    stats = {row: row_stats(rows[row]) for row in sorted(rows)}
    names = {row: rows[row][0]["row_name"] for row in rows}
    base = stats.get(1, {}).get("eer", (None, None))[0]
    lines = [f"#### {ENCODER_TITLES.get(encoder, encoder)}", ""]
    if encoder in chosen:
        settings = ", ".join(f"{k} {v:g}" for k, v in chosen[encoder]["settings"].items())
        lines += [f"Settings chosen on the validation speakers: {settings}.", ""]
    header = (["row", "seeds", "EER (%)", "minDCF(0.01)", "rel. EER vs row 1"] + [t for _, t in CONDITIONS]
              + [t for _, t in CORPORA] + ["validation EER (%)"])
    lines += ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for row, s in stats.items():
        relative = "–" if base is None or row == 1 else f"{100 * (s['eer'][0] - base) / base:+.1f}%"
        cells = [f"{row}. {names[row]}", str(s["seeds"]), fmt(*s["eer"]), fmt(*s["min_dcf"], digits=3), relative]
        cells += [fmt(*s[c]) for c, _ in CONDITIONS] + [fmt(*s[f"corpus/{c}"]) for c, _ in CORPORA]
        cells += [fmt(*s["validation_eer"])]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    steps = [(2, 1, "CopyPaste"), (3, 2, "ERL loss"), (4, 3, "energy EM"), (4, 5, "energy vs random mask"),
             (4, 1, "full recipe")]
    found = [(a, b, what) for a, b, what in steps if a in stats and b in stats]
    if found:
        lines += ["Did each component help (test EER, row against row)?", ""]
        lines += [f"- {what} (row {a} vs {b}): {verdict(stats[a], stats[b])}" for a, b, what in found]
        lines.append("")
    lines += alternatives_table(encoder, runs, stats.get(1), rows.get(4, []))
    return lines


def alternatives_table(encoder, runs, baseline, full_recipe_runs) -> list:
    """The DESIGN.md knobs tried on top of the full recipe: validation and test EER over seeds."""
    groups = {}
    for run in runs:
        if run["encoder"] == encoder and run["stage"] == "alternative" and run.get("test"):
            groups.setdefault(run["id"].rsplit("-seed", 1)[0].split("-alt-", 1)[1], []).append(run)
    if not groups:
        return []
    lines = ["Other knobs of DESIGN.md, each on top of the full recipe (row 4):", "",
             "| variant | flags | seeds | validation EER (%) | EER (%) | rel. EER vs row 1 | RAVDESS | EmoDB |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    row4 = {run["seed"]: run["test"]["overall"]["eer"] for run in full_recipe_runs}
    for name, members in sorted(groups.items(), key=lambda item: row_stats(item[1])["validation_eer"][0]):
        s = row_stats(members)
        if all(row4.get(run["seed"]) == run["test"]["overall"]["eer"] for run in members):
            name += " (= row 4: the sweep chose these values already; same seeds, same result)"
        relative = "–" if baseline is None else f"{100 * (s['eer'][0] - baseline['eer'][0]) / baseline['eer'][0]:+.1f}%"
        lines.append(f"| {name} | `{members[0]['alternative']}` | {s['seeds']} | {fmt(*s['validation_eer'])} | "
                     f"{fmt(*s['eer'])} | {relative} | {fmt(*s['corpus/ravdess'])} | {fmt(*s['corpus/emodb'])} |")
    lines += ["", "(sorted by validation EER, the figure a choice may use)", ""]
    return lines


def diverged(run) -> bool:
    """Skipped non-finite steps, or a validation EER after the last epoch 5 points above the start."""
    curve = run["validation"]["eer_by_epoch"]
    return run["stats"].get("skipped_non_finite_steps", 0) > 0 or curve[-1] > curve[0] + 5


def stability_table(runs) -> list:
    groups = {}
    for run in runs:
        if run["stage"] == "stability":
            groups.setdefault((run["encoder"], run["settings"]["learning_rate"]), []).append(run)
    if not groups:
        return []
    lines = ["#### Stability of the GE2E fine-tune: full recipe, five seeds per learning rate", "",
             "| encoder | learning rate | seeds | diverged | validation EER (%) | EER (%) | EER of the runs that did not diverge |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for (encoder, rate), members in sorted(groups.items()):
        stable = [run for run in members if not diverged(run)]
        s = row_stats(members)
        kept = fmt(*row_stats(stable)["eer"]) if stable else "–"
        lines.append(f"| {encoder} | {rate:g} | {len(members)} | {len(members) - len(stable)} | "
                     f"{fmt(*s['validation_eer'])} | {fmt(*s['eer'])} | {kept} |")
    lines += ["", "Diverged: skipped non-finite steps, or validation EER after the last epoch 5 points above "
              "the pretrained encoder's.", ""]
    return lines


def multi_gpu_table(runs) -> list:
    reruns = [run for run in runs if run["stage"] == "multi_gpu"]
    if not reruns:
        return []
    lines = ["#### The same run on several GPUs (data parallel, per-GPU batch 32x4, LR x sqrt(N))", "",
             "| run | GPUs | learning rate | samples/s | EER (%) | validation EER (%) |", "|---|---:|---:|---:|---:|---:|"]
    by_id = {run["id"]: run for run in runs}
    for run in sorted(reruns, key=lambda r: r["stats"]["num_processes"]):
        original = by_id.get(run["id"].rsplit("-", 1)[0])
        for item in ([original] if original and run is reruns[0] else []) + [run]:
            lines.append(f"| {item['id']} | {item['stats']['num_processes']} | {item['settings']['learning_rate']:g} | "
                         f"{item['stats']['samples_per_s']:,.0f} | {item['test']['overall']['eer']:.2f} | "
                         f"{item['validation']['best_eer']:.2f} |")
    lines += ["", "The 1-GPU run shared its host with 15 other ablation runs, the re-runs had it to themselves: "
              "compare their samples/s with benchmarks/bench_training_scaling.py, not with each other.", ""]
    return lines


def sweep_table(runs, chosen) -> list:
    sweep = [run for run in runs if run["stage"] == "sweep"]
    if not sweep:
        return []
    lines = ["#### Sweep on the validation speakers (seed 0; the evaluation trials are not scored)", "",
             "| encoder | recipe | settings | validation EER (%) | minDCF(0.01) | best epoch |", "|---|---|---|---:|---:|---:|"]
    for run in sorted(sweep, key=lambda r: (r["encoder"], r["row"], r["id"])):
        settings = ", ".join(f"{k} {v:g}" for k, v in run["settings"].items())
        validation = run["validation"]
        lines.append(f"| {run['encoder']} | {run['row_name']} | {settings} | {validation['best_eer']:.2f} | "
                     f"{validation['results']['overall']['min_dcf_0.01']:.3f} | {validation['best_epoch']} |")
    lines.append("")
    return lines


def render(output: Path) -> str:
    runs, chosen = load(output)
    lines = []
    for encoder in ("ge2e", "ecapa"):
        lines += encoder_tables(encoder, runs, chosen)
    lines += stability_table(runs)
    lines += multi_gpu_table(runs)
    lines += sweep_table(runs, chosen)
    cards = sorted({run["stats"].get("device") for run in runs if run.get("stats", {}).get("device")})
    minutes = sum(run.get("stats", {}).get("wall_s", 0) for run in runs) / 60
    lines.append(f"Runs: {len(runs)} on {', '.join(cards) or 'unknown'}; {minutes:.1f} run-minutes in all "
                 "(runs went side by side). EER/minDCF of rows 1-5: dev_trials.csv, the model of the epoch with "
                 "the lowest validation EER; mean ± sample std over seeds.")
    return "\n".join(lines) + "\n"


def replace_between_markers(path: Path, text: str):
    content = path.read_text()
    if START not in content or END not in content:
        raise SystemExit(f"render_ablation: {path} has no {START} ... {END} markers")
    head, rest = content.split(START, 1)
    _, tail = rest.split(END, 1)
    write_text_atomic(path, f"{head}{START}\n{text}{END}{tail}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default="results/ablation", help="the folder experiments/ablation.py wrote")
    parser.add_argument("--readme", default=None,
                        help="also replace the marked section of this Markdown file (docs/results.md)")
    args = parser.parse_args(argv)
    output = Path(args.output)
    if not (output / "json").is_dir():
        raise SystemExit(f"render_ablation: {output / 'json'} does not exist; run python -m experiments.ablation first")
    text = render(output)
    write_text_atomic(output / "table.md", text)
    if args.readme:
        replace_between_markers(Path(args.readme), text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
