"""A local, dependency-free stand-in for the Hugging Face Hub HTTP API, for tests.

It implements only what `huggingface_hub` 2.4 and `transformers` 5 send when a model folder is
pushed (`create_repo` + `upload_folder` / `create_commit`) and loaded back
(`from_pretrained(repo_id, trust_remote_code=True)`, `hf_hub_download`, `model_info`,
`list_repo_tree`):

=========================================================  =========================================
request                                                    answer
=========================================================  =========================================
POST /api/repos/create                                     ``{"url": ...}``; 409 if it exists
POST /api/validate-yaml                                    ``{"errors": [], "warnings": []}``
GET  /api/whoami-v2                                        the configured ``username``
POST /api/{type}s/{id}/preupload/{rev}                     ``uploadMode: "regular"`` for every file
POST /api/{type}s/{id}/commit/{rev}                        NDJSON, base64 ``file`` lines, deletions
GET  /api/{type}s/{id}[/revision/{rev}]                    repo info with ``sha`` and ``siblings``
GET  /api/{type}s/{id}/tree/{rev}[/{path}]                 tree entries (``recursive`` honoured)
POST /api/{type}s/{id}/paths-info/{rev}                    entries for the asked paths
HEAD/GET /[{type}s/]{id}/resolve/{rev}/{path}              the file, with ``ETag``, ``X-Repo-Commit``,
                                                           ``Content-Length``; 404 ``EntryNotFound``
=========================================================  =========================================

Every file is answered as a "regular" (inline, base64) upload, so neither LFS nor Xet storage is
involved: with `hf_xet` installed, `upload_folder` takes its pipelined path, which only talks to
Xet for files the preupload answer marks ``lfs``. An ``lfsFile`` commit line is refused (400).

State: repositories live in memory (commits with their full file maps) and on disk under the
given storage folder: ``<storage>/blobs/<git sha1>`` for content and
``<storage>/<type>s/<namespace>/<name>/`` for the head of ``main``, so a test can read what was
pushed with `LocalHub.repo_dir`. Every request is logged in `LocalHub.requests`; a route this
server does not know goes to `LocalHub.unhandled` and gets a plain 404.

Failure injection: ``hub.fail_commits = True`` answers every commit with ``hub.fail_status``
(default 422, which `huggingface_hub` raises at once without a misleading token hint; 500 also
works, but the pipelined upload retries it with back-off for about 25 s).

Usage::

    from hub_server import local_hub            # tests/ on sys.path (pytest rootdir conftest)

    with local_hub(tmp_path / "hub") as hub:
        api = HfApi(endpoint=hub.endpoint, token=hub.token)
        api.create_repo("local-user/tiny")
        api.upload_folder(folder_path=model_dir, repo_id="local-user/tiny")
        env = hub.env(hf_home=tmp_path / "hf_home")   # for a subprocess: HF_ENDPOINT, HF_TOKEN, ...
        subprocess.run([...], env=env, check=True)

from a shell, to try a push by hand (from the repository root; ``python tests/hub_server.py`` works
too)::

    python -m tests.hub_server [--port N] [--storage DIR] [-v]   # prints its URL and what to export;
                                                                 # serves until Ctrl-C (exit 0)

or the pytest fixture `hub_server` (import it into a test module: ``from hub_server import
hub_server``). Code under test that builds a plain ``HfApi()`` in this process (a training
script's push) reaches the hub after ``hub_server.patch(monkeypatch)``; a training script run as
a subprocess gets ``env=hub_server.env()``. The server listens on 127.0.0.1 only, on a free port,
and stops when the context exits.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import shutil
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

DEFAULT_TOKEN = "hf_localhubfaketoken0000000000000000"
_REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
_GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n*.bin filter=lfs diff=lfs merge=lfs -text\n"
# Largest request body accepted (bytes); the files of a tiny test model are far below it.
_MAX_BODY = 512 * 1024 * 1024


def git_blob_sha1(content: bytes) -> str:
    """The git object id of a blob: what the Hub reports as a regular file's `oid` / ETag."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@dataclass
class _Commit:
    oid: str
    title: str
    files: dict[str, str]  # path -> blob oid
    date: str


@dataclass
class _Repo:
    repo_id: str
    repo_type: str
    private: bool
    commits: list[_Commit] = field(default_factory=list)

    @property
    def head(self) -> _Commit:
        return self.commits[-1]


