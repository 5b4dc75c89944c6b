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
- config.json, tokenizer and model card: `hf_hub_download`, so they land in
  (and come from) the user's Hugging Face cache (HF_HOME, HF_HUB_CACHE),
  after their listed size is checked against our caps.
HfFileSystem would work too, but its buffered files read ahead in blocks
(more bytes than the fingerprint needs) and it offers no plain-URL twin;
range reads on the resolve URL give one code path for hf:// and https://.
The endpoint is HF_ENDPOINT as set when the command runs.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from huggingface_hub import constants

from ..errors import CorruptFileError, UnreadablePathError
from .location import RemoteLocation
from .http import REASONS, RemoteAccessError, RemoteFile

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


def resolve_commit(repo_id: str, revision: str | None) -> str:
    """The commit a branch, tag or commit of `repo_id` names on the hub (one model_info request)."""
    from huggingface_hub import HfApi  # lazy: huggingface_hub's API loads httpx (about 50 ms); hub locations only

    endpoint = _endpoint()
    shown = f"hf://{repo_id}" + (f"@{revision}" if revision else "")
    try:
        info = HfApi(endpoint=endpoint).model_info(repo_id, revision=revision)
    except Exception as exc:  # huggingface_hub's HTTP, offline and connection errors
        api_url = f"{endpoint}/api/models/{repo_id}" + (f"/revision/{revision}" if revision else "")
        raise _hub_error(shown, exc, api_url) from exc
    if not info.sha:
        raise RemoteAccessError(shown, "the hub did not say which commit this revision is")
    return info.sha


def hub_location(location: str) -> RemoteLocation:
    # lazy: huggingface_hub's API loads httpx (about 50 ms); hub locations only
    from huggingface_hub import HfApi, hf_hub_download, hf_hub_url
    from huggingface_hub.utils import build_hf_headers

    repo_id, revision, file = parse_hub_location(location)
    endpoint = _endpoint()
    try:
        info = HfApi(endpoint=endpoint).model_info(repo_id, revision=revision, files_metadata=True)
    except Exception as exc:  # huggingface_hub's HTTP, offline and connection errors
        api_url = f"{endpoint}/api/models/{repo_id}" + (f"/revision/{revision}" if revision else "")
        raise _hub_error(location, exc, api_url) from exc
    commit = info.sha or revision or "main"
    sizes = {s.rfilename: s.size for s in (info.siblings or [])}
    if file is not None and file not in sizes:
        raise UnreadablePathError(location, f"the repository has no file {file!r} at revision {revision or 'main'}")
    weights = file if file is not None else _pick_weights(location, list(sizes))
    shown = f"hf://{repo_id}@{revision or 'main'}"
    headers = build_hf_headers()

    def sibling(name: str) -> RemoteFile:
        url = hf_hub_url(repo_id, name, revision=commit, endpoint=endpoint)
        return RemoteFile(url, name=name, headers=dict(headers), size=sizes.get(name), shown=f"{shown}/{name}")

    def fetch_side(name: str, limit: int, folder: Path) -> Path | None:
        if name not in sizes:
            return None
        size = sizes[name]
        if size is not None and size > limit:
            raise CorruptFileError(f"{shown}/{name}", f"file is {size} bytes, over the {limit}-byte limit")
        try:
            path = Path(hf_hub_download(repo_id, name, revision=commit, endpoint=endpoint))
        except Exception as exc:
            raise _hub_error(f"{shown}/{name}", exc, hf_hub_url(repo_id, name, revision=commit, endpoint=endpoint)) from exc
        if path.stat().st_size > limit:
            raise CorruptFileError(f"{shown}/{name}", f"file is {path.stat().st_size} bytes, over the {limit}-byte limit")
        return path

    return RemoteLocation(shown, weights, sibling, fetch_side, commit=commit)
