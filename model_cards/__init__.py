"""Model cards for eisv models, built with huggingface_hub from a typed `CardContext`.

`write_model_card(output_dir, context)` writes README.md (and, if asked, `card_context.json`);
`rerender_model_card(folder)` re-creates a card from its saved context. See `model_cards.context`
for the fields and `model_cards.generate` for how the card is built.
"""

from .context import (CONTEXT_FILENAME, CardContext, Corpus, Evaluation, ModelCardInfoError, cosine_evaluation,
                      results_from_evaluation)
from .generate import build_model_card, render_model_card, rerender_model_card, write_model_card
from .licences import KNOWN_CORPORA, corpus_defaults, weights_license

__all__ = ["CONTEXT_FILENAME", "CardContext", "Corpus", "Evaluation", "KNOWN_CORPORA", "ModelCardInfoError",
           "cosine_evaluation",
           "build_model_card", "corpus_defaults", "render_model_card", "rerender_model_card",
           "results_from_evaluation", "weights_license", "write_model_card"]
