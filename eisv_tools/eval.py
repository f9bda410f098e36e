"""`eisv-eval`: EER and minDCF of a model on a trial list, with a DET curve and score histograms.

Usage:
    eisv-eval --model DIR_OR_ID --trials CSV --root DIR [--output-dir OUT] [--overwrite] [--cohort FILE]
              [--cohort-top-n 300] [--cohort-any-model] [--max-trials N] [--seed 0] [--device auto]
              [--backend torch|onnxruntime]
              [--batch-size 16] [--max-batch-s 80] [--window-s 10] [--hop-s 5] [--min-speech-s 0.3]
              [--adapt-on LIST [--adapt-root DIR] [--adapt-whiten]] [--nap-on CSV [--nap-dims 10]]
              [--json] [--no-progress]

Writes OUT (default `eval_<model folder name>`) as a whole: `results.json` (see
`eisv_evaluation.evaluation.evaluate_trials` for its keys), `results.md`, `scores.csv`, `det.png`,
`score_histograms.png` are written into a staging folder next to OUT, which then replaces OUT, so
OUT never mixes the files of two runs. An existing OUT must be empty or a previous eisv-eval
output (nothing but those files); anything else is refused unless --overwrite, which replaces
it. `--cohort` must have been embedded (eisv-embed, .safetensors) by the same model, unless
--cohort-any-model. Multi-word flags also take underscores (`--output_dir`).
`--adapt-on LIST` fits the embedding transform for this evaluation only, as `eisv-adapt` does
(centring on the mean of LIST's unlabeled audio, `--adapt-whiten` adds a whitening; `--nap-on CSV`
an emotion NAP from labelled audio) and reports how many adaptation files are trial files: an
honest number needs adaptation audio disjoint from the trials.
If the model is calibrated, results add Cllr and the actual DCF beside min Cllr and minDCF, and
`results.md` and stderr name the corpora on which its decision at p 0.5 leaves miss and false
alarms more than 10 points apart (`eisv_evaluation.report.decision_note`).
`--backend onnxruntime` embeds on the CPU through the exported graph (as eisv-embed; not with
--adapt-on / --nap-on, which change the PyTorch model); results.json says which backend ran.
Exit codes: 0 done, 1 bad input (message names the file or CSV line), 2 bad command line.
"""

import argparse
import json
import sys
from pathlib import Path

from eisv_evaluation.evaluation import RESULTS_FORMAT, evaluate_trials
from eisv_evaluation.loading import load_for_backend
from eisv_evaluation.report import OUTPUT_FILES, decision_note, markdown_table, public_results, write_results
from eisv_io.atomic_files import check_replaceable_folder
from eisv_io.errors import ToolError
from eisv_io.staged_folders import staged_folder

from .cli_options import add_embedding_options, add_flag, positive_int


