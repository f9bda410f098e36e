"""Fitting the model's embedding transform (`modeling_eisv.embedding_transform`) from audio:
domain centring / whitening on unlabeled files, emotion NAP on labelled ones.

Audio lists are a CSV with a `path` column (optional `speaker`, `emotion`; `file_name` as in an
AudioFolder `metadata.csv` works too) or a text file of one path per line; relative paths are
taken from `root` (default: the list's folder). A folder is every .wav/.flac/.ogg/.mp3 under it.
"""

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from modeling_eisv.audio_io import AUDIO_SUFFIXES
from modeling_eisv.embedding_transform import EmbeddingTransform, compose, fit_mean, fit_nap, fit_whitening

from eisv_io.errors import ToolError
from .trials import normalise_key
from .windowed_embedding import embed_paths



@dataclass
class AudioList:
    paths: list  # absolute Paths
    speakers: list = field(default_factory=list)  # same length as paths, or empty
    emotions: list = field(default_factory=list)
    source: str = ""


def read_audio_list(spec, root=None) -> AudioList:
    """A folder, a CSV (`path` or `file_name`, optional `speaker`, `emotion`) or a text list -> `AudioList`."""
    spec = Path(spec)
    if spec.is_dir():
        paths = sorted(p.resolve() for p in spec.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
        if not paths:
            raise ToolError(f"{spec}: no audio files (.wav/.flac/.ogg/.mp3) under this folder")
        return AudioList(paths, source=str(spec))
    if not spec.is_file():
        raise ToolError(f"{spec}: no such audio list or folder")
    base = Path(root) if root is not None else spec.parent
    if spec.suffix.lower() == ".csv":
        frame = pd.read_csv(spec, dtype=str, keep_default_na=False)
        column = "path" if "path" in frame.columns else "file_name" if "file_name" in frame.columns else None
        if column is None:
            raise ToolError(f"{spec}: needs a 'path' (or 'file_name') column; has {list(frame.columns)}")
        names = list(frame[column])
        speakers = list(frame["speaker"]) if "speaker" in frame.columns else []
        emotions = list(frame["emotion"]) if "emotion" in frame.columns else []
    else:
        names = [line.strip() for line in spec.read_text(encoding="utf-8").splitlines() if line.strip()]
        speakers, emotions = [], []
    if not names:
        raise ToolError(f"{spec}: lists no audio files")
    paths = [(base / name).resolve() for name in names]
    return AudioList(paths, speakers, emotions, str(spec))


def overlap_with_trials(audio: AudioList, trials, root) -> dict:
    """How many adaptation files are also trial files (paths compared resolved)."""
    root = Path(root)
    trial_files = {(root / normalise_key(key)).resolve() for key in set(trials.enroll) | set(trials.test)}
    shared = sorted(str(p) for p in set(audio.paths) & trial_files)
    return {"adaptation_files": len(set(audio.paths)), "trial_files": len(trial_files),
            "shared_files": len(shared), "overlaps": bool(shared), "examples": shared[:5]}


@contextlib.contextmanager
def raw_embeddings(model):
    """Within the block, `model` (an `EISVModel`) returns its encoder output without its transform."""
    saved = model.embedding_transform
    model.embedding_transform = None
    try:
        yield model
    finally:
        model.embedding_transform = saved


def install_transform(model, mean, matrix, info: dict):
    """Give `model` (an `EISVModel`) the affine transform `(mean, matrix)` and record it in its config."""
    dim = model.config.embedding_size
    transform = EmbeddingTransform(dim).to(next(model.parameters()).device)
    transform.set(mean, matrix)
    model.embedding_transform = transform
    model.config.embedding_transform = "affine"
    model.config.embedding_transform_info = info
    return model


def fit_transform(model, feature_extractor, unlabeled: AudioList = None, whiten=False, nap: AudioList = None,
                  nap_dims=10, shrinkage=0.1, progress=False, **embed_kwargs) -> tuple:
    """Embed the lists with the model's encoder (no transform) and fit -> `(mean, matrix, info)`.

    `unlabeled`: centring (and `whiten`) on these files; `nap`: emotion NAP on these (needs
    `speaker` and `emotion` per file), estimated after the centring / whitening.
    """
    dim = model.config.embedding_size
    mean = whitening = projection = None
    info = {"kind": []}
    with raw_embeddings(model):
        if unlabeled is not None:
            embeddings = embed_paths(model, feature_extractor, [str(p) for p in unlabeled.paths], progress=progress,
                                     **embed_kwargs)
            mean = fit_mean(embeddings)
            info["kind"].append("centre")
            info["adaptation"] = {"source": unlabeled.source, "files": len(unlabeled.paths),
                                  "speakers": len(set(unlabeled.speakers)) if unlabeled.speakers else None}
            if whiten:
                whitening = fit_whitening(embeddings, mean, shrinkage)
                info["kind"].append("whiten")
                info["whitening_shrinkage"] = shrinkage
        if nap is not None:
            if not nap.speakers or not nap.emotions:
                raise ToolError(f"{nap.source}: emotion NAP needs 'speaker' and 'emotion' columns")
            embeddings = embed_paths(model, feature_extractor, [str(p) for p in nap.paths], progress=progress,
                                     **embed_kwargs)
            centre = mean if mean is not None else None
            try:
                projection, _, explained = fit_nap(embeddings, nap.speakers, nap.emotions, nap_dims, centre, whitening)
            except ValueError as error:
                raise ToolError(f"{nap.source}: {error}") from None
            info["kind"].append("emotion_nap")
            info["nap"] = {"source": nap.source, "files": len(nap.paths), "speakers": len(set(nap.speakers)),
                           "emotions": sorted(set(nap.emotions)), "dims": int(len(explained)),
                           "explained_fraction": float(np.sum(explained))}
    if mean is None and projection is None:
        raise ToolError("nothing to fit: give unlabeled adaptation audio and/or labelled emotional audio for NAP")
    mean, matrix = compose(dim, mean, whitening, projection)
    info["kind"] = "+".join(info["kind"])
    return mean, matrix, info
