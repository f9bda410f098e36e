"""Model cards (`README.md`) for eisv models, with the evaluation results as `model-index` metadata.

`render_model_card(info) -> str` fills `template.md` (a `string.Template`, so no extra dependency)
from one dict; `write_model_card(output_dir, info)` writes it atomically as
`output_dir/README.md`. Every number in the card comes from `info`: a field that is absent is
left out of the card, or shown as "not evaluated" / "not recorded"; nothing is made up.

The `info` dict (validated by `validate_info`, which names the offending key):

required
    ``model_name`` (str): title of the card and `model-index` name.
    ``config`` (dict): `EISVConfig.to_dict()` of the saved model (needs ``encoder_type``).
    ``datasets`` (non-empty list of dict): the corpora the model was trained on, each with
        ``name`` (str) and ``license`` (str); optional ``citation`` (str), ``url`` (str),
        ``hub_id`` (str, a Hub dataset id for the ``datasets`` metadata; else ``name`` is used),
        ``hours`` (number), ``speakers`` (int), ``files`` (int), ``split`` (str, e.g. "train" or
        "Actor_01-Actor_18"). `corpus_defaults(name)` gives the licence and citation of the
        bundled corpora (ased, ravdess, emodb).

optional
    ``repo_id`` (str): Hub id used in the usage example (default: ``model_name``).
    ``num_parameters`` (int): parameters of the saved model.
    ``base_model`` (str): Hub id of the checkpoint it was fine-tuned from (→ ``base_model``
        metadata). ``base_model_note`` (str): free text about the start, e.g. the resemblyzer
        GE2E weights, which are not on the Hub.
    ``license`` (str): Hub licence id of the weights. Default: ``apache-2.0`` when every training
        corpus has a recognised permissive licence (CC0, CC BY, Apache-2.0, MIT), otherwise the
        licence of the other corpora if they share one recognised id (e.g. ``cc-by-nc-sa-4.0``),
        else ``other`` (e.g. research-only or unknown licences).
    ``language`` (list of str), ``tags`` (list of str, added to the default tags),
        ``pipeline_tag`` (str; none by default: an embedding model fits no Hub pipeline).
    ``description`` (str): a paragraph placed under the title.
    ``recipe`` (dict): training settings, shown in a table. Known keys get a label:
        ``copypaste`` (bool), ``copypaste_prob``, ``copypaste_patterns`` (list of str),
        ``erl_weight``, ``em`` (bool), ``em_selection``, ``em_ratio``, ``em_apply_to``,
        ``aam_margin``, ``aam_scale``, ``margin_schedule``, ``learning_rate``,
        ``lr_scheduler``, ``weight_decay``, ``optimizer``, ``batch_size``, ``num_epochs``,
        ``max_steps``, ``crop_seconds``, ``seed``, ``num_gpus``; any other key is listed as is.
    ``results`` (dict, or a list of them for several evaluations)::

            {"eval_name": str,                      # e.g. "eisv dev trials (RAVDESS 19-24 + EmoDB)"
             "dataset_id": str,                     # optional; model-index dataset type
             "split": str,                          # optional, default "test"
             "scoring": str,                        # optional, e.g. "cosine"
             "num_trials": int,                     # optional
             "overall": {"eer": 4.1, "min_dcf_0.01": 0.31, ...},
             "per_condition": {cond: {metrics}},    # optional
             "per_corpus": {corpus: {metrics}}}     # optional

        Metric keys: ``eer`` (percent, 0-100, as `modeling_eisv.scoring.compute_eer` returns),
        ``min_dcf_0.01``, ``min_dcf_0.05`` (normalised), ``eer_threshold``, ``num_targets``,
        ``num_nontargets``; a value of None means "not evaluated". `results_from_evaluation`
        converts the dict of `eisv_tools.evaluation.evaluate_trials` to this form.
    ``commands`` (list of str): the command lines that produced the model and its numbers.
    ``limitations`` (list of str): extra limitations, added to the standard ones.
"""

from __future__ import annotations

import numbers
import os
import re
import string
import tempfile
from pathlib import Path

import yaml

