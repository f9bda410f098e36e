"""Command-line / YAML arguments of `train_eisv.py`, as dataclasses (every field is a `--flag`)."""

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import yaml
from transformers import HfArgumentParser

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO_ROOT / "data" / "emodb-mini"


@dataclass
class DataArguments:
    data: list[str] = field(default_factory=lambda: [str(DEFAULT_DATA)], metadata={
        "help": "Training recordings: AudioFolder folder(s) (metadata.csv), CSV/JSON file(s) of path, speaker, emotion, "
                "or a Hub dataset id. Speakers that appear in --trials are removed from training."})
    trials: Optional[str] = field(default=str(DEFAULT_DATA / "trials.csv"), metadata={
        "help": "Trial CSV (corpus, enroll, test, label, condition) evaluated before training and after each epoch."})
    trials_root: Optional[str] = field(default=None, metadata={
        "help": "Folder the trial paths are relative to (default: the trial file's folder)."})
    protocol: Optional[str] = field(default=None, metadata={
        "help": "'shared': the full protocol of shared/data/README.md (train on ASED + RAVDESS Actor_01-18, "
                "evaluate on dev_trials.csv); sets --data/--trials/--trials_root from --shared_data."})
    shared_data: str = field(default=str(REPO_ROOT.parent / "shared" / "data"), metadata={
        "help": "Where the shared corpora are, for --protocol shared."})
    column_mapping: Optional[str] = field(default=None, metadata={
        "help": 'JSON mapping of your column names to ours, e.g. \'{"wav": "path", "spk": "speaker"}\'.'})
    neutral_label: str = field(default="neutral", metadata={"help": "Emotion label that counts as neutral."})
    skip_bad_rows: bool = field(default=False, metadata={
        "help": "Drop unreadable/empty/NaN rows (listed in OUTPUT_DIR/bad_rows.csv) instead of stopping."})
    eval_max_trials: Optional[int] = field(default=None, metadata={"help": "Evaluate on a seeded random subset of trials."})
    validation_speakers: int = field(default=0, metadata={
        "help": "Hold out N training speakers (spread over corpora, split fixed by --validation_seed) and pick the "
                "best epoch on trials among them (OUTPUT_DIR/validation_trials.csv); --trials is then evaluated "
                "once, on the selected model, at the end. 0: pick the best epoch on --trials itself."})
    validation_seed: int = field(default=0, metadata={
        "help": "Seed of the validation speaker split and its trials (not --seed: every run shares the split)."})
    validation_max_targets: int = field(default=4000, metadata={
        "help": "Target trials in the validation list (as many non-targets)."})
    test_on_trials: bool = field(default=True, metadata={
        "help": "With --validation_speakers: evaluate the selected model on --trials at the end "
                "(--no_test_on_trials for sweeps that must not see the evaluation trials)."})


@dataclass
class ModelArguments:
    init_from: str = field(default="resemblyzer", metadata={
        "help": "Start from this checkpoint folder or Hub id (encoder kept, head re-created for the training "
                "speakers). 'resemblyzer' (default) converts the GE2E weights of the installed resemblyzer package; "
                "'scratch' builds a new encoder from the settings below."})
    encoder_type: str = field(default="ecapa_tdnn", metadata={"help": "ecapa_tdnn or ge2e_lstm (new encoders only)."})
    ecapa_channels: int = field(default=512, metadata={"help": "ECAPA-TDNN channels C (new encoders only)."})
    embedding_size: Optional[int] = field(default=None, metadata={"help": "Embedding size (new encoders only)."})
    aam_margin: float = field(default=0.2, metadata={"help": "Final AAM-softmax margin m (radians)."})
    aam_scale: float = field(default=30.0, metadata={"help": "AAM-softmax scale s."})
    erl_weight: float = field(default=1.0, metadata={
        "help": "Weight λ of the ERL loss λ·(1 − cos) on parallel pairs; 0 = off (the paper's baseline). 1.0 won the "
                "GE2E sweep on validation speakers (results/ablation; ECAPA from scratch preferred 3.0)."})


