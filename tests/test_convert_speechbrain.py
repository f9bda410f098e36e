"""A SpeechBrain ECAPA-TDNN converted with `eisv-convert --from speechbrain` gives SpeechBrain's own
embeddings on real speech.

SpeechBrain's model code is built with random weights (and random BatchNorm statistics, so the
normalisation layers matter), saved as SpeechBrain ships a model (`embedding_model.ckpt` =
`torch.save(state_dict)` + `hyperparams.yaml`), and run through SpeechBrain's own
`EncoderClassifier.encode_batch`, one clip at a time. Nothing is downloaded.
"""

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from _tiny import eisv_embeddings, real_clips, remote_code_embedding
from eisv_tools.convert import main
from hub_server import hub_server  # noqa: F401 (pytest fixture)
from modeling_eisv import EISVFeatureExtractor, EISVForSpeakerVerification

speechbrain = pytest.importorskip("speechbrain")
from speechbrain.inference.classifiers import EncoderClassifier  # noqa: E402
from speechbrain.lobes.features import Fbank  # noqa: E402
from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN  # noqa: E402
from speechbrain.processing.features import InputNormalization  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TINY = dict(channels=[64, 64, 64, 64, 192], attention_channels=16, se_channels=16, lin_neurons=48)
REAL = dict(channels=[1024, 1024, 1024, 1024, 3072], attention_channels=128, se_channels=128, lin_neurons=192)

# As speechbrain/spkrec-ecapa-voxceleb lays it out, with the pretrainer reading only the encoder, plus
# what older SpeechBrain ECAPA files hold (a seed set through !apply, Fbank flags through !ref).
HYPERPARAMS = """\
seed: 1986
__set_seed: !apply:torch.manual_seed [!ref <seed>]
pretrained_path: {folder}
n_mels: 80
deltas: False
out_n_neurons: 11

compute_features: !new:speechbrain.lobes.features.Fbank
    n_mels: !ref <n_mels>
    left_frames: 0
    right_frames: 0
    deltas: !ref <deltas>

mean_var_norm: !new:speechbrain.processing.features.InputNormalization
    norm_type: sentence
    std_norm: False

embedding_model: !new:speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN
    input_size: !ref <n_mels>
    channels: {channels}
    kernel_sizes: [5, 3, 3, 3, 1]
    dilations: [1, 2, 3, 4, 1]
    attention_channels: {attention_channels}
    se_channels: {se_channels}
    lin_neurons: {lin_neurons}

classifier: !new:speechbrain.lobes.models.ECAPA_TDNN.Classifier
    input_size: {lin_neurons}
    out_neurons: !ref <out_n_neurons>

mean_var_norm_emb: !new:speechbrain.processing.features.InputNormalization
    norm_type: global
    std_norm: False

modules:
    compute_features: !ref <compute_features>
    mean_var_norm: !ref <mean_var_norm>
    embedding_model: !ref <embedding_model>
    mean_var_norm_emb: !ref <mean_var_norm_emb>
    classifier: !ref <classifier>

label_encoder: !new:speechbrain.dataio.encoder.CategoricalEncoder

pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        embedding_model: !ref <embedding_model>
    paths:
        embedding_model: !ref <pretrained_path>/embedding_model.ckpt
"""


def save_speechbrain_model(folder: Path, seed=0, **sizes) -> Path:
    """A random-weight SpeechBrain ECAPA_TDNN saved as SpeechBrain ships one; returns `folder`."""
    torch.manual_seed(seed)
    model = ECAPA_TDNN(80, **sizes)
    with torch.no_grad():  # trained-looking BatchNorm statistics and biases, not the identity
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                module.running_mean.normal_(0, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.2)
            elif isinstance(module, torch.nn.Conv1d):
                module.bias.normal_(0, 0.1)
    folder.mkdir(parents=True)
    torch.save(model.state_dict(), folder / "embedding_model.ckpt")
    (folder / "hyperparams.yaml").write_text(HYPERPARAMS.format(folder=folder, **sizes))
    return folder


