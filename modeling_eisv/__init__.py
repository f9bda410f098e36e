"""eisv: emotion-invariant speaker verification models for Hugging Face transformers.

Importing this package registers the `eisv` model type with the Auto classes, and marks the
classes so that `save_pretrained` writes the remote code (loadable with `trust_remote_code=True`).
"""

from transformers import AutoConfig, AutoFeatureExtractor, AutoModel, AutoModelForAudioXVector

from .configuration_eisv import EISVConfig
from .feature_extraction_eisv import EISVFeatureExtractor
from .modeling_eisv import EISVForSpeakerVerification, EISVModel, EISVPreTrainedModel

__all__ = ["EISVConfig", "EISVFeatureExtractor", "EISVModel", "EISVForSpeakerVerification", "EISVPreTrainedModel"]

AutoConfig.register("eisv", EISVConfig, exist_ok=True)
AutoModel.register(EISVConfig, EISVModel, exist_ok=True)
AutoModelForAudioXVector.register(EISVConfig, EISVForSpeakerVerification, exist_ok=True)
AutoFeatureExtractor.register(EISVConfig, EISVFeatureExtractor, exist_ok=True)

EISVConfig.register_for_auto_class()
EISVModel.register_for_auto_class("AutoModel")
EISVForSpeakerVerification.register_for_auto_class("AutoModelForAudioXVector")
EISVFeatureExtractor.register_for_auto_class("AutoFeatureExtractor")

# The `speaker-verification` pipeline task: pipeline("speaker-verification", model=...)(a, b).
from transformers.pipelines import PIPELINE_REGISTRY as _PIPELINE_REGISTRY

from .pipeline_speaker_verification import SpeakerVerificationPipeline

if "speaker-verification" not in _PIPELINE_REGISTRY.supported_tasks:
    _PIPELINE_REGISTRY.register_pipeline("speaker-verification", pipeline_class=SpeakerVerificationPipeline,
                                         pt_model=AutoModel, type="audio")
