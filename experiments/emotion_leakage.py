"""Emotion leakage: how well a linear probe reads the emotion off each model's speaker embeddings.

    python -m experiments.emotion_leakage --model "no fine-tuning=DIR0" --model "baseline=DIR1" \
        --model "full recipe=DIR4" --shared_data ../shared/data --output_dir results/ablation/leakage \
        [--device cuda] [--projection_models "no fine-tuning" "full recipe"] [--max_files_per_speaker N]

The files are the distinct files of `<shared_data>/dev_trials.csv` (test speakers, never trained
on); speaker and emotion come from `<shared_data>/<corpus>/metadata.csv`. Each model embeds every
file (windowed, unit norm). Per corpus, a standardised logistic regression predicts the emotion,
scored by leave-one-speaker-out cross-validation: the probe is always tested on a speaker it has
not seen, so it must read emotion, not identity. Lower accuracy = more emotion-invariant
embeddings. Chance: the majority-class share (for accuracy) and 1/classes (for balanced
accuracy). "pooled" averages the corpora weighted by their number of files.

Writes to OUTPUT_DIR: leakage.json, leakage.md (the table printed at the end), leakage.png (bars)
and projection.png (t-SNE of the embeddings, one row per `--projection_models` model, coloured by
speaker and by emotion; marker shape = corpus).
"""

import argparse
import csv
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eisv_evaluation.trials import read_trials
from eisv_io.atomic_files import atomic_path, write_text_atomic
from eisv_io.errors import ToolError

REPO = Path(__file__).resolve().parents[1]

RESULTS_FORMAT = "eisv-emotion-leakage/1"
PROBE = "StandardScaler + LogisticRegression(C=1, lbfgs), leave-one-speaker-out cross-validation"
TSNE_PERPLEXITY = 30.0
CORPUS_MARKERS = "o^sDvP"


@dataclass
class LabelledFiles:
    """Arrays of equal length (files,): `path` relative to shared_data, its corpus, speaker and emotion."""

    path: np.ndarray
    corpus: np.ndarray
    speaker: np.ndarray
    emotion: np.ndarray

    def __len__(self):
        return len(self.path)

    def subset(self, index) -> "LabelledFiles":
        return LabelledFiles(self.path[index], self.corpus[index], self.speaker[index], self.emotion[index])


def read_metadata(path: Path, corpus: str) -> dict:
    """`<corpus>/metadata.csv` -> {"<corpus>/<file_name>": (speaker, emotion)}."""
    if not path.is_file():
        raise ToolError(f"{path}: no such metadata file (corpus {corpus!r} of the trial list)")
    with open(path, newline="", encoding="utf-8-sig") as handle:
        rows = list(csv.DictReader(handle))
    missing = {"file_name", "speaker", "emotion"} - set(rows[0] if rows else {})
    if missing:
        raise ToolError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
    return {f"{corpus}/{row['file_name']}": (row["speaker"], row["emotion"]) for row in rows}


def read_test_files(shared_data, max_files_per_speaker=None, seed=0) -> LabelledFiles:
    """The distinct files of `dev_trials.csv` with speaker and emotion, sorted by path.

    With `max_files_per_speaker`, a seeded random subset of at most that many files per speaker.
    Raises `ToolError` naming a trial file that its corpus's metadata.csv does not list.
    """
    shared_data = Path(shared_data)
    trials = read_trials(shared_data / "dev_trials.csv")
    corpus_of = dict(zip(trials.enroll, trials.corpus)) | dict(zip(trials.test, trials.corpus))
    metadata = {corpus: read_metadata(shared_data / corpus / "metadata.csv", corpus) for corpus in set(trials.corpus)}
    rows = []
    for path in sorted(corpus_of):
        corpus = corpus_of[path]
        if path not in metadata[corpus]:
            raise ToolError(f"{path}: trial file not listed in {shared_data / corpus / 'metadata.csv'}")
        rows.append((path, corpus, *metadata[corpus][path]))
    files = LabelledFiles(*(np.asarray(column, dtype=object) for column in zip(*rows)))
    if max_files_per_speaker is None:
        return files
    rng = np.random.default_rng(seed)
    keep = []
    for speaker in sorted(set(files.speaker)):
        mine = np.flatnonzero(files.speaker == speaker)
        keep += list(rng.choice(mine, size=min(max_files_per_speaker, mine.size), replace=False))
    return files.subset(np.sort(keep))