def speechbrain_embeddings(folder: Path, waves, savedir: Path) -> np.ndarray:
    """SpeechBrain's own `encode_batch`, one clip at a time (no padding): (clips, lin_neurons)."""
    classifier = EncoderClassifier.from_hparams(source=str(folder), savedir=str(savedir), run_opts={"device": "cpu"})
    with torch.no_grad():
        return np.stack([classifier.encode_batch(torch.from_numpy(w)[None])[0, 0].numpy() for w in waves])




def cosines(a, b):
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(SpeechBrain folder, converted folder) of a small ECAPA (C=64)."""
    root = tmp_path_factory.mktemp("speechbrain")
    source = save_speechbrain_model(root / "spkrec-tiny", **TINY)
    assert main(["--from", "speechbrain", str(source), "--output", str(root / "converted")]) == 0
    return source, root / "converted"


def test_frontend_matches_speechbrain_fbank_and_sentence_norm():
    waves = real_clips(6)
    fbank, norm = Fbank(n_mels=80), InputNormalization(norm_type="sentence", std_norm=False)
    ours = EISVFeatureExtractor("speechbrain_fbank")(waves, sampling_rate=16000, return_tensors="pt")
    for row, wave in enumerate(waves):
        reference = norm(fbank(torch.from_numpy(wave)[None]), torch.ones(1))[0]
        frames = int(ours["attention_mask"][row].sum())
        assert frames == reference.shape[0] == 1 + wave.size // 160
        torch.testing.assert_close(ours["input_features"][row, :frames], reference, atol=1e-4, rtol=0)


def test_parity_with_speechbrain_on_real_clips(tiny, tmp_path):
    source, converted = tiny
    waves = real_clips(20)
    assert len(waves) == 20
    reference = speechbrain_embeddings(source, waves, tmp_path / "sb")
    cosine = cosines(eisv_embeddings(converted, waves), reference)
    assert cosine.min() >= 0.9999, cosine


def test_padded_batch_equals_single_clips(tiny):
    _, converted = tiny
    waves = real_clips(20)
    batch = eisv_embeddings(converted, waves)
    single = np.concatenate([eisv_embeddings(converted, [w]) for w in waves])
    np.testing.assert_allclose(batch, single, atol=1e-5, rtol=0)


def test_parity_at_the_real_size(tmp_path):
    """spkrec-ecapa-voxceleb's own sizes: C=1024, 3072 aggregation channels, 192-d."""
    start = time.monotonic()
    source = save_speechbrain_model(tmp_path / "spkrec-ecapa", seed=1, **REAL)
    assert main(["--from", "speechbrain", str(source), "--output", str(tmp_path / "converted")]) == 0
    config = json.loads((tmp_path / "converted" / "config.json").read_text())
    assert (config["ecapa_channels"], config["ecapa_mfa_channels"], config["embedding_size"]) == (1024, 3072, 192)
    assert (config["ecapa_padding_mode"], config["frontend"]) == ("reflect", "speechbrain_fbank")
    waves = real_clips(10)  # 10 clips keep this test under ~20 s on 2 cores; the tiny model gets 20
    cosine = cosines(eisv_embeddings(tmp_path / "converted", waves),
                     speechbrain_embeddings(source, waves, tmp_path / "sb"))
    assert cosine.min() >= 0.9999, cosine
    print(f"C=1024 parity on {len(waves)} clips: min cosine {cosine.min():.7f}, {time.monotonic() - start:.1f} s")


