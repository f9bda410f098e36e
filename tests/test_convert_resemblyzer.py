"""The converted resemblyzer GE2E gives resemblyzer's own embeddings on real speech."""

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from modeling_eisv import EISVFeatureExtractor, EISVForSpeakerVerification, EISVModel
from modeling_eisv.convert_resemblyzer import find_installed_weights, main

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def resemblyzer_or_skip():
    try:
        return pytest.importorskip("resemblyzer")
    except Exception as error:  # e.g. webrtcvad missing
        pytest.skip(f"resemblyzer cannot be imported here: {error}")


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    try:
        find_installed_weights()
    except FileNotFoundError as error:
        pytest.skip(str(error))
    folder = tmp_path_factory.mktemp("ge2e") / "converted"
    assert main(["--output", str(folder)]) == 0
    return folder


def real_clips(count=20):
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is absent (a user's clone): the real-speech parity check needs the shared data")
    clips = []
    for corpus in ("ased", "ravdess", "emodb"):
        with open(SHARED_DATA / corpus / "metadata.csv") as handle:
            rows = list(csv.DictReader(handle))
        clips += [SHARED_DATA / corpus / row["file_name"] for row in rows[:: max(1, len(rows) // 7)][:7]]
    return clips[:count]


def test_parity_with_resemblyzer_on_real_clips(converted):
    resemblyzer = resemblyzer_or_skip()
    clips = real_clips(20)
    assert len(clips) >= 20
    encoder = resemblyzer.VoiceEncoder("cpu", verbose=False)
    waves = [resemblyzer.preprocess_wav(path) for path in clips]
    reference = np.stack([encoder.embed_utterance(wave) for wave in waves])
    model = EISVModel.from_pretrained(converted).eval()
    extractor = EISVFeatureExtractor.from_pretrained(converted)
    with torch.no_grad():  # one padded batch: parity also checks that padding does not leak
        ours = model(**extractor(waves, sampling_rate=16000, return_tensors="pt")).embeddings.numpy()
    cosine = (ours * reference).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(reference, axis=1)
    assert cosine.min() >= 0.999, dict(zip(map(str, clips), cosine))


def test_converted_folder_is_complete_and_fine_tunable(converted):
    names = {p.name for p in converted.iterdir()}
    assert {"model.safetensors", "config.json", "preprocessor_config.json", "modeling_eisv.py", "ge2e_lstm.py"} <= names
    assert not any(name.endswith((".bin", ".pt")) for name in names)
    model = EISVForSpeakerVerification.from_pretrained(converted, num_speakers=83)
    assert model.config.encoder_type == "ge2e_lstm" and model.aam.weight.shape == (83, 256)


def test_bad_sources_fail_clearly(tmp_path, capsys):
    assert main(["--output", str(tmp_path / "out"), "--weights", str(tmp_path / "missing.pt")]) == 1
    torch.save({"something": torch.zeros(1)}, tmp_path / "other.pt")
    assert main(["--output", str(tmp_path / "out"), "--weights", str(tmp_path / "other.pt")]) == 1
    assert "not a resemblyzer GE2E checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# --- the output folder: never someone else's files; the umask's permissions (issues 18 and 19) -----------------


@pytest.fixture
def tiny_weights(tmp_path):
    """A resemblyzer-shaped checkpoint of a tiny GE2E (3-layer LSTM of 8 units, 4-d embedding): fast to convert."""
    lstm, linear = torch.nn.LSTM(40, 8, 3), torch.nn.Linear(8, 4)
    state = {f"lstm.{k}": v for k, v in lstm.state_dict().items()}
    state.update({f"linear.{k}": v for k, v in linear.state_dict().items()})
    state.update(similarity_weight=torch.tensor([10.0]), similarity_bias=torch.tensor([-5.0]))
    path = tmp_path / "pretrained.pt"
    torch.save({"model_state": state}, path)
    return path


def test_a_folder_that_is_not_a_previous_conversion_is_refused(tiny_weights, tmp_path, capsys):
    folder = tmp_path / "mine"
    (folder / "sub").mkdir(parents=True)
    (folder / "notes.txt").write_text("keep me")
    (folder / "sub" / "data.bin").write_bytes(b"\x01")
    assert main(["--output", str(folder), "--weights", str(tiny_weights)]) == 1
    err = capsys.readouterr().err
    assert "notes.txt" in err and "--overwrite" in err
    assert (folder / "notes.txt").read_text() == "keep me" and (folder / "sub" / "data.bin").is_file()
    assert main(["--output", str(folder), "--weights", str(tiny_weights), "--overwrite"]) == 0
    assert not (folder / "notes.txt").exists() and (folder / "config.json").is_file()


def test_a_previous_conversion_is_replaced_as_train_eisv_does(tiny_weights, tmp_path):
    from modeling_eisv.convert_resemblyzer import convert

    folder = tmp_path / "init-resemblyzer"
    assert convert(folder, weights=tiny_weights) == folder
    assert convert(folder, weights=tiny_weights) == folder  # a rerun of train_eisv.py converts again
    assert EISVModel.from_pretrained(folder).config.embedding_size == 4
    (folder / "README.md").write_text("a user's notes")  # no longer only what a conversion writes
    with pytest.raises(FileExistsError, match="README.md"):
        convert(folder, weights=tiny_weights)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_the_folder_gets_the_umasks_permissions(tiny_weights, tmp_path):
    import os
    import stat

    folder = tmp_path / "converted"
    old = os.umask(0o022)
    try:
        assert main(["--output", str(folder), "--weights", str(tiny_weights)]) == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755  # not mkdtemp's 0700
    assert {stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()} == {0o644}
