"""A WeSpeaker ResNet34 as pyannote.audio ships it, converted with `eisv-convert --from pyannote`, gives
pyannote's own embeddings on real speech, loads through remote code without this package, and fine-tunes
with `train_eisv.py --init_from`.

pyannote's model code is built with random weights (`_pyannote.py`) and saved as its wespeaker/convert.py
saves `pytorch_model.bin`. Nothing is downloaded.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from _pyannote import cosines, pyannote_embeddings, random_wespeaker, real_clips, save_pyannote_checkpoint
from _tiny import eisv_embeddings, remote_code_embedding
from eisv_tools.convert import main
from hub_server import hub_server  # noqa: F401 (pytest fixture)
from modeling_eisv import EISVForSpeakerVerification

REPO = Path(__file__).resolve().parents[1]
# train_eisv on the bundled clips, short crops and few trials, so 5 steps take seconds on 2 cores.
SHORT_RUN = ["--crop_seconds", "1.0", "--speakers_per_batch", "3", "--utterances_per_speaker", "2",
             "--eval_max_trials", "300", "--logging_steps", "1", "--seed", "3", "--max_steps", "5"]






@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(pyannote model, its folder, converted folder) of a ResNet with one block per stage and 8 channels."""
    root = tmp_path_factory.mktemp("pyannote")
    reference = random_wespeaker(seed=2, tiny=True)
    source = save_pyannote_checkpoint(reference, root / "wespeaker-tiny")
    assert main(["--from", "pyannote", str(source), "--output", str(root / "converted")]) == 0
    return reference, source, root / "converted"


def test_parity_with_pyannote_at_the_real_size(tmp_path):
    """pyannote/wespeaker-voxceleb-resnet34-LM's architecture, 20 clips in one padded batch."""
    reference = random_wespeaker(seed=1)
    source = save_pyannote_checkpoint(reference, tmp_path / "wespeaker-voxceleb-resnet34-LM")
    assert main(["--from", "pyannote", str(source), "--output", str(tmp_path / "converted")]) == 0
    config = json.loads((tmp_path / "converted" / "config.json").read_text())
    assert (config["encoder_type"], config["resnet_channels"], config["resnet_num_blocks"], config["embedding_size"]) \
        == ("resnet", 32, [3, 4, 6, 3], 256)
    frontend = json.loads((tmp_path / "converted" / "preprocessor_config.json").read_text())
    assert (frontend["feature_type"], frontend["window_type"], frontend["waveform_scale"]) == \
        ("kaldi_fbank", "hamming", 32768.0)
    waves = real_clips(20)
    cosine = cosines(eisv_embeddings(tmp_path / "converted", waves), pyannote_embeddings(reference, waves))
    assert cosine.min() >= 0.9999, cosine


def test_tiny_parity_and_padded_batch_equals_single_clips(tiny):
    reference, _, converted = tiny
    waves = real_clips(20)
    batch = eisv_embeddings(converted, waves)
    assert cosines(batch, pyannote_embeddings(reference, waves)).min() >= 0.9999
    single = np.concatenate([eisv_embeddings(converted, [w]) for w in waves])
    np.testing.assert_allclose(batch, single, atol=1e-5, rtol=0)


def test_state_dicts_and_wespeaker_pt_convert_to_the_same_weights(tiny, tmp_path):
    """pyannote's model state dict (`resnet.*`) and WeSpeaker's own `wespeaker.pt` (no prefix, with its
    `projection.*` training head) give the Lightning checkpoint's weights."""
    reference, _, converted = tiny
    expected = load_file(str(converted / "model.safetensors"))
    state = reference.state_dict()
    torch.save(state, tmp_path / "pyannote_state.pt")
    wespeaker = {k.removeprefix("resnet."): v for k, v in state.items()}
    wespeaker["projection.weight"] = torch.randn(11, 32)
    torch.save(wespeaker, tmp_path / "wespeaker.pt")
    for name in ("pyannote_state.pt", "wespeaker.pt"):
        assert main(["--from", "pyannote", str(tmp_path / name), "--output", str(tmp_path / name[:-3])]) == 0
        converted_again = load_file(str(tmp_path / name[:-3] / "model.safetensors"))
        assert converted_again.keys() == expected.keys()
        assert all(torch.equal(converted_again[k], expected[k]) for k in expected)


def test_converted_folder_loads_without_unpickling(tiny, monkeypatch):
    _, _, converted = tiny
    names = {p.name for p in converted.iterdir()}
    assert {"model.safetensors", "config.json", "preprocessor_config.json", "modeling_eisv.py", "resnet.py",
            "pooling.py", "feature_extraction_eisv.py"} <= names
    assert not any(name.endswith((".bin", ".pt", ".ckpt", ".pth")) for name in names)

    def refuse(*args, **kwargs):
        raise AssertionError("torch.load was called: the converted folder must load from safetensors")

    monkeypatch.setattr(torch, "load", refuse)
    model = EISVForSpeakerVerification.from_pretrained(converted, num_speakers=7)
    assert model.config.resnet_num_blocks == [1, 1, 1, 1] and model.aam.weight.shape == (7, 32)


