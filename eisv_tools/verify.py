"""`eisv-verify`: are two recordings the same speaker?

Usage:
    eisv-verify --model DIR_OR_ID A.wav B.wav [--threshold T] [--device auto] [--min-speech-s 0.3] [--json]

Prints the cosine score of the two (windowed, averaged) embeddings and the decision
`score >= threshold`, the threshold being `--threshold` or else `config.verification_threshold`.
With `--json`, one JSON object on stdout: `{"score": float, "threshold": float|null,
"same_speaker": bool|null, "decision": "same"|"different"|"undecided", "model": str,
"files": [A, B]}`; on error `{"error": message}` (the message also goes to stderr).

Exit codes: 0 same speaker, 1 different speakers, 2 error (missing, unreadable or silent file,
bad or corrupt model, unavailable device, bad command line such as `--threshold nan`; always a
one-line message, never a traceback), 3 undecided (no threshold given and none in the model config).
"""

import argparse
import json
import sys

from modeling_eisv.scoring import cosine_scores
from modeling_eisv.speech_activity import MIN_SPEECH_S

from .cli_options import add_embedding_options, finite_float
from .errors import one_line
from .loading import load_model
from .windowed_embedding import embed_paths, probe_audio

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
    parser.add_argument("--threshold", type=finite_float, help="accept when score >= this (default: the model's)")
    add_embedding_options(parser, batching=False)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def verify(model_name_or_path, audio_a, audio_b, threshold=None, device="auto", window_s=10.0, hop_s=5.0,
           min_speech_s=MIN_SPEECH_S) -> dict:
    """-> the dict `--json` prints. Raises `ToolError` for bad input (a file with less than
    `min_speech_s` seconds of active signal included)."""
    for path in (audio_a, audio_b):
        probe_audio(path)  # before loading the model: a typo fails fast
    model, feature_extractor = load_model(model_name_or_path, device)
    embeddings = embed_paths(model, feature_extractor, [audio_a, audio_b], window_s=window_s, hop_s=hop_s,
                             min_speech_s=min_speech_s)
    score = float(cosine_scores(embeddings[0], embeddings[1])[0])
    if threshold is None:
        threshold = getattr(model.config, "verification_threshold", None)
    same = None if threshold is None else bool(score >= threshold)
    return {"score": score, "threshold": None if threshold is None else float(threshold), "same_speaker": same,
            "decision": "undecided" if same is None else ("same" if same else "different"),
            "model": str(model_name_or_path), "files": [str(audio_a), str(audio_b)]}


def main(argv=None) -> int:
    parser = build_parser()
    parser._json = "--json" in (sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    try:
        result = verify(args.model, args.audio[0], args.audio[1], args.threshold, args.device, args.window_s,
                        args.hop_s, args.min_speech_s)
    except Exception as error:  # every failure is exit 2 with one line: exit 1 means "different speakers"
        message = one_line(error)
        print(f"eisv-verify: error: {message}", file=sys.stderr)
        if args.json:
            print(json.dumps({"error": message}))
        return EXIT_ERROR
    if args.json:
        print(json.dumps(result))
    elif result["same_speaker"] is None:
        print(f"score {result['score']:.4f}: no threshold set (the model config has no verification_threshold; "
              f"pass --threshold)")
    else:
        relation = ">=" if result["same_speaker"] else "<"
        verdict = "same speaker" if result["same_speaker"] else "different speakers"
        print(f"score {result['score']:.4f} {relation} threshold {result['threshold']:.4f}: {verdict}")
    if result["same_speaker"] is None:
        return EXIT_UNDECIDED
    return EXIT_SAME if result["same_speaker"] else EXIT_DIFFERENT


if __name__ == "__main__":
    sys.exit(main())
