"""Copy the ablation's chosen model into the repository, with remote code and a model card.

    python experiments/export_best_model.py --output results/ablation --target models/eisv-ge2e-emotion

The model: among the table runs of `--encoder` (default ge2e, the paper's pretrained-then-fine-tuned
setting) and `--row` (default 4, the full recipe), the seed with the lowest *validation* EER; the
evaluation trials play no part in the choice. Its folder (OUTPUT/runs/<run>/model, written by
train_eisv.py) is re-saved with `save_pretrained` (safetensors, remote code, auto_map), and its
generated card is given the repository's name, the base model, the commands that reproduce it and
the ablation row it belongs to (mean ± std over seeds).
"""

import argparse
import json
import re
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from eisv_training.export import replace_folder  # noqa: E402
from modeling_eisv import EISVFeatureExtractor, EISVForSpeakerVerification  # noqa: E402

BASE_MODEL = "the GE2E encoder shipped in the `resemblyzer` wheel (Apache-2.0; trained on LibriSpeech and VoxCeleb)"


def pick_run(output: Path, encoder: str, row: int) -> dict:
    runs = [json.loads(p.read_text()) for p in sorted((output / "json").glob(f"{encoder}-row{row}-seed*.json"))]
    runs = [run for run in runs if run["stage"] == "table"]
    if not runs:
        raise SystemExit(f"export_best_model: no table run {encoder}-row{row}-seed* in {output / 'json'}")
    return min(runs, key=lambda run: run["validation"]["best_eer"])


def rewrite_card(card: str, run: dict, name: str, row_summary: str, ablation_command: str) -> str:
    """The training card with the repository's name, base model and reproducible commands."""
    replacements = {
        f"# {run['id']}\n": f"# {name}\n",
        f"- name: {run['id']}\n": f"- name: {name}\n",
        f'"{run["id"]}"': f'"{name}"',
        f"--model {run['id']} ": f"--model {name} ",
    }
    for old, new in replacements.items():
        if old not in card:
            raise SystemExit(f"export_best_model: the generated card has no {old!r}; was it made by train_eisv.py?")
        card = card.replace(old, new)
    lines, out = card.split("\n"), []
    for line in lines:
        if line.startswith("| fine-tuned from |"):
            line = f"| fine-tuned from | {BASE_MODEL} |"
        if line == "Produced by:":
            out += ["Produced by the ablation of the eisv repository (its seed with the lowest validation EER, "
                    "then this script):", "", "```bash", ablation_command,
                    f"python experiments/export_best_model.py --output results/ablation --target models/{name}",
                    "```", "", "The training run itself:"]
            continue
        if line.startswith("python train_eisv.py "):  # the machine's paths -> the repository's defaults
            line = re.sub(r"--shared_data \S+", "--shared_data ../shared/data", line)
            line = re.sub(r"--init_from \S+", "--init_from resemblyzer", line)
            line = re.sub(r"--output_dir \S+", f"--output_dir results/ablation/runs/{run['id']}", line)
        if line.startswith("## Evaluation"):
            out += ["## Where it stands", "", row_summary, ""]
        out.append(line)
    return "\n".join(out)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default="results/ablation", help="what experiments/ablation.py wrote")
    parser.add_argument("--encoder", default="ge2e")
    parser.add_argument("--row", type=int, default=4)
    parser.add_argument("--model_dir", default=None, help="the run's model folder (default OUTPUT/runs/<run>/model)")
    parser.add_argument("--target", default="models/eisv-ge2e-emotion")
    args = parser.parse_args(argv)
    output, target = Path(args.output), Path(args.target)
    run = pick_run(output, args.encoder, args.row)
    source = Path(args.model_dir or output / "runs" / run["id"] / "model")
    if not (source / "config.json").exists():
        raise SystemExit(f"export_best_model: {source} holds no model (config.json missing)")
    seeds = [json.loads(p.read_text()) for p in sorted((output / "json").glob(f"{args.encoder}-row{args.row}-seed*.json"))]
    eers = [s["test"]["overall"]["eer"] for s in seeds]
    baseline = [json.loads(p.read_text())["test"]["overall"]["eer"]
                for p in sorted((output / "json").glob(f"{args.encoder}-row1-seed*.json"))]
    mean = sum(eers) / len(eers)
    row0 = output / "json" / f"{args.encoder}-row0.json"
    pretrained = (f" and {json.loads(row0.read_text())['test']['overall']['eer']:.2f}% for the pretrained encoder as is"
                  if row0.exists() else "")
    summary = (f"This is seed {run['seed']} of row {args.row} ({run['row_name']}) of the ablation in the eisv README. "
               f"Over {len(eers)} seeds that row has a dev EER of {mean:.2f}% (seeds: "
               f"{', '.join(f'{e:.2f}' for e in eers)}), against {sum(baseline) / len(baseline):.2f}% for the "
               f"baseline fine-tuned with AAM-softmax only{pretrained}: "
               f"{100 * (mean - sum(baseline) / len(baseline)) / (sum(baseline) / len(baseline)):+.1f}% relative "
               "to the baseline, far from the paper's -19.29%. The gain is on RAVDESS (unseen speakers of a "
               "training corpus); on EmoDB (an unseen corpus and language) fine-tuning on emotional speech does "
               "not help. Weights are float32 (5.8 MB).")
    model = EISVForSpeakerVerification.from_pretrained(source)
    extractor = EISVFeatureExtractor.from_pretrained(source)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        model.save_pretrained(staging)
        extractor.save_pretrained(staging)
        shutil.copy(source / "training_results.json", staging / "training_results.json")
        command = f"python experiments/ablation.py --output {output} --jobs 16 --gpus 0,1,2,3"
        card = rewrite_card((source / "README.md").read_text(), run, target.name, summary, command)
        (staging / "README.md").write_text(card)
        replace_folder(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print(f"export_best_model: {run['id']} (validation EER {run['validation']['best_eer']:.2f}%, dev EER "
          f"{run['test']['overall']['eer']:.2f}%) -> {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
