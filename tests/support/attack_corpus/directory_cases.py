"""Checkpoint directories: symlinks, shard indexes, side files over their caps."""

from __future__ import annotations

import json
import shutil
from pathlib import Path


from .corpus import Corpus, copy_model_dir, tiny_config, tiny_state


def _sparse(path: Path, start: bytes, size: int) -> None:
    with open(path, "wb") as handle:
        handle.write(start)
        handle.truncate(size)


def _sharded(c: Corpus, name: str) -> Path:
    from safetensors.torch import save_file

    state = tiny_state()
    names = sorted(state)
    directory = c.directory(name)
    weight_map = {}
    for shard, members in (("model-00001-of-00002.safetensors", names[:10]),
                           ("model-00002-of-00002.safetensors", names[10:])):
        save_file({n: state[n].contiguous() for n in members}, str(directory / shard))
        weight_map.update({n: shard for n in members})
    (directory / "config.json").write_text(json.dumps(tiny_config()))
    (directory / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    return directory


def add_cases(c: Corpus) -> None:
    outside = c.path("dir/outside_secret/stolen.safetensors")
    shutil.copy(c.out / "base" / "model" / "model.safetensors", outside)
    directory = c.directory("dir/symlink_outside")
    (directory / "config.json").write_text(json.dumps(tiny_config()))
    (directory / "model.safetensors").symlink_to(outside)
    c.checkpoint("dir/symlink_to_outside", "model.safetensors is a symlink out of the model directory", directory,
                 directory / "model.safetensors", "outside the checkpoint directory")

    directory = copy_model_dir(c, "dir/config_symlink")
    (directory / "config.json").unlink()
    (directory / "config.json").symlink_to(c.out / "base" / "model" / "config.json")
    c.checkpoint("dir/config_symlink_outside", "config.json is a symlink out of the directory", directory,
                 directory / "config.json", "outside")

    directory = _sharded(c, "dir/missing_shard")
    (directory / "model-00002-of-00002.safetensors").unlink()
    c.checkpoint("dir/index_names_missing_shard", "the index names a shard that is not there", directory,
                 directory / "model.safetensors.index.json", "which is not there")

    directory = _sharded(c, "dir/same_shard_twice")
    index = directory / "model.safetensors.index.json"
    data = json.loads(index.read_text())
    first = sorted(data["weight_map"])[0]
    data["weight_map"][first] = "./model-00002-of-00002.safetensors"
    data["weight_map"] = {k: ("./" + v if v.startswith("model-00002") else v) for k, v in data["weight_map"].items()}
    data["weight_map"][sorted(data["weight_map"])[-1]] = "model-00002-of-00002.safetensors"
    index.write_text(json.dumps(data))
    c.checkpoint("dir/shard_listed_twice", "one shard file under two spellings (./x and x)", directory, index,
                 "are the same file")

    directory = _sharded(c, "dir/tensor_twice_in_index")
    index = directory / "model.safetensors.index.json"
    data = json.loads(index.read_text())
    name = sorted(data["weight_map"])[0]
    text = json.dumps(data["weight_map"])[1:-1]
    index.write_text('{"weight_map": {' + text + f', "{name}": "model-00002-of-00002.safetensors"' + "}}")
    c.checkpoint("dir/index_lists_tensor_twice", "the index names one tensor twice (two shards)", directory, index,
                 "twice")

    directory = _sharded(c, "dir/tensor_in_two_shards")
    from safetensors.torch import load_file, save_file

    second = directory / "model-00002-of-00002.safetensors"
    tensors = load_file(str(second))
    first_tensors = load_file(str(directory / "model-00001-of-00002.safetensors"))
    stolen = sorted(first_tensors)[0]
    tensors[stolen] = first_tensors[stolen]
    save_file(tensors, str(second))
    c.checkpoint("dir/tensor_stored_in_two_shards", "both shards hold one tensor", directory, "model-0000",
                 "is also stored in shard")

    directory = _sharded(c, "dir/nul_shard_name")
    index = directory / "model.safetensors.index.json"
    data = json.loads(index.read_text())
    data["weight_map"][sorted(data["weight_map"])[0]] = "model\u0000.safetensors"
    index.write_text(json.dumps(data))
    c.checkpoint("dir/shard_name_with_nul", "a shard name holding a NUL character", directory, index,
                 "invalid shard file name")

    directory = copy_model_dir(c, "dir/malformed_config")
    (directory / "config.json").write_text('{"model_type": "llama", "hidden_size": ')
    c.checkpoint("dir/malformed_config", "config.json cut short", directory, directory / "config.json", "not valid JSON")

    directory = copy_model_dir(c, "dir/config_over_cap")
    (directory / "config.json").write_text(json.dumps({**tiny_config(), "pad": "x" * (8 * 1024 * 1024)}))
    c.checkpoint("dir/config_over_8MiB", "a real 8 MiB + 300 B config.json", directory, directory / "config.json",
                 "over the 8388608-byte limit")

    # The two tokenizer files just over their cap are sparse (a real start, then zeros up to the size), to
    # spare 260 MB of disk writes: the cap is checked on the size, and a missing check would fail with a
    # JSON or decoding error instead of the expected "over the limit", so the test still tells them apart.
    directory = copy_model_dir(c, "dir/tokenizer_over_cap")
    _sparse(directory / "tokenizer.json", b'{"model": {"type": "BPE", "vocab": {"a": 0}}, "pad": "', (128 << 20) + 1)
    c.checkpoint("dir/tokenizer_over_128MiB", "a 128 MiB + 1 B tokenizer.json (sparse; inspect reads no tokenizer)",
                 directory, directory / "tokenizer.json", "over the 134217728-byte limit", inspect_ok=True)

    directory = copy_model_dir(c, "dir/malformed_tokenizer")
    (directory / "tokenizer.json").write_text('{"model": {"vocab": {"a": ')
    c.checkpoint("dir/malformed_tokenizer", "tokenizer.json cut short", directory, directory / "tokenizer.json",
                 "not valid JSON", inspect_ok=True)

    directory = copy_model_dir(c, "dir/vocab_txt_over_cap")
    (directory / "tokenizer.json").unlink()
    _sparse(directory / "vocab.txt", b"tok\n" * 1000, (128 << 20) + 1)
    c.checkpoint("dir/vocab_txt_over_128MiB", "a 128 MiB + 1 B vocab.txt (sparse)", directory, directory / "vocab.txt",
                 "over the 134217728-byte limit", inspect_ok=True)
