"""eisv_evaluation.loading: fast, one-line failures for names and devices; the model identity outputs record."""

import time

import pytest
import torch

from _tools import save_tiny_model
from eisv_evaluation.loading import load_model, model_identity, resolve_device
from eisv_io.errors import ToolError


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("tiny"))


@pytest.mark.parametrize("name, offline, message", [
    ("someone/mistyped-model", True, "HF_HUB_OFFLINE is set and this Hub id is not in the local cache"),
    ("not a model!", False, "not a valid Hub id"),
    ("two..dots/x", False, "not a valid Hub id"),
])
def test_a_mistyped_model_fails_at_once(monkeypatch, name, offline, message):
    if offline:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(ToolError, match=message):
        load_model(name, "cpu")
    assert time.monotonic() - start < 5  # the Hub's retries took ~23 s


def test_missing_folders_and_devices_are_one_line_errors(tmp_path, monkeypatch):
    with pytest.raises(ToolError, match="no such model folder"):
        load_model(tmp_path / "absent", "cpu")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ToolError, match="expected a folder with config.json"):
        load_model(tmp_path / "empty", "cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ToolError, match="no CUDA GPU"):
        resolve_device("cuda:0")
    with pytest.raises(ToolError, match="--device 'gpu'"):
        resolve_device("gpu")


def test_identity_follows_the_weights_not_the_folder_or_the_threshold(model_dir, tmp_path):
    model, feature_extractor = load_model(model_dir, "cpu")
    identity = model_identity(model, feature_extractor)
    assert identity.startswith("sha256:") and len(identity) == len("sha256:") + 64
    recalibrated = save_tiny_model(tmp_path / "recalibrated", threshold=0.3)  # same seed, same weights
    assert model_identity(*load_model(recalibrated, "cpu")) == identity
    other = save_tiny_model(tmp_path / "other", seed=1)
    assert model_identity(*load_model(other, "cpu")) != identity
    with torch.no_grad():
        next(model.parameters())[0] += 1e-3
    assert model_identity(model, feature_extractor) != identity


def test_a_new_config_field_at_its_default_keeps_the_identity(model_dir, monkeypatch):
    """A field a newer eisv adds with a default (as aam_weight, resnet_* and backbone_config were) must not
    change the identity of existing folders: their eisv-embed outputs resume and their ONNX caches stay."""
    from modeling_eisv import EISVConfig

    model, feature_extractor = load_model(model_dir, "cpu")
    before = model_identity(model, feature_extractor)
    original = EISVConfig.__init__

    def with_new_field(self, *args, new_field=7, **kwargs):
        self.new_field = new_field
        original(self, *args, **kwargs)

    monkeypatch.setattr(EISVConfig, "__init__", with_new_field)
    model.config.new_field = 7  # what loading the old folder with the newer code gives
    assert model_identity(model, feature_extractor) == before
    model.config.new_field = 8  # a value other than the default does change the embeddings' identity
    assert model_identity(model, feature_extractor) != before


def test_an_unreachable_hub_fails_within_seconds_not_after_five_retries(tmp_path):
    """A valid id that is no folder, the Hub unreachable (a local port nobody listens on): one try, no retries."""
    import os
    import subprocess
    import sys

    environment = {**os.environ, "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HOME": str(tmp_path / "hf")}
    environment.pop("HF_HUB_OFFLINE", None)
    start = time.monotonic()
    code = "from eisv_evaluation.loading import load_model; load_model('someone/typo')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment, timeout=120)
    elapsed = time.monotonic() - start
    assert done.returncode != 0 and "someone/typo: no such model folder, and the Hub cannot be reached" in done.stderr
    assert elapsed < 15, elapsed  # the Hub client's own retries take ~23 s on top of the start-up
