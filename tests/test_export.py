"""eisv_training/export.py: how a fine-tuned model's card names its start and inherits its data terms."""

from eisv_training.export import base_model_info, inherited_datasets
from model_cards.generate import weights_license


def _parent(tmp_path):
    folder = tmp_path / "runs" / "parent" / "model"
    folder.mkdir(parents=True)
    (folder / "README.md").write_text("---\nlicense: other\ndatasets:\n- ASED\n- RAVDESS\nmodel-index:\n"
                                      "- name: eisv-parent\n  results: []\n---\n# eisv-parent\n")
    return folder


def test_a_local_start_is_named_by_its_card_not_by_the_machines_path(tmp_path):
    info = base_model_info(str(_parent(tmp_path)))
    assert "eisv-parent" in info["base_model_note"] and str(tmp_path) not in info["base_model_note"]
    assert base_model_info("someone/eisv-hub-model") == {"base_model": "someone/eisv-hub-model"}
    assert "resemblyzer" in base_model_info("resemblyzer")["base_model_note"]


def test_the_parents_data_licences_reach_the_child(tmp_path):
    inherited = inherited_datasets(str(_parent(tmp_path)))
    assert [d["license"] for d in inherited] == ["free for research use (as released by its authors)", "CC BY-NC-SA 4.0"]
    child = {"datasets": [{"name": "my corpus", "license": "CC0 1.0"}, *inherited]}
    assert weights_license(child) != "apache-2.0"  # the child is not more permissive than its parent's data
    assert inherited_datasets("resemblyzer") == [] and inherited_datasets("scratch") == []


def test_a_head_never_trained_is_not_saved(tmp_path):
    """--aam_weight 0 trains no AAM head: the folder holds the encoder alone; with the AAM loss it keeps the head."""
    import json

    import torch
    from safetensors import safe_open

    from _tiny import tiny_config
    from eisv_training.export import export_model
    from modeling_eisv import EISVFeatureExtractor, EISVForSpeakerVerification

    for weight, architecture, has_head in ((0.0, "EISVModel", False), (1.0, "EISVForSpeakerVerification", True)):
        network = EISVForSpeakerVerification(tiny_config("ecapa_tdnn", num_speakers=4, aam_weight=weight))
        folder = tmp_path / f"aam-{weight}"
        export_model(network, EISVFeatureExtractor(), folder)
        assert json.loads((folder / "config.json").read_text())["architectures"] == [architecture]
        with safe_open(folder / "model.safetensors", "pt") as weights:
            assert any(key.startswith("aam.") for key in weights.keys()) == has_head
        reloaded = EISVForSpeakerVerification.from_pretrained(folder)  # --init_from it continues either way
        for (name, saved), (_, loaded) in zip(network.eisv.state_dict().items(), reloaded.eisv.state_dict().items()):
            assert torch.equal(saved, loaded), name