TEMPLATE_PATH = Path(__file__).with_name("template.md")
PAPER_ARXIV = "2505.18498"
PAPER_BIBTEX = """@misc{tian2025emotioninvariant,
  title         = {Learning Emotion-Invariant Speaker Representations for Speaker Verification},
  author        = {Tian and Hu and Xu},
  year          = {2025},
  eprint        = {2505.18498},
  archivePrefix = {arXiv},
  url           = {https://arxiv.org/abs/2505.18498}
}"""

# Licence and citation of the corpora in shared/data (see its README); no sizes: the split used decides them.
KNOWN_CORPORA = {
    "ased": {
        "name": "ASED",
        "license": "free for research use (as released by its authors)",
        "citation": "Retta et al., \"A New Amharic Speech Emotion Dataset and Classification Benchmark\", "
                    "ACM Transactions on Asian and Low-Resource Language Information Processing (TALLIP), 2022.",
    },
    "ravdess": {
        "name": "RAVDESS",
        "license": "CC BY-NC-SA 4.0",
        "citation": "Livingstone & Russo, \"The Ryerson Audio-Visual Database of Emotional Speech and Song "
                    "(RAVDESS)\", PLoS ONE 13(5): e0196391, 2018.",
    },
    "emodb": {
        "name": "EmoDB",
        "license": "CC0 1.0 (as republished by audEERING)",
        "citation": "Burkhardt, Paeschke, Rolfes, Sendlmeier & Weiss, \"A Database of German Emotional Speech\", "
                    "Interspeech 2005.",
    },
}

METRICS = (  # key, column title, model-index name, format
    ("eer", "EER (%)", "EER (%)", "{:.2f}"),
    ("min_dcf_0.01", "minDCF (p=0.01)", "minDCF (p_target=0.01, C_miss=C_fa=1)", "{:.4f}"),
    ("min_dcf_0.05", "minDCF (p=0.05)", "minDCF (p_target=0.05, C_miss=C_fa=1)", "{:.4f}"),
)

RECIPE_LABELS = {
    "copypaste": "CopyPaste parallel data",
    "copypaste_prob": "CopyPaste probability",
    "copypaste_patterns": "CopyPaste patterns",
    "erl_weight": "ERL cosine weight λ",
    "em": "emotion-aware masking (EM)",
    "em_selection": "EM frame selection",
    "em_ratio": "EM masked-frame ratio",
    "em_apply_to": "EM applied to",
    "aam_margin": "AAM margin m",
    "aam_scale": "AAM scale s",
    "margin_schedule": "margin schedule",
    "learning_rate": "learning rate",
    "lr_scheduler": "LR schedule",
    "weight_decay": "weight decay",
    "optimizer": "optimizer",
    "batch_size": "batch size",
    "num_epochs": "epochs",
    "max_steps": "max steps",
    "crop_seconds": "training crop (s)",
    "seed": "seed",
    "num_gpus": "GPUs",
}

_HUB_LICENSES = {  # normalised free text -> Hub licence id
    "ccbyncsa40": "cc-by-nc-sa-4.0", "ccbync40": "cc-by-nc-4.0", "ccbyncnd40": "cc-by-nc-nd-4.0",
    "ccbysa40": "cc-by-sa-4.0", "ccby40": "cc-by-4.0", "cc010": "cc0-1.0", "apache20": "apache-2.0", "mit": "mit",
}
_PERMISSIVE = {"cc0-1.0", "cc-by-4.0", "apache-2.0", "mit"}  # data under these leaves the weights' licence free
_OPTIONAL_TYPES = {
    "repo_id": str, "num_parameters": numbers.Integral, "base_model": str, "base_model_note": str, "license": str,
    "language": list, "tags": list, "pipeline_tag": str, "description": str, "recipe": dict, "commands": list,
    "limitations": list,
}


class ModelCardInfoError(ValueError):
    """The `info` dict given to the model-card generator is missing a key or has a wrong type."""


# ---------------------------------------------------------------------------------------- validation


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check(condition: bool, where: str, message: str) -> None:
    if not condition:
        raise ModelCardInfoError(f"model card info{where}: {message}")


def _validate_metrics(metrics, where: str) -> None:
    _check(isinstance(metrics, dict), where, f"must be a dict of metrics, got {type(metrics).__name__}")
    for key, value in metrics.items():
        if key == "note":
            continue
        _check(value is None or _is_number(value), f"{where}[{key!r}]", f"must be a number or None, got {value!r}")
    eer = metrics.get("eer")
    _check(eer is None or 0 <= eer <= 100, f"{where}['eer']", f"is a percentage in [0, 100], got {eer!r}")


