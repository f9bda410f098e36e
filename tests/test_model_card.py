"""model_cards: the card's metadata carries exactly the numbers given, and bad input is named."""

import os

import pytest
import yaml
from huggingface_hub import ModelCard

from model_cards import (CONTEXT_FILENAME, CardContext, Evaluation, ModelCardInfoError, corpus_defaults,
                         render_model_card, rerender_model_card, results_from_evaluation, write_model_card)


def _front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n", 2)[1])


def _minimal_info() -> dict:
    return {
        "model_name": "eisv-ecapa-minimal",
        "config": {"encoder_type": "ecapa_tdnn"},
        "datasets": [{"name": "EmoDB", "license": "CC0 1.0", "license_id": "cc0-1.0"}],
    }


def _full_info() -> dict:
    return {
        "model_name": "eisv-ge2e-ravdess-ased",
        "repo_id": "someone/eisv-ge2e-ravdess-ased",
        "config": {"encoder_type": "ge2e_lstm", "frontend": "ge2e_mel", "num_mel_bins": 40, "sampling_rate": 16000,
                   "embedding_size": 256, "ge2e_num_layers": 3, "ge2e_hidden_size": 256,
                   "verification_threshold": 0.7312},
        "num_parameters": 1423616,
        "base_model_note": "resemblyzer 0.1.4 GE2E weights (Apache-2.0), converted with eisv-convert-resemblyzer",
        "language": ["am", "en"],
        "datasets": [
            {**corpus_defaults("ased"), "hours": 2.11, "speakers": 65, "files": 2474},
            {**corpus_defaults("ravdess"), "split": "Actor_01-Actor_18", "hours": 1.11, "speakers": 18},
        ],
        "recipe": {"copypaste": True, "copypaste_prob": 0.5, "copypaste_patterns": ["neutral+emotional",
                   "emotional+neutral"], "erl_weight": 0.3, "em": True, "em_selection": "energy_top",
                   "em_ratio": 0.2, "aam_margin": 0.2, "learning_rate": 1e-4, "num_epochs": 12, "seed": 1234,
                   "gradient_clip": 5.0},
        "results": {
            "eval_name": "eisv dev trials",
            "num_trials": 17448,
            "scoring": "cosine",
            "overall": {"eer": 7.8125, "min_dcf_0.01": 0.61234, "num_targets": 1000, "num_nontargets": 16448},
            "per_condition": {
                "same_emotion": {"eer": 5.25, "min_dcf_0.01": 0.4411},
                "neutral_vs_emotional": {"eer": 8.5, "min_dcf_0.01": None},
            },
        },
        "commands": ["python train_eisv.py --encoder ge2e_lstm --erl_weight 0.3 --seed 1234"],
        "limitations": ["Only two languages were seen in fine-tuning."],
    }


def test_full_card_metadata_round_trips():
    info = _full_info()
    text = render_model_card(info)
    meta = _front_matter(text)
    assert meta["library_name"] == "transformers"
    assert meta["license"] == "other"  # research-only ASED + CC BY-NC-SA RAVDESS: no single Hub id
    assert {"speaker-verification", "emotion"} <= set(meta["tags"])
    assert meta["datasets"] == ["ASED", "RAVDESS"]
    assert "base_model" not in meta  # resemblyzer is not on the Hub: only the note, in the body

    [entry] = meta["model-index"]
    assert entry["name"] == info["model_name"]
    by_config = {r["dataset"]["config"]: {m["type"]: m["value"] for m in r["metrics"]} for r in entry["results"]}
    assert all(r["task"]["type"] == "speaker-verification" for r in entry["results"])
    assert by_config["overall"] == {"eer": 7.8125, "min_dcf_0.01": 0.61234}
    assert by_config["condition: same_emotion"] == {"eer": 5.25, "min_dcf_0.01": 0.4411}
    assert by_config["condition: neutral_vs_emotional"] == {"eer": 8.5}  # None is not invented

    card = ModelCard(text)
    assert card.data.library_name == "transformers"
    values = {(r.dataset_config, r.metric_type): r.metric_value for r in card.data.eval_results}
    assert values[("overall", "eer")] == 7.8125
    assert values[("overall", "min_dcf_0.01")] == 0.61234
    assert values[("condition: same_emotion", "min_dcf_0.01")] == 0.4411
    assert ("condition: neutral_vs_emotional", "min_dcf_0.01") not in values

    body = text.split("---\n", 2)[2]
    assert 'AutoModel.from_pretrained("someone/eisv-ge2e-ravdess-ased", trust_remote_code=True)' in body
    assert "eisv-verify --model someone/eisv-ge2e-ravdess-ased" in body
    assert "Licence warning" in body and "CC BY-NC-SA 4.0" in body
    assert "| 7.81 | 0.6123 |" in body and "not evaluated" in body
    assert "| CopyPaste patterns | neutral+emotional, emotional+neutral |" in body
    assert "| ERL cosine weight λ | 0.3 |" in body and "| gradient_clip | 5 |" in body
    assert "1,423,616" in body and "2505.18498" in body and "Livingstone & Russo" in body
    assert info["commands"][0] in body


