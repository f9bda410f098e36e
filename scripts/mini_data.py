"""What the scripts that build the bundled data (`make_*_mini.py`) share: their command line."""

import argparse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def mini_data_arguments(doc: str, corpus: str, output: str) -> argparse.Namespace:
    """--source (default ../shared/data/CORPUS) and --output (default data/OUTPUT), parsed."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=ROOT.parent / "shared" / "data" / corpus)
    parser.add_argument("--output", type=Path, default=ROOT / "data" / output)
    return parser.parse_args()
