"""Model cards (`README.md`) for eisv models, built with huggingface_hub from a typed `CardContext`.

`render_model_card(context) -> str` fills the Jinja2 template `template.md` through
`ModelCard.from_template`: the front matter is a `ModelCardData` whose `model-index` is built by
`huggingface_hub` from one `EvalResult` per reported metric. `write_model_card(output_dir, context)`
writes `output_dir/README.md` atomically and, with `save_context=True`, the context itself as
`card_context.json`, from which `rerender_model_card(folder)` re-creates the same card. A plain dict of
the `CardContext` fields is accepted wherever a context is (`CardContext.from_dict` checks it).

Python here only turns numbers into table cells; the wording and layout of the card live in the template.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from .context import CardContext, Corpus, Evaluation
from .licences import PERMISSIVE, restriction, weights_license

TEMPLATE_PATH = Path(__file__).with_name("template.md")
DEFAULT_TAGS = ["speaker-verification", "speaker-embedding", "emotion", "emotion-invariant", "eisv", "audio"]

METRICS = (  # key, column title, model-index name, format
    ("eer", "EER (%)", "EER (%)", "{:.2f}"),
    ("min_dcf_0.01", "minDCF (p=0.01)", "minDCF (p_target=0.01, C_miss=C_fa=1)", "{:.4f}"),
    ("min_dcf_0.05", "minDCF (p=0.05)", "minDCF (p_target=0.05, C_miss=C_fa=1)", "{:.4f}"),
)

RECIPE_LABELS = {
    "copypaste": "CopyPaste parallel data", "copypaste_prob": "CopyPaste probability",
    "copypaste_patterns": "CopyPaste patterns", "erl_weight": "ERL cosine weight λ",
    "em": "emotion-aware masking (EM)", "em_selection": "EM frame selection", "em_ratio": "EM masked-frame ratio",
    "em_apply_to": "EM applied to", "aam_margin": "AAM margin m", "aam_scale": "AAM scale s",
    "margin_schedule": "margin schedule", "learning_rate": "learning rate", "lr_scheduler": "LR schedule",
    "weight_decay": "weight decay", "optimizer": "optimizer", "batch_size": "batch size", "num_epochs": "epochs",
    "max_steps": "max steps", "crop_seconds": "training crop (s)", "seed": "seed", "num_gpus": "GPUs",
}


def as_context(context_or_info) -> CardContext:
    """A `CardContext`, built (and checked) from a dict when one is given."""
    if isinstance(context_or_info, CardContext):
        return context_or_info
    return CardContext.from_dict(context_or_info)


# ---------------------------------------------------------------------------------------- cells


def _fmt(value, fmt: str = "{}") -> str:
    if value is None:
        return "not evaluated"
    return fmt.format(value)


def _cell(value) -> str:
    if value is None:
        return "not set"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value) if value else "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value).replace("|", "\\|")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "eval"


def _groups(evaluation: Evaluation) -> list[tuple[str, str, dict]]:
    """(model-index config, table label, metrics) for overall, each condition and each corpus."""
    return ([("overall", "**all**", evaluation.overall)]
            + [(f"condition: {k}", f"condition `{k}`", v) for k, v in evaluation.per_condition.items()]
            + [(f"corpus: {k}", f"corpus `{k}`", v) for k, v in evaluation.per_corpus.items()])


# ---------------------------------------------------------------------------------------- metadata


def eval_results(context: CardContext) -> list[EvalResult]:
    """One `EvalResult` per reported metric of every evaluation group; None values are not reported."""
    out = []
    for evaluation in context.results:
        for config, _, metrics in _groups(evaluation):
            out += [EvalResult(task_type="speaker-verification", task_name="Speaker Verification",
                               dataset_type=evaluation.dataset_id or _slug(evaluation.eval_name),
                               dataset_name=f"{evaluation.eval_name} ({config})", dataset_config=config,
                               dataset_split=evaluation.split, metric_type=key, metric_value=metrics[key],
                               metric_name=name)
                    for key, _, name, _ in METRICS if metrics.get(key) is not None]
    return out


def card_data(context: CardContext) -> ModelCardData:
    """The card's Hub metadata: licence, tags, datasets, base model and the `model-index`."""
    results = eval_results(context)
    return ModelCardData(
        library_name="transformers", license=weights_license(context), pipeline_tag=context.pipeline_tag,
        language=context.language, tags=DEFAULT_TAGS + [t for t in context.tags or [] if t not in DEFAULT_TAGS],
        datasets=[d.hub_id or d.name for d in context.datasets], base_model=context.base_model,
        model_name=context.model_name if results else None, eval_results=results or None)


