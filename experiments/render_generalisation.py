"""Render the tables of `experiments.generalisation` (results/generalisation/json) as Markdown.

    python -m experiments.render_generalisation --output results/generalisation --readme docs/results.md

Protections run again (OUTPUT/repeats/json) get a line of their own under their first runs. Writes
OUTPUT/table.md and, with --readme, replaces the text of that Markdown file (docs/results.md, which shows
the tables) between `<!-- generalisation:start -->` and `<!-- generalisation:end -->`. Every number comes
from the JSON files; mean ± sample std over seeds.
"""

import argparse
import json
import statistics
import sys
from collections import Counter
from pathlib import Path

from eisv_io.atomic_files import write_text_atomic
from experiments.generalisation import PROTECTIONS

START, END = "<!-- generalisation:start -->", "<!-- generalisation:end -->"
ROW_NAMES = {1: "1. baseline (AAM only)", 2: "2. + CopyPaste", 3: "3. + ERL", 4: "4. + EM (full recipe)",
             5: "5. full, random mask"}


def spread(values, digits=2):
    values = [v for v in values if v is not None]
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def metrics(run):
    test = run["test"] or {}
    neutral = run["validation"]["results"].get("neutral_trials", {}).get("overall", {}).get("eer")
    return {"all": test.get("overall", {}).get("eer"), "min_dcf": test.get("overall", {}).get("min_dcf_0.01"),
            "n_vs_e": test.get("by_condition", {}).get("neutral_vs_emotional", {}).get("eer"), "ravdess": test.get("by_corpus", {}).get("ravdess", {}).get("eer"),
            "emodb": test.get("by_corpus", {}).get("emodb", {}).get("eer"), "neutral": neutral,
            "score": run["validation"]["best_eer"], "fine_tuned": run["validation"]["selected"] != "start",
            "skipped": len(run["non_finite"]),
            "runaway": max(run["validation"]["score_by_candidate"].values()) > 1.0}


def device_name(run) -> str:
    device = run["stats"]["device"]
    return "CPU" if device == "cpu" else device


def line(name, flags, runs):
    m = [metrics(r) for r in runs]
    chosen = sum(x["fine_tuned"] for x in m)
    return (f"| {name} | {flags} | {len(runs)} | {chosen} of {len(runs)} | {spread([x['score'] for x in m], 3)} | "
            f"{spread([x['all'] for x in m])} | {spread([x['min_dcf'] for x in m], 3)} | {spread([x['ravdess'] for x in m])} "
            f"| {spread([x['emodb'] for x in m])} | {spread([x['n_vs_e'] for x in m])} | {spread([x['neutral'] for x in m])} "
            f"| {sum(x['runaway'] for x in m)} |")


def start_line(name, test, neutral_eer) -> str:
    """The starting model's row: its dev `test` results and its neutral check EER."""
    return (f"| {name} | — | — | — | 0 | {test['overall']['eer']:.2f} | {test['overall']['min_dcf_0.01']:.3f} | "
            f"{test['by_corpus']['ravdess']['eer']:.2f} | {test['by_corpus']['emodb']['eer']:.2f} | "
            f"{test['by_condition']['neutral_vs_emotional']['eer']:.2f} | {neutral_eer:.2f} | — |")


HEADER = ("| {what} | flags | seeds | fine-tune selected | selection score | dev EER ALL | dev minDCF(0.01) | RAVDESS | "
          "EmoDB | neutral vs emotional | neutral check | runaways |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")


