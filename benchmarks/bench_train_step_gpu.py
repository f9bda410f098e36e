"""Training-step time of our ECAPA-TDNN C=512, GE2E and ResNet34 against SpeechBrain's ECAPA-TDNN, on a GPU.

    python -m benchmarks.bench_train_step_gpu [--device cuda] [--steps 50] [--warmup 10] [--batch 128]
        [--precision bf16|fp32] [--variants ours ours_full sb ge2e resnet] [--no-compile] [--output FILE.json]

Pure step time, no data loading: one fixed batch already on the device; a step is zero_grad +
forward and loss (under bf16 autocast, or fp32) + backward + AdamW step (lr 1e-3, weight decay 1e-4),
timed with torch.cuda.synchronize before and after it. Weights are random; 71 speakers, AAM margin 0.2,
scale 30. Batch: B crops of 2 s -> 198 Kaldi fbank frames x 80 bins (ECAPA; snip_edges, 100 frames/s)
or 201 mel frames x 40 bands (GE2E; centred, 100 frames/s), frame counts from EISVFeatureExtractor.
  ours       EISVForSpeakerVerification(ecapa_tdnn, C=512): AAM loss on labels only
  ours_full  the same + pair_index (B/2 pairs, rows 2i and 2i+1) + em_mask (10% of each row's frames
             hidden in 20-frame blocks, all rows, like the collator's em_members="both"), erl_weight 1
  sb         speechbrain ECAPA_TDNN(80, channels [512]*4+[1536], lin_neurons 192) + our AAMSoftmaxHead
  ge2e       EISVForSpeakerVerification(ge2e_lstm): AAM loss on labels only
  resnet     EISVForSpeakerVerification(resnet): WeSpeaker's ResNet34 (32 channels, 256-d), AAM loss on labels only
Each runs eager and, unless --no-compile, under torch.compile (default mode, the model only; the
optimizer step stays eager). A compile (or any) failure is reported in the table, not raised.
compile s = first step - median step; runs after the first compiled one reuse Inductor's on-disk
cache, so theirs is lower than a cold compile.
Peak memory = torch.cuda.max_memory_allocated over model build + warm-up + timed steps (reset per run).
"""

import argparse
import datetime
import gc
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.machine import cpu_model
from eisv_io.atomic_files import write_text_atomic

SR, CROP_S, NUM_SPEAKERS, EM_RATIO, EM_BLOCK = 16000, 2.0, 71, 0.1, 20
SYSTEMS = ("ours", "ours_full", "sb", "ge2e", "resnet")


class SBWithHead(torch.nn.Module):
    """SpeechBrain ECAPA-TDNN + our AAM head: (B, T, 80) features, (B,) labels -> scalar loss."""

    def __init__(self):
        super().__init__()
        from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN
        from modeling_eisv.losses import AAMSoftmaxHead
        self.ecapa = ECAPA_TDNN(input_size=80, channels=[512, 512, 512, 512, 1536], lin_neurons=192)
        self.aam = AAMSoftmaxHead(192, NUM_SPEAKERS)
        torch.nn.init.xavier_normal_(self.aam.weight)  # as our _init_weights does

    def forward(self, input_features, labels):
        return self.aam(self.ecapa(input_features).squeeze(1), labels)[1]


