"""CPU inference speed of ECAPA-TDNN C=512: PyTorch vs onnxruntime (the `eisv-export` graph).

    python -m benchmarks.bench_onnx_cpu [--threads N] [--seconds 3] [--clips 20] [--repeats 3] [--opset 18]
                                   [--ort-spinning]

Batch of 1, random weights (built from the config), speech-like synthetic clips. Times are per
clip in ms, median over `--clips` x `--repeats`, after warm-up; the four pipelines are interleaved
clip by clip. RTF = compute s / audio s. "model only" times the embedding model on precomputed
features (B=1, frames, 80); "with features" adds `EISVFeatureExtractor` (Kaldi fbank, in Python,
the same for both). PyTorch runs under `torch.inference_mode()`; both use `--threads` intra-op
threads (default: all usable cores). Also prints the smallest cosine between the two backends.
"""

import datetime
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.bench_inference_cpu import clip_timing_parser, load_average, make_clips
from benchmarks.machine import cpu_model

SR = 16000


def main(argv=None):
    parser = clip_timing_parser(__doc__, clips=20, repeats=3)
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset for the export (<18: TorchScript exporter)")
    parser.add_argument("--ort-spinning", action="store_true", help="let onnxruntime's threads busy-wait between runs")
    args = parser.parse_args(argv)

    import onnxruntime
    from transformers.utils import logging as hf_logging

    from eisv_evaluation.onnx_export import cosine_rows, export_onnx, onnx_inputs
    from modeling_eisv import EISVConfig, EISVFeatureExtractor, EISVModel

    hf_logging.disable_progress_bar()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = EISVModel(EISVConfig(encoder_type="ecapa_tdnn", ecapa_channels=512)).eval()
    fe = EISVFeatureExtractor("kaldi_fbank")
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        info = export_onnx(model, Path(tmp) / "ecapa512.onnx", args.opset)
        export_s = time.perf_counter() - start
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = args.threads
        options.inter_op_num_threads = 1
        # ORT's workers busy-wait after a run by default; interleaved with PyTorch on few cores that
        # spinning steals the cores PyTorch's next clip needs. Off unless --ort-spinning.
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if args.ort_spinning else "0")
        session = onnxruntime.InferenceSession(info["path"], options, providers=["CPUExecutionProvider"])

    print(f"date:    {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}")
    print(f"cpu:     {cpu_model()} ({len(os.sched_getaffinity(0))} usable of {os.cpu_count()} logical cores)")
    print(f"torch:   {torch.__version__}, threads={torch.get_num_threads()}; onnxruntime {onnxruntime.__version__}, "
          f"intra_op_num_threads={args.threads}, allow_spinning={int(args.ort_spinning)}, CPUExecutionProvider")
    print(f"python:  {platform.python_version()}; load average before: {load_average()}")
    print(f"model:   ECAPA-TDNN C=512, {sum(p.numel() for p in model.parameters()):,} params, random weights; "
          f"export {info['exporter']} opset {info['opset']} in {export_s:.1f} s")
    print(f"clips:   {args.clips} x {args.seconds:g} s, {args.repeats} repeats, batch 1, median over clips")

    clips = make_clips(args.clips, args.seconds)
    features = [fe(wave, sampling_rate=SR, return_tensors="pt") for wave in clips]

    def torch_model(feats):
        return model(**feats).embeddings.numpy()

    def ort_model(feats):
        return session.run(["embeddings"], onnx_inputs(feats["input_features"], feats["attention_mask"]))[0]

    pipelines = {
        "PyTorch, model only": lambda i: torch_model(features[i]),
        "onnxruntime, model only": lambda i: ort_model(features[i]),
        "PyTorch, with features": lambda i: torch_model(fe(clips[i], sampling_rate=SR, return_tensors="pt")),
        "onnxruntime, with features": lambda i: ort_model(fe(clips[i], sampling_rate=SR, return_tensors="pt")),
    }
    names = list(pipelines)
    times = {name: [] for name in names}
    with torch.inference_mode():
        cosines = [float(cosine_rows(torch_model(f), ort_model(f))[0]) for f in features]
        for name in names:
            for i in range(min(args.warmup, len(clips))):
                pipelines[name](i)
        step = 0
        for _ in range(args.repeats):
            for i in range(len(clips)):
                order = names[step % len(names):] + names[: step % len(names)]
                step += 1
                for name in order:
                    start = time.perf_counter()
                    pipelines[name](i)
                    times[name].append(time.perf_counter() - start)

    print()
    print(f"{'pipeline':<30} {'median ms':>10} {'p10 ms':>8} {'p90 ms':>8} {'RTF':>8}")
    median = {}
    for name in names:
        t = sorted(times[name])
        median[name] = statistics.median(t)
        print(f"{name:<30} {1e3 * median[name]:>10.2f} {1e3 * t[len(t) // 10]:>8.2f} "
              f"{1e3 * t[(9 * len(t)) // 10]:>8.2f} {median[name] / args.seconds:>8.4f}")
    print()
    for what in ("model only", "with features"):
        print(f"speed-up onnxruntime vs PyTorch ({what}): {median[f'PyTorch, {what}'] / median[f'onnxruntime, {what}']:.2f}x")
    print(f"min cosine onnxruntime vs PyTorch over the {len(clips)} clips: {min(cosines):.7f}")
    print(f"load average after: {load_average()}")


if __name__ == "__main__":
    main()
