"""Model selection that rewards generalisation: several trial lists, scored against the starting model.

A fine-tune that gains on held-out speakers of its own training corpora can still lose what the
starting encoder knew (other corpora, other languages, plain neutral speech). So the epoch is picked on
*several* selection lists — typically trials over held-out training speakers and a neutral forgetting
check — by the mean relative change of EER against the starting model:

    score(candidate) = mean over lists L of (EER_L(candidate) - EER_L(start)) / max(EER_L(start), floor)

The start scores 0 and is itself a candidate, so a run whose fine-tune helps nowhere exports its starting
encoder and says so. The floor (in EER %, default 1.0) keeps one error on an easy list (the neutral check
starts near 0.2%) from dominating, while a real loss on it (0.2% -> 1.5%) still outweighs a ten percent
gain elsewhere.
"""

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SelectionList:
    """One trial list used to pick the model: `name` (for logs and the card), the CSV, and the folder its
    paths are relative to."""

    name: str
    path: str
    root: str


def parse_selection_list(spec: str) -> SelectionList:
    """`PATH` or `PATH::ROOT` -> SelectionList named after the file (see `list_name`)."""
    path, _, root = spec.partition("::")
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such trial list")
    return SelectionList(list_name(path), str(path), root or str(Path(path).parent))


def list_name(path) -> str:
    """A trial list's short name: the file's stem (`neutral_trials`), or its folder's name when the file
    is just `trials.csv` (`librispeech-mini`)."""
    path = Path(path)
    return path.parent.resolve().name if path.stem == "trials" else path.stem


def unique_names(lists: list) -> list:
    """Rename lists whose stems clash (`trials`, `trials-2`, ...), keeping order."""
    seen, out = {}, []
    for item in lists:
        count = seen.get(item.name, 0) + 1
        seen[item.name] = count
        out.append(item if count == 1 else SelectionList(f"{item.name}-{count}", item.path, item.root))
    return out


def relative_changes(results: dict, start: dict, floor: float = 1.0) -> dict:
    """{list name: (EER - EER_start) / max(EER_start, floor)} for every list in both dicts.

    Args:
        results, start: {list name: evaluation results with `["overall"]["eer"]` in %}.
    """
    changes = {}
    for name, result in results.items():
        if result is None or start.get(name) is None:
            continue
        before = start[name]["overall"]["eer"]
        changes[name] = (result["overall"]["eer"] - before) / max(before, floor)
    return changes


def selection_score(results: dict, start: dict, floor: float = 1.0) -> float:
    """Mean relative EER change against the start over the selection lists (lower is better; start = 0)."""
    changes = relative_changes(results, start, floor)
    if not changes:
        raise ValueError("selection_score: no selection list has results for both the candidate and the start")
    return sum(changes.values()) / len(changes)


def interpolate_state(start: dict, fine_tuned: dict, alpha: float) -> dict:
    """alpha * fine_tuned + (1 - alpha) * start for every floating tensor both hold (WiSE-FT,
    Wortsman et al. 2022); other entries (and ones missing from `start`, e.g. a new head) are taken
    from `fine_tuned`."""
    out = {}
    for key, value in fine_tuned.items():
        base = start.get(key)
        if base is not None and value.is_floating_point() and base.shape == value.shape:
            out[key] = (alpha * value.float() + (1.0 - alpha) * base.to(value.device).float()).to(value.dtype)
        else:
            out[key] = value
    return out
