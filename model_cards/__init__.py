"""Model cards for eisv models: `render_model_card(info)`, `write_model_card(output_dir, info)`.

The `info` schema is documented in `model_cards.generate`.
"""

from .generate import (KNOWN_CORPORA, ModelCardInfoError, corpus_defaults, render_model_card,
                       results_from_evaluation, validate_info, weights_license, write_model_card)

__all__ = ["KNOWN_CORPORA", "ModelCardInfoError", "corpus_defaults", "render_model_card", "results_from_evaluation",
           "validate_info", "weights_license", "write_model_card"]
