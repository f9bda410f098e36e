"""A validation split carved out of the *training* speakers, and a trial list over it.

Model selection (best epoch) and hyper-parameter sweeps must not look at the evaluation trials.
`carve_validation_speakers` holds out whole speakers, spread over the corpora in proportion to their
size, with a split fixed by its own seed (not the run seed), so that every run of an ablation
trains and selects on the same speakers. `make_validation_trials` pairs their files in the format
of `shared/data/dev_trials.csv`, with the same condition names.
"""

import numpy as np
import pandas as pd

from eisv_io.trial_schema import TRIAL_COLUMNS, trial_condition



def _allocate(sizes: dict, total: int) -> dict:
    """Largest-remainder split of `total` speakers over corpora of `sizes` speakers; a corpus that gets
    any gets at least 2 (non-target trials pair speakers of the same corpus)."""
    names = sorted(sizes)
    available = sum(sizes.values())
    quotas = {name: total * sizes[name] / available for name in names}
    counts = {name: int(quotas[name]) for name in names}
    for name in sorted(names, key=lambda n: quotas[n] - counts[n], reverse=True)[: total - sum(counts.values())]:
        counts[name] += 1
    for name in names:
        if counts[name] == 1:
            donor = max(names, key=lambda n: counts[n] - sizes[n] / available)
            if sizes[name] >= 2 and counts[donor] > 2:
                counts[name], counts[donor] = 2, counts[donor] - 1
    return {name: min(count, sizes[name] - 1) for name, count in counts.items()}


def carve_validation_speakers(dataset, num_speakers: int, seed: int = 0):
    """Split a source dataset (columns `speaker`, optional `corpus`) by speaker.

    Returns:
        (training dataset, validation dataset, sorted list of validation speaker names).
    Raises:
        ValueError: if `num_speakers` leaves fewer than 2 speakers on either side.
    """
    speakers = list(dataset["speaker"])
    corpora = list(dataset["corpus"]) if "corpus" in dataset.column_names else ["all"] * len(speakers)
    by_corpus = {}
    for speaker, corpus in zip(speakers, corpora):
        by_corpus.setdefault(corpus, set()).add(speaker)
    num_total = len(set(speakers))
    if num_speakers < 2 or num_total - num_speakers < 2:
        raise ValueError(f"validation_speakers={num_speakers}: need at least 2 speakers for validation and 2 for "
                         f"training; the training data has {num_total}")
    counts = _allocate({corpus: len(names) for corpus, names in by_corpus.items()}, num_speakers)
    rng = np.random.default_rng(seed)
    chosen = set()
    for corpus in sorted(by_corpus):
        names = sorted(by_corpus[corpus])
        chosen.update(names[i] for i in rng.permutation(len(names))[: counts[corpus]])
    validation = dataset.filter(lambda s: s in chosen, input_columns="speaker")
    training = dataset.filter(lambda s: s not in chosen, input_columns="speaker")
    return training, validation, sorted(chosen)


def make_validation_trials(rows, max_targets: int = 4000, seed: int = 0, neutral=("neutral",)) -> pd.DataFrame:
    """Trials over validation rows (`path`, `speaker`, `emotion`, optional `corpus`).

    Targets: pairs of one speaker's files (all of them, or a seeded sample of `max_targets`), with
    the condition `same_emotion`, `neutral_vs_emotional` or `emotional_vs_emotional`. Non-targets:
    as many pairs of two speakers of the same corpus, `nontarget_same_emotion` or
    `nontarget_cross_emotion`, spread over corpora like the targets. Paths stay as given.

    Returns:
        DataFrame with columns corpus, enroll, test, label, condition.
    """
    frame = pd.DataFrame({"path": list(rows["path"]), "speaker": list(rows["speaker"]),
                          "emotion": list(rows["emotion"])})
    frame["corpus"] = list(rows["corpus"]) if "corpus" in rows.column_names else "all"
    rng = np.random.default_rng(seed)
    targets = []
    for _, group in frame.groupby("speaker", sort=True):
        index = group.index.to_numpy()
        first, second = np.triu_indices(len(index), k=1)
        targets.append(np.stack([index[first], index[second]], axis=1))
    targets = np.concatenate(targets) if targets else np.zeros((0, 2), dtype=int)
    if len(targets) > max_targets:
        targets = targets[np.sort(rng.choice(len(targets), max_targets, replace=False))]
    neutral = set(neutral)
    out = []
    for a, b in targets:
        out.append((frame.corpus[a], frame.path[a], frame.path[b], 1,
                    trial_condition(True, frame.emotion[a], frame.emotion[b], neutral)))
    per_corpus = pd.Series([row[0] for row in out]).value_counts() if out else pd.Series(dtype=int)
    seen = set()
    for corpus, wanted in sorted(per_corpus.items()):
        members = frame.index[frame.corpus == corpus].to_numpy()
        if frame.speaker[members].nunique() < 2:
            continue
        sizes = frame.speaker[members].value_counts().to_numpy()
        wanted = min(int(wanted), len(members) ** 2 - int((sizes ** 2).sum()))  # ordered cross-speaker pairs
        made = 0
        while made < wanted:
            a, b = rng.choice(members, 2, replace=False)
            if frame.speaker[a] == frame.speaker[b] or (a, b) in seen:
                continue
            seen.add((a, b))
            out.append((corpus, frame.path[a], frame.path[b], 0,
                        trial_condition(False, frame.emotion[a], frame.emotion[b], neutral)))
            made += 1
    return pd.DataFrame(out, columns=list(TRIAL_COLUMNS))
