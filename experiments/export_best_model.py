"""Put into models/ only what generalises: the chosen fine-tune if it beats its start, else the start itself.

    python -m experiments.export_best_model --output results/generalisation --target models/eisv-ge2e

The candidate: among the runs of the protection that `experiments.generalisation` chose (its row 4, the
full recipe), the seed with the best selection score (validation speakers + neutral check; the dev trials
play no part). It ships only when, on the dev trials, it is at least as good as the pretrained GE2E on
ALL (EER and minDCF(0.01), the protocol's two metrics; minDCF was added on 2026-12-01, when a candidate
passed every other check by 0.01 points with a worse minDCF) and on EmoDB (the unseen language), at
least as good on the neutral check, and better on both emotional target conditions (neutral_vs_emotional,
emotional_vs_emotional). Otherwise the starting
encoder ships, converted from the resemblyzer wheel, and its card says why. Either way the card shows
the start's numbers beside the candidate's.
"""

import argparse
import json
import shutil
import sys
from pathlib import Path

from eisv_io.atomic_files import write_text_atomic
from eisv_io.staged_folders import apply_umask, make_staging_folder, replace_folder
from eisv_io.trial_schema import EMOTIONAL_TARGET_CONDITIONS
from eisv_training.export import saved_network
from model_cards import CardContext, Corpus, cosine_evaluation, write_model_card
from modeling_eisv import EISVFeatureExtractor, EISVForSpeakerVerification, EISVModel

START_DATA = [Corpus(name="LibriSpeech train-other-500, VoxCeleb 1 and 2 (resemblyzer's GE2E training data)",
                     license="Apache-2.0 (the resemblyzer package and its weights)", license_id="apache-2.0",
                     url="https://github.com/resemble-ai/Resemblyzer")]
START_CALIBRATION_TRIALS = "results/decisions/calibration_trials.csv"  # training speakers, which the start never saw


def pick_candidate(output: Path) -> dict:
    protection = json.loads((output / "chosen.json").read_text())["protection"]
    runs = [json.loads(p.read_text()) for p in sorted((output / "json").glob(f"ge2e-protect-{protection}-seed*.json"))]
    if not runs:
        raise SystemExit(f"export_best_model: no run of the chosen protection {protection!r} in {output / 'json'}")
    return min(runs, key=lambda run: run["validation"]["best_eer"])


def heldout_trials(run_trials: Path, root, target: Path) -> str:
    """The run's validation trials (speakers held out of its training; absolute paths) with paths relative to
    `root`, written to `target` (each export, from the run it ships) so that the calibration can be fitted
    again without the run folder."""
    import pandas as pd

    trials = pd.read_csv(run_trials)
    prefix = str(Path(root).resolve()) + "/"
    for column in ("enroll", "test"):
        trials[column] = trials[column].str.removeprefix(prefix)
    write_text_atomic(target, trials.to_csv(index=False))
    return str(target)


