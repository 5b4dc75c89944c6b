"""hf://ORG/NAME[@REVISION]: a model repository on a Hugging Face-compatible hub, through huggingface_hub.

How each part is reached, and why:
- the file list and the commit: `HfApi(endpoint).model_info(repo, revision,
  files_metadata=True)` (GET /api/models/ORG/NAME[/revision/REV]); the
  revision is pinned to the commit it returns, so every later read sees one
  snapshot even if the branch moves meanwhile;
- weights: `hf_hub_url(...)` (/ORG/NAME/resolve/COMMIT/FILE) read by HTTP
  Range requests with `build_hf_headers()` (HF_TOKEN, user agent) on
  huggingface_hub's own session (see `http.py`); weights are never
  downloaded whole, so they never enter the cache;
- config.json, tokenizer and model card: from the user's Hugging Face
  cache when it holds them at that commit (`try_to_load_from_cache`), else
  by the same range reads, asking for at most their listed size (checked
  against our caps) plus one byte, into the checkpoint's temporary folder;
- the model_info request is bounded by the command's deadline (`budget.py`)
  and its commit must be a commit hash; huggingface_hub's log lines are
  folded into the one error line.
HfFileSystem would work too, but its buffered files read ahead in blocks
(more bytes than the fingerprint needs) and it offers no plain-URL twin;
range reads on the resolve URL give one code path for hf:// and https://.
The endpoint is HF_ENDPOINT as set when the command runs.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

from huggingface_hub import constants

from ..errors import CorruptFileError, UnreadablePathError
from ..visible_text import clean, quoted
from .budget import BudgetExceeded, Deadline, command_seconds, current_deadline
from .http import REASONS, RemoteAccessError, RemoteFile
from .location import RemoteLocation

HUB_LOCATION = re.compile(r"^hf://(?P<repo>[A-Za-z0-9][\w.\-]*/[\w.\-]+)(?:@(?P<revision>[^\s/@]+))?"
                          r"(?:/(?P<file>[^\s@]*[^\s@/]))?/?$")


def parse_hub_location(location: str) -> tuple[str, str | None, str | None]:
    """(ORG/NAME, REVISION or None, FILE or None) of hf://ORG/NAME[@REVISION][/FILE]."""
    match = HUB_LOCATION.match(location)
    if not match:
        raise UnreadablePathError(location, "expected hf://ORG/NAME, hf://ORG/NAME@REVISION or hf://ORG/NAME[@REVISION]/FILE")
    file = match["file"]
    if file is not None and any(part in ("", ".", "..") for part in file.split("/")):
        raise UnreadablePathError(location, f"file {file!r} is not a plain path inside the repository")
    return match["repo"], match["revision"], file


def _endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def _hub_error(location: str, exc: BaseException, url: str | None = None) -> RemoteAccessError:
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    where = url or str(getattr(response, "url", "") or "") or None
    if status is not None:
        hint = " (set HF_TOKEN for a private or gated repository)" if status in (401, 403) else ""
        problem = f"HTTP {status} {REASONS.get(status, '')}".rstrip() + hint
    else:
        problem = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return RemoteAccessError(location, f"{problem}{f' ({where})' if where else ''}")


def _pick_weights(location: str, names: list[str]) -> str:
    top = [n for n in names if "/" not in n]
    indexes = [n for n in top if n.endswith(".safetensors.index.json")]
    if indexes:
        return "model.safetensors.index.json" if "model.safetensors.index.json" in indexes else sorted(indexes)[0]
    files = sorted(n for n in top if n.endswith(".safetensors"))
    preferred = [n for n in files if n.startswith("model")] or files
    if len(preferred) == 1:
        return preferred[0]
    if not preferred:
        ggufs = sorted(n for n in names if n.lower().endswith(".gguf"))
        if len(ggufs) == 1:
            return ggufs[0]
        if ggufs:
            shown = ", ".join(ggufs[:6]) + (", ..." if len(ggufs) > 6 else "")
            raise UnreadablePathError(location, f"{len(ggufs)} GGUF files and no safetensors; name one as "
                                                f"hf://ORG/NAME[@REV]/FILE.gguf ({shown})")
        raise UnreadablePathError(location, "no .safetensors or .gguf weights in the repository "
                                            "(remote reading supports safetensors and GGUF; download other formats)")
    raise UnreadablePathError(location, f"{len(preferred)} .safetensors files and no index; pass one of them as a URL")


HUB_API_SECONDS = 60.0  # one model_info answer (a file list of a few MB at most), within the command's deadline
COMMIT = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")  # a git commit: SHA-1, or SHA-256 for newer hubs


