"""GE2E LSTM speaker encoder with the architecture and inference of the `resemblyzer` package.

3-layer LSTM over 40 power-mel bands, the last layer's final hidden state -> linear -> ReLU ->
L2 norm. An utterance is embedded as resemblyzer's `VoiceEncoder.embed_utterance` does: windows
("partials") of 160 frames every 77 frames are embedded one by one, averaged and re-normalised.
"""

import torch
from torch import nn


def window_slots(frames, window: int, step: int):
    """Partial windows of an utterance of `frames` frames before `window_counts` drops a short last one:
    max(ceil((frames - window + step + 1) / step), 1); window k starts at frame k * step. `frames`: a
    (batch,) tensor, an int, or a traced size (the ONNX graph gives every utterance this many slots)."""
    slots = (frames - window + 2 * step) // step
    return slots.clamp_min(1) if torch.is_tensor(slots) else torch.sym_max(slots, 1)


def window_counts(num_frames: torch.Tensor, window: int, step: int, min_coverage: float) -> torch.Tensor:
    """(batch,) real frames per utterance -> (batch,) number of its partial windows, as resemblyzer's
    `compute_partial_slices`; window k starts at frame k * step.

    A last window is dropped when fewer than `min_coverage * window` of its frames hold audio
    (and it is not the only one). With resemblyzer's 160 frames and 0.75 this frame-count test
    is exactly its sample-count test.
    """
    counts = window_slots(num_frames, window, step)
    last_start = (counts - 1) * step
    too_short = ((num_frames - 1 - last_start) < min_coverage * window) & (counts > 1)
    return counts - too_short.long()


def partial_windows(num_frames: torch.Tensor, window: int, step: int, min_coverage: float):
    """Start frames of the partial windows of each utterance (`window_counts` of them each).

    Args:
        num_frames: (batch,) real frames per utterance.
    Returns:
        starts: (windows,) start frame of every window; owner: (windows,) its utterance index.
    """
    counts = window_counts(num_frames, window, step, min_coverage)
    owner = torch.repeat_interleave(torch.arange(len(num_frames), device=num_frames.device), counts)
    first = torch.cumsum(counts, 0) - counts
    starts = (torch.arange(len(owner), device=num_frames.device) - first[owner]) * step
    return starts, owner


def safe_l2_normalize(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Rows of (N, D) scaled to unit norm; an (almost) zero row stays as it is instead of being
    divided by ~0, so its gradient stays bounded (the ReLU output of a silent window can be 0)."""
    norm = x.norm(dim=-1, keepdim=True)
    return x / torch.where(norm > eps, norm, torch.ones_like(norm))


def _unshare_lstm_weights(module, state_dict, prefix, local_metadata):
    """On CUDA, cuDNN keeps all LSTM weights as views of one flat buffer; savers that drop tensors
    sharing storage (accelerate's `save_state` with safetensors) would then lose all but one.
    Copies make every saved LSTM tensor independent."""
    for key in list(state_dict):
        if key.startswith(prefix + "lstm."):
            state_dict[key] = state_dict[key].clone()
    return state_dict


class GE2ELSTMEncoder(nn.Module):
    """Power-mel frames -> L2-normalised speaker embedding.

    Args of forward:
        features: (batch, frames, 40) power mel (the `ge2e_mel` frontend).
        mask: (batch, frames), 1 for real frames.
    Returns:
        (batch, embedding_size) unit-norm embeddings.
    """

    def __init__(self, config):
        super().__init__()
        self.window = config.ge2e_partial_frames
        self.step = config.ge2e_partial_step
        self.min_coverage = config.ge2e_min_coverage
        self.lstm = nn.LSTM(config.num_mel_bins, config.ge2e_hidden_size, config.ge2e_num_layers, batch_first=True)
        self.projection = nn.Linear(config.ge2e_hidden_size, config.embedding_size)
        self._register_state_dict_hook(_unshare_lstm_weights)

    def embed_windows(self, windows: torch.Tensor) -> torch.Tensor:
        """(windows, frames, mel) -> (windows, embedding_size), each row unit-norm."""
        _, (hidden, _) = self.lstm(windows)
        return safe_l2_normalize(torch.relu(self.projection(hidden[-1])))

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        num_frames = mask.long().sum(-1)
        starts, owner = partial_windows(num_frames, self.window, self.step, self.min_coverage)
        features = features * mask.unsqueeze(-1).to(features.dtype)  # padding frames are silence
        needed = int(starts.max()) + self.window
        if needed > features.shape[1]:
            features = nn.functional.pad(features, (0, 0, 0, needed - features.shape[1]))
        frame_index = starts[:, None] + torch.arange(self.window, device=features.device)  # (W, window)
        windows = features[owner[:, None], frame_index]  # (W, window, mel)
        partials = self.embed_windows(windows)
        summed = torch.zeros(len(num_frames), partials.shape[-1], dtype=partials.dtype, device=partials.device)
        summed.index_add_(0, owner, partials)
        return safe_l2_normalize(summed)