def _validate_results(results, where: str) -> None:
    _check(isinstance(results, dict), where, f"must be a dict, got {type(results).__name__}")
    _check(isinstance(results.get("eval_name"), str) and results["eval_name"], f"{where}['eval_name']",
           "missing (a non-empty str naming the evaluation set)")
    _check("overall" in results, f"{where}['overall']", "missing (a dict such as {'eer': ..., 'min_dcf_0.01': ...})")
    _validate_metrics(results["overall"], f"{where}['overall']")
    for group in ("per_condition", "per_corpus"):
        if results.get(group) is not None:
            _check(isinstance(results[group], dict), f"{where}[{group!r}]", "must be a dict {name: metrics}")
            for name, metrics in results[group].items():
                _validate_metrics(metrics, f"{where}[{group!r}][{name!r}]")
    for key in ("num_trials",):
        if results.get(key) is not None:
            _check(_is_number(results[key]), f"{where}[{key!r}]", "must be a number")


def validate_info(info: dict) -> None:
    """Raise `ModelCardInfoError` naming the first missing or mistyped key of `info`."""
    _check(isinstance(info, dict), "", f"must be a dict, got {type(info).__name__}")
    _check(isinstance(info.get("model_name"), str) and info["model_name"], "['model_name']",
           "missing (a non-empty str)")
    _check(isinstance(info.get("config"), dict), "['config']", "missing (the dict of EISVConfig.to_dict())")
    _check(isinstance(info["config"].get("encoder_type"), str), "['config']['encoder_type']", "missing")
    datasets = info.get("datasets")
    _check(isinstance(datasets, list) and len(datasets) > 0, "['datasets']",
           "missing (a non-empty list of {'name', 'license', ...}, one per training corpus)")
    for i, dataset in enumerate(datasets):
        where = f"['datasets'][{i}]"
        _check(isinstance(dataset, dict), where, "must be a dict")
        for key in ("name", "license"):
            _check(isinstance(dataset.get(key), str) and dataset[key], f"{where}[{key!r}]", "missing (a non-empty str)")
        for key in ("hours", "speakers", "files"):
            if dataset.get(key) is not None:
                _check(_is_number(dataset[key]), f"{where}[{key!r}]", f"must be a number, got {dataset[key]!r}")
    for key, kind in _OPTIONAL_TYPES.items():
        if info.get(key) is not None:
            ok = isinstance(info[key], kind) and not isinstance(info[key], bool)
            _check(ok, f"[{key!r}]", f"must be {kind.__name__}, got {type(info[key]).__name__}")
    for key in ("language", "tags", "commands", "limitations"):
        if info.get(key) is not None:
            _check(all(isinstance(v, str) for v in info[key]), f"[{key!r}]", "must be a list of str")
    results = info.get("results")
    if results is not None:
        if isinstance(results, list):
            for i, item in enumerate(results):
                _validate_results(item, f"['results'][{i}]")
        else:
            _validate_results(results, "['results']")


# ---------------------------------------------------------------------------------------- helpers


def corpus_defaults(name: str) -> dict:
    """Licence and citation of a bundled corpus ("ased", "ravdess", "emodb"), to extend with sizes."""
    try:
        return dict(KNOWN_CORPORA[name.lower()])
    except KeyError:
        raise KeyError(f"unknown corpus {name!r}; known: {', '.join(KNOWN_CORPORA)}") from None


def results_from_evaluation(evaluation: dict, eval_name: str, *, dataset_id: str | None = None,
                            scoring: str | None = None) -> dict:
    """`eisv_tools.evaluation.evaluate_trials` output -> the ``results`` entry of `info`.

    Takes the groups of `scoring` (default: the evaluation's primary scoring): ``overall``,
    ``by_condition`` -> ``per_condition``, ``by_corpus`` -> ``per_corpus``.
    """
    scoring = scoring or evaluation.get("scoring", "cosine")
    groups = evaluation["metrics"][scoring]
    results = {
        "eval_name": eval_name,
        "scoring": scoring,
        "num_trials": evaluation.get("num_trials"),
        "overall": dict(groups["overall"]),
        "per_condition": {k: dict(v) for k, v in groups.get("by_condition", {}).items()},
        "per_corpus": {k: dict(v) for k, v in groups.get("by_corpus", {}).items()},
    }
    if dataset_id:
        results["dataset_id"] = dataset_id
    return {k: v for k, v in results.items() if v is not None}