def _model_info(shown: str, repo_id: str, revision: str | None, files_metadata: bool):
    """HfApi.model_info bounded in time (a drip server holds it past any per-read timeout), its commit checked.

    The call runs in a daemon thread the command stops waiting for at the
    deadline; huggingface_hub's log lines (retries, warnings) are kept out of
    the terminal and folded into the one error line.
    """
    from huggingface_hub import HfApi  # lazy: huggingface_hub's API loads httpx (about 50 ms); hub locations only

    endpoint = _endpoint()
    host = clean(urlsplit(endpoint).netloc or endpoint, 200)
    deadline = current_deadline()
    _check(shown, deadline, host)
    limit = max(0.05, min(HUB_API_SECONDS, deadline.remaining() if deadline else command_seconds()))
    outcome: dict = {}

    def call() -> None:
        try:
            outcome["info"] = HfApi(endpoint=endpoint).model_info(repo_id, revision=revision,
                                                                  files_metadata=files_metadata, timeout=limit)
        except Exception as exc:  # huggingface_hub's HTTP, offline and connection errors
            outcome["error"] = exc

    with library_log_folded() as logged:
        worker = threading.Thread(target=call, daemon=True, name="provenance-hub-api")
        worker.start()
        worker.join(max(0.0, limit))
    api_url = f"{endpoint}/api/models/{repo_id}" + (f"/revision/{revision}" if revision else "")
    said = f" (huggingface_hub said: {'; '.join(logged)})" if logged else ""
    if worker.is_alive():
        _check(shown, deadline, host)
        raise RemoteAccessError(shown, f"{host} did not answer the model_info request within {limit:.0f} s "
                                       f"({api_url}){said}")
    if "error" in outcome:
        error = _hub_error(shown, outcome["error"], api_url)
        raise RemoteAccessError(shown, error.problem + said) from outcome["error"]
    info = outcome["info"]
    if not info.sha:
        raise RemoteAccessError(shown, "the hub did not say which commit this revision is")
    if not isinstance(info.sha, str) or not COMMIT.fullmatch(info.sha):
        raise RemoteAccessError(shown, f"the hub answered commit {quoted(info.sha)}, not a commit hash")
    return info


def _check(shown: str, deadline: Deadline | None, host: str) -> None:
    try:
        if deadline is not None:
            deadline.check(host)
    except BudgetExceeded as exc:
        raise RemoteAccessError(shown, str(exc)) from None


@contextmanager
def library_log_folded() -> Iterator[list[str]]:
    """huggingface_hub's log records while inside, collected (one line each) instead of printed."""
    logger = logging.getLogger("huggingface_hub")
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.WARNING:
                lines.append(clean(record.getMessage(), 200))

    handlers, propagate = logger.handlers[:], logger.propagate
    logger.handlers, logger.propagate = [Collect()], False
    try:
        yield lines
    finally:
        logger.handlers, logger.propagate = handlers, propagate


def resolve_commit(repo_id: str, revision: str | None) -> str:
    """The commit a branch, tag or commit of `repo_id` names on the hub (one model_info request)."""
    shown = f"hf://{repo_id}" + (f"@{revision}" if revision else "")
    return _model_info(shown, repo_id, revision, files_metadata=False).sha


def hub_location(location: str) -> RemoteLocation:
    # lazy: huggingface_hub's API loads httpx (about 50 ms); hub locations only
    from huggingface_hub import hf_hub_url, try_to_load_from_cache
    from huggingface_hub.utils import build_hf_headers

    repo_id, revision, file = parse_hub_location(location)
    endpoint = _endpoint()
    info = _model_info(location, repo_id, revision, files_metadata=True)
    commit = info.sha
    sizes = {s.rfilename: s.size for s in (info.siblings or [])}
    if file is not None and file not in sizes:
        raise UnreadablePathError(location, f"the repository has no file {file!r} at revision {revision or 'main'}")
    weights = file if file is not None else _pick_weights(location, list(sizes))
    shown = f"hf://{repo_id}@{revision or 'main'}"
    headers = build_hf_headers()

    def sibling(name: str) -> RemoteFile:
        url = hf_hub_url(repo_id, name, revision=commit, endpoint=endpoint)
        return RemoteFile(url, name=name, headers=dict(headers), size=sizes.get(name), shown=f"{shown}/{name}",
                          commit=commit)

    def fetch_side(name: str, limit: int, folder: Path) -> Path | None:
        """A side file from the user's Hugging Face cache if it holds it at this commit, else by capped reads.

        Not `hf_hub_download`: it streams whatever the server sends to disk
        (a config.json listed as 284 bytes once sent 1.5 GB) before checking
        the size; here at most the listed size (and `limit`) plus one byte is
        ever asked for, so side files read from the hub are not cached.
        """
        if name not in sizes:
            return None
        size = sizes[name]
        cap = limit if size is None else size
        if cap > limit:
            raise CorruptFileError(f"{shown}/{name}", f"file is {size} bytes, over the {limit}-byte limit")
        cached = try_to_load_from_cache(repo_id, name, revision=commit)
        if isinstance(cached, str) and Path(cached).is_file() and Path(cached).stat().st_size <= cap:
            return Path(cached)
        try:
            data = sibling(name).read_small(cap)
        except CorruptFileError as exc:
            raise CorruptFileError(f"{shown}/{name}", f"listed as {size} bytes, but {exc.problem}") from exc
        target = folder / name
        target.write_bytes(data or b"")
        return target

    return RemoteLocation(shown, weights, sibling, fetch_side, commit=commit)
