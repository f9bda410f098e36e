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
from eisv_evaluation.embedding_store import index_path, load_embeddings
from eisv_evaluation.loading import load_model
from eisv_evaluation.windowed_embedding import WindowedEmbedder, window_starts
from eisv_tools.embed import main


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


# --- one atomic output, a lock, the model's identity, too little speech, keys (issues 18 and 19) ---------------


@pytest.fixture
def wav_dir(tmp_path):
    """Three synthetic 1 s voices (no shared data needed)."""
    folder = tmp_path / "wavs"
    folder.mkdir()
    for seed in range(3):
        soundfile.write(folder / f"v{seed}.wav", voice_like(1.0, seed=seed), 16000)
    return folder


def embed(model_dir, source, output, *extra):
    return main(["--model", str(model_dir), "--input", str(source), "--output", str(output), "--no-progress", *extra])


def test_safetensors_is_the_whole_output_and_a_rerun_recovers_from_a_kill(model_dir, wav_dir, tmp_path):
    output = tmp_path / "emb.safetensors"
    assert embed(model_dir, wav_dir, output) == 0
    embeddings, rows, metadata = load_embeddings(output)
    assert [row["path"] for row in rows] == ["v0.wav", "v1.wav", "v2.wav"] and "index" not in metadata
    # What a kill between or during renames can leave: no CSV copy, or an old one, and stale temporaries.
    index_path(output).unlink()
    again, rows_again, _ = load_embeddings(output)  # the reader trusts the safetensors alone
    np.testing.assert_array_equal(again, embeddings)
    index_path(output).write_text("row,path,duration_s,num_windows\n0,v0.wav,1.000,1\n")
    assert [row["path"] for row in load_embeddings(output)[1]] == ["v0.wav", "v1.wav", "v2.wav"]
    (tmp_path / ".emb.safetensors.tmp-999999").write_bytes(b"half a file")
    (tmp_path / ".emb.index.csv.tmp-999999").write_text("row,pa")
    assert embed(model_dir, wav_dir, output) == 0
    assert not list(tmp_path.glob(".*tmp*"))
    with open(index_path(output)) as handle:
        assert [row["path"] for row in csv.DictReader(handle)] == ["v0.wav", "v1.wav", "v2.wav"]


def test_npy_output_is_not_resumed(model_dir, wav_dir, tmp_path, capsys):
    output = tmp_path / "emb.npy"
    assert embed(model_dir, wav_dir, output) == 0
    assert np.load(output).shape == (3, 32)
    capsys.readouterr()
    assert embed(model_dir, wav_dir, output) == 1
    err = capsys.readouterr().err
    assert "cannot be resumed" in err and "--overwrite" in err and str(output) in err
    assert embed(model_dir, wav_dir, output, "--overwrite") == 0


def test_a_second_writer_is_refused_at_once(model_dir, wav_dir, tmp_path, capsys):
    from filelock import FileLock

    output = tmp_path / "emb.safetensors"
    with FileLock(str(tmp_path / "emb.safetensors.lock"), timeout=0):
        assert embed(model_dir, wav_dir, output) == 1
    err = capsys.readouterr().err
    assert f"{output}: another eisv-embed is writing this output" in err
    assert not output.exists()
    assert embed(model_dir, wav_dir, output) == 0  # released: the next run goes ahead


def test_resume_into_another_models_output_is_refused(model_dir, wav_dir, tmp_path, capsys):
    output = tmp_path / "emb.safetensors"
    assert embed(model_dir, wav_dir, output) == 0
    identity = load_embeddings(output)[2]["model_sha256"]
    assert identity.startswith("sha256:")
    other = save_tiny_model(tmp_path / "other", seed=1)
    soundfile.write(wav_dir / "new.wav", voice_like(1.0, seed=9), 16000)
    capsys.readouterr()
    assert embed(other, wav_dir, output) == 1
    err = capsys.readouterr().err
    assert "embedded by another model" in err and "--overwrite" in err
    assert len(load_embeddings(output)[1]) == 3  # untouched
    # The same model from a copied folder (or with another decision threshold) is the same model.
    copy = tmp_path / "copy"
    shutil.copytree(model_dir, copy)
    assert embed(copy, wav_dir, output) == 0 and len(load_embeddings(output)[1]) == 4