def test_minimal_card_invents_nothing():
    text = render_model_card(_minimal_info())
    meta = _front_matter(text)
    assert meta["license"] == "apache-2.0"  # CC0 data only
    assert "model-index" not in meta and "base_model" not in meta
    body = text.split("---\n", 2)[2]
    assert "Not evaluated" in body
    assert "not recorded" in body  # parameters and recipe
    assert "Licence warning" not in body
    assert not any(ch.isdigit() for ch in body.split("## Evaluation")[1].split("## Limitations")[0])
    assert ModelCard(text).data.eval_results is None


def test_base_model_and_nc_licence():
    info = _minimal_info()
    info["base_model"] = "someone/eisv-ecapa-voxceleb"
    info["datasets"] = [corpus_defaults("ravdess")]
    meta = _front_matter(render_model_card(info))
    assert meta["base_model"] == "someone/eisv-ecapa-voxceleb"
    assert meta["license"] == "cc-by-nc-sa-4.0"
    info["license"] = "apache-2.0"  # an explicit licence wins; the warning stays in the body
    text = render_model_card(info)
    assert _front_matter(text)["license"] == "apache-2.0" and "Licence warning" in text


def test_unknown_licence_is_not_called_permissive():
    info = _minimal_info()
    info["datasets"].append({"name": "my-corpus", "license": "unknown (user data)"})
    text = render_model_card(info)
    assert _front_matter(text)["license"] == "other"
    assert "Licence note" in text and "my-corpus" in text


@pytest.mark.parametrize("mutate, named", [
    (lambda i: i.pop("model_name"), "['model_name']"),
    (lambda i: i.pop("datasets"), "['datasets']"),
    (lambda i: i["datasets"][0].pop("license"), "['datasets'][0]['license']"),
    (lambda i: i["config"].pop("encoder_type"), "['config']['encoder_type']"),
    (lambda i: i.update(num_parameters="1M"), "['num_parameters']"),
    (lambda i: i.update(results={"overall": {"eer": 1.0}}), "['results']['eval_name']"),
    (lambda i: i.update(results={"eval_name": "dev"}), "['results']['overall']"),
    (lambda i: i.update(results={"eval_name": "dev", "overall": {"eer": "low"}}), "['results']['overall']['eer']"),
    (lambda i: i.update(results={"eval_name": "dev", "overall": {"eer": 0.5},
                                 "per_condition": {"x": {"min_dcf_0.01": "?"}}}),
     "['results']['per_condition']['x']['min_dcf_0.01']"),
    (lambda i: i.update(commands="python train.py"), "['commands']"),
])
def test_bad_info_names_the_key(mutate, named, tmp_path):
    info = _minimal_info()
    mutate(info)
    with pytest.raises(ModelCardInfoError) as err:
        write_model_card(tmp_path, info)
    assert named in str(err.value)
    assert not os.listdir(tmp_path)  # nothing written, no temp file left


def test_write_is_atomic_and_replaces(tmp_path):
    (tmp_path / "README.md").write_text("old card")
    path = write_model_card(tmp_path, _full_info())
    assert path == tmp_path / "README.md"
    assert path.read_text(encoding="utf-8") == render_model_card(_full_info())
    assert sorted(os.listdir(tmp_path)) == ["README.md"]
    assert ModelCard.load(path).data.model_name == "eisv-ge2e-ravdess-ased"


