"""The ONNX Runtime backend (`--backend onnxruntime` of eisv-embed and eisv-verify, `backend=` of
the pipeline): an `EISVModel` run by onnxruntime on CPU, with the same call and output.

`onnx_model_for(model, feature_extractor, name_or_path)` returns an `OnnxModel` for a loaded
PyTorch model. The graph (see `eisv_evaluation.onnx_export`) is cached per model identity
(`loading.model_identity`: weights, embedding config and frontend settings):

    <folder>-onnx/model-<first 16 hex digits of the identity>.onnx    beside a local model folder
    $EISV_CACHE or $XDG_CACHE_HOME/eisv or ~/.cache/eisv, under onnx/   for a Hub id, or when the
                                                                         folder's parent is read-only

The full identity is stored in the file's metadata (`eisv_model_sha256`) and checked on every
load: a file of another model (other weights, a re-fitted embedding transform, other frontend
settings) is exported again, never used. A missing cache is exported on the fly (with the
onnxruntime-vs-PyTorch check of `export_onnx`, cosine >= 0.9999), which takes seconds.

Feature extraction stays in Python (`EISVFeatureExtractor`); everything after it is in the graph
(for GE2E the partial windows and their mean too), one `session.run` per batch. A cached file of
an earlier version's per-window GE2E graph (`eisv_graph` "ge2e_partials") is exported again.
"""

import os
from pathlib import Path

import torch

from eisv_io.errors import ToolError
from modeling_eisv.ge2e_lstm import window_slots

from .onnx_export import GRAPH_KIND, export_onnx, is_eisv_export

BACKENDS = ("torch", "onnxruntime")
FEW_WINDOWS = 4  # GE2E batches of up to this many partial windows (a clip of up to 3.8 s) run on one thread
IDENTITY_KEY = "eisv_model_sha256"


def _metadata(path) -> dict:
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return {prop.key: prop.value for prop in proto.metadata_props}


class OnnxModel:
    """An exported `EISVModel` run by onnxruntime on CPU.

    `model(input_features (B, T, F), attention_mask (B, T)) -> EISVModelOutput(embeddings (B, D))`,
    float32 torch tensors on CPU, not normalised (as `EISVModel`).

    Args:
        onnx_path: an `eisv-export` file.
        config: the model's `EISVConfig`.
        threads: onnxruntime intra-op threads (default: all usable cores); a GE2E batch of at most
            `FEW_WINDOWS` partial windows runs on one thread (`few_windows_session`).
    Raises `ToolError` for a file of an earlier version's per-window GE2E graph.
    """

    def __init__(self, onnx_path, config, threads=None):
        self.path, self.config = Path(onnx_path), config
        self.device = torch.device("cpu")
        kind = _metadata(self.path).get("eisv_graph", GRAPH_KIND)
        if kind != GRAPH_KIND:
            raise ToolError(f"{self.path}: holds a {kind!r} graph of an earlier eisv-export, which this version "
                            f"no longer runs; export the model again (eisv-export --model M --onnx OUT.onnx)")
        self.threads = int(threads or len(os.sched_getaffinity(0)))
        self.session = self._session(self.threads)
        # A GE2E batch of a few windows (one short clip) runs its LSTM as 3 x 160 steps of a few rows
        # each: waking other threads at every step costs more than they save once anything else
        # shares the cores (bench_inference_cpu, 3 s clips: one thread is the faster).
        self.few_windows_session = (self._session(1) if config.encoder_type == "ge2e_lstm" and self.threads > 1
                                    else None)

    def _session(self, threads: int):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: shape-merge notices are not the user's business
        # Busy-waiting workers would steal the cores that the Python feature extraction between runs needs.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return onnxruntime.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])

    def __call__(self, input_features, attention_mask=None, **kwargs):
        from modeling_eisv.modeling_eisv import EISVModelOutput

        features = torch.as_tensor(input_features, dtype=torch.float32).cpu()
        if features.dim() != 3 or features.shape[-1] != self.config.num_mel_bins:
            raise ValueError(f"input_features must be (batch, frames, {self.config.num_mel_bins}); "
                             f"got {tuple(features.shape)}")
        mask = (torch.ones(features.shape[:2], dtype=torch.long) if attention_mask is None
                else torch.as_tensor(attention_mask).cpu().long())
        if bool((mask.sum(-1) == 0).any()):
            raise ValueError("attention_mask has a row with no real frame; every utterance needs audio")
        feed = {"input_features": features.numpy(), "attention_mask": mask.numpy()}
        session = self.session
        if self.few_windows_session is not None and len(features) * window_slots(
                features.shape[1], self.config.ge2e_partial_frames, self.config.ge2e_partial_step) <= FEW_WINDOWS:
            session = self.few_windows_session
        return EISVModelOutput(embeddings=torch.from_numpy(session.run(["embeddings"], feed)[0]))


def cache_root() -> Path:
    """$EISV_CACHE, else $XDG_CACHE_HOME/eisv, else ~/.cache/eisv."""
    if os.environ.get("EISV_CACHE"):
        return Path(os.environ["EISV_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "eisv"


def onnx_cache_path(name_or_path, identity: str) -> Path:
    """Where the graph of the model with `identity` ("sha256:<hex>") is cached (module docstring)."""
    name = f"model-{identity.split(':', 1)[-1][:16]}.onnx"
    folder = Path(str(name_or_path)) if name_or_path else None
    if folder is not None and folder.is_dir() and os.access(folder.resolve().parent, os.W_OK):
        return folder.resolve().parent / f"{folder.resolve().name}-onnx" / name
    return cache_root() / "onnx" / name


def onnx_model_for(model, feature_extractor, name_or_path=None, threads=None, identity=None, cache_path=None):
    """A loaded `EISVModel` -> `(OnnxModel, {"path", "exported": bool, "min_cosine"})`.

    Uses the cached graph when its stored identity is this model's; exports it otherwise.
    Raises `ToolError` when onnxruntime/onnx are missing or the export fails its check.
    """
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        raise ToolError("--backend onnxruntime needs onnx, onnxruntime and onnxscript "
                        "(pip install 'eisv[onnx]')") from None
    from .loading import model_identity

    identity = identity or model_identity(model, feature_extractor)
    path = Path(cache_path) if cache_path is not None else onnx_cache_path(name_or_path, identity)
    info = {"path": str(path), "exported": False, "min_cosine": None}
    stored = _metadata(path) if path.is_file() and is_eisv_export(path) else {}
    cached = stored.get(IDENTITY_KEY) == identity and stored.get("eisv_graph", GRAPH_KIND) == GRAPH_KIND
    if not cached:
        path.parent.mkdir(parents=True, exist_ok=True)
        written = export_onnx(model, path, overwrite=True, metadata={IDENTITY_KEY: identity})
        info.update(exported=True, min_cosine=written["min_cosine"])
    return OnnxModel(path, model.config, threads), info


def check_backend(backend: str, device) -> str:
    """Validates `--backend` with `--device`; returns the device to load the PyTorch model on."""
    if backend not in BACKENDS:
        raise ToolError(f"--backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    if backend == "onnxruntime":
        if device not in (None, "auto", "cpu"):
            raise ToolError(f"--backend onnxruntime runs on the CPU; --device {device!r} is not supported with it")
        return "cpu"
    return device
