"""Command-line / YAML arguments of `train_eisv.py`, as dataclasses (every field is a `--flag`)."""

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import yaml
from transformers import HfArgumentParser

REPO_ROOT = Path(__file__).resolve().parents[1]
# The bundled default data: data/ of a clone (or an editable install), else its copy inside the wheel
# (pyproject.toml maps data/ to the package eisv_training.bundled_data), so a normal install trains too.
BUNDLED_DATA = (REPO_ROOT / "data" if (REPO_ROOT / "data" / "emodb-mini").is_dir()
                else Path(__file__).resolve().parent / "bundled_data")
DEFAULT_DATA = BUNDLED_DATA / "emodb-mini"
BUNDLED_NEUTRAL_TRIALS = BUNDLED_DATA / "librispeech-mini" / "trials.csv"


@dataclass
class DataArguments:
    data: list[str] = field(default_factory=lambda: [str(DEFAULT_DATA)], metadata={
        "help": "Training recordings: AudioFolder folder(s) (metadata.csv), CSV/JSON file(s) of path, speaker, emotion, "
                "or a Hub dataset id. Speakers that appear in --trials are removed from training."})
    trials: Optional[str] = field(default=None, metadata={
        "help": "Test trial CSV (corpus, enroll, test, label, condition): the selected model is scored on it once, at "
                "the end. Default: the bundled demo trials when --data is the bundled demo, else none. Speakers "
                "that appear in it are removed from training."})
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
    validation_speakers: Optional[int] = field(default=None, metadata={
        "help": "Hold out N training speakers (spread over corpora, split fixed by --validation_seed); their trials "
                "(OUTPUT_DIR/validation_trials.csv) are one of the selection lists. Default: 12 with --protocol "
                "shared, else about 10%% of the speakers (at least 2); 0 = none."})
    validation_trials: list[str] = field(default_factory=lambda: ["auto"], metadata={
        "help": "Further selection trial lists, each PATH or PATH::ROOT (paths inside relative to ROOT, default the "
                "file's folder), evaluated before training and after every epoch. 'auto' = the neutral forgetting "
                "check: shared/data/neutral_trials.csv with --protocol shared, else the bundled "
                "data/librispeech-mini/trials.csv; 'none' = no further list."})
    select_on_trials: bool = field(default=False, metadata={
        "help": "Also use --trials as a selection list, i.e. pick the epoch on the list the model is tested on (a "
                "demo's shortcut; the card then says so). Needed when there is no other selection list."})
    selection_eer_floor: float = field(default=1.0, metadata={
        "help": "Selection score = mean over the selection lists of (EER - EER_start) / max(EER_start, floor): the "
                "relative change against the starting model, with the start's EER (in %%) floored so that one "
                "error on an easy list (the neutral check starts near 0.2%%) does not dominate. The start itself "
                "scores 0 and competes with every epoch."})
    validation_seed: int = field(default=0, metadata={
        "help": "Seed of the validation speaker split and its trials (not --seed: every run shares the split)."})
    validation_max_targets: int = field(default=4000, metadata={
        "help": "Target trials in the validation list (as many non-targets)."})
    test_on_trials: bool = field(default=True, metadata={
        "help": "Evaluate the selected model on --trials at the end (--no_test_on_trials for sweeps that must not "
                "see the evaluation trials)."})
    speed_perturb: Optional[str] = field(default=None, metadata={
        "help": "Comma-separated speed factors, e.g. '0.9,1.1': every training clip also enters at each speed, as "
                "a new speaker (WeSpeaker's speaker-count tripling); speed changes pitch and tempo like sox speed."})


