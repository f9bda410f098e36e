"""CPU inference speed of the EISV encoders against SpeechBrain's ECAPA-TDNN and resemblyzer.

    python -m benchmarks.bench_inference_cpu [--threads N] [--seconds 3] [--clips 30] [--repeats 5]

Real-time factor (RTF) = compute seconds / audio seconds for one clip, batch of 1, feature
extraction included, under `torch.inference_mode()`, after warm-up. Each system embeds the same
`--clips` clips `--repeats` times, interleaved clip by clip (so load from other processes hits
all systems alike); the figure is the median over all clip timings. Weights are random (built from
configs) except for resemblyzer and, when `python -m modeling_eisv.convert_resemblyzer` works, our
GE2E, which then carries the same real weights. Nothing is downloaded.

Compared pipelines (what a user calls):
  1. ours ECAPA C=512:  EISVFeatureExtractor("kaldi_fbank") -> EISVModel(ecapa_tdnn, ecapa_channels=512)
  2. the same with `--backend onnxruntime` (`eisv_evaluation.onnx_backend.OnnxModel`, exported here)
  3. SpeechBrain ECAPA: Fbank(n_mels=80) -> InputNormalization(sentence, std_norm=False)
                        -> ECAPA_TDNN(80, channels=[512]*4+[1536], lin_neurons=192)
  4. ours GE2E:         EISVFeatureExtractor("ge2e_mel")    -> EISVModel(ge2e_lstm)
  5. the same with `--backend onnxruntime`
  6. resemblyzer:       VoiceEncoder("cpu").embed_utterance(wave)  (wave already preprocessed)
The feature step of each is also timed alone, in the same interleaved loop (ours kaldi_fbank and
ge2e_mel, SpeechBrain's Fbank + sentence mean norm, resemblyzer's `wav_to_mel_spectrogram`), so
the table says where the time goes: model = end to end - features (medians).
onnxruntime runs with `--threads` intra-op threads and no spinning (as the tools run it); a GE2E
clip of up to `onnx_backend.FEW_WINDOWS` partial windows (a 3 s clip has 3) runs on one thread.
"""

import argparse
import datetime
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.machine import cpu_model

REPO = Path(__file__).resolve().parents[1]

SR = 16000

def make_clips(n: int, seconds: float, seed: int = 0):
    """Speech-like test clips: a harmonic voice with a wandering pitch, amplitude-modulated, plus noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    clips = []
    for _ in range(n):
        f0 = rng.uniform(90, 220) * (1 + 0.1 * np.sin(2 * np.pi * rng.uniform(0.5, 3) * t))
        phase = 2 * np.pi * np.cumsum(f0) / SR
        voice = sum(np.sin(k * phase) / k for k in range(1, 12))
        envelope = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(2, 6) * t) ** 2
        wave = 0.1 * voice * envelope + 0.01 * rng.standard_normal(t.size)
        clips.append((wave / np.abs(wave).max() * 0.5).astype(np.float32))
    return clips


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def n_params(module) -> int:
    return sum(p.numel() for p in module.parameters())


# -- systems: each returns (name, embed(wave) -> embedding, parameter count or None) -------------

def ours_ecapa():
    from modeling_eisv import EISVConfig, EISVFeatureExtractor, EISVModel
    model = EISVModel(EISVConfig(encoder_type="ecapa_tdnn", ecapa_channels=512)).eval()
    fe = EISVFeatureExtractor("kaldi_fbank")

    def embed(wave):
        return model(**fe(wave, sampling_rate=SR, return_tensors="pt")).embeddings

    system = System(("ours ECAPA-TDNN C=512", embed, n_params(model)))
    system.model = model
    return system


def _onnx(model, fe, workdir: Path, threads: int):
    from eisv_evaluation.onnx_backend import onnx_model_for

    onnx_model, info = onnx_model_for(model, fe, threads=threads, cache_path=workdir / f"{model.config.encoder_type}.onnx")
    print(f"  exported {model.config.encoder_type} for onnxruntime, min cosine vs PyTorch {info['min_cosine']:.7f}")
    return onnx_model


def _ours_onnx(reference, workdir: Path, threads: int, feature_type: str, name: str):
    """`reference`'s PyTorch model exported for onnxruntime, as one benchmarked system."""
    from modeling_eisv import EISVFeatureExtractor
    model = reference.model
    fe = EISVFeatureExtractor(feature_type)
    onnx_model = _onnx(model, fe, workdir, threads)

    def embed(wave):
        return onnx_model(**fe(wave, sampling_rate=SR, return_tensors="pt")).embeddings

    return name, embed, n_params(model)


def ours_ecapa_onnx(reference, workdir: Path, threads: int):
    return _ours_onnx(reference, workdir, threads, "kaldi_fbank", "ours ECAPA-TDNN C=512, onnxruntime")


