"""The corpora eisv knows and what their licences mean for weights trained on them.

`KNOWN_CORPORA` holds the licence and citation of the corpora in shared/data (see its README); no
sizes: the split used decides them. `weights_license` turns the training data's licences into the
Hub licence id of the weights: ``apache-2.0`` when every corpus has a recognised permissive licence
(CC0, CC BY, Apache-2.0, MIT), otherwise the licence the other corpora share if it is one
recognised id (e.g. ``cc-by-nc-sa-4.0``), else ``other`` (research-only or unknown licences).
"""

from __future__ import annotations

import re

KNOWN_CORPORA = {
    "ased": {
        "name": "ASED",
        "license": "free for research use (as released by its authors)",
        "citation": "Retta et al., \"A New Amharic Speech Emotion Dataset and Classification Benchmark\", "
                    "ACM Transactions on Asian and Low-Resource Language Information Processing (TALLIP), 2022.",
    },
    "ravdess": {
        "name": "RAVDESS",
        "license": "CC BY-NC-SA 4.0",
        "citation": "Livingstone & Russo, \"The Ryerson Audio-Visual Database of Emotional Speech and Song "
                    "(RAVDESS)\", PLoS ONE 13(5): e0196391, 2018.",
    },
    "emodb": {
        "name": "EmoDB",
        "license": "CC0 1.0 (as republished by audEERING)",
        "citation": "Burkhardt, Paeschke, Rolfes, Sendlmeier & Weiss, \"A Database of German Emotional Speech\", "
                    "Interspeech 2005.",
    },
}

_HUB_LICENSES = {  # normalised free text -> Hub licence id
    "ccbyncsa40": "cc-by-nc-sa-4.0", "ccbync40": "cc-by-nc-4.0", "ccbyncnd40": "cc-by-nc-nd-4.0",
    "ccbysa40": "cc-by-sa-4.0", "ccby40": "cc-by-4.0", "cc010": "cc0-1.0", "apache20": "apache-2.0", "mit": "mit",
}
PERMISSIVE = {"cc0-1.0", "cc-by-4.0", "apache-2.0", "mit"}  # data under these leaves the weights' licence free


def corpus_defaults(name: str) -> dict:
    """Licence and citation of a bundled corpus ("ased", "ravdess", "emodb"), to extend with sizes."""
    try:
        return dict(KNOWN_CORPORA[name.lower()])
    except KeyError:
        raise KeyError(f"unknown corpus {name!r}; known: {', '.join(KNOWN_CORPORA)}") from None


def restriction(license_text: str) -> str | None:
    """'non-commercial' / 'research-only' when a licence limits the use of what is trained on it."""
    text = license_text.lower()
    if re.search(r"\bnc\b|-nc\b|non-?commercial", text.replace("_", "-").replace(" ", "-")) or "by-nc" in text:
        return "non-commercial"
    if "research" in text:
        return "research-only"
    return None


def hub_license(license_text: str) -> str | None:
    """The Hub licence id a free-text licence names ("CC BY-NC-SA 4.0" -> "cc-by-nc-sa-4.0"), or None."""
    key = re.sub(r"[^a-z0-9]", "", license_text.lower().split("(")[0])
    return _HUB_LICENSES.get(key)


def weights_license(context) -> str:
    """The Hub licence id of the weights: the context's own ``license`` if set, else derived from its
    ``datasets`` licences (module docstring). `context` is a `CardContext` or a dict of the same keys."""
    get = context.get if isinstance(context, dict) else lambda key: getattr(context, key)
    if get("license"):
        return get("license")
    ids = [hub_license(d["license"] if isinstance(d, dict) else d.license) for d in get("datasets")]
    if all(i in PERMISSIVE for i in ids):
        return "apache-2.0"
    others = {i for i in ids if i not in PERMISSIVE}
    return others.pop() if len(others) == 1 and None not in others else "other"
