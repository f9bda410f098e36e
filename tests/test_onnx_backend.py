"""The onnxruntime backend: parity with PyTorch (tiny ECAPA, tiny GE2E: its windows at every
window-count step, alone and in a padded batch), the identity-keyed cache (stale graph formats
exported again), and `--backend onnxruntime` of eisv-embed, eisv-verify and the pipeline."""

import json

import numpy as np
import pytest
import soundfile
import torch

pytest.importorskip("onnx", reason="onnx is not installed (pip install -e '.[onnx]')")
pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install -e '.[onnx]')")

from _tiny import tiny_config, voice_like  # noqa: E402
from eisv_evaluation.embedding_store import load_embeddings  # noqa: E402
from eisv_evaluation.loading import load_model, model_identity  # noqa: E402
from eisv_evaluation.onnx_backend import (IDENTITY_KEY, OnnxModel, _metadata, onnx_cache_path,  # noqa: E402
                                          onnx_model_for)
from eisv_evaluation.onnx_export import MIN_COSINE, cosine_rows, example_batch  # noqa: E402
from eisv_io.errors import ToolError  # noqa: E402
from eisv_tools import embed, verify  # noqa: E402
from modeling_eisv import EISVFeatureExtractor, EISVModel  # noqa: E402

SECONDS = (0.6, 1.3, 3.0, 7.2)  # GE2E: one to several partial windows; padded batch


def save_model(directory, encoder_type, seed=0, **config):
    torch.manual_seed(seed)
    model = EISVModel(tiny_config(encoder_type, **config)).eval()
    model.save_pretrained(directory)
    EISVFeatureExtractor("kaldi_fbank" if encoder_type == "ecapa_tdnn" else "ge2e_mel").save_pretrained(directory)
    return directory


@pytest.fixture(scope="module", params=["ecapa_tdnn", "ge2e_lstm"])
def model_dir(request, tmp_path_factory):
    return save_model(tmp_path_factory.mktemp(request.param) / "model", request.param)


@pytest.fixture(scope="module")
def wav_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("wavs")
    for i, seconds in enumerate(SECONDS):
        soundfile.write(folder / f"clip{i}.wav", voice_like(seconds, seed=i), 16000)
    return folder


def test_parity_on_a_padded_batch(model_dir):
    model, fe = load_model(model_dir, "cpu")
    onnx_model, info = onnx_model_for(model, fe, model_dir)
    inputs = fe([voice_like(s, seed=i) for i, s in enumerate(SECONDS)], sampling_rate=16000, return_tensors="pt",
                padding=True)
    with torch.inference_mode():
        expected = model(**inputs).embeddings.numpy()
    got = onnx_model(**inputs).embeddings.numpy()
    assert got.shape == expected.shape == (len(SECONDS), model.config.embedding_size)
    assert cosine_rows(got, expected).min() >= MIN_COSINE
    with pytest.raises(ValueError, match="no real frame"):
        onnx_model(inputs["input_features"][:1], torch.zeros_like(inputs["attention_mask"][:1]))


def test_ecapa_graph_holds_the_embedding_transform(tmp_path):
    folder = save_model(tmp_path / "affine", "ecapa_tdnn", embedding_transform="affine")
    model, fe = load_model(folder, "cpu")
    generator = torch.Generator().manual_seed(3)
    model.embedding_transform.mean.copy_(0.1 * torch.randn(model.embedding_transform.mean.shape, generator=generator))
    model.embedding_transform.matrix.copy_(torch.randn(model.embedding_transform.matrix.shape, generator=generator))
    onnx_model, _ = onnx_model_for(model, fe, cache_path=tmp_path / "affine.onnx")
    inputs = fe([voice_like(2.0), voice_like(1.1, seed=1)], sampling_rate=16000, return_tensors="pt", padding=True)
    with torch.inference_mode():
        expected = model(**inputs).embeddings.numpy()
    assert cosine_rows(onnx_model(**inputs).embeddings.numpy(), expected).min() >= MIN_COSINE