def test_converted_folder_loads_without_unpickling_and_fine_tunes(tiny, monkeypatch):
    _, converted = tiny
    names = {p.name for p in converted.iterdir()}
    assert {"model.safetensors", "config.json", "preprocessor_config.json", "modeling_eisv.py", "ecapa_tdnn.py",
            "pooling.py", "feature_extraction_eisv.py"} <= names
    assert not any(name.endswith((".bin", ".pt", ".ckpt", ".pth")) for name in names)

    def refuse(*args, **kwargs):
        raise AssertionError("torch.load was called: the converted folder must load from safetensors")

    monkeypatch.setattr(torch, "load", refuse)
    model = EISVForSpeakerVerification.from_pretrained(converted, num_speakers=7)
    assert model.config.ecapa_padding_mode == "reflect" and model.aam.weight.shape == (7, 48)
    assert EISVFeatureExtractor.from_pretrained(converted).feature_type == "speechbrain_fbank"




def test_remote_code_gives_the_same_embeddings_without_the_package(tiny, tmp_path):
    _, converted = tiny
    wave = real_clips(2)[1]
    assert np.abs(remote_code_embedding(converted, wave, tmp_path) - eisv_embeddings(converted, [wave])[0]).max() <= 1e-6


def test_conversion_records_the_source_and_its_licence(tiny, tmp_path):
    source, converted = tiny
    origin = json.loads((converted / "conversion.json").read_text())
    assert origin == {"toolkit": "speechbrain", "source": "spkrec-tiny", "hub_id": None, "license": "apache-2.0",
                      "license_from": "the licence its reference checkpoint is published under (verify)"}
    (source / "README.md").write_text("---\nlicense: mit\n---\n# a SpeechBrain model\n")
    try:  # the source's own model card wins over the default
        assert main(["--from", "speechbrain", str(source), "--output", str(tmp_path / "carded")]) == 0
    finally:
        (source / "README.md").unlink()
    origin = json.loads((tmp_path / "carded" / "conversion.json").read_text())
    assert origin["license"] == "mit" and origin["license_from"].startswith("the source's model card")


