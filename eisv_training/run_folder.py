"""A run's folder: checks before it spends any time (output folder, Hub access), and resuming into it."""

import shutil
from pathlib import Path

from .checkpoints import CheckpointError, latest_checkpoint, load_checkpoint, restore_state_dict
from .training_state import TrainingState

# What a run writes into --output_dir; --overwrite_output_dir removes these (and nothing else).
RUN_ARTEFACTS = ("checkpoints", "best_model", "model", "eisv", "init-resemblyzer", "init-transformers",
                 "validation_trials.csv", "bad_rows.csv", "bad_rows_validation.csv")


def check_output_dir(output_dir: Path, resume=None, overwrite=False):
    """Refuse a non-empty --output_dir of another run unless --resume or --overwrite_output_dir (transformers'
    convention), so two runs never mix checkpoints, models and logs. With --overwrite_output_dir the previous
    run's artefacts are removed first; other files stay."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir() or not any(output_dir.iterdir()) or resume:
        return
    if not overwrite:
        raise SystemExit(
            f"train_eisv: --output_dir {output_dir} already holds files of another run "
            f"({', '.join(sorted(p.name for p in output_dir.iterdir())[:5])}). Pass --resume latest to continue "
            f"it, --overwrite_output_dir to replace it, or choose another --output_dir.")
    for name in RUN_ARTEFACTS:
        path = output_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def check_push_access(repo_id: str, private=False):
    """Fail before training, not after it, when the Hub login or the repo is not usable."""
    from huggingface_hub import HfApi

    api = HfApi()
    try:
        user = api.whoami()
    except Exception as error:
        raise SystemExit(f"train_eisv: --push_to_hub: not logged in to the Hub ({error}); run `hf auth login` or "
                         f"set HF_TOKEN, or drop --push_to_hub") from None
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
    except Exception as error:
        raise SystemExit(f"train_eisv: --push_to_hub: cannot create or reach the repo {repo_id!r} as "
                         f"{user.get('name', '?')} ({error}); check --hub_model_id and the token's write access") from None


def quiet_libraries():
    """Silence library output whose cause is known and expected in a run: the per-save "Writing model shards"
    bars and the load report of a head that is re-created on purpose (build_model says so in one line)."""
    import datasets
    import transformers
    from huggingface_hub.utils import disable_progress_bars

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    disable_progress_bars()


def resume_state(accelerator, resume, output_dir, model, optimizer, schedules: dict) -> TrainingState:
    """Restore `--resume latest|FOLDER` into the prepared model, optimizer and `schedules` ({name: object with
    state_dict}); a fresh TrainingState without --resume. A checkpoint resumed into another --output_dir
    brings its run's selected model (best_model) along."""
    if not resume:
        return TrainingState()
    output_dir = Path(output_dir)
    checkpoints_dir = output_dir / "checkpoints"
    checkpoint = latest_checkpoint(checkpoints_dir) if resume == "latest" else Path(resume)
    if checkpoint is None or not checkpoint.is_dir():
        raise SystemExit(f"train_eisv: --resume {resume}: no complete checkpoint in {checkpoints_dir}")
    try:
        progress, extra = load_checkpoint(accelerator, checkpoint, model, optimizer)
        for name, schedule in schedules.items():
            restore_state_dict(schedule, extra.get(name), name)
    except CheckpointError as error:
        raise SystemExit(f"train_eisv: --resume: {error}") from None
    state = TrainingState.from_dict(progress)
    accelerator.print(f"Resumed from {checkpoint} (epoch {state.epoch}, step {state.global_step})")
    if state.best and not (output_dir / "best_model").is_dir():
        original = checkpoint.resolve().parent.parent / "best_model"
        if not original.is_dir():
            raise SystemExit(f"train_eisv: --resume {checkpoint}: the run's selected model ({state.best}) is not "
                             f"in {output_dir} nor in {original.parent}; resume in the run's own --output_dir")
        if accelerator.is_main_process:
            shutil.copytree(original, output_dir / "best_model")
        accelerator.wait_for_everyone()
    return state