def _restriction(license_text: str) -> str | None:
    """'non-commercial' / 'research-only' when a licence limits the use of what is trained on it."""
    text = license_text.lower()
    if re.search(r"\bnc\b|-nc\b|non-?commercial", text.replace("_", "-").replace(" ", "-")) or "by-nc" in text:
        return "non-commercial"
    if "research" in text:
        return "research-only"
    return None


def _hub_license(license_text: str) -> str | None:
    key = re.sub(r"[^a-z0-9]", "", license_text.lower().split("(")[0])
    return _HUB_LICENSES.get(key)


def weights_license(info: dict) -> str:
    """The Hub licence id of the weights (see the module docstring for the default)."""
    if info.get("license"):
        return info["license"]
    ids = [_hub_license(d["license"]) for d in info["datasets"]]
    if all(i in _PERMISSIVE for i in ids):
        return "apache-2.0"
    others = {i for i in ids if i not in _PERMISSIVE}
    return others.pop() if len(others) == 1 and None not in others else "other"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "eval"


def _fmt(value, fmt: str = "{}") -> str:
    if value is None:
        return "not evaluated"
    if isinstance(value, float) and fmt == "{}":
        return f"{value:g}"
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


def _results_list(info: dict) -> list[dict]:
    results = info.get("results")
    if results is None:
        return []
    return results if isinstance(results, list) else [results]


# ---------------------------------------------------------------------------------------- sections


def _model_index(info: dict) -> list[dict] | None:
    entries = []
    for results in _results_list(info):
        groups = [("overall", results["overall"])]
        groups += [(f"condition: {k}", v) for k, v in (results.get("per_condition") or {}).items()]
        groups += [(f"corpus: {k}", v) for k, v in (results.get("per_corpus") or {}).items()]
        for group, metrics in groups:
            values = [
                {"type": key, "value": metrics[key], "name": name}
                for key, _, name, _ in METRICS if metrics.get(key) is not None
            ]
            if not values:
                continue
            dataset = {
                "type": results.get("dataset_id") or _slug(results["eval_name"]),
                "name": f"{results['eval_name']} ({group})",
                "config": group,
                "split": results.get("split", "test"),
            }
            entries.append({
                "task": {"type": "speaker-verification", "name": "Speaker Verification"},
                "dataset": dataset,
                "metrics": values,
            })
    if not entries:
        return None
    return [{"name": info["model_name"], "results": entries}]


def _front_matter(info: dict) -> str:
    tags = ["speaker-verification", "speaker-embedding", "emotion", "emotion-invariant", "eisv", "audio"]
    tags += [t for t in info.get("tags") or [] if t not in tags]
    meta = {"library_name": "transformers", "license": weights_license(info)}
    if info.get("pipeline_tag"):
        meta["pipeline_tag"] = info["pipeline_tag"]
    if info.get("language"):
        meta["language"] = list(info["language"])
    meta["tags"] = tags
    meta["datasets"] = [d.get("hub_id") or d["name"] for d in info["datasets"]]
    if info.get("base_model"):
        meta["base_model"] = info["base_model"]
    model_index = _model_index(info)
    if model_index:
        meta["model-index"] = model_index
    return yaml.safe_dump(meta, sort_keys=False, allow_unicode=True, default_flow_style=False)


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
    return kind


