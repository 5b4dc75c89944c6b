"""The attack corpus: hostile and broken inputs, generated on demand (no binary blobs in the repository).

Every case is a small file or directory built from a seeded tiny LLaMA, then
broken in one precise way, plus the command lines to run on it and what they
must do: exit 1 with one stderr line naming the file and the problem, or,
for inputs that are odd but valid (zero-sized or NaN tensors, a header out of
data order, a legacy pickle), succeed. Pickle payloads would create a file in
`sentinels/`; that file must never appear.

    python -m provenance.testing.attack_corpus --out DIR   # write the corpus, list the cases
    generate(out) -> list[Case]                            # what the tests call

Groups: safetensors headers, PyTorch pickles and zips, GGUF headers,
checkpoint directories (symlinks, indexes, side-file caps), fingerprint
files and reference databases. Writing the corpus takes a few seconds and
about 250 MB of disk, most of it the cases just over a size cap (a 100 MB
safetensors header, a 128 MiB tokenizer.json), which are real files so that
the cap, not some other check, is what refuses them.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import struct
import sys
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

VOCAB, HIDDEN, INTER, LAYERS, HEADS, KV_HEADS = 64, 32, 48, 2, 4, 2
HEAD_DIM = HIDDEN // HEADS


@dataclass(frozen=True)
class Run:
    """One command line and its expected outcome."""

    argv: tuple[str, ...]
    expect: str  # "error" (exit 1, one line) or "ok" (exit 0)
    names: str = ""  # an error line must contain this (the file it is about)
    fragment: str = ""  # ... and this (the problem)


@dataclass(frozen=True)
class Case:
    name: str  # "group/what"
    description: str
    runs: tuple[Run, ...]
    forbidden: tuple[str, ...] = ()  # paths that must not exist after the runs (sentinels, outputs of failed runs)

    @property
    def group(self) -> str:
        return self.name.split("/", 1)[0]


@dataclass
class _Corpus:
    out: Path
    cases: list[Case] = field(default_factory=list)
    _good_fp: Path | None = None
    _good_db: Path | None = None

    def path(self, name: str) -> Path:
        target = self.out / name
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def directory(self, name: str) -> Path:
        target = self.out / name
        target.mkdir(parents=True, exist_ok=True)
        return target

    def sentinel(self, name: str) -> Path:
        return self.path(f"sentinels/{name.replace('/', '_')}")

    def output(self, name: str) -> Path:
        return self.path(f"outputs/{name.replace('/', '_')}.fp.safetensors")

    def add(self, name: str, description: str, runs: list[Run], forbidden: list[Path | str] = ()) -> None:
        self.cases.append(Case(name, description, tuple(runs), tuple(str(p) for p in forbidden)))

    def checkpoint(self, name: str, description: str, target: Path, names: Path | str, fragment: str,
                   inspect_ok: bool = False, forbidden: list[Path | str] = ()) -> None:
        """A checkpoint that `inspect` and `fingerprint` must both refuse (or only `fingerprint`, which reads data)."""
        output = self.output(name)
        runs = [Run(("inspect", str(target), "--no-hash"), "ok") if inspect_ok else
                Run(("inspect", str(target), "--no-hash"), "error", str(names), fragment),
                Run(("fingerprint", str(target), "-o", str(output)), "error", str(names), fragment)]
        self.add(name, description, runs, [output, *forbidden])

    def valid(self, name: str, description: str, target: Path) -> None:
        """Odd but valid input: inspect, fingerprint, and compare the fingerprint with the checkpoint."""
        output = self.output(name)
        self.add(name, description, [Run(("inspect", str(target), "--no-hash"), "ok"),
                                     Run(("fingerprint", str(target), "-o", str(output)), "ok"),
                                     Run(("compare", str(output), str(target)), "ok")])

    @property
    def good_fingerprint(self) -> Path:
        if self._good_fp is None:
            from ..fingerprint import build_fingerprint
            from ..model import Checkpoint

            with Checkpoint.open(self.out / "base" / "model") as checkpoint:
                fingerprint = build_fingerprint(checkpoint)
            self._good_fp = fingerprint.save(self.path("base/good.fp.safetensors"))
        return self._good_fp

    @property
    def good_db(self) -> Path:
        if self._good_db is None:
            from ..fingerprint.store import load_fingerprint
            from ..registry import Registry

            with Registry(self.path("base/good_refs.sqlite")) as registry:
                registry.add("tiny-llama", load_fingerprint(self.good_fingerprint))
            self._good_db = self.out / "base" / "good_refs.sqlite"
        return self._good_db


# --------------------------------------------------------------------------- base material


def tiny_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A seeded tiny LLaMA state dict (Hugging Face names), made without transformers."""
    generator = torch.Generator().manual_seed(seed)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator)

    state = {"model.embed_tokens.weight": randn(VOCAB, HIDDEN), "model.norm.weight": 1 + 0.1 * randn(HIDDEN),
             "lm_head.weight": randn(VOCAB, HIDDEN)}
    for layer in range(LAYERS):
        p = f"model.layers.{layer}."
        state.update({
            p + "input_layernorm.weight": 1 + 0.1 * randn(HIDDEN),
            p + "post_attention_layernorm.weight": 1 + 0.1 * randn(HIDDEN),
            p + "self_attn.q_proj.weight": randn(HIDDEN, HIDDEN),
            p + "self_attn.k_proj.weight": randn(KV_HEADS * HEAD_DIM, HIDDEN),
            p + "self_attn.v_proj.weight": randn(KV_HEADS * HEAD_DIM, HIDDEN),
            p + "self_attn.o_proj.weight": randn(HIDDEN, HIDDEN),
            p + "mlp.gate_proj.weight": randn(INTER, HIDDEN),
            p + "mlp.up_proj.weight": randn(INTER, HIDDEN),
            p + "mlp.down_proj.weight": randn(HIDDEN, INTER),
        })
    return state


def tiny_config() -> dict:
    return {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": VOCAB, "hidden_size": HIDDEN,
            "intermediate_size": INTER, "num_hidden_layers": LAYERS, "num_attention_heads": HEADS,
            "num_key_value_heads": KV_HEADS, "rms_norm_eps": 1e-6, "tie_word_embeddings": False}


