"""Where a remote checkpoint is: its weights file and how to reach the files beside it.

A `RemoteLocation` is made from a plain http(s) URL here, or from an hf://
location by `hub.hub_location`; `checkpoint.open_remote_checkpoint_files`
reads through either the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import quote, unquote, urljoin, urlsplit

from ..errors import UnreadablePathError
from .http import RemoteFile


@dataclass
class RemoteLocation:
    """Where a remote checkpoint is and how to reach the files beside its weights."""

    shown: str  # the URL or hf://ORG/NAME@REVISION, for messages
    weights: str  # the file name of the .safetensors file or the index .json
    sibling: Callable[[str], RemoteFile]  # a file beside the weights, by name
    fetch_side: Callable[[str, int, Path], Path | None]  # download a side file (<= limit bytes) or None if absent
    commit: str | None = None  # the commit an hf:// revision resolved to (None for a plain URL)


def plain_location(url: str) -> RemoteLocation:
    parts = urlsplit(url)
    name = unquote(parts.path.rsplit("/", 1)[-1])
    lower = name.lower()
    if not lower.endswith((".safetensors", ".json", ".gguf")):
        raise UnreadablePathError(url, "a remote URL must name a .safetensors file, a sharded index .json or a .gguf "
                                       "file (other formats are read from local files only)")

    def sibling(file_name: str) -> RemoteFile:
        if file_name == name:
            return RemoteFile(url, name=name)  # as given: a signed URL keeps its query string
        return RemoteFile(urljoin(url, quote(file_name)), name=file_name)

    def fetch_side(file_name: str, limit: int, folder: Path) -> Path | None:
        data = sibling(file_name).read_small(limit, missing_ok=True)
        if data is None:
            return None
        target = folder / file_name
        target.write_bytes(data)
        return target

    return RemoteLocation(url, name, sibling, fetch_side)


