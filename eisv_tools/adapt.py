"""`eisv-adapt`: write a model folder whose embeddings are adapted to a deployment domain.

Usage:
    eisv-adapt --model DIR_OR_ID --data UNLABELED_AUDIO --output OUT [--whiten] [--shrinkage 0.1]
               [--nap-on CSV [--nap-dims 10]] [--root DIR] [--overwrite] [--device auto] [--json] ...

`--data` is a folder of audio or a list (CSV with a `path` column, or one path per line) of
unlabeled recordings of the domain; their mean embedding (and with `--whiten` a whitening) becomes
the model's `EmbeddingTransform` buffers, applied after the encoder and before the L2 norm
(`modeling_eisv.embedding_transform`; `config.embedding_transform = "affine"`). `--nap-on CSV`
(columns path, speaker, emotion) adds an emotion nuisance-attribute projection of `--nap-dims`
directions; `--data` may then be left out (NAP only). The transform is fitted on the encoder's own
embeddings (an existing transform of --model is replaced). The model card is carried over; a
`cohort.safetensors` is not (its embeddings predate the transform: re-embed it with OUT). The
calibration fields stay, but a transform changes the scores: re-run eisv-calibrate on OUT.
Exit codes: 0 done, 1 bad input, 2 bad command line.
"""

import argparse
import json
import sys

from eisv_evaluation.adaptation import fit_transform, install_transform, read_audio_list
from eisv_evaluation.loading import load_model
from eisv_evaluation.model_folder import save_model_folder
from eisv_io.errors import ToolError

from .cli_options import add_embedding_options, add_flag, positive_float, positive_int


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="eisv-adapt", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="model folder or Hub id")
    parser.add_argument("--data", help="unlabeled audio of the domain: folder, CSV (path column) or text list")
    parser.add_argument("--root", help="folder the list's relative paths start from (default: the list's folder)")
    parser.add_argument("--output", required=True, help="adapted model folder to write")
    parser.add_argument("--whiten", action="store_true", help="also whiten with the domain covariance")
    parser.add_argument("--shrinkage", type=positive_float, default=0.1,
                        help="whitening: eigenvalue floor as a fraction of their mean")
    add_flag(parser, "--nap-on", help="CSV of labelled emotional audio (path, speaker, emotion): emotion NAP")
    add_flag(parser, "--nap-dims", type=positive_int, default=10, help="emotion directions to remove")
    parser.add_argument("--overwrite", action="store_true", help="replace --output even if it is no model folder")
    add_embedding_options(parser)
    parser.add_argument("--json", action="store_true", help="print what was fitted as JSON")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if not args.data and not args.nap_on:
            raise ToolError("give --data (unlabeled audio) and/or --nap-on (labelled emotional audio)")
        unlabeled = read_audio_list(args.data, args.root) if args.data else None
        nap = read_audio_list(args.nap_on, args.root) if args.nap_on else None
        model, feature_extractor = load_model(args.model, args.device)
        mean, matrix, info = fit_transform(model, feature_extractor, unlabeled, args.whiten, nap, args.nap_dims,
                                           args.shrinkage, batch_size=args.batch_size, window_s=args.window_s,
                                           hop_s=args.hop_s, max_batch_s=args.max_batch_s,
                                           min_speech_s=args.min_speech_s)
        install_transform(model, mean, matrix, info)
        save_model_folder(args.output, model, feature_extractor, source=args.model, overwrite=args.overwrite,
                          drop_cohort=True)
    except ToolError as error:
        print(f"eisv-adapt: error: {error}", file=sys.stderr)
        return 1
    print(json.dumps(info, indent=2) if args.json else f"eisv-adapt: {info['kind']} fitted; wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
