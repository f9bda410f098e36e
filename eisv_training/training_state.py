"""The run's progress, saved in every checkpoint and in `training_results.json`: one typed record."""

from dataclasses import asdict, dataclass, field
from typing import Optional


@dataclass
class Candidate:
    """A model the run could export: the start (epoch 0), an epoch, or an interpolation with the start.

    results: {selection list name: evaluation results (EER in %, see distributed_evaluation)}.
    score: mean relative EER change against the start over the selection lists (selection.py)."""

    name: str
    epoch: int
    step: int
    results: dict
    score: float
    alpha: Optional[float] = None


@dataclass
class TrainingState:
    """epoch: epochs finished; batches_done: batches of the current epoch done; global_step: optimizer steps.
    history: every candidate scored so far (the start first); best: the name of the selected one.
    non_finite: one record per skipped step (step, whether the loss was finite, parameters with
    non-finite gradients; eisv_training/step.py's NonFiniteSteps), written at the logging step, checkpoint
    or epoch end after the skip. trim_long_silences: the feature extractor's voice-activity trimming
    (None in checkpoints that predate it); a resume with the other setting is refused."""

    epoch: int = 0
    batches_done: int = 0
    global_step: int = 0
    history: list = field(default_factory=list)
    best: Optional[str] = None
    non_finite: list = field(default_factory=list)
    test_results: Optional[dict] = None
    start_test_results: Optional[dict] = None
    trim_long_silences: Optional[bool] = None  # the front end every candidate was trained and scored with

    @property
    def start(self) -> Optional[Candidate]:
        return self.history[0] if self.history else None

    @property
    def best_candidate(self) -> Optional[Candidate]:
        return next((c for c in self.history if c.name == self.best), None)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainingState":
        values = dict(values)
        values["history"] = [Candidate(**c) for c in values.get("history", [])]
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in values.items() if k in known})
