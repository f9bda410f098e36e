import json
from pathlib import Path

import datasets
import pytest

from data_collators import load_protocol_split, load_source


def test_audiofolder_gives_absolute_paths_labels_and_corpus(synthetic_corpus):
    ds = load_source(synthetic_corpus)
    assert ds.column_names == ["path", "speaker", "emotion", "corpus", "where"]
    assert ds[0]["where"].endswith("metadata.csv, line 2")
    assert len(ds) == 3 * (3 + 3 + 2 + 1)
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in ds["path"])
    assert set(ds["corpus"]) == {"synthetic"}  # no corpus column: the folder name
    assert sorted(set(ds["emotion"])) == ["angry", "neutral", "sad"]


def test_folder_of_audiofolders_is_concatenated(synthetic_corpus, tmp_path):
    ds = load_source(synthetic_corpus.parent)  # tmp_path holds the one AudioFolder "synthetic"
    assert len(ds) == 27


def test_csv_with_column_mapping_and_relative_paths(synthetic_corpus, tmp_path):
    table = synthetic_corpus / "mine.csv"
    table.write_text("wav,spk,label\naudio/spk0/neutral_0.wav,A, Neutral \naudio/spk1/sad_1.wav,B,sad\n")
    ds = load_source(table, column_mapping={"wav": "path", "spk": "speaker", "label": "emotion"})
    assert ds["speaker"] == ["A", "B"]
    assert ds["emotion"] == ["Neutral", "sad"]  # whitespace stripped, case kept
    assert ds["path"][0] == str((synthetic_corpus / "audio/spk0/neutral_0.wav").resolve())
    assert ds["corpus"] == ["mine", "mine"]


def test_jsonl_and_missing_labels_become_none(synthetic_corpus):
    table = synthetic_corpus / "rows.jsonl"
    rows = [{"path": "audio/spk0/angry_0.wav", "speaker": "spk0", "emotion": "angry"},
            {"path": "audio/spk0/angry_1.wav", "speaker": "", "emotion": None}]
    table.write_text("\n".join(json.dumps(r) for r in rows))
    ds = load_source(table)
    assert ds["speaker"] == ["spk0", None] and ds["emotion"] == ["angry", None]


def test_missing_column_names_the_table_and_the_fix(synthetic_corpus):
    table = synthetic_corpus / "bad.csv"
    table.write_text("path,who\na.wav,x\n")
    with pytest.raises(ValueError, match=r"bad\.csv.*\['speaker', 'emotion'\].*column_mapping"):
        load_source(table)


def test_dataset_with_audio_column_paths_and_bytes(synthetic_corpus, tmp_path):
    wav = synthetic_corpus / "audio/spk0/sad_0.wav"
    by_path = datasets.Dataset.from_dict({"audio": [str(wav)], "speaker": ["s"], "emotion": ["sad"]})
    by_path = by_path.cast_column("audio", datasets.Audio(decode=False))
    assert load_source(by_path)["path"] == [str(wav.resolve())]

    data = wav.read_bytes()
    # what a Hub parquet dataset gives with Audio(decode=False): {"bytes", "path"} with no local file
    in_bytes = datasets.Dataset.from_dict({"audio": [{"bytes": data, "path": "x.wav"}], "spk": [3], "emotion": ["sad"]})
    ds = load_source(in_bytes, column_mapping={"spk": "speaker"}, audio_cache_dir=tmp_path / "cache")
    written = Path(ds["path"][0])
    assert written.parent == (tmp_path / "cache").resolve() and written.read_bytes() == data
    assert ds["speaker"] == ["3"]
    assert not list((tmp_path / "cache").glob("*.tmp"))  # written under a temporary name, then renamed


def test_protocol_split_speakers(shared_data):
    train, dev = load_protocol_split(shared_data, "train"), load_protocol_split(shared_data, "dev")
    assert len(set(train["speaker"])) == 83 and len(set(dev["speaker"])) == 16
    assert not set(train["speaker"]) & set(dev["speaker"])
    assert len(train) == 2474 + 18 * 60 and len(dev) == 6 * 60 + 339
    with pytest.raises(ValueError, match="train.*dev"):
        load_protocol_split(shared_data, "test")


def test_a_missing_local_path_is_named_not_looked_up_on_the_hub(tmp_path):
    for missing in (tmp_path / "no-such-folder", "./typo", "../data/typo/metadata.csv"):
        with pytest.raises(FileNotFoundError, match="no such (file or folder|table)"):
            load_source(str(missing))
