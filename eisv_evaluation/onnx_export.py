"""An EISV embedding model (`EISVModel`) as an ONNX graph, checked against PyTorch (`eisv-export`,
and the ONNX Runtime backend's cache).

The graph of every supported model (`ecapa_tdnn`, `resnet`, `ge2e_lstm`) maps
    input_features  float32 (batch, frames, num_mel_bins)  from `EISVFeatureExtractor`
    attention_mask  int64   (batch, frames), 1 for real frames, 0 for padding
to  embeddings      float32 (batch, embedding_size), not normalised (as `EISVModel`, its
`embedding_transform` included), with dynamic `batch` and `frames` axes. Feature extraction is
NOT in the graph: run `EISVFeatureExtractor` in Python (its `attention_mask` is int32;
`onnx_inputs` casts it). The graph does not check that every row has a real frame (`EISVModel`
does); a row of only padding gives NaN.

A `ge2e_lstm` model cuts each utterance into a data-dependent number of partial windows
(`repeat_interleave`/`index_add_`), which `torch.export` rejects. Its graph (`GE2EGraph`) gives every
utterance of the batch the same number of window slots, as many as the padded length holds, runs
all slots through the LSTM in one batch and averages only each utterance's own windows
(`window_counts`): the same embeddings, and the whole clip in one `session.run`. The metadata says
which graph a file holds (`eisv_graph`: "embeddings"; files of earlier versions hold
"ge2e_partials", a per-window GE2E graph that the backend no longer runs) and stores the config and
frontend settings (`eisv_config`, `eisv_frontend`).

Exporters: opset >= 18 (default 18) uses the `torch.export`-based exporter (needs `onnxscript`);
an opset below 18 uses the TorchScript exporter, because the new one writes an invalid `Split`
(with `num_outputs`, an opset-18 attribute) when converting down.

The file is written under a temporary name, checked (`onnx.checker`, then onnxruntime vs PyTorch
on a padded batch, the GE2E windowing included, cosine >= 0.9999, unless `check=False`) and only then
renamed to OUT.onnx. An existing OUT.onnx is replaced only when it is a previous eisv export (its
metadata has `eisv_config`); any other file there is refused unless `overwrite`.
"""

import contextlib
import io
import json
import logging
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from eisv_io.atomic_files import atomic_path
from eisv_io.errors import ToolError
from modeling_eisv.ge2e_lstm import safe_l2_normalize, window_counts, window_slots

MIN_COSINE = 0.9999
FIRST_DYNAMO_OPSET = 18
SUPPORTED_ENCODERS = ("ecapa_tdnn", "ge2e_lstm", "resnet")
GRAPH_KIND = "embeddings"  # `eisv_graph` of the files written now (module docstring)