def test_results_from_evaluation_output():
    evaluation = {
        "scoring": "cosine", "num_trials": 40,
        "metrics": {"cosine": {
            "overall": {"eer": 10.0, "eer_threshold": 0.5, "min_dcf_0.01": 0.9, "min_dcf_0.05": 0.7,
                        "num_targets": 10, "num_nontargets": 30},
            "by_corpus": {"emodb": {"eer": 10.0, "min_dcf_0.01": 0.9, "min_dcf_0.05": 0.7}},
            "by_condition": {"same_emotion": {"eer": None, "min_dcf_0.01": None, "min_dcf_0.05": None,
                                              "note": "no targets in this group"}},
        }},
    }
    info = _minimal_info()
    info["results"] = results_from_evaluation(evaluation, "emodb-mini trials")
    text = render_model_card(info)
    values = {(r.dataset_config, r.metric_type): r.metric_value for r in ModelCard(text).data.eval_results}
    assert values == {("overall", "eer"): 10.0, ("overall", "min_dcf_0.01"): 0.9, ("overall", "min_dcf_0.05"): 0.7,
                      ("corpus: emodb", "eer"): 10.0, ("corpus: emodb", "min_dcf_0.01"): 0.9,
                      ("corpus: emodb", "min_dcf_0.05"): 0.7}
    assert "condition `same_emotion` | not evaluated" in text


def test_front_matter_is_valid_hub_metadata():
    text = render_model_card(_full_info())
    card = ModelCard(text)  # huggingface_hub parses it into ModelCardData, model-index into EvalResults
    assert str(card) == text  # and writes back exactly what was rendered
    assert card.data.to_dict() == _front_matter(text)
    assert card.data.license == "other" and card.data.datasets == ["ASED", "RAVDESS"]
    assert card.data.language == ["am", "en"] and "eisv" in card.data.tags
    assert len(card.data.eval_results) == 5  # 2 overall + 2 + 1 per condition (the None is left out)
    assert {r.task_type for r in card.data.eval_results} == {"speaker-verification"}
    info = _minimal_info()
    info["base_model"] = "someone/eisv-ecapa-voxceleb"
    assert ModelCard(render_model_card(info)).data.base_model == "someone/eisv-ecapa-voxceleb"


def test_saved_context_re_renders_the_same_card(tmp_path):
    info = _full_info()
    path = write_model_card(tmp_path, info, save_context=True)
    assert sorted(os.listdir(tmp_path)) == ["README.md", CONTEXT_FILENAME]
    card = path.read_text(encoding="utf-8")
    context = CardContext.load(tmp_path)
    assert context == CardContext.from_dict(info)
    assert isinstance(context.results[0], Evaluation) and context.datasets[0].name == "ASED"
    path.unlink()
    assert rerender_model_card(tmp_path).read_text(encoding="utf-8") == card
    renamed = rerender_model_card(tmp_path, model_name="eisv-renamed", repo_id="someone/eisv-renamed")
    text = renamed.read_text(encoding="utf-8")
    assert ModelCard(text).data.model_name == "eisv-renamed" and "# eisv-renamed" in text
    assert CardContext.load(tmp_path / CONTEXT_FILENAME).model_name == "eisv-renamed"


def test_a_context_and_its_dict_give_the_same_card():
    info = _full_info()
    context = CardContext.from_dict(info)
    assert render_model_card(context) == render_model_card(info) == render_model_card(context.to_dict())
    with pytest.raises(ModelCardInfoError, match=r"\['datasets'\]\[1\]\['speakers'\]"):
        CardContext.from_dict({**info, "datasets": [info["datasets"][0], {**info["datasets"][1], "speakers": "18"}]})
    with pytest.raises(ModelCardInfoError, match=r"\['recipie'\]"):  # a misspelt field is named, not ignored
        CardContext.from_dict({**info, "recipie": {}})


def test_resnet_encoder_is_described():
    info = {**_minimal_info(), "config": {"encoder_type": "resnet", "resnet_channels": 32,
                                          "resnet_num_blocks": [3, 4, 6, 3]}}
    body = render_model_card(info).split("---\n", 2)[2]
    assert "ResNet with statistics pooling (WeSpeaker's ResNet34 layout): channels=32, num_blocks=[3, 4, 6, 3]" in body


def test_the_starting_weights_licence_binds_the_fine_tune_and_shows_on_the_card():
    info = _minimal_info()  # CC0 data alone: apache-2.0
    info.update(base_model_license="cc-by-4.0", base_model_license_note="pyannote weights wespeaker-r34")
    text = render_model_card(info)  # CC BY counts as permissive (as for data); the card names it
    assert _front_matter(text)["license"] == "apache-2.0"
    assert "| licence of the starting weights | `cc-by-4.0` (pyannote weights wespeaker-r34) |" in text
    info["base_model_license"] = "cc-by-nc-4.0"
    assert _front_matter(render_model_card(info))["license"] == "cc-by-nc-4.0"
    info["base_model_license"] = "unknown"
    assert _front_matter(render_model_card(info))["license"] == "other"
