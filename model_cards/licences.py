"""The corpus registry: the corpora eisv knows, their licences as Hub licence ids, and what those mean
for weights trained on them.

`KNOWN_CORPORA` holds, for the corpora of shared/data (see its README), the licence as its authors state
it (`license`), its Hub licence id (`license_id`; ``other`` where the Hub has none, e.g. ASED's
research-only terms), any restriction on what is trained on it, and the citation; no sizes: the split
used decides them. `weights_license` turns the training data's licence ids into the Hub licence id of
the weights: ``apache-2.0`` when every corpus (and the starting weights, `base_model_license`) is under
a permissive licence (`PERMISSIVE`), otherwise
the one id the other corpora share, else ``other``. A corpus without a `license_id` (user data) counts
as unknown.
"""

from __future__ import annotations

KNOWN_CORPORA = {
    "ased": {
        "name": "ASED",
        "license": "free for research use (as released by its authors)",
        "license_id": "other",
        "restriction": "research-only",
        "citation": "Retta et al., \"A New Amharic Speech Emotion Dataset and Classification Benchmark\", "
                    "ACM Transactions on Asian and Low-Resource Language Information Processing (TALLIP), 2022.",
    },
    "ravdess": {
        "name": "RAVDESS",
        "license": "CC BY-NC-SA 4.0",
        "license_id": "cc-by-nc-sa-4.0",
        "restriction": "non-commercial",
        "citation": "Livingstone & Russo, \"The Ryerson Audio-Visual Database of Emotional Speech and Song "
                    "(RAVDESS)\", PLoS ONE 13(5): e0196391, 2018.",
    },
    "emodb": {
        "name": "EmoDB",
        "license": "CC0 1.0 (as republished by audEERING)",
        "license_id": "cc0-1.0",
        "citation": "Burkhardt, Paeschke, Rolfes, Sendlmeier & Weiss, \"A Database of German Emotional Speech\", "
                    "Interspeech 2005.",
    },
    "librispeech": {
        "name": "LibriSpeech",
        "license": "CC BY 4.0",
        "license_id": "cc-by-4.0",
        "citation": "Panayotov, Chen, Povey & Khudanpur, \"Librispeech: an ASR corpus based on public domain "
                    "audio books\", ICASSP 2015.",
    },
}

PERMISSIVE = {"cc0-1.0", "cc-by-4.0", "apache-2.0", "mit"}  # data under these leaves the weights' licence free
NON_COMMERCIAL = {"cc-by-nc-4.0", "cc-by-nc-sa-4.0", "cc-by-nc-nd-4.0"}


def corpus_defaults(name: str) -> dict:
    """Licence, Hub licence id, restriction and citation of a registered corpus ("ased", "ravdess", "emodb",
    "librispeech"), to extend with sizes and the split."""
    try:
        return dict(KNOWN_CORPORA[name.lower()])
    except KeyError:
        raise KeyError(f"unknown corpus {name!r}; known: {', '.join(KNOWN_CORPORA)}") from None


def restriction(corpus) -> str | None:
    """'non-commercial' / 'research-only' when a corpus's licence limits the use of what is trained on it:
    its registered `restriction`, or a non-commercial Hub licence id. `corpus` is a `Corpus` or a dict."""
    get = corpus.get if isinstance(corpus, dict) else lambda key: getattr(corpus, key, None)
    if get("restriction"):
        return get("restriction")
    return "non-commercial" if get("license_id") in NON_COMMERCIAL else None


def weights_license(context) -> str:
    """The Hub licence id of the weights: the context's own ``license`` if set, else derived from its
    ``datasets``' licence ids (module docstring). `context` is a `CardContext` or a dict of the same keys."""
    get = context.get if isinstance(context, dict) else lambda key: getattr(context, key)
    if get("license"):
        return get("license")
    ids = [d.get("license_id") if isinstance(d, dict) else d.license_id for d in get("datasets")]
    if get("base_model_license"):  # the starting weights' licence binds the fine-tune like its data's
        ids.append(None if get("base_model_license") == "unknown" else get("base_model_license"))
    if all(i in PERMISSIVE for i in ids):
        return "apache-2.0"
    others = {i for i in ids if i not in PERMISSIVE}
    return others.pop() if len(others) == 1 and None not in others else "other"