class _HubError(Exception):
    def __init__(self, status: int, message: str, error_code: str | None = None, commit: str | None = None, **extra):
        super().__init__(message)
        self.status, self.message, self.error_code, self.commit, self.extra = status, message, error_code, commit, extra


class LocalHub:
    """A Hub-compatible HTTP endpoint on 127.0.0.1 that keeps what it receives under `storage_dir`.

    Args:
        storage_dir: folder for blobs and the checked-out head of each repo (created if missing).
        username: the namespace of repos created without one, and what `whoami` answers.
        token: the token writes must carry (``Authorization: Bearer <token>``); None accepts any.
        port: the port to listen on (127.0.0.1 only); 0 picks a free one.
        verbose: print one line per request to stderr (what ``python -m tests.hub_server -v`` shows).
    """

    def __init__(self, storage_dir: str | os.PathLike, *, username: str = "local-user", token: str | None = DEFAULT_TOKEN,
                 port: int = 0, verbose: bool = False):
        self.storage_dir = Path(storage_dir)
        self.storage_dir.mkdir(parents=True, exist_ok=True)
        (self.storage_dir / "blobs").mkdir(exist_ok=True)
        self.username = username
        self.token = token
        self.port = port
        self.verbose = verbose
        self.fail_commits = False
        self.fail_status = 422
        self.requests: list[tuple[str, str]] = []
        self.unhandled: list[tuple[str, str]] = []
        self._repos: dict[tuple[str, str], _Repo] = {}
        self._lock = threading.Lock()
        self._counter = 0
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def endpoint(self) -> str:
        if self._httpd is None:
            raise RuntimeError("LocalHub is not running; call start() or use it as a context manager")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "LocalHub":
        hub = self

        class Handler(_Handler):
            pass

        Handler.hub = hub
        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="local-hub", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(timeout=5)
            self._httpd = self._thread = None

    def __enter__(self) -> "LocalHub":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def env(self, hf_home: str | os.PathLike | None = None, base: dict | None = None) -> dict[str, str]:
        """Environment for a subprocess that should talk to this hub (a copy of `base` or os.environ).

        Sets HF_ENDPOINT, HF_TOKEN, HF_HUB_OFFLINE=0 (and TRANSFORMERS_OFFLINE=0), NO_PROXY for
        127.0.0.1, and, when `hf_home` is given, HF_HOME with a fresh cache there. Nothing global
        in this process is changed.
        """
        env = dict(os.environ if base is None else base)
        env.update({
            "HF_ENDPOINT": self.endpoint,
            "HF_HUB_OFFLINE": "0",
            "TRANSFORMERS_OFFLINE": "0",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        })
        if self.token is not None:
            env["HF_TOKEN"] = self.token
        for key in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_MODULES_CACHE", "TRANSFORMERS_CACHE"):
            env.pop(key, None)
        if hf_home is not None:
            Path(hf_home).mkdir(parents=True, exist_ok=True)
            env["HF_HOME"] = str(hf_home)
        return env

    def patch(self, monkeypatch) -> None:
        """Point `huggingface_hub` in THIS process at the hub, undone by pytest's `monkeypatch`.

        Sets `huggingface_hub.constants.ENDPOINT` (read when an `HfApi()` is built or a URL is made),
        turns its offline flag off, and sets HF_ENDPOINT / HF_TOKEN in os.environ. Objects built
        before the call keep their endpoint (e.g. transformers' shared `hf_api()`), so prefer a
        subprocess with `env()` for `from_pretrained`.
        """
        from huggingface_hub import constants

        monkeypatch.setattr(constants, "ENDPOINT", self.endpoint)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setenv("HF_ENDPOINT", self.endpoint)
        monkeypatch.setenv("HF_HUB_OFFLINE", "0")
        monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
        if self.token is not None:
            monkeypatch.setenv("HF_TOKEN", self.token)

    # ------------------------------------------------------------------ inspection

    def repo_dir(self, repo_id: str, repo_type: str = "model") -> Path:
        """Folder holding the files of the head of `main` of a repo."""
        return self.storage_dir / f"{repo_type}s" / repo_id

    def repo_exists(self, repo_id: str, repo_type: str = "model") -> bool:
        return (repo_type, repo_id) in self._repos

    def commit_titles(self, repo_id: str, repo_type: str = "model") -> list[str]:
        with self._lock:
            return [c.title for c in self._repos[(repo_type, repo_id)].commits]

    def files(self, repo_id: str, repo_type: str = "model") -> dict[str, bytes]:
        """Path -> content at the head of `main`."""
        with self._lock:
            head = self._repos[(repo_type, repo_id)].head
            return {p: self._blob(oid) for p, oid in head.files.items()}

    # ------------------------------------------------------------------ state

    def _blob(self, oid: str) -> bytes:
        return (self.storage_dir / "blobs" / oid).read_bytes()

    def _put_blob(self, content: bytes) -> str:
        oid = git_blob_sha1(content)
        path = self.storage_dir / "blobs" / oid
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(content)
            os.replace(tmp, path)
        return oid

    def _new_commit(self, repo: _Repo, title: str, files: dict[str, str]) -> _Commit:
        self._counter += 1
        parent = repo.commits[-1].oid if repo.commits else ""
        digest = hashlib.sha1(
            json.dumps([parent, title, sorted(files.items()), self._counter, time.time_ns()]).encode()
        ).hexdigest()
        commit = _Commit(oid=digest, title=title, files=files, date=time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()))
        repo.commits.append(commit)
        self._checkout(repo)
        return commit

    def _checkout(self, repo: _Repo) -> None:
        target = self.repo_dir(repo.repo_id, repo.repo_type)
        if target.exists():
            shutil.rmtree(target)
        for path, oid in repo.head.files.items():
            dest = target / path
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.storage_dir / "blobs" / oid, dest)
        target.mkdir(parents=True, exist_ok=True)

    def _repo(self, repo_type: str, repo_id: str) -> _Repo:
        repo = self._repos.get((repo_type, repo_id))
        if repo is None:
            raise _HubError(404, f"Repository {repo_id} not found", "RepoNotFound")
        return repo

    def _resolve(self, repo: _Repo, revision: str) -> _Commit:
        if revision == "main":
            return repo.head
        for commit in repo.commits:
            if commit.oid == revision:
                return commit
        raise _HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")

    # ------------------------------------------------------------------ API handlers

    def create_repo(self, payload: dict) -> dict:
        repo_type = payload.get("type") or "model"
        name = payload.get("name")
        if not name or "/" in name:
            raise _HubError(400, f"Invalid repo name: {name!r}")
        repo_id = f"{payload.get('organization') or self.username}/{name}"
        prefix = "" if repo_type == "model" else f"{repo_type}s/"
        url = f"{self.endpoint}/{prefix}{repo_id}"
        with self._lock:
            if (repo_type, repo_id) in self._repos:
                # like the Hub, the 409 carries the url: create_repo(exist_ok=True) reads it
                raise _HubError(409, f"You already created this {repo_type} repo", url=url)
            repo = _Repo(repo_id, repo_type, private=payload.get("visibility") == "private" or bool(payload.get("private")))
            self._repos[(repo_type, repo_id)] = repo
            self._new_commit(repo, "initial commit", {".gitattributes": self._put_blob(_GITATTRIBUTES)})
        return {"url": url, "name": repo_id, "id": repo_id}

    def preupload(self, repo_type: str, repo_id: str, revision: str, payload: dict) -> dict:
        with self._lock:
            commit = self._resolve(self._repo(repo_type, repo_id), revision)
            files = []
            for item in payload.get("files", []):
                files.append({
                    "path": item["path"],
                    "uploadMode": "regular",
                    "shouldIgnore": False,
                    "oid": commit.files.get(item["path"]),
                })
        return {"files": files, "commitOid": commit.oid}

    def commit(self, repo_type: str, repo_id: str, revision: str, body: bytes, query: dict) -> dict:
        if self.fail_commits:
            raise _HubError(self.fail_status, "local hub: commits are set to fail (fail_commits=True)")
        if query.get("create_pr"):
            raise _HubError(400, "local hub: pull requests are not supported")
        lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise _HubError(400, "commit payload must start with a header line")
        header = lines[0]["value"]
        with self._lock:
            repo = self._repo(repo_type, repo_id)
            if revision != "main":
                raise _HubError(404, f"Invalid rev id: {revision} (local hub has only 'main')", "RevisionNotFound")
            parent = header.get("parentCommit")
            if parent is not None and parent != repo.head.oid:
                raise _HubError(412, f"parentCommit {parent} is not the head of main ({repo.head.oid})")
            files = dict(repo.head.files)
            for line in lines[1:]:
                key, value = line.get("key"), line.get("value", {})
                path = value.get("path", "")
                if not path or path.startswith("/") or ".." in path.split("/"):
                    raise _HubError(400, f"invalid path in commit: {path!r}")
                if key == "file":
                    if value.get("encoding") != "base64":
                        raise _HubError(400, f"unsupported encoding {value.get('encoding')!r} for {path}")
                    files[path] = self._put_blob(base64.b64decode(value["content"]))
                elif key == "deletedFile":
                    files.pop(path, None)
                elif key == "deletedFolder":
                    prefix = path.rstrip("/") + "/"
                    files = {p: o for p, o in files.items() if not p.startswith(prefix)}
                elif key == "lfsFile":
                    raise _HubError(400, f"local hub stores regular files only; got an LFS pointer for {path}")
                else:
                    raise _HubError(400, f"unknown commit line key {key!r}")
            commit = self._new_commit(repo, header.get("summary") or "commit", files)
        prefix = "" if repo_type == "model" else f"{repo_type}s/"
        return {
            "commitUrl": f"{self.endpoint}/{prefix}{repo_id}/commit/{commit.oid}",
            "commitOid": commit.oid,
            "pullRequestUrl": None,
            "success": True,
        }

    def _entry(self, path: str, oid: str) -> dict:
        return {"type": "file", "path": path, "oid": oid, "size": (self.storage_dir / "blobs" / oid).stat().st_size}

    def repo_info(self, repo_type: str, repo_id: str, revision: str) -> dict:
        with self._lock:
            repo = self._repo(repo_type, repo_id)
            commit = self._resolve(repo, revision)
            siblings = [
                {"rfilename": p, "size": self._entry(p, o)["size"], "blobId": o} for p, o in sorted(commit.files.items())
            ]
        return {
            "_id": hashlib.sha1(repo_id.encode()).hexdigest()[:24],
            "id": repo_id,
            "modelId": repo_id,
            "author": repo_id.split("/")[0],
            "sha": commit.oid,
            "lastModified": commit.date,
            "createdAt": repo.commits[0].date,
            "private": repo.private,
            "gated": False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": siblings,
        }

    def tree(self, repo_type: str, repo_id: str, revision: str, path: str, recursive: bool) -> list[dict]:
        with self._lock:
            commit = self._resolve(self._repo(repo_type, repo_id), revision)
            prefix = path.strip("/") + "/" if path.strip("/") else ""
            if prefix and not any(p.startswith(prefix) for p in commit.files):
                raise _HubError(404, f"{path} does not exist on {revision}", "EntryNotFound", commit.oid)
            entries: dict[str, dict] = {}
            for p, oid in sorted(commit.files.items()):
                if not p.startswith(prefix):
                    continue
                rest = p[len(prefix):].split("/")
                if len(rest) == 1:
                    entries[p] = self._entry(p, oid)
                    continue
                depth = len(rest) - 1 if recursive else 1
                for d in range(1, depth + 1):
                    folder = prefix + "/".join(rest[:d])
                    entries.setdefault(folder, {"type": "directory", "path": folder, "oid": hashlib.sha1(folder.encode()).hexdigest(), "size": 0})
                if recursive:
                    entries[p] = self._entry(p, oid)
        return list(entries.values())

    def paths_info(self, repo_type: str, repo_id: str, revision: str, paths: list[str]) -> list[dict]:
        with self._lock:
            commit = self._resolve(self._repo(repo_type, repo_id), revision)
            out = []
            for path in paths:
                path = path.strip("/")
                if path in commit.files:
                    out.append(self._entry(path, commit.files[path]))
                elif any(p.startswith(path + "/") for p in commit.files):
                    out.append({"type": "directory", "path": path, "oid": hashlib.sha1(path.encode()).hexdigest(), "size": 0})
        return out

    def resolve(self, repo_type: str, repo_id: str, revision: str, path: str) -> tuple[_Commit, str]:
        with self._lock:
            commit = self._resolve(self._repo(repo_type, repo_id), revision)
            oid = commit.files.get(path)
            if oid is None:
                raise _HubError(404, "Entry not found", "EntryNotFound", commit.oid)
            return commit, oid


