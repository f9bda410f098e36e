"""Command-line options shared by the tools (eisv-verify, eisv-embed, eisv-eval, eisv-export).

Every multi-word flag is accepted in both spellings, `--batch-size` and `--batch_size`, as
`train_eisv.py` accepts both too; `--help` shows the dashed one first.
"""

import argparse
import math

from modeling_eisv.speech_activity import MIN_SPEECH_S


def spellings(flag: str) -> list:
    """`"--output-dir"` -> `["--output-dir", "--output_dir"]`; a one-word flag -> `[flag]`."""
    other = "--" + flag[2:].replace("-", "_")
    return [flag] if other == flag else [flag, other]


def add_flag(parser, flag: str, **kwargs):
    """`parser.add_argument` under both spellings of `flag` (see the module docstring)."""
    return parser.add_argument(*spellings(flag), **kwargs)


def finite_float(text: str) -> float:
    """argparse type: a finite float (no nan, no inf)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite float > 0."""
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    """argparse type: a finite float >= 0."""
    value = finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return value


def _int_at_least(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"must be >= {low}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    return _int_at_least(text, 1)


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    return _int_at_least(text, 0)


def add_embedding_options(parser, batching: bool = True):
    """--device, --backend, --window-s, --hop-s, --min-speech-s and, with `batching`, --batch-size and
    --max-batch-s."""
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:1 ...")
    parser.add_argument("--backend", choices=("torch", "onnxruntime"), default="torch",
                        help="torch (default), or onnxruntime on the CPU: the model exported to ONNX once, cached "
                             "beside the model folder (FOLDER-onnx/) or in ~/.cache/eisv/onnx, keyed to the model's "
                             "identity; needs pip install 'eisv[onnx]'")
    if batching:
        add_flag(parser, "--batch-size", type=positive_int, default=16, help="windows per forward pass")
        add_flag(parser, "--max-batch-s", type=positive_float, default=80.0,
                 help="at most this much audio per forward pass, seconds")
    add_flag(parser, "--window-s", type=positive_float, default=10.0, help="window length for long files, seconds")
    add_flag(parser, "--hop-s", type=positive_float, default=5.0, help="window step for long files, seconds")
    add_flag(parser, "--min-speech-s", type=non_negative_float, default=MIN_SPEECH_S,
             help=f"refuse a file with less active signal than this, seconds (default {MIN_SPEECH_S:g}; the rule: "
                  f"10 ms blocks above -80 dBFS and within 40 dB of the loudest); 0 accepts silence too")
    return parser
