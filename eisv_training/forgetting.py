"""Fine-tuning that keeps what the starting encoder knew: layer-wise rates and freezing, a teacher anchor, L2-SP.

All of these look at the encoder's parameters by name (`eisv.encoder.*`), bottom layer first, so they
work for every encoder type without the model knowing about them; the AAM-softmax head (`aam.*`) is
new for every fine-tune and always trains at the full rate.
"""

import copy
import re

import torch
from torch import nn

# The encoder's layers, bottom first: a parameter belongs to the first pattern its name (after
# "eisv.encoder.") matches.
LAYER_PATTERNS = {
    "ge2e_lstm": [r"lstm\..*_l0$", r"lstm\..*_l1$", r"lstm\..*_l2$", r"lstm\..*_l3$", r"projection\."],
    "ecapa_tdnn": [r"input_block\.", r"blocks\.0\.", r"blocks\.1\.", r"blocks\.2\.", r"blocks\.3\.",
                   r"aggregation\.", r"pooling\.", r"pooling_norm\.|projection\."],
    "resnet": [r"conv1\.|bn1\.", r"layer1\.", r"layer2\.", r"layer3\.", r"layer4\.", r"seg_1\."],
    # The 2-D front (FCM), the strided TDNN, each D-TDNN block with the transit layer after it, the embedding.
    "campplus": [r"head\.", r"xvector\.tdnn\.", r"xvector\.(block|transit)1\.", r"xvector\.(block|transit)2\.",
                 r"xvector\.(block|transit)3\.", r"xvector\.(out_nonlinear|dense)\."],
    # CNN feature encoder (--freeze_layers 1 = transformers' freeze_feature_encoder), its projection with the
    # positional conv, each transformer layer, anything else of the backbone, the head with the layer weights.
    "ssl_backbone": [r"backbone\.feature_extractor\.",
                     r"backbone\.(feature_projection|masked_spec_embed|encoder\.(pos_conv_embed|layer_norm))",
                     *(rf"backbone\.encoder\.layers\.{i}\." for i in range(64)), r"backbone\.",
                     r"layer_weights$|pooling|projection\.|projector\.|tdnn\.|embedding\."],
}
ENCODER_PREFIX = "eisv.encoder."


def encoder_layers(model: nn.Module, encoder_type: str) -> list:
    """The encoder's parameters grouped by layer, bottom first: a list of lists of (name, parameter);
    empty layers (e.g. a 3-layer LSTM's fourth pattern) are left out."""
    patterns = [re.compile(p) for p in LAYER_PATTERNS[encoder_type]]
    layers = [[] for _ in patterns]
    for name, parameter in model.named_parameters():
        if not name.startswith(ENCODER_PREFIX):
            continue
        local = name[len(ENCODER_PREFIX):]
        index = next((i for i, pattern in enumerate(patterns) if pattern.match(local)), None)
        if index is None:
            raise ValueError(f"encoder_layers: {name} matches no layer of {encoder_type}; update LAYER_PATTERNS")
        layers[index].append((name, parameter))
    return [layer for layer in layers if layer]


def parameter_groups(model: nn.Module, encoder_type: str, learning_rate: float, layer_lr_decay: float = 1.0,
                     freeze_layers: int = 0) -> list:
    """Optimizer parameter groups: the lowest `freeze_layers` encoder layers frozen (requires_grad False,
    left out), the others at learning_rate * layer_lr_decay ** (layers above them), the rest of the
    model (the head) at `learning_rate`. Each group keeps `lr` for schedulers that scale it."""
    layers = encoder_layers(model, encoder_type)
    if not 0 <= freeze_layers < len(layers) + 1:
        raise ValueError(f"freeze_layers={freeze_layers}: the {encoder_type} encoder has {len(layers)} layers")
    groups, in_encoder = [], set()
    for depth, layer in enumerate(layers):
        in_encoder.update(name for name, _ in layer)
        if depth < freeze_layers:
            for _, parameter in layer:
                parameter.requires_grad_(False)
            continue
        rate = learning_rate * layer_lr_decay ** (len(layers) - 1 - depth)
        groups.append({"params": [p for _, p in layer], "lr": rate, "name": f"encoder layer {depth}"})
    rest = [p for name, p in model.named_parameters() if name not in in_encoder and p.requires_grad]
    groups.append({"params": rest, "lr": learning_rate, "name": "head"})
    return groups


