"""Checks made before a run spends any time: its output folder, its Hub access, its starting encoder."""

import shutil
import sys
from pathlib import Path

# What a run writes into --output_dir; --overwrite_output_dir removes these (and nothing else).
RUN_ARTEFACTS = ("checkpoints", "best_model", "model", "eisv", "init-resemblyzer", "validation_trials.csv",
                 "bad_rows.csv", "bad_rows_validation.csv")


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


def starting_encoder_type(model_args):
    """The encoder type the run will train (`ge2e_lstm`, `ecapa_tdnn`, ...), known before the model is built."""
    if model_args.init_from == "resemblyzer":
        return "ge2e_lstm"
    if model_args.init_from == "scratch":
        return model_args.encoder_type
    from modeling_eisv import EISVConfig

    try:
        return EISVConfig.from_pretrained(model_args.init_from).encoder_type
    except Exception as error:
        print(f"train_eisv: --init_from {model_args.init_from}: cannot read its config ({error})", file=sys.stderr)
        raise SystemExit(1) from None