def render(output: Path) -> str:
    runs = {p.stem: json.loads(p.read_text()) for p in sorted((output / "json").glob("*.json"))}
    start = runs.pop("ge2e-start")
    base = start_line("pretrained GE2E (the start)", start["test"], start["neutral"]["overall"]["eer"])
    chosen = json.loads((output / "chosen.json").read_text())["protection"]
    parts = ["#### Protections against forgetting (full recipe + each protection; GE2E, seeds 0-2)", "",
             HEADER.format(what="protection"), base]
    for name, flags in PROTECTIONS.items():
        found = [r for k, r in runs.items() if k.startswith(f"ge2e-protect-{name}-seed")]
        if len(found) == 3:
            parts.append(line(name + (" (chosen)" if name == chosen else ""), f"`{' '.join(flags)}`" if flags else "",
                              found))
        again = [json.loads(p.read_text()) for p in sorted((output / "repeats" / "json").glob(f"ge2e-protect-{name}-seed*.json"))]
        if again:
            where = ", ".join(sorted({device_name(r) for r in again}))
            parts.append(line(f"{name}, run again ({where})", "", again))
    # The rows with every protection they were run with (the chosen one first): each was chosen in its round.
    with_rows = sorted((name for name in PROTECTIONS if any(k.startswith(f"ge2e-{name}-row") for k in runs)),
                       key=lambda name: (name != chosen, -list(PROTECTIONS).index(name)))  # then the latest first
    for protection in with_rows:
        label = "the chosen protection" if protection == chosen else "an earlier round's choice"
        if chosen.startswith(protection + "-"):
            label += f", which {chosen} extends"
        parts += ["", f"#### The paper's rows with {label} ({protection})", "", HEADER.format(what="row"), base]
        for row, title in ROW_NAMES.items():
            prefix = f"ge2e-protect-{protection}-seed" if row == 4 else f"ge2e-{protection}-row{row}-seed"
            found = [r for k, r in runs.items() if k.startswith(prefix)]
            if row == 1 and "--aam_weight" in PROTECTIONS[protection]:
                title = ("1. baseline (no AAM here: the teacher anchor and its margin loss alone)"
                         if "--kd_contrast_weight" in PROTECTIONS[protection]
                         else "1. baseline (no AAM here: the teacher anchor alone)")
            if found:
                parts.append(line(title, "", found))
    parts += ["", "#### GE2E numerics: the old runs that skipped non-finite steps, again in bf16 and in float32", "",
              "| run | precision | skipped non-finite steps | parameters with non-finite gradients | "
              "validation EER of the selected epoch |", "|---|---|---:|---|---:|"]
    for key, run in sorted(runs.items()):
        if "fragility" in key:
            names = sorted({n for event in run["non_finite"] for n in event["parameters"]})
            parts.append(f"| row {run['row']} seed {run['seed']} | {'bf16' if key.endswith('bf16') else 'float32'} | "
                         f"{len(run['non_finite'])} | {', '.join(f'`{n}`' for n in names) or '—'} | "
                         f"{run['validation']['results']['validation_speakers']['overall']['eer']:.2f} |")
    devices = Counter(device_name(r) for r in runs.values() if r.get("stats"))
    where = ", ".join(f"{count} on {device}" for device, count in devices.most_common())
    repeated = len(list((output / "repeats" / "json").glob("*.json")))
    parts += ["", f"{len(runs)} runs ({where})" + (f" and {repeated} run again" if repeated else "") + ". "
              "Selection score: mean relative EER change against the start over "
              "the validation speakers' trials and neutral_trials.csv (start = 0, lower is better; the choice "
              "takes the mean over seeds of each seed's runs, repeats included); the model "
              "tested on dev_trials.csv is the run's selected candidate (the start when no epoch beat it). "
              "Neutral: neutral_trials.csv EER of the selected candidate. Runaways: runs with a candidate scoring "
              "above +1 (e.g. validation EER +40% and neutral EER from 0.22% to 2%)."]
    return "\n".join(parts) + "\n"


def front_end_table(groups: dict) -> str:
    """{label: [run folders]} -> one table: per label the start as those runs measured it (their front
    end: e.g. voice-activity trimmed), then the protect runs of the folders' `json/` together."""
    parts = [HEADER.format(what="runs")]
    for label, folders in groups.items():
        runs = [json.loads(p.read_text()) for folder in folders
                for p in sorted((Path(folder) / "json").glob("ge2e-protect-*-seed*.json"))]
        if not runs:
            raise SystemExit(f"render_generalisation: no protect runs in {', '.join(map(str, folders))}")
        parts.append(start_line(f"{label}: the start", runs[0]["start_test"],
                                runs[0]["validation"]["start"]["neutral_trials"]["overall"]["eer"]))
        protections = sorted({r["protection"] for r in runs})
        where = ", ".join(sorted({device_name(r) for r in runs}))
        parts.append(line(f"{label}: {', '.join(protections)} ({where})", "", runs))
    return "\n".join(parts) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default="results/generalisation")
    parser.add_argument("--readme", default=None,
                        help="also replace the marked section of this Markdown file (docs/results.md)")
    parser.add_argument("--front_ends", nargs="+", default=None, metavar="LABEL=FOLDER[,FOLDER]",
                        help="print only a table of these folders' protect runs, each label under its own start "
                             "(e.g. runs with --extra --trim_long_silences True beside runs without)")
    args = parser.parse_args(argv)
    if args.front_ends:
        groups = {}
        for spec in args.front_ends:
            label, sep, folders = spec.partition("=")
            if not sep or not folders:
                raise SystemExit(f"render_generalisation: --front_ends {spec!r}: expected LABEL=FOLDER[,FOLDER]")
            groups[label] = folders.split(",")
        print(front_end_table(groups))
        return 0
    output = Path(args.output)
    text = render(output)
    write_text_atomic(output / "table.md", text)
    if args.readme:
        readme = Path(args.readme).read_text()
        if START not in readme or END not in readme:
            raise SystemExit(f"render_generalisation: {args.readme} has no {START} ... {END} markers")
        head, rest = readme.split(START, 1)
        write_text_atomic(args.readme, head + START + "\n" + text + rest[rest.index(END):])
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