def tiny_tokenizer() -> dict:
    tokens = [f"tok{i}" for i in range(VOCAB)]
    return {"version": "1.0", "added_tokens": [], "pre_tokenizer": None,
            "model": {"type": "BPE", "vocab": {t: i for i, t in enumerate(tokens)}, "merges": []}}


def write_model_dir(directory: Path, state: dict[str, torch.Tensor] | None = None) -> Path:
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in (state or tiny_state()).items()}, str(directory / "model.safetensors"))
    (directory / "config.json").write_text(json.dumps(tiny_config()))
    (directory / "tokenizer.json").write_text(json.dumps(tiny_tokenizer()))
    return directory


def copy_model_dir(corpus: _Corpus, name: str) -> Path:
    directory = corpus.out / name
    directory.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(corpus.out / "base" / "model", directory)
    return directory


def safetensors_raw(path: Path, header: dict | bytes, data: bytes = b"", header_len: int | None = None) -> Path:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw) if header_len is None else header_len) + raw + data)
    return path


def _f32(begin: int, count: int) -> dict:
    return {"dtype": "F32", "shape": [count], "data_offsets": [begin, begin + 4 * count]}


# --------------------------------------------------------------------------- safetensors


def _safetensors(c: _Corpus) -> None:
    good = c.out / "base" / "model" / "model.safetensors"
    c.valid("safetensors/valid", "control: the unbroken tiny model", c.out / "base" / "model")

    p = safetensors_raw(c.path("st/header_2_63.safetensors"), {"a": _f32(0, 1)}, b"\0" * 4, header_len=2**63)
    c.checkpoint("safetensors/header_length_2_63", "header length field 2^63", p, p, "exceeds the 100000000-byte limit")

    p = safetensors_raw(c.path("st/header_past_end.safetensors"), {"a": _f32(0, 1)}, b"\0" * 4, header_len=5000)
    c.checkpoint("safetensors/header_past_end", "header longer than the file", p, p, "runs past the end")

    p = c.path("st/header_over_cap.safetensors")
    pad = "x" * (100_000_001 - len('{"__metadata__":{"pad":""}}'))
    raw = ('{"__metadata__":{"pad":"' + pad + '"}}').encode()
    assert len(raw) == 100_000_001
    safetensors_raw(p, raw)
    c.checkpoint("safetensors/header_100MB", "a real 100,000,001-byte JSON header, one byte over the cap", p, p,
                 "exceeds the 100000000-byte limit")

    p = safetensors_raw(c.path("st/invalid_json.safetensors"), b'{"a": {"dtype": "F32", ', b"\0" * 4)
    c.checkpoint("safetensors/invalid_json", "header cut in the middle of an object", p, p, "not valid JSON")

    p = safetensors_raw(c.path("st/deep_json.safetensors"), b"[" * 100_000 + b"]" * 100_000)
    c.checkpoint("safetensors/deeply_nested_json", "100,000 nested JSON arrays", p, p, "nested too deeply")

    p = safetensors_raw(c.path("st/offsets_past_end.safetensors"),
                        {"a": {"dtype": "F32", "shape": [1000], "data_offsets": [0, 4000]}}, b"\0" * 16)
    c.checkpoint("safetensors/offsets_past_end", "data_offsets beyond the data section", p, p, "past the 16-byte data section")

    p = safetensors_raw(c.path("st/huge_offset.safetensors"),
                        {"a": {"dtype": "F32", "shape": [1], "data_offsets": [10**30, 10**30 + 4]}}, b"\0" * 4)
    c.checkpoint("safetensors/offset_10_30", "an offset of 10^30 (past any 64-bit size)", p, p, "past the 4-byte data section")

    p = safetensors_raw(c.path("st/overlap.safetensors"), {"a": _f32(0, 4), "b": _f32(8, 4)}, b"\0" * 24)
    c.checkpoint("safetensors/overlapping_offsets", "two tensors sharing bytes", p, p, "overlaps")

    p = safetensors_raw(c.path("st/reversed.safetensors"),
                        {"a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}}, b"\0" * 8)
    c.checkpoint("safetensors/reversed_offsets", "data_offsets [8, 0] (end before begin)", p, p, "not increasing")

    p = safetensors_raw(c.path("st/hole.safetensors"), {"a": _f32(0, 4), "b": _f32(20, 4)}, b"\0" * 36)
    c.checkpoint("safetensors/hole_between_tensors", "4 unclaimed bytes between two tensors", p, p, "hole")

    p = safetensors_raw(c.path("st/dtype_shape.safetensors"),
                        {"a": {"dtype": "F16", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 16)
    c.checkpoint("safetensors/dtype_shape_vs_bytes", "F16 [4] over 16 bytes", p, p, "needs 8 bytes")

    p = safetensors_raw(c.path("st/huge_shape.safetensors"),
                        {"a": {"dtype": "F32", "shape": [2**40, 2**40], "data_offsets": [0, 4]}}, b"\0" * 4)
    c.checkpoint("safetensors/shape_2_80_elements", "shape [2^40, 2^40] over 4 bytes", p, p, "needs")

    entry = json.dumps(_f32(0, 1))
    p = safetensors_raw(c.path("st/duplicate.safetensors"), ('{"w": ' + entry + ', "w": ' + entry + "}").encode(), b"\0" * 4)
    c.checkpoint("safetensors/duplicate_names", "one tensor name twice", p, p, "'w' twice")

    p = safetensors_raw(c.path("st/unknown_dtype.safetensors"),
                        {"a": {"dtype": "Q9_ZZ", "shape": [4], "data_offsets": [0, 4]}}, b"\0" * 4)
    c.checkpoint("safetensors/unknown_dtype", "dtype Q9_ZZ", p, p, "unknown dtype 'Q9_ZZ'")

    p = safetensors_raw(c.path("st/f6.safetensors"), {"a": {"dtype": "F6_E2M3", "shape": [4], "data_offsets": [0, 3]}},
                        b"\0" * 3)
    c.checkpoint("safetensors/dtype_without_torch_type", "F6_E2M3: in the spec, no PyTorch dtype (inspect reads no data)",
                 p, p, "F6_E2M3", inspect_ok=True)

    p = safetensors_raw(c.path("st/metadata.safetensors"), {"__metadata__": {"n": 3}, "a": _f32(0, 1)}, b"\0" * 4)
    c.checkpoint("safetensors/metadata_not_strings", "__metadata__ value 3", p, p, "__metadata__")

    count = (1 << 18) + 1
    header = ",".join(f'"t{i}":{{"dtype":"U8","shape":[1],"data_offsets":[{i},{i + 1}]}}' for i in range(count))
    p = safetensors_raw(c.path("st/too_many_tensors.safetensors"), ("{" + header + "}").encode(), b"\0" * count)
    c.checkpoint("safetensors/262145_tensors", "one tensor more than the per-checkpoint cap", p, p, "more than 262144 tensors")

    data = good.read_bytes()
    p = c.path("st/truncated.safetensors")
    p.write_bytes(data[: len(data) - 1000])
    c.checkpoint("safetensors/truncated", "the tiny model's file without its last 1000 bytes", p, p, "truncated")

    # Valid but unusual: header order differs from data order; zero-sized tensors; NaN/Inf; bool bytes.
    state = tiny_state()
    names = list(state)
    blobs, offsets, begin = [], {}, 0
    for name in names:
        raw = state[name].contiguous().numpy().tobytes()
        offsets[name] = [begin, begin + len(raw)]
        blobs.append(raw)
        begin += len(raw)
    shuffled = {n: {"dtype": "F32", "shape": list(state[n].shape), "data_offsets": offsets[n]} for n in reversed(names)}
    directory = c.directory("st/out_of_order")
    directory.mkdir(exist_ok=True)
    safetensors_raw(directory / "model.safetensors", shuffled, b"".join(blobs))
    (directory / "config.json").write_text(json.dumps(tiny_config()))
    c.valid("safetensors/header_order_not_data_order", "valid: header lists tensors in reverse data order", directory)

    state = tiny_state()
    state["model.layers.0.mlp.up_proj.weight"] = torch.zeros(0, HIDDEN)
    state["model.layers.0.mlp.gate_proj.weight"] = torch.zeros(0, HIDDEN)
    state["model.layers.0.mlp.down_proj.weight"] = torch.zeros(HIDDEN, 0)
    state["extra.empty"] = torch.zeros(3, 0, 2)
    c.valid("safetensors/zero_sized_tensors", "valid: a layer's MLP has width 0, plus an empty 3-D tensor",
            write_model_dir(c.path("st/zero_sized"), state))

    state = tiny_state()
    state["model.layers.0.mlp.up_proj.weight"][3] = float("nan")
    state["model.layers.1.self_attn.q_proj.weight"][0, 0] = float("inf")
    state["model.norm.weight"][2] = float("-inf")
    state["model.layers.1.mlp.down_proj.weight"][:] = float("nan")
    c.valid("safetensors/nan_and_inf", "valid: NaN and +-Inf values, one matrix all NaN (fingerprinted with a note)",
            write_model_dir(c.path("st/nan_inf"), state))

    p = safetensors_raw(c.path("st/bool_bytes/model.safetensors"),
                        {"mask": {"dtype": "BOOL", "shape": [4], "data_offsets": [0, 4]}, **{
                            "model.embed_tokens.weight": {"dtype": "F32", "shape": [VOCAB, HIDDEN],
                                                          "data_offsets": [4, 4 + 4 * VOCAB * HIDDEN]}}},
                        bytes([0, 1, 2, 255]) + tiny_state()["model.embed_tokens.weight"].numpy().tobytes())
    c.add("safetensors/bool_bytes_2_and_255", "valid: BOOL bytes other than 0/1",
          [Run(("inspect", str(p), "--no-hash"), "ok")])


# --------------------------------------------------------------------------- PyTorch pickles and zips


def _payload_classes(sentinel: Path) -> dict[str, type]:
    import builtins
    import os

    command = f"touch {sentinel}"
    code = f"open({str(sentinel)!r}, 'w').close()"

    class OsSystem:
        def __reduce__(self):
            return (os.system, (command,))

    class Exec:
        def __reduce__(self):
            return (builtins.exec, (code,))

    class Eval:
        def __reduce__(self):
            return (builtins.eval, (f"__import__('os').system({command!r})",))

    class Import:  # imports os; a second reduce would call it, so the import alone must already be refused
        def __reduce__(self):
            return (builtins.__import__, ("os",))

    return {"os.system": OsSystem, "builtins.exec": Exec, "builtins.eval": Eval, "builtins.__import__": Import}


def _uni(text: str) -> bytes:
    raw = text.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def _int(value: int) -> bytes:
    if 0 <= value < 256:
        return b"K" + bytes([value])
    if 0 <= value < 65536:
        return b"M" + struct.pack("<H", value)
    raw = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw


def tensor_pickle(storage_numel: int, size: tuple[int, ...], stride: tuple[int, ...], key: str = "0",
                  storage_offset: int = 0, extra_id: bool = False) -> bytes:
    """A protocol-2 pickle of {"w": tensor} as torch.save writes it, with every number chosen by the caller."""
    ints = lambda values: b"(" + b"".join(_int(v) for v in values) + b"t"  # noqa: E731
    persistent = (b"(" + _uni("storage") + b"ctorch\nFloatStorage\n" + _uni(key) + _uni("cpu") + _int(storage_numel)
                  + (b"N" if extra_id else b"") + b"tQ")
    return (b"\x80\x02}" + _uni("w") + b"ctorch._utils\n_rebuild_tensor_v2\n(" + persistent + _int(storage_offset)
            + ints(size) + ints(stride) + b"\x89ccollections\nOrderedDict\n)RtRs.")


def _torch_zip(path: Path, replace: dict[str, bytes] | None = None, add: dict[str, bytes] | None = None,
               compress: set[str] = frozenset()) -> Path:
    """A copy of a genuine torch.save zip of {"w": zeros(4, 4)} with entries replaced, added or deflated."""
    base = path.with_suffix(".base")
    torch.save({"w": torch.zeros(4, 4)}, base)
    with zipfile.ZipFile(base) as source, zipfile.ZipFile(path, "w") as target:
        prefix = source.namelist()[0].split("/", 1)[0]
        for info in source.infolist():
            short = info.filename.split("/", 1)[1]
            data = (replace or {}).get(short, source.read(info.filename))
            target.writestr(zipfile.ZipInfo(info.filename, info.date_time), data,
                            compress_type=zipfile.ZIP_DEFLATED if short in compress else zipfile.ZIP_STORED)
        for name, data in (add or {}).items():
            target.writestr(zipfile.ZipInfo(name if name.startswith("..") else f"{prefix}/{name}"), data)
    base.unlink()
    return path


def _deflated_zeros(total: int, chunk: int = 1 << 20) -> bytes:
    """A raw deflate stream of `total` zero bytes, from one compressed chunk repeated (full flushes are byte-aligned)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(b"\0" * chunk) + compressor.flush(zlib.Z_FULL_FLUSH)
    final = zlib.compressobj(9, zlib.DEFLATED, -15).flush(zlib.Z_FINISH)  # an empty final block
    return block * (total // chunk) + final


def _zip_bomb(path: Path, size: int) -> Path:
    """A torch zip whose data/0 entry is a deflate stream inflating to `size` bytes (zip64; CRC left 0)."""
    pickle_bytes = tensor_pickle(size // 4, (size // 4,), (1,))
    stored = {"archive/data.pkl": pickle_bytes, "archive/byteorder": b"little", "archive/version": b"3\n"}
    compressed = _deflated_zeros(size)
    local, central = bytearray(), bytearray()

    def entry(name: str, data: bytes, method: int, usize: int, crc: int) -> None:
        raw_name = name.encode()
        extra = struct.pack("<HHQQ", 1, 16, usize, len(data))  # zip64: both sizes
        offset = len(local)
        local.extend(struct.pack("<IHHHHHIIIHH", 0x04034B50, 45, 0, method, 0, 0, crc, 0xFFFFFFFF, 0xFFFFFFFF,
                                 len(raw_name), len(extra)) + raw_name + extra + data)
        cextra = struct.pack("<HHQQQ", 1, 24, usize, len(data), offset)
        central.extend(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 45, 45, 0, method, 0, 0, crc, 0xFFFFFFFF,
                                   0xFFFFFFFF, len(raw_name), len(cextra), 0, 0, 0, 0, 0xFFFFFFFF) + raw_name + cextra)

    for name, data in stored.items():
        entry(name, data, 0, len(data), zlib.crc32(data))
    entry("archive/data/0", compressed, 8, size, 0)
    count, cd_offset = len(stored) + 1, len(local)
    tail = struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, count, count, len(central), cd_offset)
    locator = struct.pack("<IIQI", 0x07064B50, 0, cd_offset + len(central), 1)
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    path.write_bytes(bytes(local) + bytes(central) + tail + locator + end)
    return path


def _legacy_with_numel(path: Path, numel: int) -> Path:
    """A legacy (non-zip) torch file whose storage declares `numel` elements (the data holds 16)."""
    import io
    import pickletools

    base = path.with_suffix(".base")
    torch.save({"w": torch.zeros(4, 4)}, base, _use_new_zipfile_serialization=False)
    data = base.read_bytes()
    base.unlink()
    stream = io.BytesIO(data)
    bounds = []
    for _ in range(4):  # magic, protocol, sys info, then the object pickle
        start = stream.tell()
        ops = list(pickletools.genops(stream))
        bounds.append((start, stream.tell(), ops))
    start, end, ops = bounds[3]
    (position,) = [pos for op, arg, pos in ops if op.name == "BININT1" and arg == 16]
    patched = data[start:position] + _int(numel) + data[position + 2:end]
    path.write_bytes(data[:start] + patched + data[end:])
    return path


def _pytorch(c: _Corpus) -> None:
    import pickle

    directory = c.directory("pt/valid")
    torch.save(tiny_state(), directory / "pytorch_model.bin")
    (directory / "config.json").write_text(json.dumps(tiny_config()))
    c.valid("pytorch/valid", "control: the tiny model as a zip-format pytorch_model.bin", directory)

    directory = c.directory("pt/legacy_benign")
    torch.save(tiny_state(), directory / "pytorch_model.bin", _use_new_zipfile_serialization=False)
    (directory / "config.json").write_text(json.dumps(tiny_config()))
    c.valid("pytorch/legacy_benign", "valid: legacy (non-zip) format, loaded whole with a note", directory)

    for culprit, cls in _payload_classes(c.sentinel("pickles")).items():
        stem = culprit.replace(".", "_")
        zipped = c.path(f"pt/zip_{stem}.bin")
        torch.save({"model.embed_tokens.weight": torch.zeros(4, 2), "payload": cls()}, zipped)
        c.checkpoint(f"pytorch/reduce_{stem}", f"__reduce__ calling {culprit}, inside a torch zip", zipped, zipped,
                     culprit, forbidden=[c.sentinel("pickles")])
        legacy = c.path(f"pt/legacy_{stem}.bin")
        torch.save({"w": torch.zeros(2), "payload": cls()}, legacy, _use_new_zipfile_serialization=False)
        c.checkpoint(f"pytorch/legacy_reduce_{stem}", f"__reduce__ calling {culprit}, legacy format", legacy, legacy,
                     culprit, forbidden=[c.sentinel("pickles")])
        plain = c.path(f"pt/plain_{stem}.pt")
        plain.write_bytes(pickle.dumps({"weight": cls()}, protocol=2))
        c.checkpoint(f"pytorch/plain_pickle_{stem}", f"a bare pickle whose __reduce__ calls {culprit}", plain, plain,
                     "refused", forbidden=[c.sentinel("pickles")])

    p = _zip_bomb(c.path("pt/zip_bomb.bin"), 6 << 30)
    c.checkpoint("pytorch/zip_bomb_6GiB", f"data/0 is a {p.stat().st_size // 1024} KiB deflate stream inflating to 6 GiB",
                 p, p, "compressed")

    p = _torch_zip(c.path("pt/deflated_pickle.bin"), compress={"data.pkl"})
    c.checkpoint("pytorch/deflated_pickle", "data.pkl deflate-compressed (torch would mmap compressed bytes)", p, p,
                 "compressed")

    p = _torch_zip(c.path("pt/claims_2GiB.bin"))
    raw = bytearray(p.read_bytes())
    index = raw.find(b"PK\x01\x02")  # central directory records: patch data/0's sizes to 2 GiB
    while not raw[index + 46:index + 46 + struct.unpack_from("<H", raw, index + 28)[0]].endswith(b"/data/0"):
        index = raw.find(b"PK\x01\x02", index + 4)
    struct.pack_into("<II", raw, index + 20, 0x7FFFFFFF, 0x7FFFFFFF)
    p.write_bytes(bytes(raw))
    c.checkpoint("pytorch/zip_entry_claims_2GiB", "data/0's directory record claims 2 GiB in a 1 KB file", p, p,
                 "claims 2147483647 bytes")

    escape = c.out.parent / "escaped_by_zip_entry"
    p = _torch_zip(c.path("pt/path_escape.bin"), add={"../../escaped_by_zip_entry": b"owned"})
    c.checkpoint("pytorch/zip_path_escape", "an entry named ../../escaped_by_zip_entry", p, p, "not in a subdirectory",
                 forbidden=[escape])

    p = _torch_zip(c.path("pt/stride0.bin"), replace={"data.pkl": tensor_pickle(16, (2**20, 2**20), (0, 0))})
    c.checkpoint("pytorch/stride0_view_4TiB", "a [2^20, 2^20] float tensor with strides (0, 0) over 64 bytes", p, p,
                 "overlapping strides")

    p = _torch_zip(c.path("pt/shape_past_storage.bin"), replace={"data.pkl": tensor_pickle(16, (4096, 4096), (4096, 1))})
    c.checkpoint("pytorch/shape_past_storage", "a [4096, 4096] tensor over a 16-element storage", p, p,
                 "not a readable PyTorch")

    p = _legacy_with_numel(c.path("pt/legacy_storage_64GiB.bin"), 1 << 34)
    c.checkpoint("pytorch/legacy_storage_claims_64GiB", "legacy file whose storage declares 2^34 floats", p, p,
                 "not a readable PyTorch")

    p = c.path("pt/big_pickle.bin")
    torch.save({"w": torch.zeros(2), "pad": "x" * (16 * 1024 * 1024)}, p)
    c.checkpoint("pytorch/pickle_over_16MiB", "data.pkl of 16 MiB + ~100 bytes (a padding string)", p, p,
                 "over the 16777216-byte limit")

    p = c.path("pt/truncated.bin")
    torch.save(tiny_state(), p)
    p.write_bytes(p.read_bytes()[:20_000])
    c.checkpoint("pytorch/truncated_zip", "the tiny model's zip cut at 20,000 bytes", p, p, "directory")

    p = c.path("pt/garbage.bin")
    p.write_bytes(bytes(range(256)) * 64)
    c.checkpoint("pytorch/garbage", "16 KB of bytes 0..255", p, p, "not a readable PyTorch")


# --------------------------------------------------------------------------- GGUF


def _gstr(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(raw)) + raw


def _kv(key: str, kind: str, value) -> bytes:
    codes = {"str": 8, "u32": 4, "f32": 6, "arr_str": 9, "arr_i32": 9, "arr_u8": 9}
    head = _gstr(key) + struct.pack("<I", codes[kind])
    if kind == "str":
        return head + _gstr(value)
    if kind == "u32":
        return head + struct.pack("<I", value)
    if kind == "f32":
        return head + struct.pack("<f", value)
    if kind == "arr_str":
        return head + struct.pack("<IQ", 8, len(value)) + b"".join(_gstr(v) for v in value)
    if kind == "arr_u8":
        return head + struct.pack("<IQ", 0, len(value)) + bytes(value)
    return head + struct.pack("<IQ", 5, len(value)) + b"".join(struct.pack("<i", v) for v in value)


def gguf_bytes(kvs: list[bytes] | None = None, tensors: list[tuple[str, np.ndarray]] | None = None, *,
               version: int = 3, tensor_count: int | None = None, kv_count: int | None = None, alignment: int = 32,
               offset_shift: int = 0, magic: bytes = b"GGUF", ggml_type: int = 0) -> bytes:
    """A GGUF file written by hand (F32 tensors), so that every count and offset can be set to anything."""
    kvs = _gguf_llama_kvs() if kvs is None else kvs
    tensors = _gguf_llama_tensors() if tensors is None else tensors
    infos, blobs, offset = b"", [], 0
    for index, (name, values) in enumerate(tensors):
        dims = list(reversed(values.shape))  # ggml order: innermost first
        shift = offset_shift if index == len(tensors) - 1 else 0
        infos += _gstr(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        infos += struct.pack("<IQ", ggml_type, offset + shift)
        raw = values.astype("<f4").tobytes()
        blobs.append(raw + b"\0" * (-len(raw) % alignment))
        offset += len(blobs[-1])
    head = magic + struct.pack("<IQQ", version, len(tensors) if tensor_count is None else tensor_count,
                               len(kvs) if kv_count is None else kv_count)
    body = head + b"".join(kvs) + infos
    return body + b"\0" * (-len(body) % alignment) + b"".join(blobs)


def _gguf_llama_kvs() -> list[bytes]:
    return [_kv("general.architecture", "str", "llama"), _kv("general.name", "str", "attack-corpus-tiny"),
            _kv("llama.block_count", "u32", LAYERS), _kv("llama.embedding_length", "u32", HIDDEN),
            _kv("llama.feed_forward_length", "u32", INTER), _kv("llama.attention.head_count", "u32", HEADS),
            _kv("llama.attention.head_count_kv", "u32", KV_HEADS), _kv("llama.context_length", "u32", 128),
            _kv("llama.attention.layer_norm_rms_epsilon", "f32", 1e-6),
            _kv("tokenizer.ggml.model", "str", "gpt2"),
            _kv("tokenizer.ggml.tokens", "arr_str", [f"tok{i}" for i in range(VOCAB)]),
            _kv("tokenizer.ggml.token_type", "arr_i32", [1] * VOCAB)]


def _gguf_llama_tensors() -> list[tuple[str, np.ndarray]]:
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    layer_names = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
                   "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
                   "post_attention_layernorm": "ffn_norm", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
                   "mlp.down_proj": "ffn_down"}
    for layer in range(LAYERS):
        for hf, short in layer_names.items():
            names[f"model.layers.{layer}.{hf}.weight"] = f"blk.{layer}.{short}.weight"
    state = tiny_state()
    return [(names[k], v.numpy()) for k, v in state.items()]


def _gguf(c: _Corpus) -> None:
    def write(name: str, data: bytes) -> Path:
        path = c.path(f"gguf/{name}.gguf")
        path.write_bytes(data)
        return path

    good = gguf_bytes()
    p = write("valid", good)
    c.valid("gguf/valid", "control: the tiny model as a hand-written F32 GGUF", p)

    p = write("bad_magic", b"GGUX" + good[4:])
    c.checkpoint("gguf/bad_magic", "magic GGUX", p, p, "not a GGUF file")
    p = write("version_99", gguf_bytes(version=99))
    c.checkpoint("gguf/unsupported_version", "version 99", p, p, "version 99 is not supported")
    p = write("version_1", gguf_bytes(version=1))
    c.checkpoint("gguf/version_1", "version 1 (32-bit counts, unsupported)", p, p, "version 1 is not supported")
    p = write("alignment_7", gguf_bytes(kvs=_gguf_llama_kvs() + [_kv("general.alignment", "u32", 7)]))
    c.checkpoint("gguf/alignment_not_power_of_two", "general.alignment = 7", p, p, "not a power of two")
    p = write("misaligned", gguf_bytes(offset_shift=4))
    c.checkpoint("gguf/misaligned_tensor_data", "last tensor's data offset moved by 4 bytes", p, p, "aligned to 32 bytes")
    p = write("tensor_count_2_60", gguf_bytes(tensor_count=1 << 60))
    c.checkpoint("gguf/tensor_count_2_60", "tensor count 2^60", p, p, f"declares {1 << 60} tensors")
    p = write("kv_count_2_60", gguf_bytes(kv_count=1 << 60))
    c.checkpoint("gguf/kv_count_2_60", "key/value count 2^60", p, p, f"declares {1 << 60} metadata keys")
    p = write("kv_count_plus_one", gguf_bytes(kv_count=len(_gguf_llama_kvs()) + 1))
    c.checkpoint("gguf/kv_count_one_too_many", "one key more than the file holds: tensor infos read as a key",
                 p, p, "past the end")
    long_name = _gstr("general.name") + struct.pack("<I", 8) + struct.pack("<Q", 1 << 40) + b"attack"
    p = write("string_past_end", gguf_bytes(kvs=_gguf_llama_kvs()[:1] + [long_name], tensors=[]))
    c.checkpoint("gguf/string_length_2_40", "a value string claiming 2^40 bytes", p, p, "past the end")
    huge_array = _gstr("tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, 8, 1 << 60)
    p = write("array_2_60", gguf_bytes(kvs=_gguf_llama_kvs()[:1] + [huge_array], tensors=[]))
    c.checkpoint("gguf/array_length_2_60", "a string array claiming 2^60 elements", p, p, "over the 4194304-element limit")
    p = write("uint8_array_1M", gguf_bytes(kvs=_gguf_llama_kvs() + [_kv("attack.bytes", "arr_u8", [7] * 1_000_000)]))
    c.add("gguf/uint8_array_1M", "valid: a 1,000,000-element uint8 array (36 s and 600 MB in gguf's own reader)",
          [Run(("inspect", str(p), "--no-hash"), "ok")])
    nested = _gstr("attack.nested") + struct.pack("<IIQ", 9, 9, 1) + struct.pack("<IQ", 5, 1) + struct.pack("<i", 1)
    p = write("nested_array", gguf_bytes(kvs=_gguf_llama_kvs() + [nested]))
    c.checkpoint("gguf/nested_array", "an array of arrays", p, p, "nested arrays are not supported")
    p = write("duplicate_key", gguf_bytes(kvs=_gguf_llama_kvs() + [_kv("general.name", "str", "again")]))
    c.checkpoint("gguf/duplicate_key", "general.name twice", p, p, "appears twice")
    p = write("unknown_type", gguf_bytes(ggml_type=200))
    c.checkpoint("gguf/unknown_ggml_type", "tensor type 200", p, p, "ggml type 200")
    p = write("truncated", good[: len(good) - 2000])
    c.checkpoint("gguf/truncated", "the valid file without its last 2000 bytes", p, p, "past the end")
    p = write("header_only", good[:300])
    c.checkpoint("gguf/cut_in_metadata", "the first 300 bytes", p, p, "past the end")
    p = write("empty", b"")
    c.checkpoint("gguf/empty", "an empty .gguf file", p, p, "not a GGUF file")
    five_dims = [("x", np.zeros((1, 1, 1, 1, 2), dtype=np.float32))]
    p = write("five_dims", gguf_bytes(tensors=five_dims))
    c.checkpoint("gguf/five_dimensions", "a tensor with 5 dimensions (GGML has 4)", p, p, "5 dimensions")
    p = write("bad_utf8_key", gguf_bytes(kvs=_gguf_llama_kvs() + [_gstr(b"\xff\xfe") + struct.pack("<I", 4) + b"\0" * 4]))
    c.checkpoint("gguf/key_not_utf8", "a key of bytes ff fe", p, p, "not UTF-8")


# --------------------------------------------------------------------------- directories and side files


def _sparse(path: Path, start: bytes, size: int) -> None:
    with open(path, "wb") as handle:
        handle.write(start)
        handle.truncate(size)


def _sharded(c: _Corpus, name: str) -> Path:
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


def _directories(c: _Corpus) -> None:
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


# --------------------------------------------------------------------------- fingerprint files and databases


def _fingerprints(c: _Corpus) -> None:
    from safetensors.numpy import load_file, save_file

    good = c.good_fingerprint
    arrays = load_file(str(good))
    from ..formats.safetensors_format import read_safetensors_header

    meta = json.loads(read_safetensors_header(good)[1]["provenance"])

    def write(name: str, meta_text: str | None, new_arrays: dict | None = None) -> Path:
        path = c.path(f"fp/{name}.fp.safetensors")
        save_file(arrays if new_arrays is None else new_arrays, str(path),
                  metadata=None if meta_text is None else {"provenance": meta_text})
        return path

    def runs(bad: Path, fragment: str) -> list[Run]:
        return [Run(("compare", str(bad), str(good)), "error", str(bad), fragment),
                Run(("compare", str(good), str(bad)), "error", str(bad), fragment),
                Run(("audit", str(bad), "--refs", str(c.good_db), "--no-builtin"), "error", str(bad), fragment)]

    c.add("fingerprint/valid", "control: the tiny model's fingerprint against itself and the database",
          [Run(("compare", str(good), str(good)), "ok"),
           Run(("audit", str(good), "--refs", str(c.good_db), "--no-builtin"), "ok")])

    p = c.path("fp/garbage.fp.safetensors")
    p.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    c.add("fingerprint/garbage", "4 KB of random bytes", runs(p, "header length"))

    p = c.path("fp/truncated.fp.safetensors")
    p.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    c.add("fingerprint/truncated", "the good fingerprint cut in half", runs(p, "truncated"))

    from ..fingerprint.store import SCHEMA_VERSION

    future = f"provenance.fingerprint/{SCHEMA_VERSION + 1}"
    p = write("future", json.dumps({**meta, "schema": future}))
    c.add("fingerprint/future_schema", f"schema {future}", runs(p, "newer than this tool reads"))

    p = write("bad_json", '{"schema": "provenance.fingerprint/1", ')
    c.add("fingerprint/metadata_not_json", "metadata JSON cut short", runs(p, "not valid JSON"))

    p = write("deep_json", "[" * 100_000 + "]" * 100_000)
    c.add("fingerprint/metadata_nested_100000", "metadata of 100,000 nested arrays", runs(p, "nested too deeply"))

    p = write("no_tensors", json.dumps({k: v for k, v in meta.items() if k != "tensors"}))
    c.add("fingerprint/missing_section", "metadata without its tensors", runs(p, "lacks its 'tensors' section"))

    p = write("layers_10_12", json.dumps({**meta, "architecture": {**meta["architecture"], "num_layers": 10**12}}))
    c.add("fingerprint/num_layers_10_12", "architecture claims 10^12 layers (the comparison loops over layers)",
          runs(p, "num_layers"))

    bad_meta = json.loads(json.dumps(meta))
    first = next(iter(bad_meta["tensors"]))
    bad_meta["tensors"][first]["shape"] = "big"
    p = write("shape_string", json.dumps(bad_meta))
    c.add("fingerprint/tensor_shape_not_list", "a tensor record with shape \"big\"", runs(p, "has shape 'big'"))

    key = next(k for k in arrays if k.startswith("sketch/") and arrays[k].size > 10)
    p = write("short_sketch", json.dumps(meta), {**arrays, key: arrays[key][:10]})
    c.add("fingerprint/sketch_length_mismatch", "a sketch array of 10 values", runs(p, "sketch positions"))

    p = write("int_array", json.dumps(meta), {**arrays, key: arrays[key].astype(np.int32)})
    c.add("fingerprint/array_int32", "a sketch array stored as int32", runs(p, "expected F16, F32 or F64"))

    p = write("no_metadata", None)
    c.add("fingerprint/plain_safetensors", "valid: arrays without provenance metadata, read as an odd checkpoint",
          [Run(("compare", str(p), str(good)), "ok")])

    p = write("metadata_over_cap", json.dumps({**meta, "pad": "x" * (16 * 1024 * 1024)}))
    c.add("fingerprint/metadata_over_16MiB", "16 MiB of metadata", runs(p, "over the 16777216 limit"))


def _databases(c: _Corpus) -> None:
    good = c.good_fingerprint

    def runs(db: Path, fragment: str) -> list[Run]:
        return [Run(("audit", str(good), "--refs", str(db), "--no-builtin"), "error", str(db), fragment),
                Run(("refs", "--refs", str(db), "list"), "error", str(db), fragment)]

    p = c.path("db/garbage.sqlite")
    p.write_bytes(np.random.default_rng(1).integers(0, 256, 8192, dtype=np.uint8).tobytes())
    c.add("database/garbage", "8 KB of random bytes", runs(p, "not a usable reference database"))

    p = c.path("db/future.sqlite")
    shutil.copy(c.good_db, p)
    with sqlite3.connect(p) as db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    c.add("database/future_schema", "schema_version 99", runs(p, "newer than this tool reads"))

    p = c.path("db/truncated.sqlite")
    raw = c.good_db.read_bytes()
    p.write_bytes(raw[: len(raw) // 2])
    c.add("database/truncated", "the good database cut in half", runs(p, "malformed"))

    p = c.path("db/bad_blob.sqlite")
    shutil.copy(c.good_db, p)
    with sqlite3.connect(p) as db:
        db.execute("UPDATE refs SET fingerprint = ?", (b"\x00" * 64,))
    c.add("database/corrupt_fingerprint_blob", "a reference whose stored fingerprint is 64 zero bytes",
          [Run(("audit", str(good), "--refs", str(p), "--no-builtin"), "error", str(p), "tiny-llama")])

    p = c.path("db/bad_columns.sqlite")
    with sqlite3.connect(p) as db:
        db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        db.execute("INSERT INTO meta VALUES ('schema_version', '1'), ('revision', '0')")
        db.execute("CREATE TABLE refs (name TEXT PRIMARY KEY)")
        db.execute("INSERT INTO refs VALUES ('x')")
    c.add("database/wrong_table_layout", "a refs table with only a name column", runs(p, "not a usable reference database"))


# --------------------------------------------------------------------------- running the corpus

# Runs many command lines through `provenance.cli.main` in one fresh interpreter (torch is
# imported once), each with file descriptors 1 and 2 captured, so that anything written to the
# real stderr (a warning, a C library message) counts as it would in a fresh process. Each run
# has an alarm; peak RSS is reset before and read after each run (Linux /proc).
_DRIVER = r"""
import json, os, sys, tempfile, time, warnings, signal
from provenance.cli import main

class RunTimeout(BaseException):
    pass

def on_alarm(signum, frame):
    raise RunTimeout()

def status(key):
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0

signal.signal(signal.SIGALRM, on_alarm)
timeout = int(sys.argv[1])
warnings.simplefilter("always")  # stricter than a fresh process: every warning is shown every time
for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
    warnings.simplefilter("ignore", category)
runs = json.loads(sys.stdin.read())
results = []
real_out, real_err = os.dup(1), os.dup(2)
for argv in runs:
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        sys.stdout.flush(); sys.stderr.flush()
        os.dup2(out.fileno(), 1); os.dup2(err.fileno(), 2)
        try:
            with open("/proc/self/clear_refs", "w") as handle:
                handle.write("5")
        except OSError:
            pass
        base = status("VmRSS")
        start = time.perf_counter()
        signal.alarm(timeout)
        try:
            code = main(argv)
        except BaseException as exc:
            code = f"main raised {type(exc).__name__}: {exc}"
        finally:
            signal.alarm(0)
        seconds = time.perf_counter() - start
        sys.stdout.flush(); sys.stderr.flush()
        os.dup2(real_out, 1); os.dup2(real_err, 2)
        out.seek(0); err.seek(0)
        results.append({"code": code, "stdout": out.read(), "stderr": err.read(), "seconds": seconds,
                        "peak_rss_growth": status("VmHWM") - base})
print(json.dumps(results))
"""


def limit_address_space(limit: int) -> Callable[[], None]:
    """A preexec_fn for subprocess: cap the child's address space (a huge allocation then fails, not the machine)."""
    def apply() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    return apply


def run_batch(argvs: list[list[str]], memory_limit: int | None = 4 << 30, per_run_timeout: int = 60,
              cwd: str | Path | None = None) -> list[dict]:
    """Each command line through `provenance.cli.main` in one fresh interpreter under RLIMIT_AS and a per-run alarm.

    Returns, per run: code, stdout, stderr, seconds, peak_rss_growth (bytes over the RSS before the run).
    """
    import os
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "PROVENANCE_DEBUG"}
    result = subprocess.run([sys.executable, "-c", _DRIVER, str(per_run_timeout)], input=json.dumps(argvs),
                            capture_output=True, text=True, cwd=cwd, env=env,
                            timeout=per_run_timeout * len(argvs) + 120,
                            preexec_fn=limit_address_space(memory_limit) if memory_limit else None)
    if result.returncode != 0:
        raise RuntimeError(f"the batch driver died (exit {result.returncode}): {result.stderr[-3000:]}")
    return json.loads(result.stdout)


def check_run(run: Run, result: dict) -> str | None:
    """What is wrong with one run's outcome, or None."""
    code, err, out = result["code"], result["stderr"], result["stdout"]
    lines = err.strip().splitlines()
    if run.expect == "ok":
        if code != 0:
            return f"exit {code}, expected 0: {err.strip()[:300]}"
        if any("Warning" in line or "Traceback" in line for line in lines):
            return f"succeeded but printed warnings: {err.strip()[:300]}"
        return None
    if code != 1:
        return f"exit {code}, expected 1: {err.strip()[:300]}"
    if len(lines) != 1:
        return f"{len(lines)} stderr lines, expected 1: {err.strip()[:500]}"
    line = lines[0]
    if not line.startswith("provenance: error: ") or "unexpected" in line or "Traceback" in err:
        return f"not a clean one-line error: {line[:300]}"
    if run.names not in line:
        return f"does not name {run.names}: {line[:300]}"
    if run.fragment not in line:
        return f"does not say {run.fragment!r}: {line[:300]}"
    if out:
        return f"printed to stdout on error: {out[:200]}"
    return None


def check_cases(cases: list[Case], results: list[dict]) -> dict[str, list[str]]:
    """Problems per case name (empty when every run behaved and no forbidden path exists)."""
    problems: dict[str, list[str]] = {}
    index = 0
    for case in cases:
        for run in case.runs:
            problem = check_run(run, results[index])
            index += 1
            if problem:
                problems.setdefault(case.name, []).append(f"{run.argv[0]}: {problem}")
        for path in case.forbidden:
            if Path(path).exists():
                problems.setdefault(case.name, []).append(f"{path} exists")
    return problems


GROUPS: dict[str, Callable[[_Corpus], None]] = {
    "safetensors": _safetensors, "pytorch": _pytorch, "gguf": _gguf, "dir": _directories,
    "fingerprint": _fingerprints, "database": _databases,
}


def generate(out: str | Path, groups: list[str] | None = None) -> list[Case]:
    """Write the corpus (the named groups, default all) under `out` and return its cases."""
    corpus = _Corpus(Path(out).resolve())
    corpus.out.mkdir(parents=True, exist_ok=True)
    (corpus.out / "sentinels").mkdir(exist_ok=True)
    write_model_dir(corpus.out / "base" / "model")
    for name in groups or list(GROUPS):
        GROUPS[name](corpus)
    return corpus.cases


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="directory to write the corpus into")
    parser.add_argument("--groups", default=",".join(GROUPS), help=f"comma-separated subset of {','.join(GROUPS)}")
    parser.add_argument("--run", action="store_true", help="also run every command line (4 GiB address-space "
                        "limit, 60 s per run) and print exit code, seconds and peak RSS growth")
    args = parser.parse_args(argv)
    cases = generate(args.out, [g for g in args.groups.split(",") if g])
    results = iter(run_batch([list(r.argv) for c in cases for r in c.runs])) if args.run else None
    problems = 0
    for case in cases:
        print(f"{case.name:<48} {case.description}")
        for run in case.runs:
            line = f"    provenance {' '.join(run.argv)}  -> {run.expect}"
            if results is not None:
                result = next(results)
                problem = check_run(run, result)
                problems += problem is not None
                line += (f"  [exit {result['code']}, {result['seconds']:.2f} s, +{result['peak_rss_growth'] >> 20} MiB"
                         f"{', PROBLEM: ' + problem if problem else ''}]")
            print(line)
    print(f"{len(cases)} cases, {sum(len(c.runs) for c in cases)} command lines, in {args.out}"
          + (f"; {problems} runs misbehaved" if results is not None else ""), file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