class EmbeddingGraph(nn.Module):
    """What is exported of an ECAPA or ResNet `EISVModel`: its encoder and `embedding_transform`, without its
    Python-side input checks.

    forward(input_features (B, T, F) float32, attention_mask (B, T) int64) -> (B, D) embeddings.
    """

    def __init__(self, model):
        super().__init__()
        self.encoder = model.encoder
        self.embedding_transform = model.embedding_transform

    def forward(self, input_features: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        embeddings = self.encoder(input_features, attention_mask)
        if self.embedding_transform is not None:
            embeddings = self.embedding_transform(embeddings)
        return embeddings


class GE2EGraph(nn.Module):
    """What is exported of a GE2E `EISVModel`: `GE2ELSTMEncoder.forward` with a fixed number of window
    slots per utterance, and the `embedding_transform`.

    forward(input_features (B, T, F) float32, attention_mask (B, T) int64) -> (B, D) embeddings.
    Every utterance gets S = `window_slots(T)` slots (the windows of an utterance of T real frames);
    slot k starts at frame k * step. All B * S windows run through the
    LSTM as one batch, and the slots past an utterance's `window_counts` are left out of its mean,
    so a batch of one (the usual call) computes exactly its own windows.
    """

    def __init__(self, model):
        super().__init__()
        self.encoder = model.encoder
        self.embedding_transform = model.embedding_transform

    def forward(self, input_features: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        encoder = self.encoder
        window, step = encoder.window, encoder.step
        batch, frames, mel = input_features.shape
        slots = window_slots(frames, window, step)
        features = input_features * attention_mask.unsqueeze(-1).to(input_features.dtype)  # padding is silence
        needed = (slots - 1) * step + window
        features = nn.functional.pad(features, (0, 0, 0, torch.sym_max(needed - frames, 0)))
        frame_index = (torch.arange(slots) * step)[:, None] + torch.arange(window)  # (S, window)
        windows = features[:, frame_index].reshape(-1, window, mel)  # (B * S, window, mel)
        # The last layer's output at the last frame is its final hidden state (`embed_windows` takes
        # `hidden[-1]`, whose shape the exporter records wrongly as (1, W, H)).
        output, _ = encoder.lstm(windows)
        partials = safe_l2_normalize(torch.relu(encoder.projection(output[:, -1]))).reshape(batch, slots, -1)
        counts = window_counts(attention_mask.sum(-1), window, step, encoder.min_coverage)
        own = (torch.arange(slots)[None, :] < counts[:, None]).to(partials.dtype)  # (B, S)
        embeddings = safe_l2_normalize((partials * own.unsqueeze(-1)).sum(1))
        if self.embedding_transform is not None:
            embeddings = self.embedding_transform(embeddings)
        return embeddings


def onnx_inputs(input_features, attention_mask=None) -> dict:
    """Feature-extractor output (numpy or torch) -> the graph's feed: float32 features, int64 mask."""
    features = np.asarray(input_features.cpu() if torch.is_tensor(input_features) else input_features, np.float32)
    if attention_mask is None:
        mask = np.ones(features.shape[:2], np.int64)
    else:
        mask = np.asarray(attention_mask.cpu() if torch.is_tensor(attention_mask) else attention_mask, np.int64)
    return {"input_features": features, "attention_mask": mask}


def example_batch(num_mel_bins: int, lengths=(200, 137), seed: int = 0):
    """A padded batch of random features: (len(lengths), max(lengths), mel) float32 + int64 mask."""
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(len(lengths), max(lengths), num_mel_bins, generator=generator)
    mask = (torch.arange(max(lengths))[None, :] < torch.tensor(lengths)[:, None]).long()
    return features * mask.unsqueeze(-1), mask


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, D), (N, D) -> (N,) cosine of each row pair."""
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def check_against_torch(model, onnx_path, input_features, attention_mask, threads: int = None) -> float:
    """Embeds one batch with PyTorch and onnxruntime; returns the smallest row cosine between them."""
    from .onnx_backend import OnnxModel

    onnx_model = OnnxModel(onnx_path, model.config, threads=threads)
    got = onnx_model(input_features, attention_mask).embeddings.numpy()
    with torch.inference_mode():
        expected = model(input_features, attention_mask).embeddings.float().numpy()
    return float(cosine_rows(got, expected).min())


def is_eisv_export(path) -> bool:
    """Whether `path` is an ONNX file written by eisv-export (its metadata has `eisv_config`)."""
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception:  # not ONNX at all, or unreadable: not ours
        return False
    return any(prop.key == "eisv_config" for prop in proto.metadata_props)


def check_output_path(onnx_path, overwrite: bool = False) -> Path:
    """Validates OUT.onnx before any work: `.onnx` suffix, not a folder, parent not a file, and an
    existing file only when it is a previous eisv export (or with `overwrite`)."""
    path = Path(onnx_path)
    if path.suffix.lower() != ".onnx":
        raise ToolError(f"{path}: the output must end with .onnx")
    if path.is_dir():
        raise ToolError(f"{path}: is a folder; give a file name ending with .onnx")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ToolError(f"{path}: cannot write here, {parent} is a file, not a folder")
            break
    if path.exists() and not overwrite and not is_eisv_export(path):
        raise ToolError(f"{path}: exists and is not an eisv-export ONNX file; pass --overwrite to replace it, or "
                        f"choose another output")
    return path


@contextlib.contextmanager
def _quiet_exporter():
    """Silences the exporters' narration, deprecation warnings and torchvision notices."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _export(graph, args, path: Path, opset: int):
    """torch.onnx.export with named inputs/outputs and dynamic batch and frames axes; one file."""
    if isinstance(graph, GE2EGraph) and opset < FIRST_DYNAMO_OPSET:  # its window slots are symbolic arithmetic
        raise ValueError(f"the GE2E graph needs opset >= {FIRST_DYNAMO_OPSET} (the torch.export exporter)")
    names = dict(input_names=["input_features", "attention_mask"], output_names=["embeddings"])
    if opset >= FIRST_DYNAMO_OPSET:
        batch, frames = torch.export.Dim("batch"), torch.export.Dim("frames")
        dynamic = {"input_features": {0: batch, 1: frames}, "attention_mask": {0: batch, 1: frames}}
        torch.onnx.export(graph, args, str(path), opset_version=opset, dynamo=True, dynamic_shapes=dynamic,
                          external_data=False, optimize=True, **names)
    else:
        dynamic = {"input_features": {0: "batch", 1: "frames"}, "attention_mask": {0: "batch", 1: "frames"},
                   "embeddings": {0: "batch"}}
        torch.onnx.export(graph, args, str(path), opset_version=opset, dynamo=False, dynamic_axes=dynamic,
                          do_constant_folding=True, **names)


def export_onnx(model, onnx_path, opset: int = FIRST_DYNAMO_OPSET, check: bool = True,
                overwrite: bool = False, metadata: dict = None) -> dict:
    """Exports `model` (an `EISVModel`) to `onnx_path` atomically; returns what was written.

    An existing `onnx_path` that is not a previous eisv export is refused unless `overwrite`.
    `metadata` ({str: str}) is added to the file's metadata (the backend's cache stores the
    model identity there).

    Returns: {"path", "opset", "exporter", "embedding_size", "min_cosine" (None without check)}.
    Raises `ToolError` for an unsupported encoder, a bad path or a failed check.
    """
    import onnx

    path = check_output_path(onnx_path, overwrite)
    config = model.config
    if config.encoder_type not in SUPPORTED_ENCODERS:
        raise ToolError(
            f"{path}: encoder_type {config.encoder_type!r} cannot be exported to ONNX; only {SUPPORTED_ENCODERS} can")
    model = model.cpu().float().eval()
    graph = (GE2EGraph(model) if config.encoder_type == "ge2e_lstm" else EmbeddingGraph(model)).eval()
    example = example_batch(config.num_mel_bins)
    exporter = "torch.export (dynamo)" if opset >= FIRST_DYNAMO_OPSET else "torchscript"
    min_cos = None
    with atomic_path(path) as temporary:
        try:
            with _quiet_exporter():
                with torch.no_grad():
                    _export(graph, example, temporary, opset)
        except Exception as error:  # the exporters raise many types; name the file and the exporter
            raise ToolError(f"{path}: ONNX export ({exporter}, opset {opset}) failed: "
                            f"{type(error).__name__}: {str(error).strip().splitlines()[0][:300]}") from error
        finally:
            model.eval()  # the TorchScript exporter restores the wrapper's mode onto the encoder
        proto = onnx.load(str(temporary))
        metadata = {**(metadata or {}), "eisv_graph": GRAPH_KIND, "eisv_config": config.to_json_string(use_diff=False),
                    "eisv_frontend": json.dumps({"feature_type": config.frontend, "feature_size": config.num_mel_bins,
                                                 "sampling_rate": config.sampling_rate}),
                    "eisv_inputs": "input_features float32 (batch, frames, mel); attention_mask int64 (batch, frames)"}
        for key, value in metadata.items():
            proto.metadata_props.add(key=key, value=value)
        onnx.save(proto, str(temporary))
        try:
            onnx.checker.check_model(str(temporary))
        except onnx.checker.ValidationError as error:
            raise ToolError(f"{path}: the exported graph is invalid: {str(error).splitlines()[0][:300]}") from None
        if check:
            try:
                import onnxruntime  # noqa: F401
            except ImportError:
                raise ToolError(f"{path}: cannot check the export, onnxruntime is not installed "
                                f"(pip install 'eisv[onnx]', or pass --no-check)") from None
            # Other lengths than the export example, so frozen shapes would show up.
            check_features, check_mask = example_batch(config.num_mel_bins, lengths=(97, 301, 180, 420), seed=1)
            min_cos = check_against_torch(model, temporary, check_features, check_mask)
            if not min_cos >= MIN_COSINE:
                raise ToolError(f"{path}: onnxruntime and PyTorch embeddings differ (min cosine {min_cos:.6f} "
                                f"< {MIN_COSINE}); file not written")
    return {"path": str(path), "opset": opset, "exporter": exporter, "embedding_size": config.embedding_size,
            "min_cosine": min_cos, "graph": GRAPH_KIND}