def test_cache_sits_beside_the_folder_and_is_keyed_to_the_identity(tmp_path):
    folder = save_model(tmp_path / "m", "ecapa_tdnn")
    model, fe = load_model(folder, "cpu")
    identity = model_identity(model, fe)
    first, info = onnx_model_for(model, fe, folder)
    assert info["exported"] and first.path == onnx_cache_path(folder, identity)
    assert first.path.parent == (tmp_path / "m-onnx").resolve() and identity[7:23] in first.path.name
    assert _metadata(first.path)[IDENTITY_KEY] == identity
    assert onnx_model_for(model, fe, folder)[1]["exported"] is False  # reused

    # Other weights in the same folder: another identity, another file; the old one is never used.
    save_model(folder, "ecapa_tdnn", seed=1)
    changed, changed_fe = load_model(folder, "cpu")
    other, info = onnx_model_for(changed, changed_fe, folder)
    assert info["exported"] and other.path != first.path

    # A file at the cache path that records another identity is replaced, not used.
    stale = onnx_cache_path(folder, identity)
    other.path.replace(stale)
    _, info = onnx_model_for(model, fe, folder)
    assert info["exported"] and _metadata(stale)[IDENTITY_KEY] == identity


def test_embed_with_onnxruntime_matches_torch_and_resumes_either_way(model_dir, wav_dir, tmp_path):
    outputs = {}
    for backend in ("torch", "onnxruntime"):
        outputs[backend] = tmp_path / f"{backend}.safetensors"
        assert embed.main(["--model", str(model_dir), "--input", str(wav_dir), "--output", str(outputs[backend]),
                           "--no-progress", "--window-s", "4", "--hop-s", "2", "--backend", backend]) == 0
    (a, rows_a, meta_a), (b, rows_b, meta_b) = (load_embeddings(outputs[k]) for k in ("torch", "onnxruntime"))
    assert [r["path"] for r in rows_a] == [r["path"] for r in rows_b]
    assert cosine_rows(a, b).min() >= MIN_COSINE and np.allclose(np.linalg.norm(b, axis=1), 1, atol=1e-5)
    assert meta_a["model_sha256"] == meta_b["model_sha256"]  # one model, whichever backend ran it
    assert embed.main(["--model", str(model_dir), "--input", str(wav_dir), "--output", str(outputs["torch"]),
                       "--no-progress", "--window-s", "4", "--hop-s", "2", "--backend", "onnxruntime"]) == 0


def test_verify_with_onnxruntime(model_dir, wav_dir, capsys):
    a, b = str(wav_dir / "clip2.wav"), str(wav_dir / "clip3.wav")
    scores = {}
    for backend in ("torch", "onnxruntime"):
        verify.main(["--model", str(model_dir), a, b, "--json", "--backend", backend])
        scores[backend] = json.loads(capsys.readouterr().out)["score"]
    assert scores["onnxruntime"] == pytest.approx(scores["torch"], abs=1e-4)
    assert verify.main(["--model", str(model_dir), a, b, "--backend", "onnxruntime", "--device", "cuda"]) == 2
    assert "--backend onnxruntime runs on the CPU" in capsys.readouterr().err


def test_pipeline_backend(model_dir):
    import modeling_eisv  # noqa: F401
    from transformers import pipeline

    a, b = voice_like(2.0), voice_like(3.1, seed=4)
    expected = pipeline("speaker-verification", model=str(model_dir))(a, b)["score"]
    fast = pipeline("speaker-verification", model=str(model_dir), backend="onnxruntime")
    assert fast.onnx_model is not None and fast(a, b)["score"] == pytest.approx(expected, abs=1e-4)
    with pytest.raises(ValueError, match="backend="):
        pipeline("speaker-verification", model=str(model_dir), backend="tensorrt")


