"""Command-line options shared by the tools that embed audio (eisv-verify, eisv-embed, eisv-eval)."""


def add_embedding_options(parser, batching: bool = True):
    """--device, --window-s, --hop-s and, with `batching`, --batch-size and --max-batch-s."""
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:1 ...")
    if batching:
        parser.add_argument("--batch-size", type=int, default=16, help="windows per forward pass")
        parser.add_argument("--max-batch-s", type=float, default=80.0,
                            help="at most this much audio per forward pass, seconds")
    parser.add_argument("--window-s", type=float, default=10.0, help="window length for long files, seconds")
    parser.add_argument("--hop-s", type=float, default=5.0, help="window step for long files, seconds")
    return parser
