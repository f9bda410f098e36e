"""EISV models: a speaker encoder as a transformers `PreTrainedModel`, and its training head.

`EISVModel` maps `input_features` to speaker embeddings. `EISVForSpeakerVerification` adds the
AAM-softmax head and the ERL cosine term over parallel pairs (Tian, Hu & Xu 2025), and applies the
emotion-aware mask (`em_mask`) to its input in training.
"""

from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput, logging

from .campplus import CAMPPlusEncoder
from .configuration_eisv import EISVConfig
from .ecapa_tdnn import ECAPATDNNEncoder
from .embedding_transform import EmbeddingTransform
from .ge2e_lstm import GE2ELSTMEncoder
from .losses import AAMSoftmaxHead, erl_loss
from .resnet import ResNetEncoder
from .ssl_backbone import SSLBackboneEncoder

logger = logging.get_logger(__name__)

# Adding an encoder: write a module with forward(features (B, T, F), mask (B, T)) -> (B, D), add it
# here and to `configuration_eisv.ENCODER_TYPES`. (ssl_backbone takes (B, samples) waveforms instead.)
ENCODERS = {"ecapa_tdnn": ECAPATDNNEncoder, "ge2e_lstm": GE2ELSTMEncoder, "resnet": ResNetEncoder,
            "campplus": CAMPPlusEncoder, "ssl_backbone": SSLBackboneEncoder}


@dataclass
class EISVModelOutput(ModelOutput):
    """
    Args:
        embeddings (`torch.FloatTensor` of shape `(batch, embedding_size)`): speaker embeddings.
    """

    embeddings: torch.FloatTensor = None


@dataclass
class EISVSpeakerVerificationOutput(ModelOutput):
    """
    Args:
        loss (`torch.FloatTensor`, scalar): `aam_weight * aam_loss + erl_weight * erl_loss`, when `labels` are given.
        aam_loss (`torch.FloatTensor`, scalar): AAM-softmax cross-entropy over all rows.
        erl_loss (`torch.FloatTensor`, scalar): mean 1 - cos over the parallel pairs (unweighted).
        logits (`torch.FloatTensor` of shape `(batch, num_speakers)`): scaled cosines to each speaker.
        embeddings (`torch.FloatTensor` of shape `(batch, embedding_size)`): speaker embeddings.
    """

    loss: torch.FloatTensor = None
    aam_loss: torch.FloatTensor = None
    erl_loss: torch.FloatTensor = None
    logits: torch.FloatTensor = None
    embeddings: torch.FloatTensor = None


def apply_em_mask(input_features: torch.Tensor, em_mask: torch.Tensor, hop_length: int) -> torch.Tensor:
    """Zero the frames that emotion-aware masking hides.

    Args:
        input_features: (batch, frames, features), or (batch, samples) waveforms.
        em_mask: (batch, frames) bool on the feature frame grid (10 ms hop); for waveforms frame i
            covers samples [i * hop_length, (i + 1) * hop_length), which are set to 0 (silence: the
            waveform frontend's normalisation makes 0 the utterance mean).
    """
    if input_features.dim() == 3:
        return input_features.masked_fill(em_mask.unsqueeze(-1), 0.0)
    samples = em_mask.repeat_interleave(hop_length, dim=1)[:, : input_features.shape[1]]
    samples = nn.functional.pad(samples, (0, input_features.shape[1] - samples.shape[1]))
    return input_features.masked_fill(samples, 0.0)


class EISVPreTrainedModel(PreTrainedModel):
    config_class = EISVConfig
    base_model_prefix = "eisv"
    main_input_name = "input_features"
    supports_gradient_checkpointing = False

    def _init_weights(self, module):
        """He init for conv layers (ReLU follows them), Xavier for linear, orthogonal recurrent LSTM weights."""
        if isinstance(module, (nn.Conv1d, nn.Conv2d)):
            init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            init.xavier_uniform_(module.weight)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.LSTM):
            for name, param in module.named_parameters():
                if name.startswith("weight_ih"):
                    init.xavier_uniform_(param)
                elif name.startswith("weight_hh"):
                    init.orthogonal_(param)
                elif name.startswith("bias"):
                    init.zeros_(param)
        elif isinstance(module, AAMSoftmaxHead):
            init.xavier_normal_(module.weight)
        elif isinstance(module, EmbeddingTransform):  # the identity until fitted
            init.zeros_(module.mean)
            init.copy_(module.matrix, torch.eye(module.matrix.shape[0]))
        else:
            super()._init_weights(module)


    def save_pretrained(self, save_directory, *args, **kwargs):
        """Also records both Auto classes in `auto_map`, so the folder loads with either through remote code."""
        if self._auto_class is not None:
            auto_map = dict(getattr(self.config, "auto_map", None) or {})
            auto_map.update({
                "AutoConfig": "configuration_eisv.EISVConfig",
                "AutoModel": "modeling_eisv.EISVModel",
                "AutoModelForAudioXVector": "modeling_eisv.EISVForSpeakerVerification",
            })
            self.config.auto_map = auto_map
        return super().save_pretrained(save_directory, *args, **kwargs)


def on_device_in_training(module: nn.Module, flag: torch.Tensor) -> bool:
    """Whether an input check of `module` runs as a device-side assert instead of a ValueError: in training on
    an accelerator, where reading `flag` on the host would stall the step until the device catches up (the
    training loop builds labels and masks that pass; a failure there stops the process with the message)."""
    return module.training and flag.device.type != "cpu"


