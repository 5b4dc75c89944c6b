"""Open a remote checkpoint (plain HTTP(S) URL or hf://) as `CheckpointFiles`: headers and side files only.

A plain URL names a `.safetensors` file, a sharded index `.json` or a
`.gguf` file; beside safetensors weights the shards, `config.json` and
tokenizer files are looked for (a 404 means "not there"); a GGUF carries its
own configuration and tokenizer, so nothing is fetched beside it (as for a
local GGUF file). Side files are size-capped like local ones
(`formats.limits.MAX_JSON_BYTES`), checked as JSON while the URL is still
at hand (so errors name the URL), and kept in a temporary folder removed when
the checkpoint is closed (or swept by a later run after a kill: `scratch.py`).
hf:// locations are resolved by `hub.py`.
Quantized safetensors (FP8 with scales, MXFP4) are read back as floats by
`formats.quantized.dequantizing`, with config.json's quantization_config,
as local ones are.
"""

from __future__ import annotations

import json
from pathlib import Path

import shutil

from ..errors import CorruptFileError
from ..formats.checkpoint_files import CheckpointFiles
from ..formats.gguf_format import GgufFile
from ..formats.limits import MAX_JSON_BYTES, MAX_TEXT_BYTES
from ..formats.quantized.dequantizing import with_dequantization
from ..formats.safetensors_format import SafetensorsFile
from .byte_ranges import HttpFile
from .hub import hub_location
from .location import RemoteLocation, plain_location
from .scratch import side_folder
from .sharded import open_sharded

# Side files fetched, in the order load_vocabulary prefers them; it reads the first that exists.
TOKENIZER_CHOICES = ("tokenizer.json", "vocab.json", "vocab.txt")


def _check_json(path: Path, shown: str, kind: str) -> object:
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise CorruptFileError(shown, f"{kind} file is not UTF-8 text (byte {exc.start})") from exc
    except (ValueError, RecursionError) as exc:
        raise CorruptFileError(shown, f"{kind} file is not valid JSON: {exc}") from exc


def open_remote_checkpoint_files(location: str) -> CheckpointFiles:
    """Fetch headers and side files of a remote checkpoint; tensor data is read later, by range."""
    if location.lower().startswith("hf://"):
        where = hub_location(location)
    else:
        where = plain_location(location)
    weights = where.sibling(where.weights)
    if where.weights.lower().endswith(".gguf"):
        source = GgufFile(HttpFile(weights))
        shown = f"{where.shown}/{where.weights}" if where.shown.lower().startswith("hf://") else where.shown
        return CheckpointFiles(path=shown, source=source)  # type: ignore[arg-type]  # a URL, not a Path
    if where.weights.lower().endswith(".json"):
        source = open_sharded(weights, where.sibling)
    else:
        source = SafetensorsFile(HttpFile(weights))
    folder = side_folder()
    files = CheckpointFiles(path=where.shown, source=source)  # type: ignore[arg-type]  # a URL, not a Path
    files.on_close(lambda: shutil.rmtree(folder, ignore_errors=True))
    try:
        config_path = where.fetch_side("config.json", MAX_JSON_BYTES["config"], folder)
        if config_path is not None:
            config = _check_json(config_path, f"{_base(where)}config.json", "config")
            if not isinstance(config, dict):
                raise CorruptFileError(f"{_base(where)}config.json", f"config is a JSON {type(config).__name__}, expected an object")
            files.config, files.config_path = config, config_path
        files.source = with_dequantization(source, files.config)
        for name in TOKENIZER_CHOICES:
            path = where.fetch_side(name, MAX_JSON_BYTES["tokenizer"], folder)
            if path is not None:
                if name.endswith(".json"):
                    _check_json(path, f"{_base(where)}{name}", "tokenizer")
                files.tokenizer_paths[name] = path
                break
        try:
            card = where.fetch_side("README.md", MAX_TEXT_BYTES, folder)
        except CorruptFileError:  # a model card over the cap is not needed
            card = None
        if card is not None:
            files.model_card = card.read_text(encoding="utf-8", errors="replace")
    except BaseException:
        files.close()
        raise
    return files


def _base(where: RemoteLocation) -> str:
    """How to name a side file in messages: the weights' location minus the weights' file name."""
    shown = where.shown
    if shown.lower().startswith("hf://"):
        return shown.rstrip("/") + "/"
    return shown[: len(shown) - len(shown.rsplit("/", 1)[-1])]