def test_remote_code_gives_the_same_embeddings_without_the_package(tiny, tmp_path):
    _, _, converted = tiny
    wave = real_clips(2)[1]
    remote = remote_code_embedding(converted, wave, tmp_path)
    assert np.abs(remote - eisv_embeddings(converted, [wave])[0]).max() <= 1e-6


def test_train_eisv_fine_tunes_a_converted_folder_and_the_result_loads_without_the_package(tiny, tmp_path):
    _, _, converted = tiny
    output = tmp_path / "run"
    result = subprocess.run([sys.executable, str(REPO / "train_eisv.py"), "--init_from", str(converted),
                             "--output_dir", str(output), *SHORT_RUN], cwd=REPO, capture_output=True, text=True,
                            timeout=900, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    model = output / "model"
    config = json.loads((model / "config.json").read_text())
    assert config["encoder_type"] == "resnet" and config["resnet_num_blocks"] == [1, 1, 1, 1]
    frontend = json.loads((model / "preprocessor_config.json").read_text())
    assert (frontend["window_type"], frontend["waveform_scale"]) == ("hamming", 32768.0)  # carried from the start
    wave = real_clips(2)[0]
    remote = remote_code_embedding(model, wave, tmp_path)
    np.testing.assert_allclose(remote, eisv_embeddings(model, [wave])[0], atol=1e-6)


def test_hub_id_is_downloaded(tiny, hub_server, tmp_path):  # noqa: F811
    """`eisv-convert --from pyannote owner/name` fetches pytorch_model.bin from the Hub (a local stand-in)."""
    from huggingface_hub import HfApi

    _, source, converted = tiny
    api = HfApi(endpoint=hub_server.endpoint, token=hub_server.token)
    api.create_repo("local-user/wespeaker-tiny")
    api.upload_folder(folder_path=str(source), repo_id="local-user/wespeaker-tiny")
    result = subprocess.run(
        [sys.executable, "-m", "eisv_tools.convert", "--from", "pyannote", "local-user/wespeaker-tiny",
         "--output", str(tmp_path / "out")],
        cwd=REPO, env=hub_server.env(hf_home=tmp_path / "hf"), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    waves = real_clips(3)
    np.testing.assert_array_equal(eisv_embeddings(tmp_path / "out", waves), eisv_embeddings(converted, waves))


@pytest.mark.parametrize("change, message", [
    (lambda c: c["hyper_parameters"].update(dither=1.0), "dither=1.0"),
    (lambda c: c["hyper_parameters"].update(fbank_centering_span=3.0), "fbank_centering_span=3.0"),
    (lambda c: c["hyper_parameters"].update(window_type="hanning"), "window_type='hanning'"),
    (lambda c: c["hyper_parameters"].update(mystery=1), "does not know: ['mystery']"),
    (lambda c: c["pyannote.audio"]["architecture"].update({"class": "WeSpeakerResNet152"}), "WeSpeakerResNet152"),
    (lambda c: c["state_dict"].update({"resnet.layer1.0.conv3.weight": torch.zeros(1)}), "bottleneck"),
    (lambda c: c["state_dict"].pop("resnet.layer4.0.bn2.weight"), "missing ['encoder.layer4.0.bn2.weight']"),
])
def test_unsupported_models_fail_clearly(tiny, tmp_path, capsys, change, message):
    _, source, _ = tiny
    checkpoint = torch.load(source / "pytorch_model.bin", weights_only=False)  # the test's own file
    checkpoint["hyper_parameters"] = dict(checkpoint["hyper_parameters"])
    change(checkpoint)
    (tmp_path / "source").mkdir()
    torch.save(checkpoint, tmp_path / "source" / "pytorch_model.bin")
    assert main(["--from", "pyannote", str(tmp_path / "source"), "--output", str(tmp_path / "out")]) == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_bad_sources_fail_clearly(tmp_path, capsys):
    assert main(["--from", "pyannote", str(tmp_path / "missing"), "--output", str(tmp_path / "out")]) == 1
    assert "no such file or folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["--from", "pyannote", str(tmp_path / "empty"), "--output", str(tmp_path / "out")]) == 1
    assert "no pytorch_model.bin" in capsys.readouterr().err
    torch.save({"something": torch.zeros(1)}, tmp_path / "empty" / "pytorch_model.bin")
    assert main(["--from", "pyannote", str(tmp_path / "empty"), "--output", str(tmp_path / "out")]) == 1
    assert "not a WeSpeaker ResNet" in capsys.readouterr().err
    (tmp_path / "text.bin").write_text("not a checkpoint")
    assert main(["--from", "pyannote", str(tmp_path / "text.bin"), "--output", str(tmp_path / "out")]) == 1
    assert "cannot be read as a tensors-only torch checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    with pytest.raises(SystemExit) as exit_info:
        main(["--from", "pyannote", "--output", str(tmp_path / "out")])
    assert exit_info.value.code == 2
