"""`eisv-export`: an EISV embedding model (`EISVModel`) as an ONNX graph, checked against PyTorch.

Usage:
    eisv-export --model DIR_OR_ID --onnx OUT.onnx [--opset 18] [--no-check] [--overwrite]

The graphs, the exporters, the check (onnxruntime vs PyTorch, cosine >= 0.9999, unless `--no-check`)
and when an existing OUT.onnx is replaced (a previous eisv export, or with `--overwrite`): see
`eisv_evaluation.onnx_export`.
Exit codes: 0 written, 1 bad input or failed check (message names the file), 2 bad command line.
"""

import argparse
import sys

from eisv_evaluation.loading import load_model
from eisv_evaluation.onnx_export import FIRST_DYNAMO_OPSET, check_output_path, export_onnx
from eisv_io.errors import ToolError

from .cli_options import add_flag


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="eisv-export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="model folder or Hub id")
    parser.add_argument("--onnx", required=True, help="output file, OUT.onnx")
    parser.add_argument("--opset", type=int, default=FIRST_DYNAMO_OPSET,
                        help=f"ONNX opset (default {FIRST_DYNAMO_OPSET}; below {FIRST_DYNAMO_OPSET} uses the TorchScript exporter)")
    add_flag(parser, "--no-check", action="store_true", help="skip the onnxruntime vs PyTorch check")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace OUT.onnx even if it is not a previous eisv export")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        check_output_path(args.onnx, args.overwrite)  # before loading the model
        model, _ = load_model(args.model, "cpu")
        info = export_onnx(model, args.onnx, args.opset, check=not args.no_check, overwrite=args.overwrite)
    except ToolError as error:
        print(f"eisv-export: error: {error}", file=sys.stderr)
        return 1
    checked = "not checked" if info["min_cosine"] is None else f"min cosine vs PyTorch {info['min_cosine']:.6f}"
    print(f"eisv-export: wrote {info['path']} ({info['exporter']}, opset {info['opset']}, "
          f"{info['embedding_size']}-d embeddings; {checked})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
