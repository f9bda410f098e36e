"""Evaluating a model on a trial list: embed each file once, score, EER / minDCF per group.

Groups (the keys of `by_corpus` / `by_condition` in the results):

- **all**: every trial.
- **corpus C**: the trials whose `corpus` is C.
- **target condition c** (e.g. `same_emotion`): the targets of condition c against ALL
  non-targets of the corpora where condition c has targets. So every target condition is
  measured against the same impostors; only the genuine trials change.
- **non-target condition c** (e.g. `nontarget_cross_emotion`): ALL targets of the corpora
  where c has non-targets against the non-targets of condition c.

A group that lacks targets or non-targets gets `null` metrics and a `note`.
Metric keys: `eer` (percent), `eer_threshold` (cosine or AS-norm score; accept when
score >= threshold), `min_dcf_0.01`, `min_dcf_0.05` (normalised, C_miss = C_fa = 1),
`num_targets`, `num_nontargets`.
"""

from pathlib import Path

import numpy as np

from modeling_eisv.scoring import (as_norm_scores, cohort_statistics, compute_eer, compute_min_dcf,
                                   cosine_scores)

from .embedding_store import load_embeddings
from .errors import ToolError
from .trials import read_trials, sample_trials
from .windowed_embedding import WindowedEmbedder, probe_audio

P_TARGETS = (0.01, 0.05)
RESULTS_FORMAT = "eisv-eval/1"


def verification_metrics(scores, labels) -> dict:
    """(trials,) scores and 0/1 labels -> the metric dict described in the module docstring."""
    labels = np.asarray(labels)
    metrics = {"num_targets": int((labels == 1).sum()), "num_nontargets": int((labels == 0).sum())}
    if metrics["num_targets"] == 0 or metrics["num_nontargets"] == 0:
        missing = "targets" if metrics["num_targets"] == 0 else "non-targets"
        metrics.update({"eer": None, "eer_threshold": None, **{f"min_dcf_{p}": None for p in P_TARGETS},
                        "note": f"no {missing} in this group"})
        return metrics
    eer, threshold = compute_eer(scores, labels)
    metrics.update({"eer": eer, "eer_threshold": threshold})
    for p_target in P_TARGETS:
        metrics[f"min_dcf_{p_target}"] = compute_min_dcf(scores, labels, p_target=p_target)[0]
    return metrics


def group_masks(trials) -> dict:
    """-> {"all": mask, "corpus/<name>": mask, "condition/<name>": mask}, boolean (trials,) masks."""
    masks = {"all": np.ones(len(trials), dtype=bool)}
    for corpus in sorted(set(trials.corpus)):
        masks[f"corpus/{corpus}"] = trials.corpus == corpus
    target = trials.label == 1
    for condition in sorted(set(trials.condition)):
        in_condition = trials.condition == condition
        corpora = list(set(trials.corpus[in_condition]))
        in_corpora = np.isin(trials.corpus, corpora)
        if target[in_condition].all():  # a target condition: its targets + all non-targets of its corpora
            masks[f"condition/{condition}"] = (in_condition & target) | (in_corpora & ~target)
        elif not target[in_condition].any():  # a non-target condition: all targets of its corpora + its non-targets
            masks[f"condition/{condition}"] = (in_corpora & target) | (in_condition & ~target)
        else:  # a mixed condition: just its own trials
            masks[f"condition/{condition}"] = in_condition
    return masks


def metrics_by_group(scores, trials) -> dict:
    """-> {"overall": metrics, "by_corpus": {name: metrics}, "by_condition": {name: metrics}}."""
    out = {"overall": None, "by_corpus": {}, "by_condition": {}}
    for key, mask in group_masks(trials).items():
        metrics = verification_metrics(scores[mask], trials.label[mask])
        if key == "all":
            out["overall"] = metrics
        else:
            kind, name = key.split("/", 1)
            out["by_corpus" if kind == "corpus" else "by_condition"][name] = metrics
    return out


