"""The local Hub endpoint (tests/hub_server.py): push a tiny EISV model, load it back as a user would."""

import json
import os
import queue
import re
import signal
import subprocess
import sys
import textwrap
import threading
import urllib.request
from pathlib import Path

import pytest
import torch

from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi
from huggingface_hub.errors import HfHubHTTPError, RemoteEntryNotFoundError

from hub_server import DEFAULT_TOKEN, git_blob_sha1, hub_server, local_hub  # noqa: F401  (hub_server is a fixture; tests/ is on sys.path)
from modeling_eisv import EISVConfig, EISVFeatureExtractor, EISVModel

REPO_ID = "local-user/eisv-tiny"
PROJECT_PACKAGES = {"modeling_eisv", "data_collators", "model_cards", "eisv_evaluation", "eisv_io", "eisv_tools",
                    "eisv_training", "metrics"}


def _tiny_model_dir(path: Path) -> tuple[Path, torch.Tensor, torch.Tensor]:
    """Save a tiny EISV model + feature extractor; return (folder, waveform, its embedding)."""
    torch.manual_seed(0)
    config = EISVConfig(
        ecapa_channels=32, ecapa_mfa_channels=96, ecapa_attention_channels=16, ecapa_se_channels=16, embedding_size=32
    )
    model = EISVModel(config).eval()
    extractor = EISVFeatureExtractor()
    model.save_pretrained(path)
    extractor.save_pretrained(path)
    waveform = torch.randn(16000, generator=torch.Generator().manual_seed(1)) * 0.1
    inputs = extractor(waveform.numpy(), sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        embedding = model(**inputs).embeddings
    return path, waveform, embedding


def test_upload_then_download_in_process(hub_server, tmp_path):
    folder, _, _ = _tiny_model_dir(tmp_path / "model")
    api = HfApi(endpoint=hub_server.endpoint, token=hub_server.token)
    url = api.create_repo(REPO_ID)
    assert url.repo_id == REPO_ID
    api.create_repo(REPO_ID, exist_ok=True)  # 409 -> accepted
    info = api.upload_folder(folder_path=folder, repo_id=REPO_ID, commit_message="Upload tiny model")

    pushed = hub_server.files(REPO_ID)
    for local in folder.iterdir():
        assert pushed[local.name] == local.read_bytes(), local.name
    assert (hub_server.repo_dir(REPO_ID) / "config.json").read_bytes() == (folder / "config.json").read_bytes()
    assert hub_server.commit_titles(REPO_ID)[-1] == "Upload tiny model"

    model_info = api.model_info(REPO_ID)
    assert model_info.sha == info.oid
    assert {s.rfilename for s in model_info.siblings} >= {"config.json", "model.safetensors"}
    tree = {entry.path: entry for entry in api.list_repo_tree(REPO_ID)}
    safetensors = (folder / "model.safetensors").read_bytes()
    assert tree["model.safetensors"].blob_id == git_blob_sha1(safetensors)
    assert tree["model.safetensors"].size == len(safetensors)

    path = api.hf_hub_download(REPO_ID, "model.safetensors", cache_dir=tmp_path / "cache")
    assert Path(path).read_bytes() == safetensors
    with pytest.raises(RemoteEntryNotFoundError):
        api.hf_hub_download(REPO_ID, "no_such_file.json", cache_dir=tmp_path / "cache")
    assert hub_server.unhandled == []


def test_create_commit_with_readme_and_deletion(hub_server, tmp_path):
    """The non-pipelined path (create_commit) validates README.md metadata first and can delete files."""
    api = HfApi(endpoint=hub_server.endpoint, token=hub_server.token)
    repo_id = api.create_repo("eisv-bare-name").repo_id  # no namespace: the server's username
    assert repo_id == f"{hub_server.username}/eisv-bare-name"
    card = "---\nlibrary_name: transformers\n---\n# card\n"
    api.create_commit(repo_id, [CommitOperationAdd("README.md", card.encode()),
                                CommitOperationAdd("sub/a.txt", b"a")], commit_message="card")
    api.create_commit(repo_id, [CommitOperationDelete("sub/")], commit_message="rm sub")
    assert set(hub_server.files(repo_id)) == {".gitattributes", "README.md"}
    assert ("POST", "/api/validate-yaml") in hub_server.requests
    assert hub_server.commit_titles(repo_id) == ["initial commit", "card", "rm sub"]


def test_writes_need_the_token(hub_server):
    with pytest.raises(HfHubHTTPError) as err:
        HfApi(endpoint=hub_server.endpoint, token="hf_wrong").create_repo(REPO_ID)
    assert err.value.response.status_code == 401
    assert not hub_server.repo_exists(REPO_ID)


def test_patch_points_a_plain_hfapi_at_the_hub(hub_server, monkeypatch, tmp_path):
    """What a training script's push does in-process: HfApi() with no endpoint and no token."""
    hub_server.patch(monkeypatch)
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    api = HfApi()
    api.create_repo(REPO_ID, exist_ok=True)
    api.upload_folder(repo_id=REPO_ID, folder_path=str(tmp_path / "model"))
    assert hub_server.files(REPO_ID)["config.json"] == b"{}"


def test_failed_commit_raises_and_stores_nothing(hub_server, tmp_path):
    folder, _, _ = _tiny_model_dir(tmp_path / "model")
    api = HfApi(endpoint=hub_server.endpoint, token=hub_server.token)
    api.create_repo(REPO_ID)
    hub_server.fail_commits = True
    with pytest.raises(HfHubHTTPError, match="fail_commits"):
        api.upload_folder(folder_path=folder, repo_id=REPO_ID)
    assert set(hub_server.files(REPO_ID)) == {".gitattributes"}
    assert (folder / "model.safetensors").exists()


def test_from_pretrained_with_remote_code_in_a_fresh_process(tmp_path):
    """A user without the package (repo not on sys.path) loads the pushed model by id and gets the same embedding."""
    folder, waveform, expected = _tiny_model_dir(tmp_path / "model")
    torch.save(waveform, tmp_path / "waveform.pt")
    with local_hub(tmp_path / "hub") as hub:
        api = HfApi(endpoint=hub.endpoint, token=hub.token)
        api.create_repo(REPO_ID)
        api.upload_folder(folder_path=folder, repo_id=REPO_ID)
        script = textwrap.dedent(f"""
            import importlib.abc, json, sys

            class HideProject(importlib.abc.MetaPathFinder):  # the package may be pip-installed (editable)
                def find_spec(self, name, path=None, target=None):
                    if name.split(".")[0] in {PROJECT_PACKAGES!r}:
                        raise ImportError(f"{{name}} is hidden: a user loads the model without the package")

            sys.meta_path.insert(0, HideProject())
            try:
                import modeling_eisv
            except ImportError:
                pass
            else:
                raise SystemExit("modeling_eisv is still importable")
            import torch
            from transformers import AutoFeatureExtractor, AutoModel
            model = AutoModel.from_pretrained({REPO_ID!r}, trust_remote_code=True).eval()
            extractor = AutoFeatureExtractor.from_pretrained({REPO_ID!r}, trust_remote_code=True)
            waveform = torch.load("waveform.pt")
            inputs = extractor(waveform.numpy(), sampling_rate=16000, return_tensors="pt")
            with torch.no_grad():
                embedding = model(**inputs).embeddings
            print("EMBEDDING=" + json.dumps(embedding[0].tolist()))
        """)
        env = hub.env(hf_home=tmp_path / "hf_home")
        env.pop("PYTHONPATH", None)
        result = subprocess.run(
            [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stderr[-4000:]
        assert hub.unhandled == [], hub.unhandled
        downloaded = {path.rsplit("/", 1)[-1] for method, path in hub.requests if method == "GET" and "/resolve/" in path}
        assert {"config.json", "model.safetensors", "preprocessor_config.json", "modeling_eisv.py"} <= downloaded
    line = next(line for line in result.stdout.splitlines() if line.startswith("EMBEDDING="))
    loaded = torch.tensor(json.loads(line.removeprefix("EMBEDDING=")))
    torch.testing.assert_close(loaded, expected[0], rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(os.name == "nt", reason="sends SIGINT, as Ctrl-C does")
def test_runs_on_its_own_until_ctrl_c(tmp_path):
    """`python -m tests.hub_server` prints its URL and what to export, answers, and exits 0 on Ctrl-C."""
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.hub_server", "-v", "--storage", str(tmp_path / "hub")],
        cwd=Path(__file__).resolve().parents[1], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in server.stdout], daemon=True).start()

    def read_until(text: str) -> list[str]:
        seen = []
        while not any(text in line for line in seen):
            seen.append(lines.get(timeout=20))  # queue.Empty fails the test instead of hanging it
        return seen

    try:
        first = lines.get(timeout=20)
        match = re.search(r"http://127\.0\.0\.1:\d+", first)
        assert match and "Ctrl-C" in first, first
        endpoint = match.group(0)
        printed = "".join(read_until("train_eisv.py --push_to_hub"))
        assert f"export HF_ENDPOINT={endpoint}\n" in printed
        assert f"export HF_TOKEN={DEFAULT_TOKEN}\n" in printed

        request = urllib.request.Request(f"{endpoint}/api/whoami-v2", headers={"Authorization": f"Bearer {DEFAULT_TOKEN}"})
        direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never through a proxy
        with direct.open(request, timeout=10) as answer:
            assert json.load(answer)["name"] == "local-user"
        assert any("GET /api/whoami-v2 -> 200" in line for line in read_until("whoami"))  # -v logs requests

        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=20) == 0
        assert "local Hub stopped" in "".join(read_until("stopped"))
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(timeout=10)