@dataclass
class ModelArguments:
    init_from: str = field(default="resemblyzer", metadata={
        "help": "Start from this checkpoint folder or Hub id (encoder kept, head re-created for the training "
                "speakers). 'resemblyzer' (default) converts the GE2E weights of the installed resemblyzer package; "
                "'scratch' builds a new encoder from the settings below. A transformers WavLM / wav2vec2 / HuBERT / "
                "UniSpeech-SAT folder or id is converted first (eisv-convert --from transformers)."})
    encoder_type: str = field(default="ecapa_tdnn", metadata={
        "help": "ecapa_tdnn, ge2e_lstm or resnet (WeSpeaker's ResNet34; new encoders only)."})
    ecapa_channels: int = field(default=512, metadata={"help": "ECAPA-TDNN channels C (new encoders only)."})
    embedding_size: Optional[int] = field(default=None, metadata={"help": "Embedding size (new encoders only)."})
    aam_margin: float = field(default=0.2, metadata={"help": "Final AAM-softmax margin m (radians)."})
    aam_scale: float = field(default=30.0, metadata={"help": "AAM-softmax scale s."})
    erl_weight: float = field(default=1.0, metadata={
        "help": "Weight λ of the ERL loss λ·(1 − cos) on parallel pairs; 0 = off (the paper's baseline). 1.0 won the "
                "GE2E sweep on validation speakers (results/ablation; ECAPA from scratch preferred 3.0)."})
    aam_weight: Optional[float] = field(default=None, metadata={
        "help": "Weight of the AAM-softmax speaker-classification loss. 0 = emotion invariance only: the ERL pair "
                "loss and the teacher anchor train the encoder, which never learns to tell the training speakers "
                "apart (no head warm-up then). Default: 0 when fine-tuning (with --kd_weight 10 --kd_anchor "
                "neutral, the protection chosen on validation data in the third round: docs/results.md, "
                "results/generalisation), 1 from scratch."})
    freeze_layers: int = field(default=0, metadata={
        "help": "Freeze the lowest N layers of the encoder (GE2E: LSTM layers, then the projection; ECAPA: the "
                "input block, the SE-Res2 blocks, the aggregation, the pooling, the embedding layer; ResNet: the stem, "
                "the four stages, the embedding layer; ssl_backbone: the CNN feature encoder, its projection, each "
                "transformer layer: 1 freezes the CNN, 2 + layers the whole backbone)."})
    layer_lr_decay: float = field(default=1.0, metadata={
        "help": "Layer-wise learning rate: the top encoder layer trains at --learning_rate, each layer below at "
                "this factor times the one above (1.0 = one rate; the AAM head always gets the full rate)."})
    head_warmup_epochs: Optional[float] = field(default=None, metadata={
        "help": "Train only the new AAM-softmax head for the first N epochs, the encoder frozen, then everything "
                "(LP-FT, Kumar et al. 2022): a random head's first gradients otherwise distort the pretrained "
                "encoder (the validation EER rises in epoch 1). Default: 2 when fine-tuning with the AAM loss on "
                "(--aam_weight > 0), else 0."})
    kd_weight: Optional[float] = field(default=None, metadata={
        "help": "Weight of the teacher anchor λ_kd·(1 − cos(student(x), anchor)): a frozen copy of the starting "
                "encoder gives the anchor. Default: 10 when fine-tuning (0 of 27 teacher-anchored GE2E runs ran "
                "away, against 7 of 28 without), 0 from scratch."})
    kd_anchor: Optional[str] = field(default=None, metadata={
        "help": "same_input: the teacher's embedding of the same (unmasked) input; neutral: the teacher's mean "
                "embedding of the same speaker's plain neutral crops in the batch (the same input where the "
                "batch has none) — ERL against a fixed anchor instead of another moving embedding. Default: "
                "neutral when --aam_weight is 0, else same_input."})
    kd_contrast_weight: Optional[float] = field(default=None, metadata={
        "help": "Weight of an additive-margin cross-entropy against the teacher's anchors of the batch's speakers "
                "(margin 0.2, scale 30): each embedding closer to its own speaker's anchor than to the others'. "
                "Speaker separation like the AAM loss, but against fixed prototypes of the start instead of a new "
                "head. Needs the teacher (--kd_weight > 0); 0 = off. Default: 1 when fine-tuning with the teacher "
                "and without the AAM loss (the fifth round's protection on the shared protocol), else 0."})
    l2sp_weight: float = field(default=0.0, metadata={
        "help": "L2-SP (Li et al. 2018): adds α·Σ(θ − θ_start)² over the encoder's parameters to the loss, a pull "
                "towards the starting weights instead of towards 0 (0 = off)."})
    trim_long_silences: Optional[bool] = field(default=None, metadata={
        "help": "Voice-activity trimming (resemblyzer's WebRTC-VAD trim of pauses over ~180 ms, needs "
                "webrtcvad-wheels): True trims every training clip before it is cropped, the selection and test "
                "audio, and is saved in the model's preprocessor_config.json, so the tools and the pipeline trim "
                "the same way; False turns it off. Default: the starting model's setting (off for the shipped "
                "folders and for scratch)."})
    interpolate_alphas: Optional[str] = field(default=None, metadata={
        "help": "Weight-space interpolation with the start (WiSE-FT): after training, α·θ_last + (1 − α)·θ_start for "
                "each comma-separated α (e.g. '0.25,0.5,0.75') is scored on the selection lists and competes with "
                "the epochs."})


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
    output_dir: str = field(default="outputs/eisv-default", metadata={
        "help": "Where checkpoints, logs and the model go. A folder holding another run is refused unless "
                "--resume or --overwrite_output_dir."})
    overwrite_output_dir: bool = field(default=False, metadata={
        "help": "Remove a previous run's checkpoints, models and logs from --output_dir before starting."})
    seed: int = field(default=0, metadata={"help": "Seed of everything (sampler, collator, init)."})
    num_epochs: int = field(default=12, metadata={"help": "Epochs (an epoch = one pass of the sampler)."})
    max_steps: Optional[int] = field(default=None, metadata={"help": "Stop after this many optimizer steps."})
    speakers_per_batch: Optional[int] = field(default=None, metadata={
        "help": "P: speakers per batch (per process). Default: 32, or every training speaker when there are fewer."})
    utterances_per_speaker: int = field(default=4, metadata={"help": "K: utterances per speaker per batch."})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "Batches per optimizer step."})
    optimizer: str = field(default="adamw", metadata={"help": "adamw or sgd (momentum 0.9, nesterov)."})
    learning_rate: Optional[float] = field(default=None, metadata={
        "help": "Peak learning rate (not rescaled with world size: scale it yourself with the global batch; "
                "docs/results.md: x sqrt(number of processes) held EER on 2 and 4 GPUs). Default: 2e-4 when fine-tuning "
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
    torch_compile: bool = field(default=False, metadata={
        "help": "Compile the ECAPA-TDNN encoder (and the teacher's) with torch.compile for the training steps "
                "(evaluation stays eager; GE2E stays eager). The first steps take the compile time (about a minute "
                "on a GPU)."})
    torch_compile_mode: str = field(default="default", metadata={
        "help": "torch.compile mode for --torch_compile: default, reduce-overhead (CUDA graphs: the encoder's "
                "forward and backward each replay as one graph, without the host's cost per kernel; fixed crop "
                "lengths only, since each new shape records a new graph), or max-autotune-no-cudagraphs.",
        "choices": ["default", "reduce-overhead", "max-autotune-no-cudagraphs"]})
    torch_compile_backend: str = field(default="inductor", metadata={
        "help": "torch.compile backend for --torch_compile: inductor, or aot_eager (no code generation; to debug, "
                "or where no C compiler is installed)."})


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

    fine_tuning = model.init_from != "scratch"
    if model.aam_weight is None:
        model.aam_weight = 0.0 if fine_tuning else 1.0
    if model.kd_anchor is None:
        model.kd_anchor = "neutral" if model.aam_weight == 0 else "same_input"
    if model.kd_weight is None:
        model.kd_weight = 10.0 if fine_tuning else 0.0
    if model.head_warmup_epochs is None:
        model.head_warmup_epochs = 2.0 if fine_tuning and model.aam_weight > 0 else 0.0
    if model.kd_contrast_weight is None:
        model.kd_contrast_weight = 1.0 if fine_tuning and model.kd_weight and model.aam_weight == 0 else 0.0
    if model.aam_weight < 0 or model.l2sp_weight < 0:
        fail("aam_weight", "--aam_weight and --l2sp_weight must be >= 0")
    if model.aam_weight == 0 and model.head_warmup_epochs > 0:
        fail("head_warmup_epochs", "warms up the AAM head, which --aam_weight 0 does not train; leave it out")
    if model.aam_weight == 0 and not (model.erl_weight or model.kd_weight):
        fail("aam_weight", "0 with --erl_weight 0 and --kd_weight 0 leaves nothing to train")
    if model.l2sp_weight and model.init_from == "scratch":
        fail("l2sp_weight", "needs a pretrained starting model (--init_from), not scratch")
    if model.kd_anchor not in ("same_input", "neutral"):
        fail("kd_anchor", "choose same_input or neutral")
    if model.kd_weight and model.init_from == "scratch":
        fail("kd_weight", "needs a pretrained starting model (--init_from), not scratch")
    if model.kd_contrast_weight < 0 or (model.kd_contrast_weight and not model.kd_weight):
        fail("kd_contrast_weight", "must be >= 0, and needs the teacher (--kd_weight > 0)")
    if model.trim_long_silences:
        try:
            import webrtcvad  # noqa: F401
        except ImportError:
            fail("trim_long_silences", "needs the webrtcvad module: pip install webrtcvad-wheels "
                                       "(or pip install -e \".[vad]\")")
    if model.freeze_layers < 0 or not 0 < model.layer_lr_decay <= 1:
        fail("layer_lr_decay", "must lie in (0, 1], and --freeze_layers must be >= 0")
    for name, spec in (("interpolate_alphas", model.interpolate_alphas), ("speed_perturb", data.speed_perturb)):
        if spec:
            try:
                values = [float(v) for v in spec.split(",")]
            except ValueError:
                fail(name, f"{spec!r}: expected comma-separated numbers")
            if name == "interpolate_alphas" and not all(0 < v < 1 for v in values):
                fail(name, "every alpha must lie in (0, 1) (0 is the start, 1 the last epoch: both are candidates)")
            if name == "speed_perturb" and not all(0.5 <= v <= 2 and v != 1 for v in values):
                fail(name, "every factor must lie in [0.5, 2] and differ from 1")
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
    if (training.speakers_per_batch is not None and training.speakers_per_batch < 2) or training.utterances_per_speaker < 1:
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
