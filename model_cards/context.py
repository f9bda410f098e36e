"""The typed inputs of a model card, saved as `card_context.json` so a card can be re-rendered later.

`CardContext` holds everything a card shows; `CardContext.from_dict` builds one from plain data (a
JSON file, or the dict callers used to pass) and raises `ModelCardInfoError` naming the first
missing or mistyped key, e.g. ``['datasets'][0]['license']``. Every number in the card comes from
here: a field left None is left out of the card or shown as "not evaluated" / "not recorded".

Metric dicts (`Metrics`) use the keys ``eer`` (percent, 0-100, as `eisv_evaluation.scoring.compute_eer`
returns), ``min_dcf_0.01``, ``min_dcf_0.05`` (normalised), ``eer_threshold``, ``num_targets``,
``num_nontargets``, with None for "not evaluated", and an optional free-text ``note``.
"""

from __future__ import annotations

import dataclasses
import json
import numbers
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONTEXT_FILENAME = "card_context.json"
Metrics = typing.NewType("Metrics", dict)  # metric key -> number or None ("note" -> str); checked by `_metrics`


class ModelCardInfoError(ValueError):
    """The data given to the model-card generator is missing a key or has a wrong type."""


@dataclass
class Corpus:
    """One training corpus. `corpus_defaults(name)` gives the licence, Hub licence id and citation of the
    registered ones (`model_cards.licences`)."""

    name: str
    license: str  # as its authors state it
    license_id: str | None = None  # its Hub licence id ("cc-by-nc-sa-4.0", "other"); None = unknown
    restriction: str | None = None  # "non-commercial" / "research-only" beyond what license_id says
    citation: str | None = None
    url: str | None = None
    hub_id: str | None = None  # Hub dataset id for the ``datasets`` metadata (else ``name``)
    hours: float | None = None
    speakers: int | None = None
    files: int | None = None
    split: str | None = None  # e.g. "train" or "Actor_01-Actor_18"


@dataclass
class Evaluation:
    """The results of one trial list: overall and per target condition / per corpus."""

    eval_name: str  # e.g. "eisv dev trials (RAVDESS 19-24 + EmoDB)"
    overall: Metrics
    per_condition: dict[str, Metrics] = field(default_factory=dict)
    per_corpus: dict[str, Metrics] = field(default_factory=dict)
    dataset_id: str | None = None  # model-index dataset type (default: a slug of eval_name)
    split: str = "test"
    scoring: str | None = None  # e.g. "cosine"
    num_trials: int | None = None


@dataclass
class CardContext:
    """Everything a model card shows. ``config`` is `EISVConfig.to_dict()` of the saved model."""

    model_name: str  # title of the card and model-index name
    config: dict[str, Any]
    datasets: list[Corpus]
    repo_id: str | None = None  # Hub id of the usage example (default: model_name)
    num_parameters: int | None = None
    base_model: str | None = None  # Hub id of the start (-> ``base_model`` metadata)
    base_model_note: str | None = None  # free text about a start that is not on the Hub
    base_model_license: str | None = None  # Hub licence id of the starting weights; counts like a corpus licence
    base_model_license_note: str | None = None  # where that licence was read (e.g. "the source's model card")
    license: str | None = None  # Hub licence id of the weights; default from the data (`weights_license`)
    language: list[str] | None = None
    tags: list[str] | None = None  # added to the default tags
    pipeline_tag: str | None = None  # none by default: an embedding model fits no Hub pipeline
    description: str | None = None  # a paragraph under the title
    recipe: dict[str, Any] | None = None  # training settings; `generate.RECIPE_LABELS` names the known keys
    results: list[Evaluation] = field(default_factory=list)
    commands: list[str] | None = None  # the command lines that produced the model and its numbers
    limitations: list[str] | None = None  # added to the standard ones

    @classmethod
    def from_dict(cls, data: dict) -> CardContext:
        """Build and check a context from plain data; ``results`` may be one dict or a list of them."""
        _check(isinstance(data, dict), "", f"must be a dict, got {type(data).__name__}")
        data = dict(data)
        if isinstance(data.get("results"), (dict, Evaluation)):
            data["results"] = [_build(Evaluation, data["results"], "['results']")]
        context = _build(cls, data, "")
        _check(len(context.datasets) > 0, "['datasets']",
               "missing (a non-empty list of {'name', 'license', ...}, one per training corpus)")
        _check(isinstance(context.config.get("encoder_type"), str), "['config']['encoder_type']", "missing")
        return context

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def save(self, folder) -> Path:
        """Write the context as `folder/card_context.json` (atomically) and return the path."""
        from eisv_io.atomic_files import write_text_atomic

        path = Path(folder) / CONTEXT_FILENAME
        write_text_atomic(path, json.dumps(self.to_dict(), indent=2, ensure_ascii=False, default=str) + "\n")
        return path

    @classmethod
    def load(cls, path) -> CardContext:
        """Read a saved context: `path` is the JSON file or the model folder holding it."""
        path = Path(path)
        if path.is_dir():
            path = path / CONTEXT_FILENAME
        return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))


