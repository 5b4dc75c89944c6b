"""A remote sharded safetensors checkpoint: its index `.json` validated, its shards opened over HTTP ranges.

The shards the index names must be plain file names beside the index (no
folders, no other hosts), like the local rule that shards stay inside the
checkpoint directory. Each shard is a `formats.safetensors_format.SafetensorsFile`
over an `HttpFile`, and the set is a `formats.multi.MultiFileSource`, as
for a local sharded checkpoint (the same index checks and tensor cap).
"""

from __future__ import annotations

import json
from typing import Callable

from ..errors import CorruptFileError
from ..formats.limits import MAX_JSON_BYTES, DuplicateKeyError, reject_duplicate_keys
from ..formats.multi import MultiFileSource, checked_weight_map, open_shards
from ..formats.safetensors_format import SafetensorsFile
from .byte_ranges import HttpFile
from .http import RemoteFile


def parse_index(index: RemoteFile) -> dict[str, str]:
    """The weight_map of a remote sharded index, validated like a local one."""
    raw = index.read_small(MAX_JSON_BYTES["index"])
    try:
        data = json.loads(raw.decode("utf-8"), object_pairs_hook=reject_duplicate_keys)
    except UnicodeDecodeError as exc:
        raise CorruptFileError(index, f"not UTF-8 text (byte {exc.start})") from exc
    except DuplicateKeyError as exc:  # the local index reader's rule (formats.limits)
        raise CorruptFileError(index, f"names {exc.args[0]!r} twice in one JSON object") from exc
    except (ValueError, RecursionError) as exc:
        raise CorruptFileError(index, f"not valid JSON: {exc}") from exc
    weight_map = checked_weight_map(index, data)
    for shard in set(weight_map.values()):
        if not shard or shard in (".", "..") or any(c in shard for c in "/\\?#:") or not shard.endswith(".safetensors"):
            raise CorruptFileError(index, f"index names shard {shard!r}; remote shards must be .safetensors files beside the index")
    return weight_map


def open_sharded(index: RemoteFile, sibling: Callable[[str], RemoteFile]) -> MultiFileSource:
    """The shards an index names, each read by range, as one source."""
    weight_map = parse_index(index)
    names = list(dict.fromkeys(weight_map.values()))
    shards = open_shards(names, lambda name: SafetensorsFile(HttpFile(sibling(name))), index)  # same tensor cap as local
    return MultiFileSource(index, shards, "safetensors", index_path=index, weight_map=weight_map,
                           index_entry={"name": index.name, "url": index.url})