class _Handler(BaseHTTPRequestHandler):
    hub: LocalHub
    protocol_version = "HTTP/1.1"
    timeout = 10  # seconds an idle keep-alive connection is kept; bounds every handler thread

    def log_message(self, format, *args):  # keep test output quiet
        pass

    # -------------------------------------------------------------- plumbing

    def _body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks, total = [], 0
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                total += size
                if total > _MAX_BODY:
                    raise _HubError(413, "request body too large")
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_BODY:
            raise _HubError(413, "request body too large")
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, content_type: str = "application/json"):
        if self.hub.verbose:
            print(f"{self.command} {self.path} -> {status}", file=sys.stderr, flush=True)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, payload, headers: dict | None = None):
        self._send(status, json.dumps(payload).encode(), headers)

    def _check_write_auth(self):
        token = self.hub.token
        if token is not None and self.headers.get("Authorization") != f"Bearer {token}":
            raise _HubError(401, "Invalid credentials in Authorization header")

    def _dispatch(self):
        split = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        parts = [unquote(p) for p in split.path.split("/") if p]
        self.hub.requests.append((self.command, split.path))
        try:
            body = self._body() if self.command in ("POST", "PUT") else b""
            if not self._route(parts, query, body):
                self.hub.unhandled.append((self.command, split.path))
                self._json(404, {"error": f"local hub: no route for {self.command} {split.path}"})
        except _HubError as err:
            headers = {"X-Error-Message": err.message}
            if err.error_code:
                headers["X-Error-Code"] = err.error_code
            if err.commit:
                headers["X-Repo-Commit"] = err.commit
            self._json(err.status, {"error": err.message, **err.extra}, headers)

    def do_GET(self):
        self._dispatch()

    def do_HEAD(self):
        self._dispatch()

    def do_POST(self):
        self._dispatch()

    def do_PUT(self):
        self._dispatch()

    def do_DELETE(self):
        self._dispatch()

    # -------------------------------------------------------------- routes

    def _route(self, parts: list[str], query: dict, body: bytes) -> bool:
        hub, method = self.hub, self.command
        if parts[:1] == ["api"]:
            rest = parts[1:]
            if method == "POST" and rest == ["repos", "create"]:
                self._check_write_auth()
                self._json(200, hub.create_repo(json.loads(body or b"{}")))
                return True
            if method == "POST" and rest == ["validate-yaml"]:
                self._json(200, {"errors": [], "warnings": []})
                return True
            if method == "GET" and rest and rest[0].startswith("whoami"):
                self._check_write_auth()
                self._json(200, {"type": "user", "name": hub.username, "fullname": hub.username, "orgs": [],
                                 "auth": {"type": "access_token", "accessToken": {"displayName": "local", "role": "write"}}})
                return True
            if rest[:1] == ["telemetry"]:
                self._json(200, {})
                return True
            if len(rest) >= 3 and rest[0] in _REPO_TYPES:
                repo_type, repo_id, op = _REPO_TYPES[rest[0]], f"{rest[1]}/{rest[2]}", rest[3:]
                return self._repo_api(method, repo_type, repo_id, op, query, body)
            return False
        # file download: /[datasets/|spaces/]{ns}/{name}/resolve/{rev}/{path...}
        repo_type = "model"
        if parts[:1] and parts[0] in ("datasets", "spaces"):
            repo_type, parts = _REPO_TYPES[parts[0]], parts[1:]
        if len(parts) >= 5 and parts[2] == "resolve" and method in ("GET", "HEAD"):
            self._download(repo_type, f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:]))
            return True
        return False

    def _repo_api(self, method, repo_type, repo_id, op, query, body) -> bool:
        hub = self.hub
        if method == "GET" and not op:
            self._json(200, hub.repo_info(repo_type, repo_id, "main"))
        elif method == "GET" and len(op) == 2 and op[0] == "revision":
            self._json(200, hub.repo_info(repo_type, repo_id, op[1]))
        elif method == "GET" and len(op) >= 2 and op[0] == "tree":
            recursive = query.get("recursive", "").lower() in ("1", "true")
            self._json(200, hub.tree(repo_type, repo_id, op[1], "/".join(op[2:]), recursive))
        elif method == "POST" and len(op) == 2 and op[0] == "paths-info":
            form = parse_qs(body.decode()) if body else {}
            if (self.headers.get("Content-Type") or "").startswith("application/json"):
                form = {"paths": json.loads(body).get("paths", [])}
            self._json(200, hub.paths_info(repo_type, repo_id, op[1], form.get("paths", [])))
        elif method == "POST" and len(op) == 2 and op[0] == "preupload":
            self._check_write_auth()
            self._json(200, hub.preupload(repo_type, repo_id, op[1], json.loads(body or b"{}")))
        elif method == "POST" and len(op) == 2 and op[0] == "commit":
            self._check_write_auth()
            self._json(200, hub.commit(repo_type, repo_id, op[1], body, query))
        else:
            return False
        return True

    def _download(self, repo_type: str, repo_id: str, revision: str, path: str):
        commit, oid = self.hub.resolve(repo_type, repo_id, revision, path)
        content = self.hub._blob(oid)
        headers = {"ETag": f'"{oid}"', "X-Repo-Commit": commit.oid, "Accept-Ranges": "bytes"}
        status = 200
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range") or "")
        if match:
            start = int(match.group(1))
            end = int(match.group(2)) if match.group(2) else len(content) - 1
            headers["Content-Range"] = f"bytes {start}-{end}/{len(content)}"
            content, status = content[start:end + 1], 206
        self._send(status, content, headers, content_type="application/octet-stream")