@pytest.mark.parametrize("name, audio", [("silence.wav", np.zeros(32000, np.float32)),
                                         ("blip.wav", voice_like(0.01)), ("one.wav", np.full(1, 0.5, np.float32))])
def test_too_little_speech_is_an_error_naming_the_file(model_dir, wav_dir, tmp_path, capsys, name, audio):
    soundfile.write(wav_dir / name, audio, 16000, subtype="FLOAT")
    output = tmp_path / "emb.safetensors"
    assert embed(model_dir, wav_dir, output) == 1
    err = capsys.readouterr().err
    assert name in err and "too little speech" in err and "--min-speech-s" in err
    if name == "silence.wav":  # 2 s: embedded after the 1 s voices, which are kept; then the documented way to allow it
        assert [row["path"] for row in load_embeddings(output)[1]] == ["v0.wav", "v1.wav", "v2.wav"]
        assert embed(model_dir, wav_dir, output, "--min-speech-s", "0") == 0
        assert len(load_embeddings(output)[1]) == 4


def test_overlapping_windows_of_a_long_file_count_their_speech_once(model_dir, tmp_path):
    """A 25 s file with 1 s of voice in it: 4 windows of 10 s overlap, the 1 s must not count twice."""
    audio = np.zeros(25 * 16000, np.float32)
    audio[7 * 16000:8 * 16000] = voice_like(1.0)  # inside windows 0-10 and 5-15
    path = tmp_path / "mostly_silent.wav"
    soundfile.write(path, audio, 16000, subtype="FLOAT")
    model, feature_extractor = load_model(model_dir, "cpu")
    embedder = WindowedEmbedder(model, feature_extractor, batch_size=4, min_speech_s=1.5)
    with pytest.raises(Exception, match=r"mostly_silent.wav: too little speech to embed \(1\.00 s"):
        list(embedder.embed_files([path]))
    assert len(list(WindowedEmbedder(model, feature_extractor, min_speech_s=0.9).embed_files([path]))) == 1


def test_keys_are_normalised_duplicates_counted_and_columns_mapped(model_dir, wav_dir, tmp_path, capsys):
    listing = tmp_path / "list.csv"
    listing.write_text("wav,speaker\n./v0.wav,a\nv0.wav,a\nv1.wav,b\nwavs/../wavs/v2.wav,c\n.//v1.wav,b\n")
    output = tmp_path / "emb.safetensors"
    assert main(["--model", str(model_dir), "--input", str(listing), "--root", str(wav_dir.parent / "wavs"),
                 "--output", str(output), "--column_mapping", '{"wav": "path"}', "--no_progress",
                 "--batch_size", "2"]) == 1  # wavs/../wavs/v2.wav is relative to --root: missing file
    assert "wavs/../wavs/v2.wav" in capsys.readouterr().err
    listing.write_text("wav,speaker\n./v0.wav,a\nv0.wav,a\nv1.wav,b\n.//v1.wav,b\n\nv2.wav,c\n")
    assert main(["--model", str(model_dir), "--input", str(listing), "--output", str(output),
                 "--root", str(wav_dir), "--column_mapping", '{"wav": "path"}', "--no_progress"]) == 0
    assert [row["path"] for row in load_embeddings(output)[1]] == ["v0.wav", "v1.wav", "v2.wav"]
    assert "2 duplicate input path(s) dropped" in capsys.readouterr().err
    assert main(["--model", str(model_dir), "--input", str(listing), "--output", str(output),
                 "--column-mapping", '{"nope": "path"}']) == 1
    assert "nope" in capsys.readouterr().err
    listing.write_text("path\nv0.wav\n\n\n")
    assert main(["--model", str(model_dir), "--input", str(listing), "--output", str(tmp_path / "e2.safetensors"),
                 "--column-mapping", "not json"]) == 1
    assert "not valid JSON" in capsys.readouterr().err


