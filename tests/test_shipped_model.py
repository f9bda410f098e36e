"""The model committed in models/ (the GE2E fine-tune that passed every check against its start, see its card)
loads offline and verifies."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "models" / "eisv-ge2e"
CLIPS = REPO / "data" / "emodb-mini" / "audio"


def test_folder_is_complete_and_documented():
    names = {p.name for p in MODEL.iterdir()}
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "README.md", "modeling_eisv.py"} <= names
    assert not any(name.endswith((".bin", ".pt", ".pth")) for name in names)  # safetensors only
    config = json.loads((MODEL / "config.json").read_text())
    assert config["encoder_type"] == "ge2e_lstm" and 0 < config["verification_threshold"] < 1
    card = (MODEL / "README.md").read_text()
    assert "resemblyzer" in card and "This is the fine-tune" in card and "/work" not in card and "/root" not in card
    checks = [line for line in card.splitlines() if line.startswith("- ") and "start: " in line]
    assert len(checks) == 6 and all(line.endswith(": yes") for line in checks)  # every check against the start
    assert "the pretrained GE2E" in card and "Licence warning" in card  # the start's numbers beside; data terms
    assert config["aam_weight"] == 0 and "heldout_calibration_trials.csv" in config["calibration_source"]


def test_remote_code_loads_without_the_package_and_scores_same_speaker_higher(tmp_path):
    """A fresh process loads the folder's own code (trust_remote_code, offline) and embeds real clips."""
    pairs = [(CLIPS / "emodb_03" / "03a01Nc.flac", CLIPS / "emodb_03" / "03a02Wb.flac"),  # same speaker
             (CLIPS / "emodb_03" / "03a01Nc.flac", CLIPS / "emodb_08" / "08a02Tb.flac")]  # different speakers
    script = f"""
import json, sys, soundfile, torch
sys.path = [p for p in sys.path if p not in ("", ".", {str(REPO)!r})]
from transformers import AutoFeatureExtractor, AutoModel
model = AutoModel.from_pretrained({str(MODEL)!r}, trust_remote_code=True).eval()
extractor = AutoFeatureExtractor.from_pretrained({str(MODEL)!r}, trust_remote_code=True)
assert "modeling_eisv" not in sys.modules, "the installed package was imported, not the folder's code"
scores = []
for a, b in {[(str(a), str(b)) for a, b in pairs]!r}:
    emb = [model(**extractor(soundfile.read(p)[0], sampling_rate=16000, return_tensors="pt")).embeddings for p in (a, b)]
    scores.append(torch.nn.functional.cosine_similarity(*emb).item())
print(json.dumps(scores))
"""
    env = {"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "HF_HOME": str(tmp_path / "hf"),
           "PYTHONNOUSERSITE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules")}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, env=env,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    same, different = json.loads(result.stdout.strip().splitlines()[-1])
    assert np.isfinite([same, different]).all() and same > different


def test_readme_verify_example_runs():
    from eisv_tools.verify import main

    code = main(["--model", str(MODEL), str(CLIPS / "emodb_03" / "03a01Nc.flac"), str(CLIPS / "emodb_03" / "03a02Wb.flac"),
                 "--json"])
    assert code in (0, 1)