# ---------------------------------------------------------------------------------------- body


def _encoder_description(config: dict) -> str:
    kind = config["encoder_type"]
    if kind == "ecapa_tdnn":
        parts = [f"C={config[k]}" if k == "ecapa_channels" else f"{k.removeprefix('ecapa_')}={config[k]}"
                 for k in ("ecapa_channels", "ecapa_mfa_channels", "ecapa_attention_channels", "ecapa_se_channels")
                 if config.get(k) is not None]
        return "ECAPA-TDNN (Desplanques et al. 2020)" + (f": {', '.join(parts)}" if parts else "")
    if kind == "ge2e_lstm":
        parts = [f"{k.removeprefix('ge2e_')}={config[k]}" for k in ("ge2e_num_layers", "ge2e_hidden_size")
                 if config.get(k) is not None]
        return "GE2E LSTM (Wan et al. 2018)" + (f": {', '.join(parts)}" if parts else "")
    if kind == "resnet":
        parts = [f"{k.removeprefix('resnet_')}={config[k]}" for k in ("resnet_channels", "resnet_num_blocks")
                 if config.get(k) is not None]
        return "ResNet with statistics pooling (WeSpeaker's ResNet34 layout)" + (f": {', '.join(parts)}" if parts else "")
    if kind == "campplus":
        parts = [f"{k.removeprefix('campplus_')}={config[k]}" for k in ("campplus_block_layers", "campplus_growth_rate")
                 if config.get(k) is not None]
        return "CAM++ (Wang et al. 2023, 3D-Speaker's layout)" + (f": {', '.join(parts)}" if parts else "")
    return kind


def _model_rows(context: CardContext) -> list[tuple[str, str]]:
    config = context.config
    rows = [("encoder", _encoder_description(config))]
    if config.get("frontend"):
        bins = f", {config['num_mel_bins']} mel bands" if config.get("num_mel_bins") else ""
        rate = f", {config['sampling_rate']} Hz" if config.get("sampling_rate") else ""
        rows.append(("input features", f"`{config['frontend']}`{bins}{rate}"))
    if config.get("embedding_size") is not None:
        rows.append(("embedding size", str(config["embedding_size"])))
    rows.append(("parameters", "not recorded" if context.num_parameters is None else f"{context.num_parameters:,}"))
    start = [x for x in (context.base_model and f"`{context.base_model}`", context.base_model_note) if x]
    if start:
        rows.append(("fine-tuned from", " — ".join(start)))
    if context.base_model_license:
        note = f" ({context.base_model_license_note})" if context.base_model_license_note else ""
        rows.append(("licence of the starting weights", f"`{context.base_model_license}`{note}"))
    if config.get("verification_threshold") is not None:
        rows.append(("verification threshold (cosine)", _cell(config["verification_threshold"])))
    return rows


def _calibration(config: dict) -> dict | None:
    if config.get("calibration_scale") is None:
        return None
    offset = config["calibration_offset"]
    return {"scale": _cell(config["calibration_scale"]), "sign": "+" if offset >= 0 else "−",
            "offset": _cell(abs(offset)), "scores": config.get("calibration_scores") or "cosine",
            "source": config.get("calibration_source")}


def _corpus_row(corpus: Corpus) -> list[str]:
    cells = [f"[{corpus.name}]({corpus.url})" if corpus.url else corpus.name, corpus.split or "training", corpus.license]
    cells += ["" if value is None else _cell(value) for value in (corpus.hours, corpus.speakers, corpus.files)]
    return [c.replace("|", "\\|") for c in cells]