# --- embedding at scale (issue 16): DataLoader workers, several processes --------------------------------------


@pytest.fixture
def mixed_dir(wav_dir):
    """wav_dir plus a 27 s file (5 windows: read by workers in pieces of --batch-size windows) and a stereo one."""
    soundfile.write(wav_dir / "long.wav", voice_like(27.0, seed=5), 16000, subtype="FLOAT")
    soundfile.write(wav_dir / "stereo.flac", np.stack([voice_like(2.0, seed=6), voice_like(2.0, seed=7)], 1), 16000)
    return wav_dir


def test_workers_give_the_same_rows_and_values_as_the_main_process(model_dir, mixed_dir, tmp_path):
    outputs = {}
    for workers in ("0", "2"):
        outputs[workers] = tmp_path / f"emb{workers}.safetensors"
        assert embed(model_dir, mixed_dir, outputs[workers], "--num_workers", workers, "--batch-size", "2") == 0
    (ref, ref_rows, _), (got, got_rows, _) = (load_embeddings(outputs[w]) for w in ("0", "2"))
    assert ref_rows == got_rows and [row["num_windows"] for row in got_rows] == [5, 1, 1, 1, 1]
    np.testing.assert_array_equal(got, ref)


def test_a_bad_file_read_by_a_worker_names_it_and_keeps_the_others(model_dir, mixed_dir, tmp_path, capsys):
    soundfile.write(mixed_dir / "zz_silence.wav", np.zeros(48000, np.float32), 16000)
    output = tmp_path / "emb.safetensors"
    assert embed(model_dir, mixed_dir, output, "--num-workers", "2") == 1
    assert "zz_silence.wav: too little speech" in capsys.readouterr().err
    assert [row["path"] for row in load_embeddings(output)[1]] == ["stereo.flac", "v0.wav", "v1.wav", "v2.wav"]


def test_process_shares_split_the_files_by_duration():
    from eisv_tools.embed import process_share
    from modeling_eisv.audio_io import AudioInfo

    infos = [AudioInfo(None, 16000 * seconds, 16000) for seconds in (9, 1, 8, 2, 7, 3)]
    shares = [process_share(infos, rank, 2) for rank in (0, 1)]
    assert sorted(shares[0] + shares[1]) == list(range(6)) and shares == [[1, 2, 5], [0, 3, 4]]


@pytest.mark.slow
def test_two_processes_write_the_output_of_one(model_dir, mixed_dir, tmp_path):
    """`accelerate launch` with 2 CPU processes over gloo: the same rows, in the same order, and the same values
    (within float tolerance: each process batches its own share) as one process; a bad file fails the run,
    naming it, and what was embedded is kept."""
    import os
    import socket

    single = tmp_path / "single.safetensors"
    assert embed(model_dir, mixed_dir, single, "--batch-size", "2") == 0

    def launch(output):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        command = ["accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                   "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(port),
                   "-m", "eisv_tools.embed", "--model", str(model_dir), "--input", str(mixed_dir), "--output",
                   str(output), "--no-progress", "--batch-size", "2", "--num-workers", "1"]
        return subprocess.run(command, capture_output=True, text=True, timeout=300,
                              env={**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"})

    output = tmp_path / "two.safetensors"
    done = launch(output)
    assert done.returncode == 0, done.stderr[-5000:]
    (ref, ref_rows, ref_meta), (got, got_rows, got_meta) = load_embeddings(single), load_embeddings(output)
    assert got_rows == ref_rows and got_meta["model_sha256"] == ref_meta["model_sha256"]
    np.testing.assert_allclose(got, ref, atol=1e-5)
    assert not list(tmp_path.glob(".*tmp*"))
    soundfile.write(mixed_dir / "zz_silence.wav", np.zeros(48000, np.float32), 16000)
    soundfile.write(mixed_dir / "v9.wav", voice_like(1.0, seed=9), 16000)
    failed = launch(output)
    assert failed.returncode != 0 and "zz_silence.wav: too little speech" in failed.stderr
    assert [row["path"] for row in load_embeddings(output)[1]] == [row["path"] for row in ref_rows] + ["v9.wav"]
