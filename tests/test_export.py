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
