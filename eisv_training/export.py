"""The end of a run: the model folder (weights, feature extractor, remote code, card, results) and the push."""

import json
import shlex
import shutil
import sys
from pathlib import Path

from eisv_io.staged_folders import apply_umask, make_staging_folder, replace_folder
from model_cards import KNOWN_CORPORA, CardContext, cosine_evaluation, write_model_card
from modeling_eisv.save_converted import CONVERSION_FILENAME, card_metadata


def saved_network(network):
    """What a model folder holds: the whole `EISVForSpeakerVerification`, or only its encoder (`EISVModel`) when
    the AAM head was never trained (`config.aam_weight == 0`), so that no folder ships random logits as if they
    were a classifier (`AutoModelForAudioXVector` then says the head is newly initialised)."""
    return network.eisv if network.config.aam_weight == 0 and hasattr(network, "eisv") else network


def export_model(network, feature_extractor, folder, results=None):
    """`save_pretrained` model (`saved_network`) + feature extractor into `folder` atomically. With dev
    `results`, the decision threshold at the EER point is stored as `config.verification_threshold`."""
    network = saved_network(network)
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    if results is not None:
        network.config.verification_threshold = float(results["overall"]["eer_threshold"])
    staging = make_staging_folder(folder)
    try:
        network.save_pretrained(staging, safe_serialization=True)
        feature_extractor.save_pretrained(staging)
        if results is not None:
            (staging / "dev_results.json").write_text(json.dumps(results, indent=2))
        apply_umask(staging)
        replace_folder(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _datasets_info(report_rows, held_out):
    """Training corpora with licence and citation where known, and their sizes."""
    entries = []
    for corpus, stats in sorted(report_rows.items()):
        entry = dict(KNOWN_CORPORA.get(corpus, {"name": corpus, "license": "unknown (user data)"}))
        entry.update(name=entry.get("name", corpus), speakers=stats["speakers"], files=stats["files"],
                     hours=round(stats["seconds"] / 3600, 3), split="train")
        entries.append(entry)
    return entries


def _front_matter(folder) -> dict:
    """The metadata of a model folder's card (README.md front matter), or {} when it has none or it is not YAML."""
    return card_metadata(Path(folder) / "README.md")


def base_model_info(init_from) -> dict:
    """How the card names the starting model: a Hub id as `base_model`; a local folder by the name its own
    card gives it (never the machine's path, which means nothing in a pushed copy)."""
    if init_from == "resemblyzer":
        return {"base_model_note": "GE2E encoder of the resemblyzer package (Apache-2.0)"}
    folder = Path(init_from)
    if not folder.exists():
        return {"base_model": str(init_from)}
    meta = _front_matter(folder)
    name = next((entry.get("name") for entry in meta.get("model-index") or [] if isinstance(entry, dict)), None)
    return {"base_model_note": f"the eisv model {name or folder.name!r} (a local folder when this was trained)"}


def base_model_licence(init_from, output_dir) -> dict:
    """The licence of starting weights converted from another toolkit (`conversion.json`, written by
    `modeling_eisv.save_converted.conversion_record`), for the card: e.g. CC BY 4.0 for pyannote's WeSpeaker
    ResNet34, which asks for attribution, then binds the fine-tune's licence like a corpus licence.
    `train_eisv` converts resemblyzer and transformers sources into the output folder itself."""
    folders = ([Path(init_from)] if Path(init_from).is_dir()
               else [Path(output_dir) / "init-resemblyzer", Path(output_dir) / "init-transformers"])
    folder = next((f for f in folders if (f / CONVERSION_FILENAME).is_file()), None)
    if folder is None:
        return {}
    origin = json.loads((folder / CONVERSION_FILENAME).read_text(encoding="utf-8"))
    if origin.get("license", "unknown") == "unknown":
        return {"base_model_license": "unknown", "base_model_license_note": f"{origin['toolkit']} weights {origin['source']}: "
                                                                           "not stated; check before sharing"}
    return {"base_model_license": origin["license"],
            "base_model_license_note": f"{origin['toolkit']} weights {origin['source']}, from {origin['license_from']}"}


def inherited_datasets(init_from) -> list:
    """The starting model's training data, as its card lists it, so that its licence terms (RAVDESS
    non-commercial, ASED research-only, ...) reach the fine-tuned child's card."""
    folder = Path(init_from) if init_from not in ("resemblyzer", "scratch") else None
    meta = _front_matter(folder) if folder is not None and folder.exists() else {}
    names = meta.get("datasets") or []
    license_id = meta.get("license", "unknown")
    out = []
    for name in names if isinstance(names, list) else []:
        entry = dict(KNOWN_CORPORA.get(str(name).lower(), {"name": str(name), "license": f"{license_id} (the base model's)",
                                                           "license_id": license_id}))
        entry.update(name=f"{entry.get('name', name)} (training data of the base model)", split="base model")
        out.append(entry)
    return out


def finalize_model_folder(best_folder, final, state, stats, argument_groups, num_speakers, num_parameters, indexed,
                          run_data, argv):
    """Copy the selected candidate's model folder to `final` with a model card, `training_results.json`
    and, beside it, the card's inputs as `card_context.json` (`model_cards.rerender_model_card` re-creates
    the card from them).

    The card reports the selected model on the test list (with the starting model beside it) and on
    every selection list, each named for what it is."""
    data, model_args, recipe, args = argument_groups
    best_folder, final = Path(best_folder), Path(final)
    staging = make_staging_folder(final)
    try:
        shutil.copytree(best_folder, staging, dirs_exist_ok=True)
        config = json.loads((staging / "config.json").read_text())
        best = state.best_candidate
        summary = {"selected": best.name, "selection_score": best.score,
                   "selection": {"lists": [vars(s) for s in run_data.selection],
                                 "rule": f"mean relative EER change against the start, start EER floored at "
                                         f"{data.selection_eer_floor}%", "on_test_trials": bool(data.select_on_trials)},
                   "state": state.to_dict(), "test_results": state.test_results,
                   "start_test_results": state.start_test_results,
                   "validation_speakers": list(run_data.validation_speakers), "stats": stats,
                   "held_out_speakers": run_data.held_out, "num_speakers": num_speakers}
        (staging / "training_results.json").write_text(json.dumps(summary, indent=2))
        corpora = {}
        for corpus, speaker, seconds in zip(indexed["corpus"], indexed["speaker"], indexed["duration_s"]):
            entry = corpora.setdefault(corpus, {"files": 0, "seconds": 0.0, "speaker_set": set()})
            entry["files"] += 1
            entry["seconds"] += seconds
            entry["speaker_set"].add(speaker)
        for entry in corpora.values():
            entry["speakers"] = len(entry.pop("speaker_set"))
        results = []
        test_name = Path(data.trials).name if data.trials else None
        picked = "picked on these same trials (--select_on_trials)" if data.select_on_trials else \
            "unseen speakers; model picked on the selection lists"
        if state.test_results is not None:
            results.append(cosine_evaluation(state.test_results, f"{test_name} ({picked}): {best.name}"))
        if state.start_test_results is not None and best.name != "start":
            results.append(cosine_evaluation(state.start_test_results, f"{test_name}: the starting model, not fine-tuned"))
        for item in run_data.selection:
            if item.name in best.results:
                label = (f"validation trials ({len(run_data.validation_speakers)} held-out training speakers)"
                         if item.name == "validation_speakers" else f"{Path(item.path).name} (selection list)")
                results.append(cosine_evaluation(best.results[item.name], f"{label}: {best.name}"))
                if best.name != "start" and item.name in state.start.results:
                    results.append(cosine_evaluation(state.start.results[item.name], f"{label}: the starting model"))
        info = {
            "model_name": args.hub_model_id or final.parent.name,
            "config": config,
            "num_parameters": num_parameters,
            "datasets": _datasets_info(corpora, run_data.held_out),
            "recipe": {"copypaste": recipe.copypaste, "copypaste_prob": recipe.copypaste_prob,
                       "erl_weight": model_args.erl_weight, "em": recipe.em_select != "none",
                       "em_selection": recipe.em_select, "em_ratio": recipe.em_ratio, "em_apply_to": recipe.em_members,
                       "aam_margin": model_args.aam_margin, "aam_scale": model_args.aam_scale,
                       "learning_rate": args.learning_rate, "optimizer": args.optimizer,
                       "lr_scheduler": f"warm-up {args.warmup_ratio:.0%}, {args.lr_decay}",
                       "batch_size": args.speakers_per_batch * args.utterances_per_speaker,
                       "num_epochs": state.epoch, "crop_seconds": recipe.crop_seconds, "seed": args.seed,
                       "selected": best.name, "kd_weight": model_args.kd_weight, "kd_anchor": model_args.kd_anchor,
                       "kd_contrast_weight": model_args.kd_contrast_weight,
                       "freeze_layers": model_args.freeze_layers, "layer_lr_decay": model_args.layer_lr_decay,
                       "head_warmup_epochs": model_args.head_warmup_epochs, "interpolate_alphas": model_args.interpolate_alphas,
                       "speed_perturb": data.speed_perturb, "aam_weight": model_args.aam_weight,
                       "l2sp_weight": model_args.l2sp_weight},
            "results": results,
            "commands": ["python train_eisv.py " + shlex.join(sys.argv[1:] if argv is None else argv)],
        }
        if model_args.init_from != "scratch":
            info.update(base_model_info(model_args.init_from))
            info["datasets"] = info["datasets"] + inherited_datasets(model_args.init_from)
            info.update(base_model_licence(model_args.init_from, final.parent))
        write_model_card(staging, CardContext.from_dict(info), save_context=True)
        apply_umask(staging)
        replace_folder(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def push_folder(folder, repo_id, private=False) -> int:
    """Upload `folder` to the Hub repo `repo_id` (created if needed). -> 0, or 3 with a message saying
    what failed; the local folder is never touched."""
    from huggingface_hub import HfApi

    api = HfApi()
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
    except Exception as error:
        print(f"push_to_hub: could not create the repo {repo_id!r}: {error}. The model is intact in {folder}.",
              file=sys.stderr)
        return 3
    try:
        api.upload_folder(repo_id=repo_id, folder_path=str(folder), commit_message="Upload eisv model")
    except Exception as error:
        print(f"push_to_hub: uploading {folder} to {repo_id!r} failed: {error}. The model is intact in {folder}; "
              f"retry with `hf upload {repo_id} {folder}`.", file=sys.stderr)
        return 3
    print(f"Pushed {folder} to {repo_id}")
    return 0
