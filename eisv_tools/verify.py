"""`eisv-verify`: are two recordings the same speaker?

Usage:
    eisv-verify --model DIR_OR_ID A.wav B.wav [--p-target 0.5] [--threshold T] [--cohort FILE | --no-cohort]
                [--device auto] [--backend torch|onnxruntime] [--min-speech-s 0.3] [--json]

Prints the score of the two (windowed, averaged) embeddings and the decision. The score is the
cosine, or its AS-norm against a cohort: `--cohort FILE`, or else the model folder's own
`cohort.safetensors` (an eisv-embed output of this model; `--no-cohort` ignores it).
`--backend onnxruntime` embeds on the CPU with the model exported to ONNX (`eisv_evaluation.onnx_backend`).
How it decides:

1. `--threshold T`: accept when `score >= T` (raw score, no calibration).
2. a calibrated model (`config.calibration_scale`, fitted by eisv-calibrate on scores of the same
   kind): the LLR `scale * score + offset` is reported, and it accepts when
   `llr >= log((1 - p_target) / p_target)`, `--p-target` defaulting to 0.5 (equal priors and costs).
3. an older folder with only `config.verification_threshold` (a cosine threshold): `score >= it`.
4. otherwise undecided.

With `--json`, one JSON object on stdout: `{"score": float, "scoring": "cosine"|"as_norm",
"llr": float|null, "p_target": float|null, "threshold": float|null (in score units),
"decided_by": "threshold"|"calibration"|"verification_threshold"|null, "same_speaker": bool|null,
"decision": "same"|"different"|"undecided", "model": str, "files": [A, B]}`; on error
`{"error": message}` (the message also goes to stderr).

Exit codes: 0 same speaker, 1 different speakers, 2 error (missing, unreadable or silent file,
bad or corrupt model, unavailable device, bad command line such as `--threshold nan`; always a
one-line message, never a traceback), 3 undecided (no threshold given and none in the model config).
"""

import argparse
import json
import sys

from pathlib import Path

from eisv_evaluation.embedding_store import load_embeddings
from eisv_evaluation.loading import load_for_backend
from eisv_evaluation.model_folder import COHORT_FILE
from eisv_evaluation.scoring import as_norm, cosine_scores
from eisv_evaluation.windowed_embedding import embed_paths, probe_audio
from eisv_io.errors import one_line
from modeling_eisv.calibration import DEFAULT_P_TARGET, bayes_threshold, score_threshold
from modeling_eisv.speech_activity import MIN_SPEECH_S

from .cli_options import add_embedding_options, add_flag, finite_float, positive_int

EXIT_SAME, EXIT_DIFFERENT, EXIT_ERROR, EXIT_UNDECIDED = 0, 1, 2, 3


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on usage errors, which is our error code too; with --json we also print JSON."""

    def error(self, message):
        if getattr(self, "_json", False):
            print(json.dumps({"error": message}))
        super().error(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="eisv-verify", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="model folder or Hub id")
    parser.add_argument("audio", nargs=2, metavar="AUDIO", help="the two recordings to compare")
    parser.add_argument("--threshold", type=finite_float,
                        help="accept when score >= this (default: the model's calibration, else its threshold)")
    add_flag(parser, "--p-target", type=probability, default=DEFAULT_P_TARGET,
             help=f"prior of a same-speaker trial for the calibrated decision (default {DEFAULT_P_TARGET:g})")
    parser.add_argument("--cohort", help="AS-norm against this eisv-embed cohort (default: the folder's cohort.safetensors)")
    add_flag(parser, "--no-cohort", action="store_true", help="cosine scores even if the folder has a cohort")
    add_flag(parser, "--cohort-top-n", type=positive_int, default=300, help="AS-norm: top cohort scores used")
    add_embedding_options(parser, batching=False)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def probability(text: str) -> float:
    """argparse type: a number strictly between 0 and 1."""
    value = finite_float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must lie strictly between 0 and 1, got {text!r}")
    return value


def find_cohort(model_name_or_path, cohort=None, no_cohort=False):
    """The cohort file to AS-normalise with: `cohort`, else the model folder's `cohort.safetensors`, else None."""
    if no_cohort:
        return None
    if cohort is not None:
        return cohort
    own = Path(str(model_name_or_path)) / COHORT_FILE
    return str(own) if own.is_file() else None