def _model_table(info: dict) -> str:
    config = info["config"]
    rows = [("encoder", _encoder_description(config))]
    if config.get("frontend"):
        bins = f", {config['num_mel_bins']} mel bands" if config.get("num_mel_bins") else ""
        rate = f", {config['sampling_rate']} Hz" if config.get("sampling_rate") else ""
        rows.append(("input features", f"`{config['frontend']}`{bins}{rate}"))
    if config.get("embedding_size") is not None:
        rows.append(("embedding size", str(config["embedding_size"])))
    rows.append(("parameters", f"{info['num_parameters']:,}" if info.get("num_parameters") is not None
                 else "not recorded"))
    if info.get("base_model") or info.get("base_model_note"):
        start = " — ".join(x for x in (f"`{info['base_model']}`" if info.get("base_model") else None,
                                        info.get("base_model_note")) if x)
        rows.append(("fine-tuned from", start))
    if config.get("verification_threshold") is not None:
        rows.append(("verification threshold (cosine)", _cell(config["verification_threshold"])))
    lines = ["| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(lines)


def _summary(info: dict) -> str:
    text = (f"A speaker-verification model that maps speech to a speaker embedding meant to stay the same "
            f"across emotions, trained with the eisv package following Tian, Hu & Xu, *Learning "
            f"Emotion-Invariant Speaker Representations for Speaker Verification* "
            f"([arXiv:{PAPER_ARXIV}](https://arxiv.org/abs/{PAPER_ARXIV})). Compare two embeddings by cosine "
            f"similarity.")
    if info.get("description"):
        text = info["description"].strip() + "\n\n" + text
    return text


def _threshold_note(info: dict) -> str:
    config = info["config"]
    if config.get("calibration_scale") is not None:
        return (f"The config carries a score calibration, LLR = {_cell(config['calibration_scale'])} · score "
                f"{'+' if config['calibration_offset'] >= 0 else '−'} {_cell(abs(config['calibration_offset']))} "
                f"({config.get('calibration_scores') or 'cosine'} scores; fitted on {config.get('calibration_source')}): "
                "`eisv-verify` and the pipeline report the LLR and accept at LLR ≥ log((1 − p)/p), `--p-target` "
                "default 0.5. Fitted on other corpora than yours, it is a starting point: recalibrate with "
                "`eisv-calibrate` on labelled trials of your domain.")
    threshold = config.get("verification_threshold")
    if threshold is None:
        return ("The saved config has no `verification_threshold`: pass `--threshold` to `eisv-verify`, "
                "chosen on trials of your own domain.")
    return (f"`eisv-verify` accepts when the cosine score is at least the config's `verification_threshold` "
            f"({_cell(threshold)}) unless `--threshold` is given; calibrate it on your own data.")


def _data_section(info: dict) -> str:
    lines = ["| corpus | used | licence | hours | speakers | files |", "|---|---|---|---:|---:|---:|"]
    for d in info["datasets"]:
        name = f"[{d['name']}]({d['url']})" if d.get("url") else d["name"]
        cells = [name, d.get("split") or "training", d["license"]]
        cells += ["" if d.get(k) is None else _cell(d[k]) for k in ("hours", "speakers", "files")]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    restricted = [(d["name"], d["license"], _restriction(d["license"])) for d in info["datasets"]
                  if _restriction(d["license"])]
    if restricted:
        listed = "; ".join(f"{name}: {lic}" for name, lic, _ in restricted)
        kinds = " and ".join(sorted({kind for _, _, kind in restricted}))
        lines += ["", f"> **Licence warning.** These weights were trained on data under {kinds} terms "
                      f"({listed}). Treat the weights as bound by the same terms: no commercial use "
                      f"without checking those licences. The card's `license` field is "
                      f"`{weights_license(info)}` for that reason."]
    unknown = [d["name"] for d in info["datasets"]
               if not _restriction(d["license"]) and _hub_license(d["license"]) not in _PERMISSIVE]
    if unknown:
        lines += ["", f"> **Licence note.** The licence of {', '.join(unknown)} is not one this card recognises "
                      f"as permissive; check it before using or sharing the weights."]
    return "\n".join(lines)


def _recipe_section(info: dict) -> str:
    recipe = info.get("recipe")
    parts = []
    if recipe:
        lines = ["| setting | value |", "|---|---|"]
        known = [k for k in RECIPE_LABELS if k in recipe]
        others = sorted(k for k in recipe if k not in RECIPE_LABELS)
        for key in known + others:
            lines.append(f"| {RECIPE_LABELS.get(key, key)} | {_cell(recipe[key])} |")
        parts.append("\n".join(lines))
    else:
        parts.append("The training settings were not recorded.")
    if info.get("commands"):
        parts.append("Produced by:\n\n```bash\n" + "\n".join(info["commands"]) + "\n```")
    return "\n\n".join(parts)


def _results_table(results: dict) -> str:
    present = [m for m in METRICS if any(
        (metrics or {}).get(m[0]) is not None
        for metrics in [results["overall"], *(results.get("per_condition") or {}).values(),
                        *(results.get("per_corpus") or {}).values()])] or list(METRICS[:2])
    has_counts = "num_targets" in results["overall"] or "num_nontargets" in results["overall"]
    header = ["trials"] + [title for _, title, _, _ in present]
    if has_counts:
        header += ["targets", "non-targets"]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    groups = [("**all**", results["overall"])]
    groups += [(f"condition `{k}`", v) for k, v in (results.get("per_condition") or {}).items()]
    groups += [(f"corpus `{k}`", v) for k, v in (results.get("per_corpus") or {}).items()]
    for name, metrics in groups:
        cells = [name] + [_fmt(metrics.get(key), fmt) for key, _, _, fmt in present]
        if has_counts:
            cells += ["" if metrics.get(k) is None else str(metrics[k]) for k in ("num_targets", "num_nontargets")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _results_section(info: dict) -> str:
    all_results = _results_list(info)
    if not all_results:
        return "Not evaluated: no results were recorded for this model."
    parts = []
    for results in all_results:
        facts = []
        if results.get("num_trials") is not None:
            facts.append(f"{results['num_trials']:,} trials")
        if results.get("scoring"):
            facts.append(f"{results['scoring']} scoring")
        head = f"### {results['eval_name']}"
        if facts:
            head += "\n\n" + ", ".join(facts) + "."
        parts.append(head + "\n\n" + _results_table(results))
    parts.append("EER in percent; minDCF normalised, C_miss = C_fa = 1. Target conditions compare genuine "
                 "trials of that condition against the same impostor trials.")
    return "\n\n".join(parts)


def _limitations(info: dict) -> str:
    calibrated = info["config"].get("calibration_scale") is not None
    items = [
        "Emotional speech corpora like the ones above are acted and small; spontaneous emotion, other "
        "languages, recording channels and noise may behave differently from the numbers reported here.",
        ("The calibration was fitted on the corpora named above; on other domains its LLRs can be off, so "
         "recalibrate on data of the target domain." if calibrated else
         "Scores are not calibrated probabilities; a decision threshold must be set on data of the target domain."),
        "Speaker verification can be misused for surveillance or to identify people without consent; "
        "do not use it for forensic or high-stakes decisions.",
    ]
    items += list(info.get("limitations") or [])
    return "\n".join(f"- {item}" for item in items)


def _citations(info: dict) -> str:
    parts = ["The method:", "```bibtex\n" + PAPER_BIBTEX + "\n```"]
    cited = [d for d in info["datasets"] if d.get("citation")]
    if cited:
        parts.append("The training data:")
        parts.append("\n".join(f"- {d['name']}: {d['citation']}" for d in cited))
    if info["config"].get("encoder_type") == "ge2e_lstm":
        parts.append("The encoder: Wan, Wang, Papir & Lopez Moreno, \"Generalized End-to-End Loss for Speaker "
                     "Verification\", ICASSP 2018.")
    elif info["config"].get("encoder_type") == "ecapa_tdnn":
        parts.append("The encoder: Desplanques, Thienpondt & Demuynck, \"ECAPA-TDNN: Emphasized Channel "
                     "Attention, Propagation and Aggregation in TDNN Based Speaker Verification\", Interspeech 2020.")
    return "\n\n".join(parts)


# ---------------------------------------------------------------------------------------- API


def render_model_card(info: dict) -> str:
    """Validate `info` and return the model card (YAML front matter + Markdown) as a string."""
    validate_info(info)
    template = string.Template(TEMPLATE_PATH.read_text(encoding="utf-8"))
    return template.substitute(
        front_matter=_front_matter(info),
        title=info["model_name"],
        summary=_summary(info),
        model_table=_model_table(info),
        repo_id=info.get("repo_id") or info["model_name"],
        threshold_note=_threshold_note(info),
        data_section=_data_section(info),
        recipe_section=_recipe_section(info),
        results_section=_results_section(info),
        limitations=_limitations(info),
        citations=_citations(info),
    )


def write_model_card(output_dir: str | os.PathLike, info: dict) -> Path:
    """Render the card and write it as `output_dir/README.md` atomically (temp file, then rename).

    The card is rendered before anything is written, so an invalid `info` leaves the folder as it was.
    """
    text = render_model_card(info)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    target = output_dir / "README.md"
    fd, tmp = tempfile.mkstemp(prefix=".README.", suffix=".md.tmp", dir=output_dir)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a README is meant to be read
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