@dataclass
class RecipeArguments:
    crop_seconds: float = field(default=2.0, metadata={"help": "Training crop length (s)."})
    copypaste: bool = field(default=True, metadata={
        "help": "Build CopyPaste parallel pairs; --copypaste False (or --no_copypaste) = the paper's baseline."})
    copypaste_prob: float = field(default=0.5, metadata={"help": "Fraction of each speaker's samples turned into CopyPaste pairs."})
    copypaste_patterns: Optional[str] = field(default=None, metadata={
        "help": 'JSON pattern probabilities, e.g. \'{"neutral_emotional": 0.3, "emotional_neutral": 0.3, '
                '"emotional_emotional": 0.2, "original_copypaste": 0.2}\' (default: all four equally likely).'})
    pair_without_copypaste: bool = field(default=True, metadata={
        "help": "Pair two real utterances of a speaker (different emotions where it has several) when a pair is not "
                "CopyPaste'd, so ERL has pairs even with CopyPaste off."})
    em_select: str = field(default="energy", metadata={
        "help": "Emotion-aware masking: energy (highest-energy frames), random (the control) or none (the baseline)."})
    em_ratio: float = field(default=0.1, metadata={
        "help": "Fraction of frames masked by EM (0.1 won the sweep on validation speakers for both encoders)."})
    em_contiguous: bool = field(default=True, metadata={"help": "Mask contiguous blocks (else scattered frames)."})
    em_members: str = field(default="both", metadata={
        "help": "Mask 'both' members of each pair, only the 'second' (the CopyPaste composite), or 'all' rows."})


@dataclass
class TrainingArguments:
    output_dir: str = field(default="outputs/eisv-default", metadata={"help": "Where checkpoints, logs and the model go."})
    seed: int = field(default=0, metadata={"help": "Seed of everything (sampler, collator, init)."})
    num_epochs: int = field(default=12, metadata={"help": "Epochs (an epoch = one pass of the sampler)."})
    max_steps: Optional[int] = field(default=None, metadata={"help": "Stop after this many optimizer steps."})
    speakers_per_batch: int = field(default=6, metadata={"help": "P: speakers per batch (per process)."})
    utterances_per_speaker: int = field(default=4, metadata={"help": "K: utterances per speaker per batch."})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "Batches per optimizer step."})
    optimizer: str = field(default="adamw", metadata={"help": "adamw or sgd (momentum 0.9, nesterov)."})
    learning_rate: Optional[float] = field(default=None, metadata={
        "help": "Peak learning rate (not rescaled with world size: scale it yourself with the global batch; "
                "README: x sqrt(number of processes) held EER on 2 and 4 GPUs). Default: 2e-4 when fine-tuning "
                "(--init_from), 4e-3 from scratch (the sweep's choices on validation speakers, batch 32x4)."})
    weight_decay: float = field(default=1e-4, metadata={"help": "Weight decay."})
    warmup_ratio: float = field(default=0.1, metadata={"help": "Fraction of steps of linear LR warm-up."})
    lr_decay: str = field(default="cosine", metadata={"help": "cosine, linear or constant after warm-up."})
    margin_warmup_ratio: float = field(default=0.3, metadata={"help": "Fraction of steps over which the margin grows from 0."})
    max_grad_norm: float = field(default=5.0, metadata={"help": "Gradient clipping norm (0 = off)."})
    mixed_precision: str = field(default="auto", metadata={"help": "no, bf16, or auto (bf16 on GPU, no on CPU)."})
    num_workers: int = field(default=0, metadata={"help": "DataLoader worker processes."})
    features_on_device: str = field(default="auto", metadata={
        "help": "Compute fbank/mel features on the accelerator instead of in the data workers: yes, no, or auto "
                "(yes on GPU for the fbank frontend)."})
    checkpointing_steps: int = field(default=0, metadata={"help": "Save a resumable checkpoint every N steps (0 = each epoch)."})
    checkpoints_total_limit: int = field(default=2, metadata={"help": "Keep the newest N checkpoints."})
    resume: Optional[str] = field(default=None, metadata={"help": "'latest' or a checkpoint folder to resume exactly from."})
    logging_steps: int = field(default=10, metadata={"help": "Log to TensorBoard every N steps."})
    eval_batch_size: int = field(default=32, metadata={"help": "Windows per forward pass in evaluation."})
    push_to_hub: bool = field(default=False, metadata={"help": "Upload the final model folder to the Hub."})
    hub_model_id: Optional[str] = field(default=None, metadata={"help": "Hub repo id for --push_to_hub."})
    hub_private: bool = field(default=False, metadata={"help": "Create the Hub repo private."})


