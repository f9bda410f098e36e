"""Command-line tools and Python helpers to use EISV models: verify, embed, evaluate.

Commands (installed as console scripts): `eisv-verify` (two files -> score + decision),
`eisv-embed` (many files -> embedding matrix + index CSV), `eisv-eval` (trial list -> EER,
minDCF, DET curve). The training script calls `eisv_tools.evaluation.evaluate_trials`.
"""

from .errors import ToolError

__all__ = ["ToolError"]