class TeacherAnchor(nn.Module):
    """A frozen copy of the starting encoder and the anchor loss λ_kd·mean(1 − cos(student, anchor)).

    anchor="same_input": the teacher's embedding of the same unmasked input (knowledge distillation).
    anchor="neutral": the teacher's mean embedding of the same speaker's plain neutral crops in the
    batch (rows flagged by `neutral_rows`), so emotional and CopyPaste inputs are pulled towards where
    the starting encoder puts that speaker's neutral voice; rows of a speaker with no neutral crop in
    the batch fall back to the same input.
    """

    def __init__(self, encoder: nn.Module, anchor: str = "same_input"):
        super().__init__()
        if anchor not in ("same_input", "neutral"):
            raise ValueError(f"TeacherAnchor: anchor={anchor!r}; choose same_input or neutral")
        self.teacher = copy.deepcopy(encoder).eval().requires_grad_(False)
        self.anchor = anchor

    def train(self, mode: bool = True):  # the teacher stays in eval mode
        return self

    @torch.no_grad()
    def anchors(self, input_features, attention_mask, labels, neutral_rows=None) -> torch.Tensor:
        """(B, T, F), (B, T), (B,), (B,) bool -> (B, D) unit-norm anchor embeddings."""
        target = nn.functional.normalize(self.teacher(input_features, attention_mask).embeddings.float(), dim=-1)
        if self.anchor == "neutral" and neutral_rows is not None:
            same = (labels[:, None] == labels[None, :]) & neutral_rows.bool()[None, :]  # (B, B)
            pooled = same.float() @ target
            has = same.any(dim=1, keepdim=True)
            target = torch.where(has, nn.functional.normalize(pooled, dim=-1), target)
        return target

    def loss(self, student_embeddings, anchors) -> torch.Tensor:
        """mean(1 − cos(student, anchor)) over the rows."""
        return (1.0 - nn.functional.cosine_similarity(student_embeddings.float(), anchors, dim=-1)).mean()

    @staticmethod
    def contrast_loss(student_embeddings, anchors, labels, scale: float = 30.0, margin: float = 0.2) -> torch.Tensor:
        """Additive-margin cross-entropy of each student embedding against the batch's fixed anchors:
        closer to its own speaker's anchors than to the other speakers' by `margin` (cosine), at `scale`.

        The anchors are the teacher's (`anchors`), so this separates speakers the way AAM-softmax does but
        against prototypes that stay where the start put them, with no new head to learn first. Every row
        of the same speaker is a positive (a speaker with several rows counts once per row, the same for
        every speaker of a balanced batch). (B, D), (B, D), (B,) -> scalar float32; no host read."""
        cosine = nn.functional.normalize(student_embeddings.float(), dim=-1) @ anchors.T  # (B, B)
        positive = labels[:, None] == labels[None, :]
        logits = scale * (cosine - margin * positive.float())
        return (torch.logsumexp(logits, dim=1)
                - torch.logsumexp(logits.masked_fill(~positive, float("-inf")), dim=1)).mean()


class StartingPointPenalty:
    """L2-SP (Li, Grandvalet & Davoine, ICML 2018): Σ(θ − θ_start)² over the encoder's trainable parameters,
    a pull towards the starting weights instead of weight decay's pull towards 0. The head is new and free.
    Holds the parameters themselves (preparing the model for a device or for DDP keeps them) and their
    starting values, copied once onto the parameters' device."""

    def __init__(self, model: nn.Module):
        self.pairs = [(p, p.detach().clone()) for name, p in model.named_parameters()
                      if name.startswith(ENCODER_PREFIX) and p.requires_grad]
        if not self.pairs:
            raise ValueError("StartingPointPenalty: the model has no trainable encoder parameters")

    def __call__(self) -> torch.Tensor:
        """-> scalar float32: the squared distance of the encoder from its start."""
        return sum(((p.float() - start.float()) ** 2).sum() for p, start in self.pairs)