ARGUMENT_CLASSES = (DataArguments, ModelArguments, RecipeArguments, TrainingArguments)


def parse_arguments(argv=None):
    """-> (data, model, recipe, training) dataclasses. `--config FILE.yaml` gives defaults; flags override."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = HfArgumentParser(ARGUMENT_CLASSES, description="Train an emotion-invariant speaker encoder (eisv).")
    parser.add_argument("--config", type=str, default=None, help="YAML file of arguments (flags given too win).")
    if "--config" in argv:
        position = argv.index("--config")
        path = Path(argv[position + 1])
        values = yaml.safe_load(path.read_text()) or {}
        if not isinstance(values, dict):
            raise SystemExit(f"{path}: expected a mapping of argument names to values")
        known = {f for cls in ARGUMENT_CLASSES for f in cls.__dataclass_fields__}
        unknown = sorted(set(values) - known)
        if unknown:
            raise SystemExit(f"{path}: unknown argument(s) {', '.join(unknown)}")
        parser.set_defaults(**values)
    *groups, extra = parser.parse_args_into_dataclasses(args=argv)
    data, model, recipe, training = groups
    validate(data, model, recipe, training)
    return data, model, recipe, training


def validate(data, model, recipe, training):
    def fail(flag, message):
        raise SystemExit(f"train_eisv: --{flag}: {message}")

    if training.learning_rate is None:
        training.learning_rate = 4e-3 if model.init_from == "scratch" else 2e-4
    if data.protocol not in (None, "shared"):
        fail("protocol", f"{data.protocol!r}; the only named protocol is 'shared'")
    if recipe.em_select not in ("none", "energy", "random"):
        fail("em_select", "choose none, energy or random")
    if recipe.em_members not in ("both", "second", "all"):
        fail("em_members", "choose both, second or all")
    if not 0 <= recipe.em_ratio < 1:
        fail("em_ratio", "must be in [0, 1)")
    if training.optimizer not in ("adamw", "sgd"):
        fail("optimizer", "choose adamw or sgd")
    if training.features_on_device not in ("auto", "yes", "no"):
        fail("features_on_device", "choose auto, yes or no")
    if training.mixed_precision not in ("auto", "no", "bf16"):
        fail("mixed_precision", "choose auto, no or bf16")
    if training.push_to_hub and not training.hub_model_id:
        fail("hub_model_id", "is required with --push_to_hub")
    if training.speakers_per_batch < 2 or training.utterances_per_speaker < 1:
        fail("speakers_per_batch", "needs at least 2 speakers and 1 utterance each per batch")
    for name in ("column_mapping",):
        value = getattr(data, name)
        if value is not None:
            try:
                json.loads(value)
            except json.JSONDecodeError as error:
                fail(name, f"not valid JSON ({error})")
    if recipe.copypaste_patterns is not None:
        try:
            json.loads(recipe.copypaste_patterns)
        except json.JSONDecodeError as error:
            fail("copypaste_patterns", f"not valid JSON ({error})")
