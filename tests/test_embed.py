"""eisv-embed: folder and CSV input, both output formats, resume, long-file windows, errors."""

import csv
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile

from _tiny import voice_like
from _tools import save_tiny_model, some_clips
from eisv_tools.embed import main
from eisv_tools.embedding_store import index_path, load_embeddings
from eisv_tools.loading import load_model
from eisv_tools.windowed_embedding import WindowedEmbedder, window_starts


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("tiny"))


@pytest.fixture
def clip_dir(shared_data, tmp_path):
    folder = tmp_path / "clips"
    for clip in some_clips(shared_data, 4):
        (folder / clip.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(clip, folder / clip.parent.name / clip.name)
    return folder


def test_window_starts_cover_the_file_with_full_windows():
    assert window_starts(5, 10, 5) == [0]
    assert window_starts(25, 10, 5) == [0, 5, 10, 15]
    assert window_starts(27, 10, 5) == [0, 5, 10, 15, 17]


def test_folder_to_safetensors_then_resume(model_dir, clip_dir, tmp_path, capsys):
    output = tmp_path / "out" / "emb.safetensors"
    assert main(["--model", str(model_dir), "--input", str(clip_dir), "--output", str(output), "--no-progress"]) == 0
    embeddings, rows, metadata = load_embeddings(output)
    assert embeddings.shape == (4, 32) and embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, rtol=1e-5)
    assert [row["path"] for row in rows] == sorted(p.relative_to(clip_dir).as_posix() for p in clip_dir.rglob("*.flac"))
    assert metadata["format"] == "eisv-embeddings/1" and float(metadata["window_s"]) == 10.0
    with open(index_path(output)) as handle:
        assert csv.DictReader(handle).fieldnames == ["row", "path", "duration_s", "num_windows"]
    # A rerun with one more file embeds only that one and keeps the earlier rows bit for bit.
    capsys.readouterr()
    extra = clip_dir / "extra.wav"
    soundfile.write(extra, voice_like(1.0), 16000)
    assert main(["--model", str(model_dir), "--input", str(clip_dir), "--output", str(output), "--no-progress"]) == 0
    assert "4 already in" in capsys.readouterr().err
    again, rows_again, _ = load_embeddings(output)
    assert len(rows_again) == 5 and rows_again[-1]["path"] == "extra.wav"
    np.testing.assert_array_equal(again[:4], embeddings)
    assert not list(output.parent.glob(".*tmp*"))


def test_csv_input_to_npy(model_dir, shared_data, tmp_path):
    listing = tmp_path / "list.csv"
    clips = some_clips(shared_data, 4)
    with open(listing, "w", newline="") as handle:
        handle.write("path,speaker\n" + "".join(f"{c.relative_to(shared_data).as_posix()},x\n" for c in clips))
    output = tmp_path / "emb.npy"
    assert main(["--model", str(model_dir), "--input", str(listing), "--root", str(shared_data),
                 "--output", str(output), "--no-progress"]) == 0
    embeddings, rows, _ = load_embeddings(output)
    assert embeddings.shape == (4, 32) and rows[0]["path"].startswith("emodb/")


def test_bad_inputs_fail_naming_the_file_and_write_nothing(model_dir, clip_dir, tmp_path, capsys):
    output = tmp_path / "emb.safetensors"
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("filename\nx.wav\n")
    assert main(["--model", str(model_dir), "--input", str(bad_csv), "--output", str(output)]) == 1
    assert "bad.csv" in capsys.readouterr().err
    missing_csv = tmp_path / "missing.csv"
    missing_csv.write_text("path\nnot_there.wav\n")
    assert main(["--model", str(model_dir), "--input", str(missing_csv), "--output", str(output)]) == 1
    assert "not_there.wav" in capsys.readouterr().err
    (clip_dir / "broken.wav").write_bytes(b"RIFF garbage")
    assert main(["--model", str(model_dir), "--input", str(clip_dir), "--output", str(output)]) == 1
    assert "broken.wav" in capsys.readouterr().err
    assert not output.exists() and not index_path(output).exists()
    assert main(["--model", str(model_dir), "--input", str(clip_dir), "--output", str(tmp_path / "e.txt")]) == 1


def test_long_file_is_the_renormalised_mean_of_its_windows(model_dir, tmp_path):
    """25 s with 10 s windows every 5 s: windows at 0, 5, 10, 15 s, averaged and normalised."""
    audio = voice_like(25.0, seed=3)
    path = tmp_path / "long.wav"
    soundfile.write(path, audio, 16000, subtype="FLOAT")
    model, feature_extractor = load_model(model_dir, "cpu")
    embedder = WindowedEmbedder(model, feature_extractor, batch_size=3, window_s=10.0, hop_s=5.0)
    [(_, embedding, info, num_windows)] = list(embedder.embed_files([path]))
    assert num_windows == 4 and info.duration_s == pytest.approx(25.0)
    windows = [audio[s * 16000:(s + 10) * 16000] for s in (0, 5, 10, 15)]
    mean = embedder.embed_waveforms(windows).mean(0)
    np.testing.assert_allclose(embedding, mean / np.linalg.norm(mean), atol=1e-5)


def test_as_a_subprocess(model_dir, clip_dir, tmp_path):
    output = tmp_path / "emb.safetensors"
    done = subprocess.run([sys.executable, "-m", "eisv_tools.embed", "--model", str(model_dir), "--input",
                           str(clip_dir), "--output", str(output), "--no-progress"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert load_embeddings(output)[0].shape == (4, 32)
