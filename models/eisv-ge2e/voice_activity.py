"""Voice-activity trimming of long silences, as resemblyzer's `preprocess_wav` does before GE2E.

WebRTC's voice-activity detector (`webrtcvad`, installed by the `webrtcvad-wheels` package, MIT
licence) marks 30 ms blocks of 16-bit PCM as voiced or not at an aggressiveness of 0-3; the flags
are smoothed by a moving average over 8 blocks, rounded, and every voiced block is dilated by 3
blocks on each side, so pauses of up to ~180 ms inside speech are kept and longer ones removed.
Those are resemblyzer's `trim_long_silences` constants (`hparams.py`), reproduced here with numpy
only: at aggressiveness 3 the kept samples equal resemblyzer's.

The trim never empties a clip silently: when it would keep less than
`speech_activity.MIN_SPEECH_S` (0.3 s, the one "too little speech" duration), the untrimmed
waveform is returned (`trim_long_silences` reports it), so noise or a tone that the detector does
not call speech is embedded as it was without the option. Whether a clip holds enough signal to
be embedded at all stays the rule of `speech_activity` (the tools and the pipeline check it on the
untrimmed audio).
"""

import numpy as np

from .speech_activity import MIN_SPEECH_S

VAD_RATES = (8000, 16000, 32000, 48000)  # the rates webrtcvad accepts
VAD_BLOCK_MS = 30  # webrtcvad accepts 10, 20 or 30 ms blocks
VAD_SMOOTHING_BLOCKS = 8  # moving average width (resemblyzer's vad_moving_average_width)
VAD_MAX_SILENCE_BLOCKS = 6  # voiced blocks are dilated by half this on each side (vad_max_silence_length)


def _webrtcvad():
    try:
        import webrtcvad
    except ImportError:
        raise ImportError("trim_long_silences=True needs the webrtcvad module: pip install webrtcvad-wheels") from None
    return webrtcvad


def _moving_average(flags: np.ndarray, width: int) -> np.ndarray:
    """Resemblyzer's moving average (zero-padded, same length as `flags`)."""
    padded = np.concatenate((np.zeros((width - 1) // 2), flags, np.zeros(width // 2)))
    total = np.cumsum(padded, dtype=float)
    total[width:] = total[width:] - total[:-width]
    return total[width - 1:] / width


def voiced_block_mask(waveform: np.ndarray, sampling_rate: int, aggressiveness: int = 3) -> np.ndarray:
    """(samples,) float waveform in [-1, 1] -> (blocks,) bool: the 30 ms blocks kept by the trim.

    Samples after the last whole block are not covered (and are dropped by the trim).
    """
    if sampling_rate not in VAD_RATES:
        raise ValueError(f"voice-activity trimming works at {VAD_RATES} Hz; got {sampling_rate}")
    vad = _webrtcvad().Vad(int(aggressiveness))
    block = VAD_BLOCK_MS * sampling_rate // 1000
    num_blocks = waveform.size // block
    pcm = (np.clip(np.round(waveform[:num_blocks * block] * 32767), -32768, 32767).astype("<i2")).tobytes()
    flags = np.array([vad.is_speech(pcm[2 * i * block:2 * (i + 1) * block], sampling_rate)
                      for i in range(num_blocks)], dtype=float)
    if flags.size == 0:
        return flags.astype(bool)
    mask = np.round(_moving_average(flags, VAD_SMOOTHING_BLOCKS)).astype(bool)
    width = VAD_MAX_SILENCE_BLOCKS + 1  # scipy's binary_dilation with np.ones(width), centred
    return np.convolve(mask.astype(float), np.ones(width), mode="same") > 0.5


def trim_long_silences(waveform: np.ndarray, sampling_rate: int, aggressiveness: int = 3,
                       min_kept_s: float = MIN_SPEECH_S):
    """(samples,) float32 -> (`kept (samples',) float32`, `trimmed: bool`).

    `trimmed` is False when the detector kept less than `min_kept_s` seconds, and then `kept` is
    the input itself (the documented fallback; see the module docstring).
    """
    block = VAD_BLOCK_MS * sampling_rate // 1000
    mask = voiced_block_mask(waveform, sampling_rate, aggressiveness)
    kept = int(mask.sum()) * block
    if kept < max(1, min_kept_s * sampling_rate):
        return waveform, False
    return waveform[:mask.size * block][np.repeat(mask, block)], True