def make_batch(system: str, batch: int, device, seed: int = 0) -> dict:
    """Model inputs of one step: input_features (B, T, F) float32, attention_mask (B, T) int32,
    labels (B,) long (pair members share a speaker), and for ours_full pair_index (B/2, 2) long
    and em_mask (B, T) bool."""
    from modeling_eisv import EISVFeatureExtractor
    g = torch.Generator().manual_seed(seed)
    fe = EISVFeatureExtractor("ge2e_mel" if system == "ge2e" else "kaldi_fbank")
    frames = fe.num_frames(int(CROP_S * SR))
    feats = torch.randn(batch, frames, fe.feature_size, generator=g)
    if system == "ge2e":
        feats = feats.abs()  # power mel is non-negative
    out = {"input_features": feats,
           "labels": torch.randint(0, NUM_SPEAKERS, (max(1, batch // 2),), generator=g).repeat_interleave(2)[:batch]}
    if system != "sb":
        out["attention_mask"] = torch.ones(batch, frames, dtype=torch.int32)
    if system == "ours_full":
        out["pair_index"] = torch.arange(2 * (batch // 2)).reshape(-1, 2)
        em = torch.zeros(batch, frames, dtype=torch.bool)
        for row in range(batch):
            for start in torch.randint(0, frames - EM_BLOCK + 1, (max(1, round(EM_RATIO * frames / EM_BLOCK)),), generator=g):
                em[row, start: start + EM_BLOCK] = True
        out["em_mask"] = em
    return {k: v.to(device) for k, v in out.items()}


def build(system: str):
    """(model in train mode, forward(module, batch) -> scalar loss)."""
    if system == "sb":
        return SBWithHead(), lambda m, b: m(b["input_features"], b["labels"])
    from modeling_eisv import EISVConfig, EISVForSpeakerVerification
    encoder = {"ge2e": "ge2e_lstm", "resnet": "resnet"}.get(system, "ecapa_tdnn")
    config = EISVConfig(encoder_type=encoder, ecapa_channels=512, num_speakers=NUM_SPEAKERS, erl_weight=1.0)
    return EISVForSpeakerVerification(config), lambda m, b: m(**b).loss


def run(system: str, compiled: bool, args, device) -> dict:
    """Warm-up then timed steps of one system and mode; figures in ms, s, MiB and samples/s."""
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    res = {"system": system, "mode": "compile" if compiled else "eager"}
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    torch._dynamo.reset()
    try:
        torch.manual_seed(0)
        model, forward = build(system)
        model = model.to(device).train()
        res["params"] = sum(p.numel() for p in model.parameters())
        batch = make_batch(system, args.batch, device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
        module = torch.compile(model) if compiled else model

        def step():
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16"):
                loss = forward(module, batch)
            loss.backward()
            optimizer.step()

        sync()
        start = time.perf_counter()
        step()
        sync()
        res["first_step_s"] = time.perf_counter() - start
        for _ in range(args.warmup - 1):
            step()
        sync()
        res["warmup_s"] = time.perf_counter() - start
        times = []
        for _ in range(args.steps):
            sync()
            t = time.perf_counter()
            step()
            sync()
            times.append(time.perf_counter() - t)
        p10, p50, p90 = np.percentile(np.array(times) * 1e3, [10, 50, 90])
        res.update(median_ms=float(p50), p10_ms=float(p10), p90_ms=float(p90), samples_per_s=args.batch / (p50 / 1e3))
        if compiled:  # the first step compiles; later warm-up steps may recompile
            res["compile_s"] = res["first_step_s"] - p50 / 1e3
    except Exception as error:  # noqa: BLE001 -- report and go on (compile failure, OOM, missing speechbrain)
        res["error"] = f"{type(error).__name__}: {str(error).strip().splitlines()[0][:200] if str(error).strip() else ''}"
    if cuda:
        res["peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return res


def machine(device) -> dict:
    info = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "cpu": f"{cpu_model()} ({len(os.sched_getaffinity(0))} usable of {os.cpu_count()} logical cores)",
            "device": str(device)}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                    cudnn=torch.backends.cudnn.version())
    try:
        from importlib.metadata import version
        info["speechbrain"] = version("speechbrain")
    except Exception:  # noqa: BLE001
        info["speechbrain"] = None
    return info


def ratios(results) -> dict:
    """median step time of ours (and ours_full) / sb, per mode."""
    by = {(r["system"], r["mode"]): r.get("median_ms") for r in results}
    return {f"{a}/sb {mode}": by[(a, mode)] / by[("sb", mode)]
            for a in ("ours", "ours_full") for mode in ("eager", "compile")
            if by.get((a, mode)) and by.get(("sb", mode))}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu (smoke test)")
    parser.add_argument("--steps", type=int, default=50, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps first (>= 1; the first compiles)")
    parser.add_argument("--batch", type=int, default=128, help="crops per step (2 s each)")
    parser.add_argument("--precision", choices=("bf16", "fp32"), default="bf16", help="autocast bf16 or plain fp32")
    parser.add_argument("--variants", nargs="+", choices=SYSTEMS, default=list(SYSTEMS), help="systems to run")
    parser.add_argument("--no-compile", dest="compile", action="store_false", help="eager runs only")
    parser.add_argument("--output", type=Path, help="write all figures to this JSON file")
    args = parser.parse_args(argv)
    args.warmup = max(1, args.warmup)
    device = torch.device(args.device)
    from transformers.utils import logging as hf_logging
    hf_logging.set_verbosity_error()

    info = machine(device)
    for key, value in info.items():
        print(f"{key + ':':<16} {value}")
    print(f"{'setup:':<16} batch {args.batch} x {CROP_S:g} s, {args.precision}, AdamW, {args.warmup} warm-up + "
          f"{args.steps} timed steps, synchronize around each step")
    results = [run(system, compiled, args, device) for system in args.variants
               for compiled in ((False, True) if args.compile else (False,))]

    print("\n| system | mode | params | median ms | p10 ms | p90 ms | samples/s | peak MiB | first step s | compile s |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        cell = lambda key, fmt: format(r[key], fmt) if r.get(key) is not None else "-"  # noqa: E731
        if "error" in r:
            print(f"| {r['system']} | {r['mode']} | {cell('params', ',')} | failed: {r['error']} | | | | {cell('peak_mib', '.0f')} | | |")
            continue
        print(f"| {r['system']} | {r['mode']} | {r['params']:,} | {r['median_ms']:.2f} | {r['p10_ms']:.2f} | "
              f"{r['p90_ms']:.2f} | {r['samples_per_s']:.1f} | {cell('peak_mib', '.0f')} | {r['first_step_s']:.2f} | "
              f"{cell('compile_s', '.1f')} |")
    ratio = ratios(results)
    print("\nratio of median step time: " + (", ".join(f"{k} {v:.2f}x" for k, v in ratio.items()) or "n/a"))

    if args.output:
        payload = {"machine": info, "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                   "results": results, "ratios": ratio}
        write_text_atomic(args.output, json.dumps(payload, indent=2))
        print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