def ours_ge2e_onnx(reference, workdir: Path, threads: int):
    return _ours_onnx(reference, workdir, threads, "ge2e_mel", "ours GE2E, onnxruntime")


def feature_steps():
    """(name, wave -> features) of each system's feature step alone."""
    from resemblyzer.audio import wav_to_mel_spectrogram
    from speechbrain.lobes.features import Fbank
    from speechbrain.processing.features import InputNormalization

    from modeling_eisv import EISVFeatureExtractor
    kaldi, mel = EISVFeatureExtractor("kaldi_fbank"), EISVFeatureExtractor("ge2e_mel")
    fbank = Fbank(n_mels=80).eval()
    norm = InputNormalization(norm_type="sentence", std_norm=False).eval()
    return [("features: ours kaldi_fbank", lambda w: kaldi(w, sampling_rate=SR, return_tensors="pt"), None),
            ("features: SpeechBrain Fbank + norm",
             lambda w: norm(fbank(torch.from_numpy(w).unsqueeze(0)), torch.ones(1)), None),
            ("features: ours ge2e_mel", lambda w: mel(w, sampling_rate=SR, return_tensors="pt"), None),
            ("features: resemblyzer mel", wav_to_mel_spectrogram, None)]


class System(tuple):
    """(name, embed, params) that also keeps the model, so the onnxruntime twin can export it."""

    model = None


def ours_ge2e(workdir: Path):
    from modeling_eisv import EISVConfig, EISVFeatureExtractor, EISVModel
    out = workdir / "ge2e"
    proc = subprocess.run([sys.executable, "-m", "modeling_eisv.convert_resemblyzer", "--output", str(out)],
                          cwd=REPO, capture_output=True, text=True)
    if proc.returncode == 0 and (out / "config.json").is_file():
        model, weights = EISVModel.from_pretrained(out).eval(), "resemblyzer weights"
    else:
        print(f"  (convert_resemblyzer failed, random GE2E weights: {proc.stderr.strip()[-200:]})")
        model, weights = EISVModel(EISVConfig(encoder_type="ge2e_lstm")).eval(), "random weights"
    fe = EISVFeatureExtractor("ge2e_mel")

    def embed(wave):
        return model(**fe(wave, sampling_rate=SR, return_tensors="pt")).embeddings

    system = System((f"ours GE2E ({weights})", embed, n_params(model)))
    system.model = model
    return system


def speechbrain_ecapa():
    from speechbrain.lobes.features import Fbank
    from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN
    from speechbrain.processing.features import InputNormalization
    fbank = Fbank(n_mels=80).eval()
    norm = InputNormalization(norm_type="sentence", std_norm=False).eval()
    model = ECAPA_TDNN(input_size=80, channels=[512, 512, 512, 512, 1536], lin_neurons=192).eval()

    def embed(wave):
        wav = torch.from_numpy(wave).unsqueeze(0)
        lens = torch.ones(1)
        feats = norm(fbank(wav), lens)
        return model(feats, lens)

    return "SpeechBrain ECAPA-TDNN C=512", embed, n_params(model)


def resemblyzer_ge2e():
    from resemblyzer import VoiceEncoder
    encoder = VoiceEncoder("cpu", verbose=False).eval()
    return "resemblyzer VoiceEncoder", encoder.embed_utterance, n_params(encoder)


# -- timing ----------------------------------------------------------------------------------------

def bench(systems, clips, repeats: int, warmup: int):
    """Per-system clip timings. Systems are interleaved clip by clip (order rotated each clip), so
    load from other processes hits them alike and per-clip ratios are paired."""
    times = {name: [] for name, _, _ in systems}
    with torch.inference_mode():
        for _, embed, _ in systems:
            for wave in clips[:warmup]:
                embed(wave)
        step = 0
        for _ in range(repeats):
            for wave in clips:
                order = systems[step % len(systems):] + systems[: step % len(systems)]
                step += 1
                for name, embed, _ in order:
                    start = time.perf_counter()
                    embed(wave)
                    times[name].append(time.perf_counter() - start)
    return times


def paired_ratio(a, b) -> float:
    """Median over clips of time_a / time_b on the same clip and pass."""
    return statistics.median(x / y for x, y in zip(a, b))


