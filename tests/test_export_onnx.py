"""eisv-export: ONNX graph vs PyTorch on a padded batch, dynamic axes, both exporters, errors."""

import numpy as np
import pytest
import torch

pytest.importorskip("onnx", reason="onnx is not installed (pip install -e '.[onnx]')")
onnxruntime = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install -e '.[onnx]')")

from _tiny import tiny_config, voice_like  # noqa: E402
from _tools import save_tiny_model  # noqa: E402
from eisv_evaluation.loading import load_model  # noqa: E402
from eisv_evaluation.onnx_export import MIN_COSINE, cosine_rows, onnx_inputs  # noqa: E402
from eisv_tools.export_onnx import main  # noqa: E402
from modeling_eisv import EISVConfig, EISVModel  # noqa: E402


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def exported(model_dir, tmp_path_factory):
    """The tiny ECAPA model exported through the CLI with the default (torch.export) exporter."""
    path = tmp_path_factory.mktemp("onnx") / "sub" / "tiny.onnx"
    assert main(["--model", str(model_dir), "--onnx", str(path)]) == 0
    return path


def padded_batch(feature_extractor, seconds=(1.0, 2.3, 3.0)):
    waves = [voice_like(s, seed=i) for i, s in enumerate(seconds)]
    return feature_extractor(waves, sampling_rate=16000, return_tensors="pt", padding=True)


def embed_both(model_dir, onnx_path, inputs):
    model, _ = load_model(model_dir, "cpu")
    with torch.inference_mode():
        expected = model(**inputs).embeddings.numpy()
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return session.run(["embeddings"], onnx_inputs(inputs["input_features"], inputs["attention_mask"]))[0], expected


def test_onnx_matches_pytorch_on_a_padded_batch(model_dir, exported):
    _, feature_extractor = load_model(model_dir, "cpu")
    inputs = padded_batch(feature_extractor)
    assert int(inputs["attention_mask"].sum(-1).min()) < inputs["attention_mask"].shape[1]  # really padded
    got, expected = embed_both(model_dir, exported, inputs)
    assert got.shape == expected.shape == (3, 32)
    assert cosine_rows(got, expected).min() >= MIN_COSINE
    # One clip alone (batch 1, other frame count) gives the embedding it has inside the padded batch.
    alone, _ = embed_both(model_dir, exported, padded_batch(feature_extractor, (1.0,)))
    assert cosine_rows(alone, got[:1]).min() >= MIN_COSINE
    assert not list(exported.parent.glob(".*tmp*"))


def test_graph_signature_and_metadata(exported):
    import onnx

    proto = onnx.load(str(exported))
    dims = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in list(proto.graph.input) + list(proto.graph.output)}
    assert dims == {"input_features": ["batch", "frames", 80], "attention_mask": ["batch", "frames"],
                    "embeddings": ["batch", 32]}
    assert {p.key for p in proto.metadata_props} >= {"eisv_config", "eisv_frontend"}


def test_opset_17_uses_the_torchscript_exporter(model_dir, tmp_path, capsys):
    path = tmp_path / "tiny17.onnx"
    assert main(["--model", str(model_dir), "--onnx", str(path), "--opset", "17"]) == 0
    assert "torchscript, opset 17" in capsys.readouterr().err
    _, feature_extractor = load_model(model_dir, "cpu")
    got, expected = embed_both(model_dir, path, padded_batch(feature_extractor))
    assert cosine_rows(got, expected).min() >= MIN_COSINE


def test_errors_name_the_file(model_dir, tmp_path, capsys):
    missing = tmp_path / "missing"
    assert main(["--model", str(missing), "--onnx", str(tmp_path / "x.onnx")]) == 1
    assert str(missing) in capsys.readouterr().err
    assert main(["--model", str(model_dir), "--onnx", str(tmp_path / "x.txt")]) == 1
    assert "must end with .onnx" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["--model", str(model_dir), "--onnx", str(blocker / "x.onnx")]) == 1
    assert f"{blocker} is a file" in capsys.readouterr().err
    ge2e = tmp_path / "ge2e"
    EISVModel(tiny_config("ge2e_lstm")).save_pretrained(ge2e)
    assert main(["--model", str(ge2e), "--onnx", str(tmp_path / "g.onnx"), "--opset", "17"]) == 1
    err = capsys.readouterr().err
    assert "opset >= 18" in err and str(tmp_path / "g.onnx") in err
    assert not list(tmp_path.glob("*.onnx")) and not list(tmp_path.glob(".*tmp*"))


def test_ge2e_exports_its_windows_lstm_and_mean_in_one_graph(tmp_path, capsys):
    import onnx

    ge2e = tmp_path / "ge2e"
    torch.manual_seed(0)
    EISVModel(tiny_config("ge2e_lstm")).save_pretrained(ge2e)
    assert main(["--model", str(ge2e), "--onnx", str(tmp_path / "g.onnx")]) == 0
    assert "min cosine vs PyTorch" in capsys.readouterr().err
    proto = onnx.load(str(tmp_path / "g.onnx"))
    assert [i.name for i in proto.graph.input] == ["input_features", "attention_mask"]
    assert [o.name for o in proto.graph.output] == ["embeddings"]
    assert {p.key: p.value for p in proto.metadata_props}["eisv_graph"] == "embeddings"
    assert "LSTM" in {node.op_type for node in proto.graph.node}


def test_an_existing_file_that_is_not_an_eisv_export_is_refused(model_dir, exported, tmp_path, capsys):
    theirs = tmp_path / "theirs.onnx"
    theirs.write_bytes(b"someone else's model")
    assert main(["--model", str(model_dir), "--onnx", str(theirs), "--no-check"]) == 1
    err = capsys.readouterr().err
    assert "theirs.onnx: exists and is not an eisv-export ONNX file" in err and "--overwrite" in err
    assert theirs.read_bytes() == b"someone else's model"
    assert main(["--model", str(model_dir), "--onnx", str(theirs), "--no-check", "--overwrite", "--opset", "17"]) == 0
    # A previous export is replaced without asking.
    assert main(["--model", str(model_dir), "--onnx", str(theirs), "--no_check", "--opset", "17"]) == 0


def test_resnet_exports_its_whole_encoder(tmp_path, capsys):
    """The 2-D convolutions with a frame mask per stage, checked by the exporter on a padded batch."""
    folder = tmp_path / "resnet"
    torch.manual_seed(0)
    EISVModel(EISVConfig(encoder_type="resnet", resnet_channels=4, resnet_num_blocks=[1, 1, 1, 1])).save_pretrained(folder)
    assert main(["--model", str(folder), "--onnx", str(tmp_path / "r.onnx")]) == 0
    assert "min cosine vs PyTorch" in capsys.readouterr().err
    _, feature_extractor = load_model(folder, "cpu")
    got, expected = embed_both(folder, tmp_path / "r.onnx", padded_batch(feature_extractor, (1.0, 1.7, 0.6)))
    assert cosine_rows(got, expected).min() >= MIN_COSINE
