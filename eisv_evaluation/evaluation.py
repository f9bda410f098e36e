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
`num_targets`, `num_nontargets`, `min_cllr` (bits, after the best monotone calibration); when the
model is calibrated for that kind of score (`config.calibration_scale`, `calibration_scores`) also
`cllr`, `actual_dcf_0.01`, `actual_dcf_0.05` (cost of the calibrated decisions at that prior,
beside the minimum) and `miss_at_p0.5`, `false_alarm_at_p0.5` (percent, the decision at equal
priors: a gap between them shows a threshold that does not transfer). See `eisv_evaluation.calibration`.
`calibrate_model` fits a model's calibration on such a list (eisv-calibrate, experiments).
"""

from pathlib import Path

import numpy as np

from eisv_io.errors import AudioFileError, ToolError
from modeling_eisv.calibration import apply_calibration
from modeling_eisv.speech_activity import MIN_SPEECH_S

from .calibration import calibration_summary, cllr, fit_linear_calibration, min_cllr
from .embedding_store import load_embeddings
from .loading import model_identity
from .scoring import as_norm_scores, cohort_statistics, compute_eer, compute_min_dcf, cosine_scores
from .trials import normalise_key, read_trials, sample_trials
from .windowed_embedding import WindowedEmbedder, probe_audio

P_TARGETS = (0.01, 0.05)
RESULTS_FORMAT = "eisv-eval/1"


def verification_metrics(scores, labels, calibration=None) -> dict:
    """(trials,) scores and 0/1 labels -> the metric dict described in the module docstring.

    `calibration`: `(scale, offset)` turning these scores into LLRs, or None."""
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
    metrics.update(calibration_summary(scores, labels, *(calibration or (None, None)), p_targets=P_TARGETS))
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


def metrics_by_group(scores, trials, calibration=None) -> dict:
    """-> {"overall": metrics, "by_corpus": {name: metrics}, "by_condition": {name: metrics}}."""
    out = {"overall": None, "by_corpus": {}, "by_condition": {}}
    for key, mask in group_masks(trials).items():
        metrics = verification_metrics(scores[mask], trials.label[mask], calibration)
        if key == "all":
            out["overall"] = metrics
        else:
            kind, name = key.split("/", 1)
            out["by_corpus" if kind == "corpus" else "by_condition"][name] = metrics
    return out


def embed_trial_files(model, feature_extractor, trials, root, batch_size=16, window_s=10.0, hop_s=5.0, device=None,
                      progress=False, max_batch_s=80.0, min_speech_s=MIN_SPEECH_S):
    """Embed every distinct enroll/test file once -> {key as in the trial list: (D,) unit-norm float32}.

    Keys are compared normalised (`./a.flac` and `a.flac` are one file, embedded once). All files
    are probed before any computation; any error about a file (missing, undecodable, too little
    speech) names a trial-list line that uses it.
    """
    root = Path(root)
    keys = sorted(set(trials.enroll) | set(trials.test))
    files = sorted({normalise_key(key) for key in keys})

    def where(file_key):
        uses = [i for i, (e, t) in enumerate(zip(trials.enroll, trials.test))
                if normalise_key(e) == file_key or normalise_key(t) == file_key]
        return f"used on line {int(trials.line[uses[0]])} of {trials.source}"

    infos = []
    for file_key in files:
        try:
            infos.append(probe_audio(root / file_key))
        except ToolError as error:
            raise ToolError(f"{error} ({where(file_key)})") from None
    embedder = WindowedEmbedder(model, feature_extractor, batch_size, window_s, hop_s, device, max_batch_s,
                                min_speech_s=min_speech_s)
    by_file = {}
    try:
        for position, vector, _, _ in embedder.embed_files([info.path for info in infos], progress, infos=infos):
            by_file[files[position]] = vector
    except AudioFileError as error:
        position = next((i for i, info in enumerate(infos) if info.path == Path(error.path)), None)
        if position is None:
            raise
        raise ToolError(f"{error} ({where(files[position])})") from None
    return {key: by_file[normalise_key(key)] for key in keys}


def check_cohort_model(cohort_name, metadata: dict, model, feature_extractor, identity=None):
    """Raises `ToolError` unless the cohort file records the identity of `model` (see `model_identity`;
    `identity` when it is known already, e.g. for an onnxruntime model, which has no state dict)."""
    recorded = metadata.get("model_sha256")
    if recorded is None:
        raise ToolError(f"{cohort_name}: records no model identity (a .npy output, or one of an older eisv-embed), "
                        f"so it cannot be checked against this model; re-embed the cohort with this model into a "
                        f".safetensors file, or pass --cohort-any-model to use it anyway")
    expected = identity or model_identity(model, feature_extractor)
    if recorded != expected:
        raise ToolError(f"{cohort_name}: was embedded by another model ({metadata.get('model', '?')}, "
                        f"{recorded[:19]}...) than the one evaluated ({expected[:19]}...); AS-norm needs the "
                        f"cohort embedded by the same model. Re-embed it, or pass --cohort-any-model to use it anyway")


def evaluate_trials(model, feature_extractor, trials, root, *, batch_size=16, device=None, cohort=None,
                    cohort_top_n=300, max_trials=None, seed=0, window_s=10.0, hop_s=5.0, max_batch_s=80.0,
                    progress=False, return_scores=False, min_speech_s=MIN_SPEECH_S, cohort_any_model=False,
                    identity=None) -> dict:
    """Score a trial list with `model` and compute EER / minDCF overall, per corpus, per condition.

    Args:
        model: `EISVModel` / `EISVForSpeakerVerification` (its train/eval mode is restored afterwards), or an
            `onnx_backend.OnnxModel` (then pass its PyTorch model's `identity` for the cohort check).
        feature_extractor: `EISVFeatureExtractor`.
        trials: CSV path, DataFrame or `Trials` with `corpus, enroll, test, label, condition`.
        root: folder the enroll/test paths are relative to.
        cohort: (C, D) array or an `eisv-embed` file: adds AS-norm scores (top `cohort_top_n`). A file
            must record this model's identity (`check_cohort_model`) unless `cohort_any_model`.
        max_trials: score a seeded random subset of this many trials (quick runs).
        min_speech_s: a file with less active signal is an error naming it and its trial line (0: allowed).
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
        cohort, _, cohort_metadata = load_embeddings(cohort)
        if not cohort_any_model:
            check_cohort_model(cohort_name, cohort_metadata, model, feature_extractor, identity)
    was_training = getattr(model, "training", None)  # None: an onnxruntime model, always in inference
    if was_training is not None:
        model.eval()
    try:
        embeddings = embed_trial_files(model, feature_extractor, trials, root, batch_size, window_s, hop_s, device,
                                       progress, max_batch_s, min_speech_s)
    finally:
        if was_training is not None:
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
    config = model.config
    calibrated = getattr(config, "calibration_scale", None) is not None
    calibration = {name: ((config.calibration_scale, config.calibration_offset)
                          if calibrated and getattr(config, "calibration_scores", "cosine") == name else None)
                   for name in scores}
    metrics = {name: metrics_by_group(values, trials, calibration[name]) for name, values in scores.items()}
    overall = metrics[primary]["overall"]
    results = {
        "format": RESULTS_FORMAT,
        "num_trials": len(trials),
        "num_files": len({normalise_key(key) for key in embeddings}),
        "max_trials": max_trials,
        "seed": seed,
        "scoring": primary,
        "summary": {key: overall[key] for key in ("eer", "eer_threshold", "min_dcf_0.01", "min_dcf_0.05", "min_cllr",
                                                  "cllr", "actual_dcf_0.01", "miss_at_p0.5", "false_alarm_at_p0.5")
                    if key in overall},
        "calibration": None if not calibrated else {
            "scale": config.calibration_scale, "offset": config.calibration_offset,
            "scores": getattr(config, "calibration_scores", "cosine"),
            "source": getattr(config, "calibration_source", None)},
        "metrics": metrics,
        "as_norm": None if cohort is None else {"cohort": cohort_name, "cohort_size": int(len(cohort)),
                                               "top_n": int(min(cohort_top_n, len(cohort)))},
    }
    if return_scores:
        results["trials"], results["scores"] = trials, scores
    return results


def calibrate_model(model, feature_extractor, trials, root, cohort=None, **evaluate_kwargs) -> dict:
    """Score `trials` with the model and fit the calibration -> {scale, offset, scores, source, cllr, min_cllr, eer}.

    Fits cosine scores, or AS-norm scores against `cohort`; `evaluate_kwargs` go to `evaluate_trials`.
    Sets the calibration fields of `model.config` (not saved)."""
    results = evaluate_trials(model, feature_extractor, trials, root, cohort=cohort, return_scores=True,
                              **evaluate_kwargs)
    kind = results["scoring"]
    scores, labels = results["scores"][kind], results["trials"].label
    scale, offset = fit_linear_calibration(scores, labels)
    n_target = int((labels == 1).sum())
    source = (f"{Path(str(trials)).name if not hasattr(trials, 'label') else 'trials'}: {n_target} targets, "
              f"{int(len(labels) - n_target)} non-targets over {results['num_files']} files ({kind} scores)")
    config = model.config
    config.calibration_scale, config.calibration_offset = scale, offset
    config.calibration_scores, config.calibration_source = kind, source
    return {"scale": scale, "offset": offset, "scores": kind, "source": source,
            "cllr": cllr(apply_calibration(scores, scale, offset), labels), "min_cllr": min_cllr(scores, labels),
            "eer": results["summary"]["eer"]}
