"""`eisv-calibrate`: fit the score -> LLR calibration of a model on labelled trials and write a
calibrated copy of the model folder.

Usage:
    eisv-calibrate --model DIR_OR_ID --trials CAL.csv --root DIR --output OUT [--overwrite] [--cohort FILE]
                   [--device auto] [--batch-size 16] [--window-s 10] [--hop-s 5] [--min-speech-s 0.3] [--json]

The trials (same CSV as eisv-eval: corpus, enroll, test, label, condition) must be disjoint from
any list the model is later tested on: calibrating on the test trials makes Cllr meaningless.
The fit is `eisv_evaluation.calibration.fit_linear_calibration` (logistic regression at an effective
prior of 0.5) of cosine scores, or of AS-norm scores with `--cohort` (eisv-embed output of this
model; copy it into OUT as `cohort.safetensors` so eisv-verify scores the same way). OUT gets
`calibration_scale`, `calibration_offset`, `calibration_scores` and `calibration_source` in its
config; weights, feature extractor, model card and cohort file are carried over unchanged (OUT may
be the model folder itself). Exit codes: 0 done, 1 bad input, 2 bad command line.
"""

import argparse
import json
import sys
from pathlib import Path

from eisv_evaluation.evaluation import calibrate_model
from eisv_evaluation.loading import load_model
from eisv_evaluation.model_folder import save_model_folder
from eisv_io.errors import ToolError

from .cli_options import add_embedding_options, add_flag


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="eisv-calibrate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="model folder or Hub id")
    parser.add_argument("--trials", required=True, help="labelled calibration trials (CSV), disjoint from test lists")
    parser.add_argument("--root", required=True, help="folder the trial paths are relative to")
    parser.add_argument("--output", required=True, help="calibrated model folder to write (may be --model)")
    parser.add_argument("--overwrite", action="store_true", help="replace --output even if it is no model folder")
    parser.add_argument("--cohort", help="fit on AS-norm scores against this eisv-embed cohort of the model")
    add_embedding_options(parser)
    add_flag(parser, "--json", action="store_true", help="print the fit as JSON")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        for path, what in ((args.trials, "trial file"), (args.root, "root folder")):
            if not Path(path).exists():
                raise ToolError(f"{path}: no such {what}")
        model, feature_extractor = load_model(args.model, args.device)
        fit = calibrate_model(model, feature_extractor, args.trials, args.root, cohort=args.cohort,
                        batch_size=args.batch_size, window_s=args.window_s, hop_s=args.hop_s,
                        max_batch_s=args.max_batch_s, min_speech_s=args.min_speech_s)
        save_model_folder(args.output, model, feature_extractor, source=args.model, overwrite=args.overwrite)
    except (ToolError, ValueError) as error:
        print(f"eisv-calibrate: error: {error}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(fit, indent=2))
    else:
        print(f"llr = {fit['scale']:.4f} * {fit['scores']} score + {fit['offset']:.4f}  (on {fit['source']}: "
              f"Cllr {fit['cllr']:.3f}, min Cllr {fit['min_cllr']:.3f}, EER {fit['eer']:.2f}%)")
    print(f"eisv-calibrate: wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
