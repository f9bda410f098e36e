"""The trial-list schema: its columns and its condition names, in one place (standard library only).

A trial list is a CSV with the columns `TRIAL_COLUMNS`: `corpus`, `enroll` and `test` (audio paths
relative to a root folder), `label` (1 = same speaker, 0 = different speakers) and `condition`, one of
`TARGET_CONDITIONS` for label 1 or `NONTARGET_CONDITIONS` for label 0 (shared/data/README.md). The
readers (`eisv_evaluation.trials`), the writers (`eisv_training.validation_split`, `scripts/make_*_mini.py`)
and the reports use these names.
"""

TRIAL_COLUMNS = ("corpus", "enroll", "test", "label", "condition")
TARGET_CONDITIONS = ("same_emotion", "neutral_vs_emotional", "emotional_vs_emotional")
EMOTIONAL_TARGET_CONDITIONS = ("neutral_vs_emotional", "emotional_vs_emotional")  # at least one emotional side
NONTARGET_CONDITIONS = ("nontarget_same_emotion", "nontarget_cross_emotion")


def trial_condition(same_speaker: bool, emotion_a: str, emotion_b: str, neutral=("neutral",)) -> str:
    """The condition of a trial between two clips with these emotion labels; `neutral` lists the labels
    that count as neutral speech."""
    if not same_speaker:
        return NONTARGET_CONDITIONS[0] if emotion_a == emotion_b else NONTARGET_CONDITIONS[1]
    if emotion_a == emotion_b:
        return "same_emotion"
    return "neutral_vs_emotional" if emotion_a in neutral or emotion_b in neutral else "emotional_vs_emotional"