def embed_trial_files(model, feature_extractor, trials, root, batch_size=16, window_s=10.0, hop_s=5.0, device=None,
                      progress=False, max_batch_s=80.0):
    """Embed every distinct enroll/test file once -> {relative path: (D,) unit-norm float32}.

    All files are checked before any computation; a missing one is reported with a CSV line that uses it.
    """
    root = Path(root)
    keys = sorted(set(trials.enroll) | set(trials.test))
    infos = []
    for key in keys:
        try:
            infos.append(probe_audio(root / key))
        except ToolError as error:
            uses = trials.line[(trials.enroll == key) | (trials.test == key)]
            raise ToolError(f"{error} (used on line {int(uses[0])} of {trials.source})") from None
    embedder = WindowedEmbedder(model, feature_extractor, batch_size, window_s, hop_s, device, max_batch_s)
    embeddings = {}
    for position, vector, _, _ in embedder.embed_files([info.path for info in infos], progress, infos=infos):
        embeddings[keys[position]] = vector
    return embeddings


def evaluate_trials(model, feature_extractor, trials, root, *, batch_size=16, device=None, cohort=None,
                    cohort_top_n=300, max_trials=None, seed=0, window_s=10.0, hop_s=5.0, max_batch_s=80.0,
                    progress=False, return_scores=False) -> dict:
    """Score a trial list with `model` and compute EER / minDCF overall, per corpus, per condition.

    Args:
        model: `EISVModel` / `EISVForSpeakerVerification` (its train/eval mode is restored afterwards).
        feature_extractor: `EISVFeatureExtractor`.
        trials: CSV path, DataFrame or `Trials` with `corpus, enroll, test, label, condition`.
        root: folder the enroll/test paths are relative to.
        cohort: (C, D) array or an `eisv-embed` file: adds AS-norm scores (top `cohort_top_n`).
        max_trials: score a seeded random subset of this many trials (quick runs).
    Returns:
        {"format", "num_trials", "num_files", "max_trials", "seed", "scoring": "cosine"|"as_norm",
         "summary": {eer, eer_threshold, min_dcf_0.01, min_dcf_0.05} of the primary scoring,
         "metrics": {"cosine": groups, ["as_norm": groups]}, "as_norm": null|{cohort, cohort_size, top_n}}
        where groups = `metrics_by_group(...)`; with `return_scores=True` also "trials" (`Trials`)
        and "scores" ({"cosine": (trials,), ["as_norm": (trials,)]}).
    """
    trials = sample_trials(read_trials(trials), max_trials, seed)
    if not (trials.label == 1).any() or not (trials.label == 0).any():
        raise ToolError(f"{trials.source}: needs both target (label 1) and non-target (label 0) trials")
    cohort_name = None
    if cohort is not None and not isinstance(cohort, np.ndarray):
        cohort_name = str(cohort)
        cohort = load_embeddings(cohort)[0]
    was_training = model.training
    model.eval()
    try:
        embeddings = embed_trial_files(model, feature_extractor, trials, root, batch_size, window_s, hop_s, device,
                                       progress, max_batch_s)
    finally:
        model.train(was_training)
    enroll = np.stack([embeddings[key] for key in trials.enroll])
    test = np.stack([embeddings[key] for key in trials.test])
    scores = {"cosine": cosine_scores(enroll, test)}
    if cohort is not None:
        if len(cohort) == 0:
            raise ToolError(f"{cohort_name or 'cohort'}: holds no embeddings")
        keys = sorted(embeddings)
        try:
            mean, std = cohort_statistics(np.stack([embeddings[k] for k in keys]), cohort, cohort_top_n)
        except ValueError as error:
            raise ToolError(f"{cohort_name or 'cohort'}: {error}") from None
        stats = {key: (m, s) for key, m, s in zip(keys, mean, std)}
        enroll_stats = tuple(np.array([stats[k][i] for k in trials.enroll]) for i in (0, 1))
        test_stats = tuple(np.array([stats[k][i] for k in trials.test]) for i in (0, 1))
        scores["as_norm"] = as_norm_scores(scores["cosine"], enroll_stats, test_stats)
    primary = "as_norm" if cohort is not None else "cosine"
    metrics = {name: metrics_by_group(values, trials) for name, values in scores.items()}
    overall = metrics[primary]["overall"]
    results = {
        "format": RESULTS_FORMAT,
        "num_trials": len(trials),
        "num_files": len(embeddings),
        "max_trials": max_trials,
        "seed": seed,
        "scoring": primary,
        "summary": {key: overall[key] for key in ("eer", "eer_threshold", "min_dcf_0.01", "min_dcf_0.05")},
        "metrics": metrics,
        "as_norm": None if cohort is None else {"cohort": cohort_name, "cohort_size": int(len(cohort)),
                                               "top_n": int(min(cohort_top_n, len(cohort)))},
    }
    if return_scores:
        results["trials"], results["scores"] = trials, scores
    return results