def test_eval_with_onnxruntime_scores_like_torch_and_says_which_ran(model_dir, wav_dir, tmp_path):
    from eisv_tools import eval as eval_cli

    # speakers a (clips 0, 1) and b (clips 2, 3): two target and four non-target trials
    rows = ["corpus,enroll,test,label,condition"] + [
        f"toy,clip{i}.wav,clip{j}.wav,{int((i < 2) == (j < 2))},{'same_emotion' if (i < 2) == (j < 2) else 'nontarget_same_emotion'}"
        for i in range(4) for j in range(i + 1, 4)]
    (tmp_path / "trials.csv").write_text("\n".join(rows) + "\n")
    scores = {}
    for backend in ("torch", "onnxruntime"):
        out = tmp_path / backend
        assert eval_cli.main(["--model", str(model_dir), "--trials", str(tmp_path / "trials.csv"), "--root",
                              str(wav_dir), "--output-dir", str(out), "--no-progress", "--window-s", "4", "--hop-s",
                              "2", "--backend", backend]) == 0
        assert json.loads((out / "results.json").read_text())["backend"] == backend
        scores[backend] = np.loadtxt(out / "scores.csv", delimiter=",", skiprows=1, usecols=5)
    np.testing.assert_allclose(scores["onnxruntime"], scores["torch"], atol=1e-4)
    assert eval_cli.main(["--model", str(model_dir), "--trials", str(tmp_path / "trials.csv"), "--root", str(wav_dir),
                          "--output-dir", str(tmp_path / "adapted"), "--backend", "onnxruntime",
                          "--adapt-on", str(wav_dir)]) == 1


def test_ge2e_graph_gives_each_clip_its_own_windows_alone_or_in_a_padded_batch(tmp_path):
    """Lengths on both sides of each window-count step (frames 160, 237, 274 with the tiny config's
    160-frame windows every 77): one clip at a time and one padded batch give PyTorch's embeddings."""
    folder = save_model(tmp_path / "ge2e", "ge2e_lstm")
    model, fe = load_model(folder, "cpu")
    onnx_model, _ = onnx_model_for(model, fe, cache_path=tmp_path / "ge2e.onnx")
    window, step = model.config.ge2e_partial_frames, model.config.ge2e_partial_step
    lengths = (97, window - 1, window, window + 1, window + step, window + step + 1, 274, 275, 2 * window + 3 * step)
    features, mask = example_batch(model.config.num_mel_bins, lengths=lengths, seed=2)
    with torch.inference_mode():
        expected = model(features, mask).embeddings.numpy()
    batched = onnx_model(features, mask).embeddings.numpy()
    alone = np.concatenate([onnx_model(features[i:i + 1, :n], mask[i:i + 1, :n]).embeddings.numpy()
                            for i, n in enumerate(lengths)])
    assert cosine_rows(batched, expected).min() >= MIN_COSINE and cosine_rows(alone, expected).min() >= MIN_COSINE
    np.testing.assert_allclose(alone, batched, atol=1e-5)


def test_a_cached_per_window_ge2e_graph_of_an_earlier_version_is_exported_again(tmp_path):
    import onnx

    folder = save_model(tmp_path / "ge2e", "ge2e_lstm")
    model, fe = load_model(folder, "cpu")
    path = tmp_path / "ge2e.onnx"
    onnx_model_for(model, fe, cache_path=path)
    proto = onnx.load(str(path))
    next(p for p in proto.metadata_props if p.key == "eisv_graph").value = "ge2e_partials"
    onnx.save(proto, str(path))
    with pytest.raises(ToolError, match="earlier eisv-export.*export the model again"):
        OnnxModel(path, model.config)
    _, info = onnx_model_for(model, fe, cache_path=path)
    assert info["exported"] and _metadata(path)["eisv_graph"] == "embeddings"


def test_a_ge2e_clip_of_few_windows_runs_on_one_thread_with_the_same_embedding(tmp_path):
    from eisv_evaluation.onnx_backend import FEW_WINDOWS

    folder = save_model(tmp_path / "ge2e", "ge2e_lstm")
    model, fe = load_model(folder, "cpu")
    onnx_model, info = onnx_model_for(model, fe, cache_path=tmp_path / "ge2e.onnx", threads=2)
    assert onnx_model.few_windows_session.get_session_options().intra_op_num_threads == 1
    assert onnx_model.session.get_session_options().intra_op_num_threads == 2
    features, mask = example_batch(model.config.num_mel_bins, lengths=(301,), seed=4)  # 3 windows
    assert 3 <= FEW_WINDOWS
    feed = {"input_features": features.numpy(), "attention_mask": mask.numpy()}
    np.testing.assert_allclose(onnx_model(features, mask).embeddings.numpy(),
                               onnx_model.session.run(["embeddings"], feed)[0], atol=1e-6)
    ecapa, _ = onnx_model_for(*load_model(save_model(tmp_path / "ecapa", "ecapa_tdnn"), "cpu"),
                              cache_path=tmp_path / "ecapa.onnx", threads=2)
    assert ecapa.few_windows_session is None