def is_eval_output(folder: Path) -> bool:
    """A previous eisv-eval output: its results.json says so and it holds nothing but eisv-eval's files."""
    try:
        results = json.loads((folder / "results.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    own = isinstance(results, dict) and results.get("format") == RESULTS_FORMAT
    return own and all(entry.name in OUTPUT_FILES and entry.is_file() for entry in folder.iterdir())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="eisv-eval", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="model folder or Hub id")
    parser.add_argument("--trials", required=True, help="CSV with corpus, enroll, test, label, condition")
    parser.add_argument("--root", required=True, help="folder the enroll/test paths are relative to")
    add_flag(parser, "--output-dir", help="where results go (default: eval_<model name>); replaced as a whole")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace --output-dir even if it holds other files than a previous eisv-eval output")
    parser.add_argument("--cohort", help="eisv-embed output (.safetensors/.npy) to AS-normalise against")
    add_flag(parser, "--cohort-top-n", type=positive_int, default=300, help="AS-norm: top cohort scores used")
    add_flag(parser, "--cohort-any-model", action="store_true",
             help="use a --cohort embedded by another model (or one that records none, e.g. .npy)")
    add_flag(parser, "--adapt-on", help="audio list/folder of the deployment domain (unlabeled): centre on its mean")
    add_flag(parser, "--adapt-root", help="folder the --adapt-on / --nap-on paths are relative to (default: the list's)")
    add_flag(parser, "--adapt-whiten", action="store_true", help="with --adapt-on: also whiten")
    add_flag(parser, "--nap-on", help="CSV of audio with speaker and emotion columns: emotion NAP")
    add_flag(parser, "--nap-dims", type=positive_int, default=10, help="emotion directions removed by --nap-on")
    add_flag(parser, "--max-trials", type=int, help="score a seeded random subset of N trials")
    parser.add_argument("--seed", type=int, default=0, help="seed of the --max-trials subset")
    add_embedding_options(parser)
    parser.add_argument("--json", action="store_true", help="print results.json to stdout instead of a table")
    add_flag(parser, "--no-progress", action="store_true", help="no progress bar")
    return parser


def adapt_for_evaluation(args, model, feature_extractor) -> dict:
    """Fit and install the embedding transform of --adapt-on / --nap-on -> what the report says of it."""
    from eisv_evaluation.adaptation import (AudioList, fit_transform, install_transform, overlap_with_trials,
                                            read_audio_list)
    from eisv_evaluation.trials import read_trials

    trials = read_trials(args.trials)
    unlabeled = read_audio_list(args.adapt_on, args.adapt_root) if args.adapt_on else None
    nap = read_audio_list(args.nap_on, args.adapt_root) if args.nap_on else None
    mean, matrix, info = fit_transform(model, feature_extractor, unlabeled, args.adapt_whiten, nap, args.nap_dims,
                                       progress=not args.no_progress, window_s=args.window_s, hop_s=args.hop_s,
                                       min_speech_s=args.min_speech_s, batch_size=args.batch_size)
    install_transform(model, mean, matrix, info)
    report = {"kind": info["kind"], "source": args.adapt_on or args.nap_on, "files": 0, "speakers": None}
    if unlabeled is not None:
        report.update(files=len(unlabeled.paths), speakers=info["adaptation"]["speakers"])
    used = [audio for audio in (unlabeled, nap) if audio is not None]
    report["overlap"] = overlap_with_trials(AudioList([p for a in used for p in a.paths]), trials, args.root)
    report["info"] = info
    return report


def run(args) -> dict:
    from eisv_evaluation.plots import plot_det, plot_histograms

    for path, what in ((args.trials, "trial file"), (args.root, "root folder")):
        if not Path(path).exists():
            raise ToolError(f"{path}: no such {what}")
    if args.cohort and not Path(args.cohort).is_file():
        raise ToolError(f"{args.cohort}: no such cohort file")
    output_dir = Path(args.output_dir or f"eval_{Path(str(args.model).rstrip('/')).name}")
    check_replaceable_folder(output_dir, is_eval_output, "an eisv-eval output", args.overwrite)  # before any work
    if args.backend != "torch" and (args.adapt_on or args.nap_on):
        raise ToolError("--adapt-on / --nap-on fit a transform into the PyTorch model; evaluate with --backend torch, "
                        "or write the adapted folder with eisv-adapt and evaluate that with --backend onnxruntime")
    model, feature_extractor, _, identity = load_for_backend(args.model, args.device, args.backend)
    adaptation = adapt_for_evaluation(args, model, feature_extractor) if (args.adapt_on or args.nap_on) else None
    results = evaluate_trials(model, feature_extractor, args.trials, args.root, batch_size=args.batch_size,
                              cohort=args.cohort, cohort_top_n=args.cohort_top_n, max_trials=args.max_trials,
                              seed=args.seed, window_s=args.window_s, hop_s=args.hop_s, max_batch_s=args.max_batch_s,
                              progress=not args.no_progress, return_scores=True, min_speech_s=args.min_speech_s,
                              cohort_any_model=args.cohort_any_model, identity=identity)
    results = {"model": str(args.model), "backend": args.backend, "trials_file": str(args.trials),
               "root": str(args.root), **results,
               "adaptation": adaptation}
    primary = results["scores"][results["scoring"]]
    with staged_folder(output_dir) as staging:  # OUT is replaced as a whole, once everything is written
        write_results(staging, results)
        plot_det(primary, results["trials"], staging / "det.png", title=f"DET ({results['scoring']} scores)")
        plot_histograms(primary, results["trials"], staging / "score_histograms.png",
                        title=f"{results['scoring']} scores per condition")
    results["output_dir"] = str(output_dir)
    return results


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        results = run(args)
    except ToolError as error:
        print(f"eisv-eval: error: {error}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(public_results(results), indent=2))
    else:
        for scoring, groups in results["metrics"].items():
            print(f"\n{scoring} scores ({results['num_trials']} trials, {results['num_files']} files)")
            print(markdown_table(groups))
    note = decision_note(results)
    if note:
        print(f"eisv-eval: note: {note}", file=sys.stderr)
    print(f"eisv-eval: wrote results.json, results.md, scores.csv, det.png, score_histograms.png to "
          f"{results['output_dir']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
