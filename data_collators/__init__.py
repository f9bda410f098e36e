"""eisv data pipeline: sources -> validated index -> in-memory audio -> speaker/emotion batches ->
collator (crops, CopyPaste pairs, emotion-aware masks, features) -> `model(**batch)`."""

from modeling_eisv.audio_io import AudioError, load_audio, resample

from .audio_store import AudioStore, LazyAudioStore
from .collator import EISVCollator
from .copypaste import DEFAULT_PATTERN_PROBS, PATTERNS, CopyPaste, ParallelPair, join_segments, loudness_match
from .emotion_masking import emotion_aware_mask, frame_rms
from .indexing import BadRowError, IndexReport, index_dataset
from .sampler import SpeakerEmotionBatchSampler
from .sources import load_protocol_split, load_source

__all__ = [
    "AudioError", "load_audio", "resample", "AudioStore", "LazyAudioStore", "EISVCollator", "CopyPaste",
    "ParallelPair", "PATTERNS", "DEFAULT_PATTERN_PROBS", "join_segments", "loudness_match", "emotion_aware_mask",
    "frame_rms", "BadRowError", "IndexReport", "index_dataset", "SpeakerEmotionBatchSampler", "load_source",
    "load_protocol_split",
]