@contextlib.contextmanager
def local_hub(storage_dir: str | os.PathLike, **kwargs):
    """Context manager: a running `LocalHub` storing under `storage_dir`, stopped on exit."""
    hub = LocalHub(storage_dir, **kwargs)
    with hub:
        yield hub


try:
    import pytest
except ImportError:  # pragma: no cover - the module is also usable without pytest
    pytest = None

if pytest is not None:

    @pytest.fixture
    def hub_server(tmp_path):
        """A running `LocalHub` storing under ``tmp_path / "hub"``; stopped at teardown."""
        with local_hub(tmp_path / "hub") as hub:
            yield hub


def main(argv: list[str] | None = None) -> int:
    """`python -m tests.hub_server [--port N] [--storage DIR] [-v]`: serve until Ctrl-C (exit 0)."""
    import argparse
    import shlex
    import signal
    import tempfile

    parser = argparse.ArgumentParser(
        prog="python -m tests.hub_server",
        description="A local stand-in for the Hugging Face Hub on 127.0.0.1, to try a push (and loading "
        "the pushed model back) without an account or a network. Repositories are kept in memory: "
        "they are gone when the server stops.",
    )
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--storage", metavar="DIR",
                        help="where pushed files are kept, one folder per repo under DIR/models/ "
                        "(default: a temporary folder, removed on exit)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print one line per request to stderr")
    args = parser.parse_args(argv)

    def stop(signum, frame):  # a scheduler's or `kill`'s SIGTERM stops it like Ctrl-C
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started with SIGINT ignored (`&`)
    with contextlib.ExitStack() as stack:
        storage = args.storage or stack.enter_context(tempfile.TemporaryDirectory(prefix="local-hub-"))
        hub = LocalHub(storage, port=args.port, verbose=args.verbose)
        try:
            hub.start()
        except OSError as err:
            parser.error(f"cannot listen on 127.0.0.1:{args.port}: {err.strerror or err}")
        stack.callback(hub.stop)
        exports = {"HF_ENDPOINT": hub.endpoint, "HF_TOKEN": hub.token}
        if os.environ.get("HF_HUB_OFFLINE", "0").lower() not in ("", "0", "false", "no", "off"):
            exports["HF_HUB_OFFLINE"] = "0"
        if any(os.environ.get(k) for k in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY")):
            exports["NO_PROXY"] = "127.0.0.1,localhost"
        print(f"local Hub listening on {hub.endpoint} (user {hub.username}, files under {hub.storage_dir}); "
              "Ctrl-C stops it", flush=True)
        print("in another shell:")
        for key, value in exports.items():
            print(f"  export {key}={shlex.quote(value)}")
        print(f"  python train_eisv.py --push_to_hub --hub_model_id {hub.username}/my-model ...", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            print("local Hub stopped", flush=True)
    return 0


__all__ = ["LocalHub", "local_hub", "hub_server", "git_blob_sha1", "DEFAULT_TOKEN", "main"]

if __name__ == "__main__":
    sys.exit(main())
