"""How much of a waveform is active signal: the one "too little speech" rule of the tools and the pipeline.

A recording is cut into 10 ms blocks (the last one may be shorter). A block is **active** when
its RMS is at least `ABSOLUTE_FLOOR_DBFS` (-80 dBFS; 1.0 is full scale) and within
`RELATIVE_FLOOR_DB` (40 dB) of the loudest block, the floor `data_collators.audio_store` uses for
its active span. The active duration is the summed length of the active blocks, in seconds.
Embedding a recording with less than `MIN_SPEECH_S` (0.3 s) of it is refused: digital silence,
a 10 ms blip or a single sample otherwise get a confident but meaningless score.

The floors were checked on the 4,353 clips of `shared/data` (ASED, RAVDESS, EmoDB, LibriSpeech):
the quietest RAVDESS clip peaks at -50 dBFS (hence an absolute floor far below that), and the
clip with the least active signal has 0.53 s, so every real clip there passes with a margin while
a single short word (about 0.3 s) still does.

This is an energy check, not a voice-activity detector: steady noise louder than -80 dBFS counts
as active. It exists to catch empty and silent inputs, not to trim pauses.
"""

import numpy as np

BLOCK_S = 0.010  # block length, seconds
ABSOLUTE_FLOOR_DBFS = -80.0  # quieter blocks are silence whatever the rest of the file does
RELATIVE_FLOOR_DB = 40.0  # blocks quieter than the loudest by more than this are silence
MIN_SPEECH_S = 0.3  # default minimum active duration for embedding, seconds


def active_seconds(waveform: np.ndarray, sampling_rate: int, count_from: int = 0) -> float:
    """(samples,) float waveform -> seconds of active blocks (see the module docstring).

    The loudest block is found over the whole waveform; only blocks starting at or after sample
    `count_from` are counted (so overlapping windows of one file can be summed without counting
    twice).
    """
    waveform = np.asarray(waveform, dtype=np.float64).reshape(-1)
    if waveform.size == 0:
        return 0.0
    block = max(1, int(round(BLOCK_S * sampling_rate)))
    full = waveform.size // block
    energies = []
    lengths = []
    if full:
        energies.append(np.sqrt(np.mean(np.square(waveform[:full * block].reshape(full, block)), axis=1)))
        lengths.append(np.full(full, block))
    if waveform.size % block:
        tail = waveform[full * block:]
        energies.append(np.array([np.sqrt(np.mean(np.square(tail)))]))
        lengths.append(np.array([tail.size]))
    energy, length = np.concatenate(energies), np.concatenate(lengths)
    floor = max(10 ** (ABSOLUTE_FLOOR_DBFS / 20), energy.max() * 10 ** (-RELATIVE_FLOOR_DB / 20))
    counted = np.arange(energy.size) * block >= count_from
    return float(length[(energy >= floor) & counted].sum() / sampling_rate)


def too_little_speech(name, seconds: float, min_speech_s: float) -> str:
    """The message for a recording with `seconds` of active signal, fewer than `min_speech_s`."""
    return (f"{name}: too little speech to embed ({seconds:.2f} s of active signal, at least {min_speech_s:g} s "
            f"needed; silence, or a clip shorter than that). Allow it with a smaller minimum (tools: "
            f"--min-speech-s 0; pipeline: min_speech_s=0)")


def check_speech(waveform: np.ndarray, sampling_rate: int, name, min_speech_s: float = MIN_SPEECH_S) -> float:
    """Raises `ValueError` naming `name` when `waveform` has less than `min_speech_s` s of active signal.

    Returns the active seconds. `min_speech_s` 0 (or None) accepts anything.
    """
    seconds = active_seconds(waveform, sampling_rate)
    if min_speech_s and seconds < min_speech_s:
        raise ValueError(too_little_speech(name, seconds, min_speech_s))
    return seconds