def results_from_evaluation(evaluation: dict, eval_name: str, *, dataset_id: str | None = None,
                            scoring: str | None = None) -> Evaluation:
    """`eisv_evaluation.evaluation.evaluate_trials` output -> an `Evaluation` of the card.

    Takes the groups of `scoring` (default: the evaluation's primary scoring): ``overall``,
    ``by_condition`` -> ``per_condition``, ``by_corpus`` -> ``per_corpus``.
    """
    scoring = scoring or evaluation.get("scoring", "cosine")
    groups = evaluation["metrics"][scoring]
    return _build(Evaluation, {
        "eval_name": eval_name, "scoring": scoring, "num_trials": evaluation.get("num_trials"),
        "dataset_id": dataset_id, "overall": groups["overall"],
        "per_condition": groups.get("by_condition", {}), "per_corpus": groups.get("by_corpus", {}),
    }, "")


def cosine_evaluation(results: dict, eval_name: str) -> Evaluation:
    """Cosine-scored results of one trial list (`overall`, `by_corpus`, `by_condition`, `num_trials`, as
    training's evaluation and the experiments' JSON hold them) -> an `Evaluation` of the card."""
    return results_from_evaluation({"metrics": {"cosine": results}, "num_trials": results.get("num_trials"),
                                    "scoring": "cosine"}, eval_name)


def _check(condition: bool, where: str, message: str) -> None:
    if not condition:
        raise ModelCardInfoError(f"model card info{where}: {message}")


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _metrics(value, where: str) -> dict:
    _check(isinstance(value, dict), where, f"must be a dict of metrics, got {type(value).__name__}")
    for key, number in value.items():
        if key != "note":
            _check(number is None or _is_number(number), f"{where}[{key!r}]", f"must be a number or None, got {number!r}")
    eer = value.get("eer")
    _check(eer is None or 0 <= eer <= 100, f"{where}['eer']", f"is a percentage in [0, 100], got {eer!r}")
    return dict(value)


def _coerce(hint, value, where: str):
    """`value` checked against the type `hint` (dataclass, list/dict of them, str/int/float, Any)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):  # X | None: None was handled by the caller
        return _coerce(next(a for a in args if a is not type(None)), value, where)
    if hint is Metrics:
        return _metrics(value, where)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, where)
    if origin is list:
        _check(isinstance(value, list), where, f"must be a list, got {type(value).__name__}")
        return [_coerce(args[0], item, f"{where}[{i}]") for i, item in enumerate(value)]
    if origin is dict:
        _check(isinstance(value, dict), where, f"must be a dict, got {type(value).__name__}")
        return {key: _coerce(args[1], item, f"{where}[{key!r}]") for key, item in value.items()}
    if hint is str:
        _check(isinstance(value, str) and value != "", where, f"must be a non-empty str, got {value!r}")
    elif hint is int:
        _check(isinstance(value, numbers.Integral) and not isinstance(value, bool), where,
               f"must be an int, got {value!r}")
    elif hint is float:
        _check(_is_number(value), where, f"must be a number, got {value!r}")
    return value


def _build(cls, data, where: str):
    """An instance of the dataclass `cls` from the dict `data`, every field checked by `_coerce`."""
    if isinstance(data, cls):
        return data
    _check(isinstance(data, dict), where, f"must be a dict, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(known))
    _check(not unknown, f"{where}[{unknown[0]!r}]" if unknown else where, f"is not a field of {cls.__name__}")
    values = {}
    for name, spec in known.items():
        key = f"{where}[{name!r}]"
        if data.get(name) is None:
            required = spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING
            _check(not required, key, f"missing (required by {cls.__name__})")
            continue
        values[name] = _coerce(hints[name], data[name], key)
    return cls(**values)