def embed_test_files(model_dir, files: LabelledFiles, shared_data, device=None, batch_size=16) -> np.ndarray:
    """Model folder + files -> (files, embedding_size) unit-norm float32 embeddings, in file order."""
    from eisv_evaluation.loading import load_model
    from eisv_evaluation.windowed_embedding import embed_paths

    model, feature_extractor = load_model(model_dir, device)
    paths = [Path(shared_data) / path for path in files.path]
    return embed_paths(model, feature_extractor, paths, batch_size=batch_size, device=model.device)


def probe_emotion(embeddings, emotions, speakers) -> dict:
    """(files, D) embeddings, (files,) emotion and speaker labels -> leave-one-speaker-out probe metrics.

    Accuracies are over the pooled out-of-fold predictions, in [0, 1]. Deterministic (lbfgs).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, balanced_accuracy_score
    from sklearn.model_selection import LeaveOneGroupOut, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    emotions, speakers = np.asarray(emotions), np.asarray(speakers)
    classes, counts = np.unique(emotions, return_counts=True)
    num_speakers = len(set(speakers))
    if len(classes) < 2 or num_speakers < 2:
        raise ToolError(f"the probe needs at least 2 emotions and 2 speakers; got {len(classes)} and {num_speakers}")
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000, random_state=0))
    predicted = cross_val_predict(probe, embeddings, emotions, groups=speakers, cv=LeaveOneGroupOut())
    return {"accuracy": float(accuracy_score(emotions, predicted)),
            "balanced_accuracy": float(balanced_accuracy_score(emotions, predicted)),
            "chance_majority": float(counts.max() / counts.sum()), "chance_uniform": 1.0 / len(classes),
            "num_files": len(emotions), "num_speakers": num_speakers, "num_classes": len(classes),
            "classes": [str(c) for c in classes]}


def pool(by_corpus: dict) -> dict:
    """Per-corpus probe metrics -> the same rates averaged with weights = files, and summed counts."""
    weights = np.array([metrics["num_files"] for metrics in by_corpus.values()], dtype=float)
    pooled = {key: float(np.average([m[key] for m in by_corpus.values()], weights=weights))
              for key in ("accuracy", "balanced_accuracy", "chance_majority", "chance_uniform")}
    pooled.update({key: int(sum(m[key] for m in by_corpus.values())) for key in ("num_files", "num_speakers")})
    return pooled


def probe_model(embeddings, files: LabelledFiles) -> dict:
    """-> {"by_corpus": {corpus: probe metrics}, "pooled": pooled metrics}."""
    by_corpus = {}
    for corpus in sorted(set(files.corpus)):
        mask = files.corpus == corpus
        by_corpus[corpus] = probe_emotion(embeddings[mask], files.emotion[mask], files.speaker[mask])
    return {"by_corpus": by_corpus, "pooled": pool(by_corpus)}


def tsne_2d(embeddings, seed=0) -> np.ndarray:
    """(files, D) -> (files, 2) t-SNE (PCA init; perplexity 30, lowered for fewer than 91 files)."""
    from sklearn.manifold import TSNE

    perplexity = min(TSNE_PERPLEXITY, (len(embeddings) - 1) / 3)
    return TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(embeddings)


def markdown_table(results) -> str:
    """model | <corpus> acc (bal.) ... | pooled acc (bal.), in percent, with a closing chance row."""
    models = results["models"]
    corpora = list(next(iter(models.values()))["by_corpus"])
    cell = lambda m, acc="accuracy", bal="balanced_accuracy": f"{100 * m[acc]:.1f} ({100 * m[bal]:.1f})"
    lines = ["| model | " + " | ".join(f"{corpus} acc (bal.)" for corpus in corpora) + " | pooled acc (bal.) |",
             "|---" * (len(corpora) + 2) + "|"]
    for name, result in models.items():
        cells = [cell(result["by_corpus"][corpus]) for corpus in corpora] + [cell(result["pooled"])]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    first = next(iter(models.values()))
    chance = [cell(first["by_corpus"][c], "chance_majority", "chance_uniform") for c in corpora]
    lines.append("| *chance: majority class (1/classes)* | " + " | ".join(chance + [
        cell(first["pooled"], "chance_majority", "chance_uniform")]) + " |")
    return "\n".join(lines) + "\n"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure, path):
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=120, format="png")
    _pyplot().close(figure)


def plot_leakage(results, path):
    """Grouped bars per corpus and pooled: accuracy and balanced accuracy per model, chance as dashes."""
    plt = _pyplot()
    models = results["models"]
    groups = lambda result: {**result["by_corpus"], "pooled": result["pooled"]}
    names = list(groups(next(iter(models.values()))))
    x, width = np.arange(len(names)), 0.8 / len(models)
    figure, axes = plt.subplots(1, 2, figsize=(4 + 1.2 * len(names) * (1 + 0.3 * len(models)), 4.2), sharey=True,
                                layout="constrained")
    panels = (("accuracy", "chance_majority", "accuracy (chance: majority class)"),
              ("balanced_accuracy", "chance_uniform", "balanced accuracy (chance: 1/classes)"))
    for axis, (key, chance_key, title) in zip(axes, panels):
        for i, (model, result) in enumerate(models.items()):
            axis.bar(x - 0.4 + width * (i + 0.5), [100 * groups(result)[g][key] for g in names], width, label=model)
        chance = [100 * groups(next(iter(models.values())))[g][chance_key] for g in names]
        axis.hlines(chance, x - 0.45, x + 0.45, colors="black", linestyles="--", label="chance")
        axis.set_xticks(x, names)
        axis.set_title(title, fontsize=10)
        axis.set_ylim(0, 100)
    axes[0].set_ylabel("emotion probe, unseen speakers (%)")
    axes[1].legend(fontsize=8, loc="upper right")
    figure.suptitle("Emotion leakage: linear probe on speaker embeddings (lower = more emotion-invariant)",
                    fontsize=11)
    _save(figure, path)


def _colours(values, plt) -> dict:
    """Distinct colours for sorted categorical values (tab10 / tab20, hsv beyond 20)."""
    values = sorted(set(values))
    cmap = plt.get_cmap("tab10" if len(values) <= 10 else "tab20" if len(values) <= 20 else "hsv")
    return {v: cmap(i if len(values) <= 20 else i / len(values)) for i, v in enumerate(values)}


def plot_projection(projections: dict, files: LabelledFiles, path):
    """`projections` {model name: (files, 2) coordinates} -> rows = models, columns = by speaker / by emotion."""
    from matplotlib.lines import Line2D

    plt = _pyplot()
    corpora = sorted(set(files.corpus))
    markers = dict(zip(corpora, CORPUS_MARKERS))
    figure, axes = plt.subplots(len(projections), 2, figsize=(13, 5 * len(projections)), squeeze=False,
                                layout="constrained")
    for row, (name, coordinates) in zip(axes, projections.items()):
        for axis, labels, by in zip(row, (files.speaker, files.emotion), ("speaker", "emotion")):
            colours = _colours(labels, plt)
            for corpus in corpora:
                mask = files.corpus == corpus
                axis.scatter(*coordinates[mask].T, c=[colours[v] for v in labels[mask]], marker=markers[corpus],
                             s=14, alpha=0.8, linewidths=0)
            handles = [Line2D([], [], ls="", marker="o", color=colour, label=value)
                       for value, colour in colours.items()]
            handles += [Line2D([], [], ls="", marker=markers[c], color="black", markerfacecolor="none", label=c)
                        for c in corpora]
            if by == "emotion" or len(colours) <= 20:  # a legend of dozens of speakers says nothing
                axis.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False,
                            fontsize=8 if by == "emotion" else 6)
            axis.set_title(f"{name}: coloured by {by}", fontsize=11)
            axis.set_xticks([])
            axis.set_yticks([])
    _save(figure, path)


def parse_model(text: str) -> tuple:
    """'NAME=DIR' -> (NAME, DIR); a bare DIR is named after its folder."""
    name, _, folder = text.partition("=")
    return (name, folder) if folder else (Path(name).name, name)


def run(args) -> dict:
    models = [parse_model(text) for text in args.model]
    names = [name for name, _ in models]
    if len(set(names)) != len(names):
        raise ToolError(f"--model names must be unique; got {names}")
    projected = args.projection_models
    if projected is None:
        projected = list(dict.fromkeys([names[0], names[-1]]))
    unknown = [name for name in projected if name not in names]
    if unknown:
        raise ToolError(f"--projection_models {unknown} not among the --model names {names}")
    if args.max_files_per_speaker is not None and args.max_files_per_speaker < 1:
        raise ToolError(f"--max_files_per_speaker must be at least 1; got {args.max_files_per_speaker}")
    files = read_test_files(args.shared_data, args.max_files_per_speaker, args.seed)
    print(f"emotion_leakage: {len(files)} files, {len(set(files.speaker))} speakers", file=sys.stderr)
    results = {"format": RESULTS_FORMAT, "shared_data": str(args.shared_data), "probe": PROBE,
               "max_files_per_speaker": args.max_files_per_speaker, "seed": args.seed, "num_files": len(files),
               "models": {}}
    projections = {}
    for name, folder in models:
        start = time.perf_counter()
        embeddings = embed_test_files(folder, files, args.shared_data, args.device, args.batch_size)
        embed_s = time.perf_counter() - start
        results["models"][name] = {"path": str(folder), "embedding_size": int(embeddings.shape[1]),
                                   "embed_s": round(embed_s, 1), **probe_model(embeddings, files)}
        if name in projected:
            projections[name] = tsne_2d(embeddings, args.seed)
        print(f"emotion_leakage: {name}: embedded in {embed_s:.1f} s, pooled accuracy "
              f"{100 * results['models'][name]['pooled']['accuracy']:.1f}%", file=sys.stderr)
    output = Path(args.output_dir)
    write_text_atomic(output / "leakage.json", json.dumps(results, indent=2) + "\n")
    write_text_atomic(output / "leakage.md", markdown_table(results))
    plot_leakage(results, output / "leakage.png")
    if projections:
        plot_projection({name: projections[name] for name in projected}, files, output / "projection.png")
    return results


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", required=True, metavar="NAME=DIR",
                        help="a saved EISV model and its name in the table; repeat for each model, in table order")
    parser.add_argument("--shared_data", type=Path, default=REPO.parent / "shared" / "data",
                        help="folder with dev_trials.csv and <corpus>/metadata.csv")
    parser.add_argument("--output_dir", type=Path, required=True)
    parser.add_argument("--projection_models", nargs="*", metavar="NAME", default=None,
                        help="models drawn in projection.png (default: the first and the last --model; "
                             "none given: no projection)")
    parser.add_argument("--max_files_per_speaker", type=int, default=None,
                        help="a seeded random subset of at most N files per speaker (quick runs)")
    parser.add_argument("--batch_size", type=int, default=16, help="windows per forward pass")
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:1 ...")
    parser.add_argument("--seed", type=int, default=0, help="seed of the file subset and of t-SNE")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        results = run(args)
    except ToolError as error:
        print(f"emotion_leakage: error: {error}", file=sys.stderr)
        return 1
    print(markdown_table(results), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
