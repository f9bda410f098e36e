"""The training run's data: the training rows, the held-out validation speakers, the selection and test lists.

What is trained on, what picks the model and what tests it are kept apart here, so the loop never
selects on the list it is tested on unless `--select_on_trials` says so.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

from data_collators import index_dataset, load_source
from data_collators.sources import load_protocol_split
from eisv_evaluation.trials import read_trials
from eisv_io.atomic_files import atomic_path

from .arguments import BUNDLED_NEUTRAL_TRIALS, DEFAULT_DATA
from .selection import SelectionList, list_name, parse_selection_list, unique_names
from .validation_split import carve_validation_speakers, make_validation_trials


@dataclass
class TrainingData:
    """indexed: the indexed training rows; report: its IndexReport; held_out: speakers dropped because the
    test list uses them; validation_speakers: speakers carved out for selection; selection: the lists the
    model is picked on; test: the list it is tested on once at the end, or None."""

    indexed: object
    report: object
    held_out: list = field(default_factory=list)
    validation_speakers: list = field(default_factory=list)
    selection: list = field(default_factory=list)
    test: SelectionList = None


def trial_files(trials_path, trials_root) -> set:
    """Absolute paths of every file a trial list uses."""
    trials = read_trials(trials_path)
    return {str((Path(trials_root) / name).resolve()) for name in set(trials.enroll) | set(trials.test)}


def resolve_defaults(data):
    """Fill the protocol's and the demo's defaults into `data` (DataArguments) in place."""
    is_demo = data.protocol is None and [str(Path(p)) for p in data.data] == [str(DEFAULT_DATA)]
    if data.protocol == "shared":
        shared = Path(data.shared_data)
        data.trials, data.trials_root = str(shared / "dev_trials.csv"), str(shared)
    elif data.trials is None and is_demo:
        data.trials = str(DEFAULT_DATA / "trials.csv")
    if data.trials and data.trials_root is None:
        data.trials_root = str(Path(data.trials).parent)
    if data.validation_trials == ["auto"]:
        neutral = Path(data.shared_data) / "neutral_trials.csv" if data.protocol == "shared" else BUNDLED_NEUTRAL_TRIALS
        data.validation_trials = [str(neutral)] if neutral.is_file() else []
    elif data.validation_trials == ["none"]:
        data.validation_trials = []


def default_validation_speakers(data, num_speakers: int) -> int:
    """--validation_speakers when not given: 12 for the shared protocol, else ~10% (at least 2) of the
    speakers, or 0 when --select_on_trials picks on the test list."""
    if data.validation_speakers is not None:
        return data.validation_speakers
    if data.select_on_trials:
        return 0
    if data.protocol == "shared":
        return 12
    return max(2, round(0.1 * num_speakers))


def load_training_data(data, output_dir, accelerator) -> TrainingData:
    """Training rows minus the test list's speakers minus the validation speakers, indexed; and the
    selection lists (validation trials written to OUTPUT_DIR/validation_trials.csv, then
    --validation_trials, then --trials with --select_on_trials)."""
    if data.protocol == "shared":
        dataset = load_protocol_split(data.shared_data, "train")
    else:
        mapping = json.loads(data.column_mapping) if data.column_mapping else None
        dataset = load_source(data.data if len(data.data) > 1 else data.data[0], column_mapping=mapping)
    out = TrainingData(None, None)
    if data.trials:
        in_trials = trial_files(data.trials, data.trials_root)
        paths = [str(Path(p).resolve()) for p in dataset["path"]]
        out.held_out = sorted({s for s, p in zip(dataset["speaker"], paths) if p in in_trials})
        if out.held_out:
            held = set(out.held_out)
            dataset = dataset.filter(lambda s: s not in held, input_columns="speaker")
        out.test = SelectionList(list_name(data.trials), data.trials, data.trials_root) if data.test_on_trials else None
    num_validation = default_validation_speakers(data, len(set(dataset["speaker"])))
    selection = []
    if num_validation:
        try:
            dataset, validation, out.validation_speakers = carve_validation_speakers(dataset, num_validation,
                                                                                    data.validation_seed)
        except ValueError as error:
            raise SystemExit(f"train_eisv: --validation_speakers: {error}. With this few speakers pass "
                             f"--validation_speakers 0 and pick the model on --validation_trials LIST (or, as a "
                             f"demo does, on --trials with --select_on_trials)") from None
        with accelerator.main_process_first():
            validation, _ = index_dataset(validation, neutral_emotions=(data.neutral_label,),
                                          skip_bad_rows=data.skip_bad_rows, skip_hint="--skip_bad_rows",
                                          bad_rows_log=Path(output_dir) / "bad_rows_validation.csv")
        path = Path(output_dir) / "validation_trials.csv"
        if accelerator.is_main_process:
            trials = make_validation_trials(validation.map(lambda p: {"path": str(Path(p).resolve())},
                                                           input_columns="path"),
                                            data.validation_max_targets, data.validation_seed, (data.neutral_label,))
            with atomic_path(path) as staging:
                trials.to_csv(staging, index=False)
        accelerator.wait_for_everyone()
        selection.append(SelectionList("validation_speakers", str(path), "/"))
    for spec in data.validation_trials:
        try:
            selection.append(parse_selection_list(spec))
        except FileNotFoundError as error:
            raise SystemExit(f"train_eisv: --validation_trials: {error}") from None
    if data.select_on_trials and data.trials:
        selection.append(SelectionList(list_name(data.trials), data.trials, data.trials_root))
    if not selection:
        raise SystemExit("train_eisv: nothing to pick the model on: pass --trials with --select_on_trials, "
                         "--validation_speakers N or --validation_trials LIST")
    out.selection = unique_names(selection)
    with accelerator.main_process_first():
        out.indexed, out.report = index_dataset(dataset, neutral_emotions=(data.neutral_label,),
                                                skip_bad_rows=data.skip_bad_rows, skip_hint="--skip_bad_rows",
                                                bad_rows_log=Path(output_dir) / "bad_rows.csv")
    return out