class EISVModel(EISVPreTrainedModel):
    """Speaker encoder: `input_features` (batch, frames, mel) + `attention_mask` -> `embeddings`.

    With `config.embedding_transform == "affine"` the encoder output goes through an
    `EmbeddingTransform` (domain centring / whitening / emotion NAP, buffers in the weights file)
    before it is returned; callers L2-normalise the result. Without it, the encoder output as is.
    """

    # A checkpoint of EISVForSpeakerVerification also holds the training head; the encoder ignores it.
    _keys_to_ignore_on_load_unexpected = [r"^aam\."]

    def __init__(self, config: EISVConfig):
        super().__init__(config)
        self.encoder = ENCODERS[config.encoder_type](config)
        if getattr(config, "embedding_transform", None) == "affine":
            self.embedding_transform = EmbeddingTransform(config.embedding_size)
        else:
            self.embedding_transform = None
        self.post_init()

    def forward(self, input_features: torch.Tensor, attention_mask: torch.Tensor = None, **kwargs) -> EISVModelOutput:
        """
        Args:
            input_features: (batch, frames, num_mel_bins) from `EISVFeatureExtractor`, or (batch, samples)
                for the `waveform` frontend.
            attention_mask: (batch, frames) or (batch, samples), 1 for real frames; all ones when omitted.
        """
        if self.config.frontend == "waveform":
            if input_features.dim() != 2:
                raise ValueError(f"input_features must be (batch, samples) waveforms for the waveform frontend; "
                                 f"got {tuple(input_features.shape)}")
        elif input_features.dim() != 3 or input_features.shape[-1] != self.config.num_mel_bins:
            raise ValueError(
                f"input_features must be (batch, frames, {self.config.num_mel_bins}); got {tuple(input_features.shape)}")
        if attention_mask is None:
            attention_mask = torch.ones(input_features.shape[:2], dtype=torch.long, device=input_features.device)
        empty_row = (attention_mask.sum(-1) == 0).any()
        if on_device_in_training(self, empty_row):
            torch._assert_async(~empty_row, "attention_mask has a row with no real frame; every utterance needs audio")
        elif bool(empty_row):
            raise ValueError("attention_mask has a row with no real frame; every utterance needs audio")
        embeddings = self.encoder(input_features, attention_mask)
        if self.embedding_transform is not None:
            embeddings = self.embedding_transform(embeddings)
        return EISVModelOutput(embeddings=embeddings)


class EISVForSpeakerVerification(EISVPreTrainedModel):
    """Speaker encoder with the AAM-softmax head and the ERL loss, for training and embedding.

    Loading a checkpoint with another `num_speakers` keeps the encoder and re-creates the head
    (with a warning), which is how one fine-tunes on new speakers.
    """

    def __init__(self, config: EISVConfig):
        super().__init__(config)
        self.eisv = EISVModel(config)
        self.aam = AAMSoftmaxHead(config.embedding_size, config.num_speakers, config.aam_margin, config.aam_scale)
        self.post_init()

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        requested = kwargs.get("num_speakers")
        config = kwargs.get("config")
        if isinstance(config, EISVConfig):
            requested = config.num_speakers
        if requested is not None and not kwargs.get("ignore_mismatched_sizes"):
            saved_kwargs = {k: kwargs[k] for k in ("cache_dir", "revision", "token", "local_files_only", "subfolder") if k in kwargs}
            saved = EISVConfig.from_pretrained(pretrained_model_name_or_path, **saved_kwargs)
            if saved.num_speakers != requested:
                logger.warning(
                    f"{pretrained_model_name_or_path} was trained with num_speakers={saved.num_speakers}; keeping its "
                    f"encoder and creating a new AAM-softmax head for num_speakers={requested}.")
                kwargs["ignore_mismatched_sizes"] = True
        return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)

    def set_aam_margin(self, margin: float):
        """Change the AAM margin for the next steps (margin warm-up schedules call this per step)."""
        self.aam.margin = float(margin)

    def forward(
        self,
        input_features: torch.Tensor,
        attention_mask: torch.Tensor = None,
        labels: torch.Tensor = None,
        pair_index: torch.Tensor = None,
        em_mask: torch.Tensor = None,
        **kwargs,
    ) -> EISVSpeakerVerificationOutput:
        """
        Args:
            input_features: (batch, frames, num_mel_bins).
            attention_mask: (batch, frames), 1 for real frames.
            labels: (batch,) speaker ids in [0, num_speakers).
            pair_index: (pairs, 2) row indices of the two members of each parallel pair.
            em_mask: (batch, frames) bool, True where emotion-aware masking hides a frame; applied
                in training only (the features there are set to 0, the utterance mean of the
                normalised fbank, or silence for GE2E power mel). For the `waveform` frontend the mask is
                on the same 10 ms frame grid and a hidden frame silences its hop of samples (see
                `apply_em_mask`).
        """
        if em_mask is not None and self.training:
            input_features = apply_em_mask(input_features, em_mask.bool(), self.config.hop_length)
        embeddings = self.eisv(input_features, attention_mask).embeddings
        if labels is not None:
            in_range = ((labels >= 0) & (labels < self.config.num_speakers)).all()
            if on_device_in_training(self, in_range):
                torch._assert_async(in_range, f"labels must lie in [0, {self.config.num_speakers})")
            elif not bool(in_range):
                raise ValueError(f"labels must lie in [0, {self.config.num_speakers}); "
                                 f"got {int(labels.min())}..{int(labels.max())}")
        logits, aam_loss = self.aam(embeddings, labels)
        loss = pair_loss = None
        if labels is not None:
            pair_loss = erl_loss(embeddings, pair_index)
            loss = self.config.aam_weight * aam_loss + self.config.erl_weight * pair_loss
        return EISVSpeakerVerificationOutput(loss=loss, aam_loss=aam_loss, erl_loss=pair_loss, logits=logits,
                                             embeddings=embeddings)
