"""The models a run could export — the start, each epoch, interpolations with the start — scored and kept.

`CandidateJudge` evaluates the network on the selection lists (`eisv_training/selection.py` for the score),
records each candidate in the run's `TrainingState`, exports the best so far to OUTPUT_DIR/best_model, and
at the end tests the selected model and the start once on the test list.
"""

import copy
import sys
from pathlib import Path

import torch

from modeling_eisv import EISVForSpeakerVerification

from .distributed_evaluation import evaluate_during_training
from .export import export_model
from .selection import interpolate_state, relative_changes, selection_score
from .training_state import Candidate


class CandidateJudge:
    """Args: accelerator; model (prepared) and network (unwrapped); feature_extractor; run_data (TrainingData:
    `selection` lists, `test` list); state (TrainingState, appended to); output_dir; data and training
    arguments (eval_max_trials, selection_eer_floor; eval_batch_size, seed)."""

    def __init__(self, accelerator, model, network, feature_extractor, run_data, state, output_dir, data, args):
        self.accelerator, self.model, self.network = accelerator, model, network
        self.feature_extractor, self.run_data, self.state = feature_extractor, run_data, state
        self.output_dir, self.data, self.args = Path(output_dir), data, args

    def evaluate(self, tag, lists, network=None) -> dict:
        """{list name: results} of `network` (default the training model) on each list, one line per list."""
        out = {}
        for item in lists:
            with torch.compiler.set_stance("force_eager"):  # --torch_compile is for training steps, not these shapes
                results = evaluate_during_training(self.accelerator, network or self.model, self.feature_extractor,
                                                   item.path, item.root, self.args.eval_batch_size,
                                                   self.data.eval_max_trials, self.args.seed,
                                                   progress=sys.stderr.isatty())  # a bar on a terminal, not in logs
            overall = results["overall"]
            self.accelerator.print(f"[{tag}] {item.name}: EER {overall['eer']:.2f}%  minDCF(0.01) "
                                   f"{overall['min_dcf_0.01']:.4f}  ({results['num_trials_scored']} trials)")
            out[item.name] = results
        return out

    def consider(self, name, epoch, alpha=None) -> Candidate:
        """Score the network as it is now on the selection lists; export it when it beats the best so far."""
        state, floor = self.state, self.data.selection_eer_floor
        results = self.evaluate(name, self.run_data.selection)
        start = state.start.results if state.start else results
        score = selection_score(results, start, floor)
        candidate = Candidate(name, epoch, state.global_step, results, score, alpha)
        state.history.append(candidate)
        changes = relative_changes(results, start, floor)
        self.accelerator.print(f"[{name}] selection score {score:+.3f} ("
                               + ", ".join(f"{k} {v:+.1%}" for k, v in changes.items()) + ")")
        best = state.best_candidate
        if best is None or score < best.score:
            state.best = name
            if self.accelerator.is_main_process:
                export_model(self.network, self.feature_extractor, self.output_dir / "best_model",
                             results[self.run_data.selection[0].name])
        self.accelerator.log({f"selection/{k}_eer": v["overall"]["eer"] for k, v in results.items()}
                             | {"selection/score": score}, step=state.global_step)
        return candidate

    def interpolations(self, alphas, start_weights):
        """WiSE-FT: alpha * last + (1 - alpha) * start for each alpha, scored like the epochs; the network
        keeps its last weights afterwards. Once per run (a resumed finished run does not repeat them)."""
        if not alphas or any(c.alpha is not None for c in self.state.history):
            return
        last = copy.deepcopy(self.network.state_dict())
        for alpha in alphas:
            self.network.load_state_dict(interpolate_state(start_weights, last, alpha))
            self.consider(f"interpolation alpha={alpha:g}", self.state.epoch, alpha)
        self.network.load_state_dict(last)

    def test(self, start_weights):
        """The selected model, then the start, on the test list, once each (state.test_results,
        state.start_test_results)."""
        best, test, state = self.state.best_candidate, self.run_data.test, self.state
        if best.name == "start":
            self.accelerator.print("Fine-tuning did not beat the starting model on the selection lists: "
                                   "the exported model is the start.")
        if test is None or not (self.output_dir / "best_model").is_dir():
            return
        selected = EISVForSpeakerVerification.from_pretrained(self.output_dir / "best_model")
        state.test_results = self.evaluate(f"{best.name}, selected", [test], selected.to(self.accelerator.device))[test.name]
        del selected
        if best.name == "start":
            state.start_test_results = state.test_results
            return
        start_model = copy.deepcopy(self.network)
        start_model.load_state_dict(start_weights, strict=False)
        state.start_test_results = self.evaluate("start", [test], start_model)[test.name]