def clip_timing_parser(doc: str, clips: int, repeats: int) -> argparse.ArgumentParser:
    """The options of a clip-by-clip CPU timing run: --threads --seconds --clips --repeats --warmup."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                        help="intra-op threads (default: all usable cores)")
    parser.add_argument("--seconds", type=float, default=3.0, help="clip length in seconds")
    parser.add_argument("--clips", type=int, default=clips, help="distinct clips")
    parser.add_argument("--repeats", type=int, default=repeats, help="passes over the clips per system")
    parser.add_argument("--warmup", type=int, default=5, help="warm-up clips per system")
    return parser


def main(argv=None):
    args = clip_timing_parser(__doc__, clips=30, repeats=5).parse_args(argv)

    torch.set_num_threads(args.threads)
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()
    torch.manual_seed(0)
    print(f"date:    {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}")
    print(f"cpu:     {cpu_model()} ({len(os.sched_getaffinity(0))} usable of {os.cpu_count()} logical cores)")
    print(f"torch:   {torch.__version__}, threads={torch.get_num_threads()}, interop={torch.get_num_interop_threads()}")
    print(f"python:  {platform.python_version()}; load average before: {load_average()}")
    print(f"clips:   {args.clips} x {args.seconds:g} s, {args.repeats} repeats, batch 1, inference_mode, "
          f"median RTF = compute s / audio s (features included)")

    import onnxruntime
    from eisv_evaluation.onnx_backend import FEW_WINDOWS
    print(f"onnxruntime: {onnxruntime.__version__}, intra_op_num_threads={args.threads}, no spinning "
          f"(GE2E batches of <= {FEW_WINDOWS} windows: 1)")
    with tempfile.TemporaryDirectory() as tmp:
        ecapa = ours_ecapa()
        ge2e = ours_ge2e(Path(tmp))
        systems = [ecapa, ours_ecapa_onnx(ecapa, Path(tmp), args.threads), speechbrain_ecapa(),
                   ge2e, ours_ge2e_onnx(ge2e, Path(tmp), args.threads), resemblyzer_ge2e()]
    features = feature_steps()
    clips = make_clips(args.clips, args.seconds)
    times = bench(systems + features, clips, args.repeats, args.warmup)

    rtf = {}
    print()
    print(f"{'system':<44} {'params':>10} {'median ms':>10} {'p10 ms':>8} {'p90 ms':>8} {'RTF':>8}")
    for name, _, params in systems + features:
        t = sorted(times[name])
        med = statistics.median(t)
        rtf[name] = med / args.seconds
        p10, p90 = t[len(t) // 10], t[(9 * len(t)) // 10]
        shown = "" if params is None else f"{params:,}"
        print(f"{name:<44} {shown:>10} {1e3 * med:>10.2f} {1e3 * p10:>8.2f} {1e3 * p90:>8.2f} {rtf[name]:>8.4f}")

    (ecapa, ecapa_ort, sb, ge2e, ge2e_ort, rz) = [name for name, _, _ in systems]
    (f_kaldi, f_sb, f_mel, f_rz) = [name for name, _, _ in features]
    print()
    print("where the time goes (median ms per clip; model = end to end - features):")
    for name, feats in ((ecapa, f_kaldi), (ecapa_ort, f_kaldi), (sb, f_sb), (ge2e, f_mel), (ge2e_ort, f_mel),
                        (rz, f_rz)):
        total, feat = rtf[name] * args.seconds * 1e3, rtf[feats] * args.seconds * 1e3
        print(f"  {name:<42} end to end {total:7.2f}  features {feat:6.2f} ({100 * feat / total:3.0f}%)  "
              f"model {total - feat:7.2f}")
    p_ours, p_sb = systems[0][2], systems[2][2]
    print()
    print(f"ECAPA parameter counts: ours {p_ours:,} vs SpeechBrain {p_sb:,} ({100 * (p_ours / p_sb - 1):+.2f}%)")
    for ours, peer in ((ecapa, sb), (ecapa_ort, sb), (ecapa_ort, ecapa), (ge2e, rz), (ge2e_ort, rz), (ge2e_ort, ge2e)):
        print(f"ratio {ours} / {peer}: {rtf[ours] / rtf[peer]:.2f}x of median RTF "
              f"({paired_ratio(times[ours], times[peer]):.2f}x median per-clip paired ratio)")
    print(f"load average after: {load_average()} (other processes on the machine inflate p90 and RTF)")
    print(f"goal: ours ECAPA onnxruntime RTF <= 0.01: {'PASS' if rtf[ecapa_ort] <= 0.01 else 'FAIL'} "
          f"({rtf[ecapa_ort]:.4f}); no slower than SpeechBrain (paired): "
          f"{'PASS' if paired_ratio(times[ecapa_ort], times[sb]) <= 1 else 'FAIL'}")
    speed_up = 1 / paired_ratio(times[ge2e_ort], times[rz])
    print(f"goal: ours GE2E onnxruntime >= 2x faster than resemblyzer (paired): {'PASS' if speed_up >= 2 else 'FAIL'} "
          f"({speed_up:.2f}x)")


if __name__ == "__main__":
    main()
