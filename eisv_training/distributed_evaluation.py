"""Trial-list evaluation inside a (possibly multi-process) training run.

Each process embeds a disjoint share of the distinct trial files; the embeddings are gathered,
and the main process scores every trial exactly once (the metrics are then broadcast).
"""

from pathlib import Path

import numpy as np
import torch
from accelerate.utils import broadcast_object_list, gather_object

from eisv_evaluation.evaluation import metrics_by_group
from eisv_evaluation.scoring import cosine_scores
from eisv_evaluation.trials import read_trials, sample_trials
from eisv_evaluation.windowed_embedding import embed_paths


def evaluate_during_training(accelerator, model, feature_extractor, trials, root, batch_size=32, max_trials=None,
                             seed=0, progress=False) -> dict:
    """-> {"num_trials", "num_trials_scored", "num_files", "overall", "by_corpus", "by_condition"} (EER in %)
    on every process. `model` may be wrapped (DDP); it is put back in its previous train/eval mode."""
    trials = sample_trials(read_trials(trials), max_trials, seed)
    keys = sorted(set(trials.enroll) | set(trials.test))
    mine = keys[accelerator.process_index:: accelerator.num_processes]
    network = accelerator.unwrap_model(model)
    was_training = network.training
    network.eval()
    try:
        with torch.no_grad(), accelerator.autocast():
            vectors = embed_paths(network, feature_extractor, [Path(root) / key for key in mine],
                                  progress=progress and accelerator.is_local_main_process,
                                  batch_size=batch_size, device=accelerator.device) if mine else []
    finally:
        network.train(was_training)
    gathered = gather_object([(key, vector) for key, vector in zip(mine, vectors)])
    results = [None]
    if accelerator.is_main_process:
        embeddings = dict(gathered)
        assert len(embeddings) == len(keys), "every trial file is embedded exactly once"
        enroll = np.stack([embeddings[key] for key in trials.enroll])
        test = np.stack([embeddings[key] for key in trials.test])
        scores = cosine_scores(enroll, test)
        groups = metrics_by_group(scores, trials)
        results = [{"num_trials": len(trials), "num_trials_scored": int(scores.size), "num_files": len(keys), **groups}]
    broadcast_object_list(results, from_process=0)
    return results[0]


def eer_threshold(results: dict) -> float:
    """The cosine threshold at the overall EER point, for `config.verification_threshold`."""
    return float(results["overall"]["eer_threshold"])