@pytest.mark.slow
def test_train_eisv_fine_tunes_a_converted_folder_and_the_result_loads_without_the_package(tiny, tmp_path):
    _, converted = tiny
    output = tmp_path / "run"
    short = ["--crop_seconds", "1.0", "--speakers_per_batch", "3", "--utterances_per_speaker", "2",
             "--eval_max_trials", "300", "--logging_steps", "1", "--seed", "3", "--max_steps", "5"]
    result = subprocess.run([sys.executable, str(REPO / "train_eisv.py"), "--init_from", str(converted),
                             "--output_dir", str(output), *short], cwd=REPO, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    model = output / "model"
    assert json.loads((model / "config.json").read_text())["encoder_type"] == "ecapa_tdnn"
    card = (model / "README.md").read_text()
    assert "| licence of the starting weights | `apache-2.0` (speechbrain weights spkrec-tiny" in card
    wave = real_clips(2)[0]
    np.testing.assert_allclose(remote_code_embedding(model, wave, tmp_path), eisv_embeddings(model, [wave])[0],
                               atol=1e-6)


def test_hub_id_is_downloaded(tiny, hub_server, tmp_path):  # noqa: F811
    """`eisv-convert --from speechbrain owner/name` fetches the two files from the Hub (a local stand-in)."""
    from huggingface_hub import HfApi

    source, converted = tiny
    api = HfApi(endpoint=hub_server.endpoint, token=hub_server.token)
    api.create_repo("local-user/spkrec-tiny")
    api.upload_folder(folder_path=str(source), repo_id="local-user/spkrec-tiny")
    result = subprocess.run(
        [sys.executable, "-m", "eisv_tools.convert", "--from", "speechbrain", "local-user/spkrec-tiny",
         "--output", str(tmp_path / "out")],
        cwd=REPO, env=hub_server.env(hf_home=tmp_path / "hf"), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    waves = real_clips(3)
    np.testing.assert_array_equal(eisv_embeddings(tmp_path / "out", waves), eisv_embeddings(converted, waves))


@pytest.mark.parametrize("change, message", [
    (("std_norm: False", "std_norm: True"), "std_norm=True"),
    (("deltas: False", "deltas: True"), "deltas=True"),
    (("channels: [64, 64, 64, 64, 192]", "channels: [64, 64, 32, 64, 192]"), "channels [64, 64, 32, 64] differ"),
    (("dilations: [1, 2, 3, 4, 1]", "dilations: [1, 2, 3, 4, 2]"), "aggregation layer"),
    (("lin_neurons: 48\n", "lin_neurons: 64\n"), "does not match"),  # the YAML disagrees with the weights
    (("norm_type: sentence", "norm_type: global"), "norm_type='global'"),
])
def test_unsupported_models_fail_clearly(tiny, tmp_path, capsys, change, message):
    source, _ = tiny
    folder = tmp_path / "source"
    folder.mkdir()
    (folder / "embedding_model.ckpt").write_bytes((source / "embedding_model.ckpt").read_bytes())
    text = (source / "hyperparams.yaml").read_text()
    assert change[0] in text
    (folder / "hyperparams.yaml").write_text(text.replace(change[0], change[1], 1))
    assert main(["--from", "speechbrain", str(folder), "--output", str(tmp_path / "out")]) == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_bad_sources_fail_clearly(tmp_path, capsys):
    assert main(["--from", "speechbrain", str(tmp_path / "missing"), "--output", str(tmp_path / "out")]) == 1
    assert "no such folder" in capsys.readouterr().err
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "hyperparams.yaml").write_text("n_mels: 80\n")
    assert main(["--from", "speechbrain", str(tmp_path / "half"), "--output", str(tmp_path / "out")]) == 1
    assert "no embedding_model.ckpt" in capsys.readouterr().err
    torch.save({"something": torch.zeros(1)}, tmp_path / "half" / "embedding_model.ckpt")
    assert main(["--from", "speechbrain", str(tmp_path / "half"), "--output", str(tmp_path / "out")]) == 1
    assert "should be !new:speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    with pytest.raises(SystemExit) as exit_info:
        main(["--from", "speechbrain", "--output", str(tmp_path / "out")])
    assert exit_info.value.code == 2


def test_output_folder_is_replaced_only_when_it_is_a_previous_conversion(tiny, tmp_path, capsys):
    source, _ = tiny
    output = tmp_path / "out"
    assert main(["--from", "speechbrain", str(source), "--output", str(output)]) == 0
    assert main(["--from", "speechbrain", str(source), "--output", str(output)]) == 0  # a previous conversion
    (output / "notes.txt").write_text("mine")
    assert main(["--from", "speechbrain", str(source), "--output", str(output)]) == 1
    assert "--overwrite" in capsys.readouterr().err and (output / "notes.txt").is_file()
    assert main(["--from", "speechbrain", str(source), "--output", str(output), "--overwrite"]) == 0
    assert not (output / "notes.txt").exists() and (output / "model.safetensors").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging or previous folder left


def test_pooling_floor_is_speechbrains():
    """A channel that is constant over an utterance (a dead ReLU) pools to std sqrt(1e-12), as in SpeechBrain."""
    from speechbrain.lobes.models.ECAPA_TDNN import AttentiveStatisticsPooling as SpeechBrainPooling

    from modeling_eisv.convert_speechbrain import convert_state_dict
    from modeling_eisv.pooling import AttentiveStatisticsPooling

    torch.manual_seed(0)
    reference = SpeechBrainPooling(12, attention_channels=8).eval()
    ours = AttentiveStatisticsPooling(12, attention_channels=8, eps=1e-12).eval()
    state = {k.removeprefix("encoder.pooling."): v
             for k, v in convert_state_dict({f"asp.{k}": v for k, v in reference.state_dict().items()}).items()}
    ours.load_state_dict(state)
    x = torch.randn(1, 12, 50)
    x[:, :4] = 0.3  # four dead channels
    with torch.no_grad():
        expected = reference(x)[..., 0]
        torch.testing.assert_close(ours(x, torch.ones(1, 50)), expected, atol=1e-6, rtol=1e-5)
        assert expected[0, 12:16].max() < 1e-5  # sqrt(1e-12); the default floor would give 1e-3