def _evaluation_view(evaluation: Evaluation) -> dict:
    groups = _groups(evaluation)
    present = [m for m in METRICS if any(metrics.get(m[0]) is not None for _, _, metrics in groups)] or list(METRICS[:2])
    counts = "num_targets" in evaluation.overall or "num_nontargets" in evaluation.overall
    header = ["trials"] + [title for _, title, _, _ in present] + (["targets", "non-targets"] if counts else [])
    rows = []
    for _, label, metrics in groups:
        cells = [label] + [_fmt(metrics.get(key), fmt) for key, _, _, fmt in present]
        if counts:
            cells += ["" if metrics.get(k) is None else str(metrics[k]) for k in ("num_targets", "num_nontargets")]
        rows.append(cells)
    facts = ([f"{evaluation.num_trials:,} trials"] if evaluation.num_trials is not None else []) + \
        ([f"{evaluation.scoring} scoring"] if evaluation.scoring else [])
    return {"name": evaluation.eval_name, "facts": ", ".join(facts), "header": header, "rows": rows}


def template_values(context: CardContext) -> dict:
    """The values `template.md` is filled with, besides `card_data`."""
    restricted = [(d.name, d.license, restriction(d)) for d in context.datasets if restriction(d)]
    recipe = context.recipe or {}
    recipe_keys = [k for k in RECIPE_LABELS if k in recipe] + sorted(k for k in recipe if k not in RECIPE_LABELS)
    return {
        "title": context.model_name,
        "description": (context.description or "").strip(),
        "model_rows": _model_rows(context),
        "repo_id": context.repo_id or context.model_name,
        "calibration": _calibration(context.config),
        "threshold": None if context.config.get("verification_threshold") is None
        else _cell(context.config["verification_threshold"]),
        "corpus_rows": [_corpus_row(d) for d in context.datasets],
        "restricted": "; ".join(f"{name}: {lic}" for name, lic, _ in restricted),
        "restriction_kinds": " and ".join(sorted({kind for _, _, kind in restricted})),
        "weights_licence": weights_license(context),
        "unknown_licences": [d.name for d in context.datasets
                             if not restriction(d) and d.license_id not in PERMISSIVE],
        "recipe_rows": [(RECIPE_LABELS.get(k, k), _cell(recipe[k])) for k in recipe_keys],
        "commands": context.commands or [],
        "evaluations": [_evaluation_view(e) for e in context.results],
        "limitations": context.limitations or [],
        "cited": [d for d in context.datasets if d.citation],
        "encoder_type": context.config.get("encoder_type"),
    }


# ---------------------------------------------------------------------------------------- API


def build_model_card(context_or_info) -> ModelCard:
    """The `huggingface_hub.ModelCard` of a context (or of a dict of its fields, checked first)."""
    context = as_context(context_or_info)
    return ModelCard.from_template(card_data(context), template_path=str(TEMPLATE_PATH), **template_values(context))


def render_model_card(context_or_info) -> str:
    """The model card (YAML front matter + Markdown) as a string."""
    return str(build_model_card(context_or_info))


def write_model_card(output_dir: str | os.PathLike, context_or_info, save_context: bool = False) -> Path:
    """Write the card as `output_dir/README.md` atomically; with `save_context`, also the context as
    `output_dir/card_context.json`. The card is rendered first, so bad input leaves the folder as it was."""
    from eisv_io.atomic_files import write_text_atomic

    context = as_context(context_or_info)
    text = render_model_card(context)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    target = output_dir / "README.md"
    write_text_atomic(target, text)
    if save_context:
        context.save(output_dir)
    return target


def rerender_model_card(folder: str | os.PathLike, **changes) -> Path:
    """Re-create `folder/README.md` from its `card_context.json`, with `changes` to the context's fields
    (e.g. ``model_name=``, ``description=``); the updated context is saved back beside the card."""
    context = CardContext.load(folder)
    if changes:
        context = CardContext.from_dict({**context.to_dict(), **changes})
    return write_model_card(folder, context, save_context=True)