def decide(score: float, scoring: str, config, threshold=None, p_target=DEFAULT_P_TARGET) -> dict:
    """The decision rules of the module docstring -> {llr, p_target, threshold, decided_by, same_speaker}."""
    calibrated = (getattr(config, "calibration_scale", None) is not None
                  and getattr(config, "calibration_scores", "cosine") == scoring)
    llr = config.calibration_scale * score + config.calibration_offset if calibrated else None
    out = {"llr": llr, "p_target": p_target if calibrated else None}
    if threshold is not None:
        out.update(threshold=float(threshold), decided_by="threshold", same_speaker=bool(score >= threshold))
    elif calibrated:
        cut = bayes_threshold(p_target)
        out.update(threshold=score_threshold(config.calibration_scale, config.calibration_offset, p_target),
                   decided_by="calibration",
                   same_speaker=bool(llr >= cut))
    elif scoring == "cosine" and getattr(config, "verification_threshold", None) is not None:
        out.update(threshold=float(config.verification_threshold), decided_by="verification_threshold",
                   same_speaker=bool(score >= config.verification_threshold))
    else:
        out.update(threshold=None, decided_by=None, same_speaker=None)
    return out


def verify(model_name_or_path, audio_a, audio_b, threshold=None, device="auto", window_s=10.0, hop_s=5.0,
           min_speech_s=MIN_SPEECH_S, p_target=DEFAULT_P_TARGET, cohort=None, no_cohort=False,
           cohort_top_n=300, backend="torch") -> dict:
    """-> the dict `--json` prints. Raises `ToolError` for bad input (a file with less than
    `min_speech_s` seconds of active signal included, a cohort of another model)."""
    from eisv_evaluation.evaluation import check_cohort_model

    for path in (audio_a, audio_b):
        probe_audio(path)  # before loading the model: a typo fails fast
    model, feature_extractor, torch_model, _ = load_for_backend(model_name_or_path, device, backend)
    cohort_file = find_cohort(model_name_or_path, cohort, no_cohort)
    cohort_embeddings = None
    if cohort_file is not None:
        cohort_embeddings, _, metadata = load_embeddings(cohort_file)
        check_cohort_model(cohort_file, metadata, torch_model, feature_extractor)
    embeddings = embed_paths(model, feature_extractor, [audio_a, audio_b], window_s=window_s, hop_s=hop_s,
                             min_speech_s=min_speech_s)
    if cohort_embeddings is None:
        scoring, score = "cosine", float(cosine_scores(embeddings[0], embeddings[1])[0])
    else:
        scoring = "as_norm"
        score = float(as_norm(embeddings[:1], embeddings[1:], cohort_embeddings, cohort_top_n)[0])
    result = {"score": score, "scoring": scoring, **decide(score, scoring, model.config, threshold, p_target)}
    same = result["same_speaker"]
    result.update(decision="undecided" if same is None else ("same" if same else "different"),
                  model=str(model_name_or_path), files=[str(audio_a), str(audio_b)],
                  cohort=cohort_file)
    return result


def main(argv=None) -> int:
    parser = build_parser()
    parser._json = "--json" in (sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    try:
        result = verify(args.model, args.audio[0], args.audio[1], args.threshold, args.device, args.window_s,
                        args.hop_s, args.min_speech_s, args.p_target, args.cohort, args.no_cohort, args.cohort_top_n,
                        args.backend)
    except Exception as error:  # every failure is exit 2 with one line: exit 1 means "different speakers"
        message = one_line(error)
        print(f"eisv-verify: error: {message}", file=sys.stderr)
        if args.json:
            print(json.dumps({"error": message}))
        return EXIT_ERROR
    if args.json:
        print(json.dumps(result))
    elif result["same_speaker"] is None:
        print(f"{result['scoring']} score {result['score']:.4f}: no threshold set (the model has no calibration "
              f"for {result['scoring']} scores and no verification_threshold; pass --threshold)")
    else:
        relation = ">=" if result["same_speaker"] else "<"
        verdict = "same speaker" if result["same_speaker"] else "different speakers"
        notes = ([] if result["llr"] is None else [f"LLR {result['llr']:.3f}"]) + (
            [f"calibrated, p_target {result['p_target']:g}"] if result["decided_by"] == "calibration" else [])
        notes = f" ({', '.join(notes)})" if notes else ""
        print(f"{result['scoring']} score {result['score']:.4f} {relation} threshold "
              f"{result['threshold']:.4f}{notes}: {verdict}")
    if result["same_speaker"] is None:
        return EXIT_UNDECIDED
    return EXIT_SAME if result["same_speaker"] else EXIT_DIFFERENT


if __name__ == "__main__":
    sys.exit(main())