def checks(candidate: dict, start: dict) -> dict:
    """{check: passed} of the candidate against the start, on the dev trials and the neutral check."""
    test, base = candidate["test"], start["test"]
    out = {"dev ALL EER <= start": test["overall"]["eer"] <= base["overall"]["eer"],
           "dev ALL minDCF(0.01) <= start": test["overall"]["min_dcf_0.01"] <= base["overall"]["min_dcf_0.01"],
           "EmoDB EER <= start": test["by_corpus"]["emodb"]["eer"] <= base["by_corpus"]["emodb"]["eer"],
           "neutral check EER <= start": (candidate["validation"]["results"]["neutral_trials"]["overall"]["eer"]
                                          <= start["neutral"]["overall"]["eer"])}
    for condition in EMOTIONAL_TARGET_CONDITIONS:
        out[f"{condition} EER < start"] = test["by_condition"][condition]["eer"] < base["by_condition"][condition]["eer"]
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default="results/generalisation", help="what experiments.generalisation wrote")
    parser.add_argument("--model_dir", default=None, help="the candidate's model folder (default OUTPUT/runs/<id>/model)")
    parser.add_argument("--target", default="models/eisv-ge2e")
    parser.add_argument("--calibration_trials", default=None,
                        help="labelled trials (never a test list) to fit the score calibration on, as eisv-calibrate "
                             "does; 'none' to ship uncalibrated. Default: for the start, "
                             "results/decisions/calibration_trials.csv (training speakers, which the start never "
                             "saw); for a fine-tune, the validation speakers it was never trained on "
                             "(OUTPUT/heldout_calibration_trials.csv, written from its run's validation trials)")
    parser.add_argument("--calibration_root", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"),
                        help="folder the calibration trials' paths are relative to")
    args = parser.parse_args(argv)
    output, target = Path(args.output), Path(args.target)
    start = json.loads((output / "json" / "ge2e-start.json").read_text())
    candidate = pick_candidate(output)
    passed = checks(candidate, start)
    ships_candidate = all(passed.values()) and candidate["validation"]["selected"] != "start"
    verdict = "\n".join(f"- {name}: {'yes' if ok else 'no'}" for name, ok in passed.items())
    test_name = "dev_trials.csv (RAVDESS actors 19-24 + EmoDB, 17,448 trials; never trained on)"
    neutral_name = "neutral_trials.csv (10 LibriSpeech test-other speakers, 900 trials)"
    results = [cosine_evaluation(start["test"], f"{test_name}: the pretrained GE2E"),
               cosine_evaluation(start["neutral"], f"{neutral_name}: the pretrained GE2E")]
    candidate_results = [cosine_evaluation(candidate["test"], f"{test_name}: best fine-tune ({candidate['id']})"),
                         cosine_evaluation(candidate["validation"]["results"]["neutral_trials"],
                                     f"{neutral_name}: best fine-tune ({candidate['id']})")]
    staging = make_staging_folder(target)
    try:
        run_card = {}
        if ships_candidate:
            source = Path(args.model_dir or output / "runs" / candidate["id"] / "model")
            model = saved_network(EISVForSpeakerVerification.from_pretrained(source))
            extractor = EISVFeatureExtractor.from_pretrained(source)
            results = candidate_results + results
            # the run's own card context: its recipe, its training data with their sizes, its command
            run_card = json.loads((source / "card_context.json").read_text())
            repo, data = str(Path(__file__).resolve().parents[1]) + "/", str(Path(args.calibration_root).resolve())
            run_card["commands"] = [c.replace(data, "../shared/data").replace(repo, "")
                                    for c in run_card.get("commands", [])]
            default_calibration = heldout_trials(source.parent / "validation_trials.csv", args.calibration_root,
                                                 output / "heldout_calibration_trials.csv")
        else:
            from modeling_eisv.convert_resemblyzer import convert

            convert(staging / "converted")
            model = EISVModel.from_pretrained(staging / "converted")
            extractor = EISVFeatureExtractor.from_pretrained(staging / "converted")
            model.config.verification_threshold = float(start["test"]["overall"]["eer_threshold"])
            shutil.rmtree(staging / "converted")
            results = results + candidate_results
            default_calibration = START_CALIBRATION_TRIALS
        calibration_trials = args.calibration_trials or default_calibration
        if calibration_trials != "none":
            from eisv_evaluation.evaluation import calibrate_model

            fitted = calibrate_model(model.eval(), extractor, calibration_trials, args.calibration_root)
            print(f"export_best_model: calibration LLR = {fitted['scale']:.4f} * cosine + {fitted['offset']:.4f} "
                  f"({fitted['source']})")
        model.save_pretrained(staging)
        extractor.save_pretrained(staging)
        decision = ("This is the fine-tune: it passed every check against its starting encoder" if ships_candidate else
                    "**This is the pretrained GE2E itself, not a fine-tune.** No fine-tune of the eisv ablation "
                    "passed every check against the encoder it started from, so none ships")
        description = (
            f"{decision} (`python -m experiments.export_best_model`):\n\n{verdict}\n\n"
            f"The candidate was {candidate['id']}, the seed with the best selection score of the protection chosen on "
            "validation data (README, \"Fine-tuning that does not forget\"). Its numbers are in the results below, "
            "beside the start's. Scoring is cosine; decisions use the score calibration in the config, fitted on "
            + ("the trials of the 12 validation speakers held out of the fine-tune's training"
               if ships_candidate else "trials over training speakers of the eisv data, which the start never saw")
            + " (never dev), and, in folders that predate calibration, `verification_threshold`.")
        context = CardContext(
            model_name=target.name, config=model.config.to_dict(), num_parameters=model.num_parameters(),
            description=description,
            datasets=[Corpus(**d) for d in run_card["datasets"]] if ships_candidate else START_DATA,
            recipe=run_card.get("recipe"),
            base_model_note="GE2E encoder of the resemblyzer package (Apache-2.0)", results=results,
            license=None if ships_candidate else "apache-2.0",
            commands=[*run_card.get("commands", []),
                      "python -m experiments.generalisation --output results/generalisation --stage protect",
                      "python -m experiments.generalisation --output results/generalisation --stage start",
                      *([] if ships_candidate else
                        ["python -m experiments.decisions  # writes results/decisions/calibration_trials.csv"]),
                      f"python -m experiments.export_best_model --output {output} --target {target} "
                      f"--calibration_root ../shared/data"])
        write_model_card(staging, context)
        apply_umask(staging)
        replace_folder(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print(f"export_best_model: {'the fine-tune ' + candidate['id'] if ships_candidate else 'the pretrained GE2E'} "
          f"-> {target}\n{verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
