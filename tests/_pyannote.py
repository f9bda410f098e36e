"""pyannote.audio's WeSpeaker ResNet34 with random weights, saved as pyannote ships it, and real clips to run it on.

Nothing is downloaded: the model is pyannote's own code (`pip install pyannote.audio`), its weights
and BatchNorm statistics random, so the normalisation layers matter.
"""

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from conftest import SHARED_DATA

REPO = Path(__file__).resolve().parents[1]
# The shared corpus when it is there (more speakers), else the clips that ship in the repository.
CORPORA = [SHARED_DATA / "emodb", REPO / "data" / "emodb-mini"]
TINY = dict(num_blocks=[1, 1, 1, 1], m_channels=8, embed_dim=32)



def require_pyannote():
    """pyannote.audio's wespeaker module, or skip the test."""
    return pytest.importorskip(
        "pyannote.audio.models.embedding.wespeaker",
        reason="pyannote.audio is not installed (`pip install pyannote.audio` with torch pinned, as scripts/setup.sh does)")


def real_clips(count=20) -> list:
    """`count` real clips (float32 arrays at 16 kHz) spread over the speakers and emotions of the first corpus present."""
    for corpus in CORPORA:
        if (corpus / "metadata.csv").is_file():
            with open(corpus / "metadata.csv") as handle:
                rows = list(csv.DictReader(handle))
            picked = rows[:: max(1, len(rows) // count)][:count]
            return [soundfile.read(corpus / row["file_name"], dtype="float32")[0] for row in picked]
    pytest.skip(f"no real speech: neither {CORPORA[0]} nor {CORPORA[1]} (ships in the repo) is present")


def random_wespeaker(seed=0, tiny=False):
    """pyannote's `WeSpeakerResNet34` in eval mode, random weights and BatchNorm statistics; `tiny` swaps
    its ResNet for one block per stage and 8 channels (pyannote's own `ResNet` class)."""
    wespeaker = require_pyannote()
    from pyannote.audio.models.embedding.wespeaker.resnet import BasicBlock, ResNet

    torch.manual_seed(seed)
    model = wespeaker.WeSpeakerResNet34()
    if tiny:
        model.resnet = ResNet(BasicBlock, TINY["num_blocks"], m_channels=TINY["m_channels"], feat_dim=80,
                              embed_dim=TINY["embed_dim"], two_emb_layer=False)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.2)
    return model.eval()


def save_pyannote_checkpoint(model, folder: Path) -> Path:
    """`folder/pytorch_model.bin` as pyannote's wespeaker/convert.py writes it (Lightning checkpoint with the
    task specifications), plus the `hyper_parameters` Lightning records; returns `folder`."""
    import lightning
    from pyannote.audio.core.task import Problem, Resolution, Specifications

    model.specifications = Specifications(problem=Problem.REPRESENTATION, resolution=Resolution.CHUNK, duration=5.0)
    checkpoint = {"state_dict": model.state_dict()}
    model.on_save_checkpoint(checkpoint)
    checkpoint["pytorch-lightning_version"] = lightning.__version__
    checkpoint["hyper_parameters"] = model.hparams
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, folder / "pytorch_model.bin")
    return folder


def pyannote_embeddings(model, waves) -> np.ndarray:
    """pyannote's own forward, one clip at a time (no padding): (clips, embedding_size)."""
    with torch.no_grad():
        return np.stack([model(torch.from_numpy(w)[None, None])[0].numpy() for w in waves])


def cosines(a, b) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
