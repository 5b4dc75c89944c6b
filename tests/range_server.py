"""A local HTTP server for remote-reading tests and benchmarks: Range requests, byte counts, a fake hub.

Serves on 127.0.0.1 only, on a free port, from a thread (one thread per
connection). Routes:
- `/files/<relative path>`: files under the root folder (plain URLs);
- `/api/models/<org>/<name>[/revision/<rev>]`: the JSON `HfApi.model_info`
  reads (id, sha, siblings with sizes);
- `/<org>/<name>/resolve/<rev>/<file>`: HEAD with the headers
  `hf_hub_download` needs (X-Repo-Commit, ETag, Content-Length) and GET,
  as huggingface_hub's `hf_hub_url` spells it.
GET honours a single `Range: bytes=A-B` (206 with Content-Range), else sends
the whole file. `RangeServer(root, latency=0.05, bandwidth=100e6)` models a
network for benchmarks: 50 ms before each file request is answered, and one
100 MB/s link that every body shares. `served[path]` counts body bytes sent per file; `fail[path]`
forces a status (403, 404, 503...); a path in `drop_once` gets half its body
and then a closed connection, once; a path in `ignore_range` gets the whole
file whatever Range asked for. A repository registered with a token
answers 401 to requests without `Authorization: Bearer <token>`.
Run as a script (`python tests/range_server.py --repo ORG/NAME=FOLDER`), it
serves folders as a hub until interrupted (the walk-through in docs/catalog.md).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

CHUNK = 1 << 20
THROTTLED_CHUNK = 64 << 10  # smaller blocks under a bandwidth cap, so concurrent bodies interleave


@dataclass
class HubRepo:
    folder: Path
    commit: str
    token: str | None = None
    revisions: tuple[str, ...] = ("main",)


@dataclass
class ServerState:
    root: Path
    repos: dict[str, HubRepo] = field(default_factory=dict)
    served: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    requests: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    fail: dict[str, int] = field(default_factory=dict)
    drop_once: set[str] = field(default_factory=set)
    ignore_range: set[str] = field(default_factory=set)  # answer these with 200 and the whole file
    latency: float = 0.0  # seconds added before answering each file request (a network's round trip)
    bandwidth: float | None = None  # bytes per second all file bodies share (None: as fast as the machine)
    sending: threading.Lock = field(default_factory=threading.Lock)  # one body block on the shared link at a time
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: ServerState

    def log_message(self, format, *args):  # quiet
        pass

    # -- routing -------------------------------------------------------------------------------------------

    def do_HEAD(self):
        self._route(head=True)

    def do_GET(self):
        self._route(head=False)

    def _route(self, head: bool) -> None:
        path = unquote(urlsplit(self.path).path)
        if path.startswith("/files/"):
            key = path[len("/files/"):]
            return self._serve_file(key, self.state.root / key, head)
        match = re.match(r"^/api/models/([^/]+/[^/]+)(?:/revision/([^/]+))?/?$", path)
        if match:
            return self._model_info(match[1], match[2] or "main")
        match = re.match(r"^/api/models/([^/]+/[^/]+)/tree/([^/]+)/?$", path)
        if match:
            return self._tree(match[1], match[2])
        match = re.match(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$", path)
        if match:
            return self._resolve(match[1], match[2], match[3], head)
        self._status(404, {"X-Error-Code": "EntryNotFound"})

    def _status(self, code: int, headers: dict[str, str] | None = None, body: bytes = b"") -> None:
        self.send_response(code)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def _authorised(self, repo: HubRepo) -> bool:
        return repo.token is None or self.headers.get("Authorization") == f"Bearer {repo.token}"

    def _repo(self, repo_id: str, revision: str) -> HubRepo | None:
        repo = self.state.repos.get(repo_id)
        if repo is None:
            self._status(404, {"X-Error-Code": "RepoNotFound"}, b'{"error":"Repository not found"}')
            return None
        if not self._authorised(repo):
            self._status(401, {"X-Error-Code": "RepoNotFound"}, b'{"error":"Invalid credentials"}')
            return None
        if revision not in repo.revisions and revision != repo.commit:
            self._status(404, {"X-Error-Code": "RevisionNotFound"}, b'{"error":"Revision not found"}')
            return None
        return repo

    def _model_info(self, repo_id: str, revision: str) -> None:
        repo = self._repo(repo_id, revision)
        if repo is None:
            return
        siblings = [{"rfilename": p.relative_to(repo.folder).as_posix(), "size": p.stat().st_size}
                    for p in sorted(repo.folder.rglob("*")) if p.is_file()]
        body = json.dumps({"id": repo_id, "modelId": repo_id, "sha": repo.commit, "private": repo.token is not None,
                           "siblings": siblings}).encode()
        self._status(200, {"Content-Type": "application/json"}, body)

    def _tree(self, repo_id: str, revision: str) -> None:
        """`HfApi.list_repo_tree(recursive=True)`, which `snapshot_download` (`hf download`) reads."""
        repo = self._repo(repo_id, revision)
        if repo is None:
            return
        entries = [{"type": "directory", "path": p.relative_to(repo.folder).as_posix(), "oid": repo.commit}
                   if p.is_dir() else
                   {"type": "file", "path": p.relative_to(repo.folder).as_posix(), "size": p.stat().st_size,
                    "oid": repo.commit}
                   for p in sorted(repo.folder.rglob("*")) if not p.name.startswith((".", "__"))]
        self._status(200, {"Content-Type": "application/json"}, json.dumps(entries).encode())

    def _resolve(self, repo_id: str, revision: str, name: str, head: bool) -> None:
        repo = self._repo(repo_id, revision)
        if repo is None:
            return
        key = f"{repo_id}/{name}"
        self._serve_file(key, repo.folder / name, head,
                         extra={"X-Repo-Commit": repo.commit, "ETag": f'"{repo.commit[:12]}-{name}"'})

    # -- files ---------------------------------------------------------------------------------------------

    def _serve_file(self, key: str, path: Path, head: bool, extra: dict[str, str] | None = None) -> None:
        state = self.state
        with state.lock:
            state.requests[key] += 1
            forced = state.fail.get(key)
            drop = not head and key in state.drop_once
            if drop:
                state.drop_once.discard(key)
        if state.latency:
            time.sleep(state.latency)
        if forced:
            return self._status(forced, {"X-Error-Code": "EntryNotFound"} if forced == 404 else {})
        if not path.is_file():
            return self._status(404, {"X-Error-Code": "EntryNotFound"})
        size = path.stat().st_size
        start, end, status = 0, size, 200
        wanted = self.headers.get("Range")
        if wanted and not head and key not in state.ignore_range:
            match = re.fullmatch(r"bytes=(\d+)-(\d*)", wanted.strip())
            if not match or int(match[1]) >= size:
                return self._status(416, {"Content-Range": f"bytes */{size}"})
            start = int(match[1])
            end = min(size, int(match[2]) + 1) if match[2] else size
            status = 206
        self.send_response(status)
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(end - start))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        self.end_headers()
        if head:
            return
        limit = start + (end - start) // 2 if drop else end
        with open(path, "rb") as handle:
            handle.seek(start)
            position = start
            while position < limit:
                block = handle.read(min(CHUNK if state.bandwidth is None else THROTTLED_CHUNK, limit - position))
                if not block:
                    break
                if state.bandwidth is not None:  # the shared link: blocks go out one after another, at its rate
                    with state.sending:
                        time.sleep(len(block) / state.bandwidth)
                self.wfile.write(block)
                position += len(block)
                with state.lock:
                    state.served[key] += len(block)
        if drop:
            self.wfile.flush()
            self.close_connection = True
            self.connection.close()


class RangeServer:
    """`with RangeServer(root) as server:` serves root on 127.0.0.1; `server.url(rel)`, `server.endpoint`."""

    def __init__(self, root: Path, port: int = 0, latency: float = 0.0, bandwidth: float | None = None):
        self.state = ServerState(Path(root), latency=latency, bandwidth=bandwidth)
        handler = type("Handler", (_Handler,), {"state": self.state})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)

    @property
    def endpoint(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, relative: str) -> str:
        return f"{self.endpoint}/files/{relative}"

    def add_repo(self, repo_id: str, folder: Path, commit: str = "0" * 40, token: str | None = None) -> None:
        self.state.repos[repo_id] = HubRepo(Path(folder), commit, token)

    def served(self, prefix: str = "") -> int:
        with self.state.lock:
            return sum(n for key, n in self.state.served.items() if key.startswith(prefix))

    def requests(self, prefix: str = "") -> int:
        """File requests answered (HEAD and GET) for paths starting with `prefix`."""
        with self.state.lock:
            return sum(n for key, n in self.state.requests.items() if key.startswith(prefix))

    def reset_counts(self) -> None:
        with self.state.lock:
            self.state.served.clear()
            self.state.requests.clear()

    def __enter__(self) -> "RangeServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


def main(argv: list[str] | None = None) -> int:
    """`python tests/range_server.py --repo ORG/NAME=FOLDER ... [--port N]`: serve folders as a hub until Ctrl-C."""
    import argparse
    import hashlib

    parser = argparse.ArgumentParser(description="Serve local folders as a Hugging Face-compatible hub on 127.0.0.1.")
    parser.add_argument("--repo", action="append", default=[], metavar="ORG/NAME=FOLDER", help="a repository (repeatable)")
    parser.add_argument("--root", type=Path, default=Path("."), help="folder served under /files/ (default: .)")
    parser.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    args = parser.parse_args(argv)
    server = RangeServer(args.root, port=args.port)
    for spec in args.repo:
        repo_id, _, folder = spec.partition("=")
        if not folder or repo_id.count("/") != 1:
            parser.error(f"--repo {spec!r}: expected ORG/NAME=FOLDER")
        server.add_repo(repo_id, Path(folder), commit=hashlib.sha1(f"{repo_id}:{folder}".encode()).hexdigest())
    with server:
        print(f"serving {len(args.repo)} repositories at {server.endpoint} (HF_ENDPOINT={server.endpoint})", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
