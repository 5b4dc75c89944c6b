"""Fuzzing of every header parser with hypothesis: safetensors, GGUF (through our reader wrapper), fingerprint files.

Each target takes the bytes of one file, writes them to a scratch directory
and parses them the way the command line does (headers, then every tensor,
then, for checkpoints, `Checkpoint.open`'s architecture mapping). A
`ProvenanceError` is the correct answer to a broken file; any other
exception is a bug, recorded with the input that caused it.

Inputs are drawn by hypothesis strategies of two kinds:

- mutations of a valid seed file: bit flips, truncations, overwritten bytes,
  inserted or deleted bytes, and integer fields (length prefixes, counts,
  dimensions, offsets; located by walking the seed) set to interesting or
  random 64-bit values;
- structured random files: a random safetensors header (random JSON, or
  entries with random dtypes, shapes and offsets) under a random length
  prefix; a GGUF with random keys, value types, counts, dimensions, tensor
  types and offsets; a fingerprint whose metadata has a random value
  replaced or removed, or whose arrays are dropped, cut or retyped.

bench/fuzz.py runs 100,000+ inputs; tests/test_fuzz.py a few hundred.
"""

from __future__ import annotations

import json
import re
import struct
import tempfile
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from provenance.errors import ProvenanceError

INTERESTING = [0, 1, 2, 7, 8, 31, 32, 255, 256, 4095, 4096, 65535, 65536, 2**31 - 1, 2**31, 2**32 - 1, 2**32,
               2**40, 2**53, 2**60, 2**62, 2**63 - 1, 2**63, 2**64 - 1]
ST_DTYPES = ["BOOL", "U8", "I8", "F8_E4M3", "F8_E5M2", "F8_E8M0", "I16", "U16", "F16", "BF16", "I32", "U32", "F32",
             "I64", "U64", "F64", "F4", "F6_E2M3", "F6_E3M2", "Q4_0", ""]


# --------------------------------------------------------------------------- seeds


@dataclass(repr=False)
class Seeds:
    directory: Path
    safetensors: bytes
    safetensors_fields: list[tuple[int, int]]  # (offset, width) of integer fields
    safetensors_numbers: list[tuple[int, int]]  # (start, end) of number tokens in the JSON header
    gguf: bytes
    gguf_fields: list[tuple[int, int]]
    fingerprint: bytes
    fingerprint_meta: dict
    fingerprint_arrays: dict[str, np.ndarray]

    def __repr__(self) -> str:  # hypothesis prints strategies' arguments: keep it short
        return f"Seeds({self.directory})"


def make_seeds(directory: Path) -> Seeds:
    """Small valid files of each kind (a tiny LLaMA, every safetensors dtype edge, a GGUF, its fingerprint)."""
    from safetensors.numpy import load_file
    from safetensors.torch import save

    from provenance.fingerprint import build_fingerprint
    from provenance.formats.safetensors_format import read_safetensors_header
    from provenance.model import Checkpoint
    from .attack_corpus import tiny_state, write_model_dir

    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v for k, v in tiny_state().items() if "layers.1." not in k}
    small = {"model.embed_tokens.weight": state["model.embed_tokens.weight"][:8],
             "model.norm.weight": state["model.norm.weight"],
             "model.layers.0.self_attn.q_proj.weight": state["model.layers.0.self_attn.q_proj.weight"][:4],
             "b16": torch.arange(6, dtype=torch.bfloat16).reshape(2, 3), "h": torch.ones(3, dtype=torch.float16),
             "i": torch.tensor([1, -2], dtype=torch.int64), "m": torch.tensor([True, False]), "s": torch.tensor(2.5),
             "z": torch.zeros(0, 4)}
    safetensors = save(small, metadata={"format": "pt"})
    header_len = struct.unpack_from("<Q", safetensors)[0]
    numbers = [(m.start() + 8, m.end() + 8) for m in re.finditer(rb"-?\d+", safetensors[8:8 + header_len])]

    gguf = tiny_gguf()
    model = write_model_dir(directory / "model")
    with Checkpoint.open(model) as checkpoint:
        fingerprint_path = build_fingerprint(checkpoint).save(directory / "seed.fp.safetensors")
    meta = json.loads(read_safetensors_header(fingerprint_path)[1]["provenance"])
    return Seeds(directory, safetensors, [(0, 8)], numbers, gguf, gguf_integer_fields(gguf),
                 fingerprint_path.read_bytes(), meta, load_file(str(fingerprint_path)))


def tiny_gguf() -> bytes:
    """A complete one-layer LLaMA GGUF with hidden size 8 (2.5 KB): small enough to mutate quickly."""
    from .attack_corpus import gguf_bytes, kv

    rng = np.random.default_rng(0)
    kvs = [kv("general.architecture", "str", "llama"), kv("llama.block_count", "u32", 1),
           kv("llama.embedding_length", "u32", 8), kv("llama.feed_forward_length", "u32", 8),
           kv("llama.attention.head_count", "u32", 2), kv("llama.attention.head_count_kv", "u32", 1),
           kv("tokenizer.ggml.tokens", "arr_str", [f"t{i}" for i in range(8)]),
           kv("tokenizer.ggml.token_type", "arr_i32", [1] * 8)]
    shapes = {"token_embd.weight": (8, 8), "output_norm.weight": (8,), "output.weight": (8, 8),
              "blk.0.attn_norm.weight": (8,), "blk.0.attn_q.weight": (8, 8), "blk.0.attn_k.weight": (4, 8),
              "blk.0.attn_v.weight": (4, 8), "blk.0.attn_output.weight": (8, 8), "blk.0.ffn_norm.weight": (8,),
              "blk.0.ffn_gate.weight": (8, 8), "blk.0.ffn_up.weight": (8, 8), "blk.0.ffn_down.weight": (8, 8)}
    return gguf_bytes(kvs=kvs, tensors=[(n, rng.standard_normal(shape).astype(np.float32)) for n, shape in shapes.items()])


def gguf_integer_fields(data: bytes) -> list[tuple[int, int]]:
    """(offset, width) of every count, length, type, dimension and offset in a valid GGUF."""
    fields = [(4, 4), (8, 8), (16, 8)]
    tensors, kvs = struct.unpack_from("<QQ", data, 8)
    pos = 24

    def string() -> None:
        nonlocal pos
        fields.append((pos, 8))
        pos += 8 + struct.unpack_from("<Q", data, pos)[0]

    sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
    for _ in range(kvs):
        string()
        fields.append((pos, 4))
        kind = struct.unpack_from("<I", data, pos)[0]
        pos += 4
        if kind == 8:
            string()
        elif kind == 9:
            fields.extend([(pos, 4), (pos + 4, 8)])
            item, count = struct.unpack_from("<IQ", data, pos)
            pos += 12
            for _ in range(count):
                if item == 8:
                    string()
                else:
                    fields.append((pos, sizes[item]))
                    pos += sizes[item]
        else:
            fields.append((pos, sizes[kind]))
            pos += sizes[kind]
    for _ in range(tensors):
        string()
        n_dims = struct.unpack_from("<I", data, pos)[0]
        fields.append((pos, 4))
        pos += 4
        fields.extend((pos + 8 * i, 8) for i in range(n_dims))
        pos += 8 * n_dims
        fields.extend([(pos, 4), (pos + 4, 8)])
        pos += 12
    return fields


# --------------------------------------------------------------------------- strategies


def _apply(seed: bytes, ops: list[tuple]) -> bytes:
    data = bytearray(seed)
    for op in ops:
        kind = op[0]
        if not data:
            break
        if kind == "flip":
            bit = op[1] % (len(data) * 8)
            data[bit // 8] ^= 1 << (bit % 8)
        elif kind == "truncate":
            del data[op[1] % len(data):]
        elif kind == "overwrite":
            at = op[1] % len(data)
            data[at:at + len(op[2])] = op[2]
        elif kind == "insert":
            at = op[1] % (len(data) + 1)
            data[at:at] = op[2]
        elif kind == "delete":
            at = op[1] % len(data)
            del data[at:at + op[2]]
        elif kind == "field":
            offset, width = op[1]
            value = op[2] % (1 << (8 * width))
            if offset + width <= len(data):
                data[offset:offset + width] = value.to_bytes(width, "little")
        elif kind == "number":
            (start, end), value = op[1], op[2]
            if end <= len(data):
                data[start:end] = str(value).encode()
    return bytes(data)


def mutations(seed: bytes, fields: list[tuple[int, int]], numbers: list[tuple[int, int]] | None = None):
    """Mutations of `seed`: 1-4 operations of bit flips, cuts, overwrites, inserts, deletes and integer fields."""
    position = st.integers(0, 1 << 30)
    value = st.sampled_from(INTERESTING) | st.integers(0, 2**64 - 1) | st.sampled_from([len(seed) + d for d in range(-9, 9)])
    ops = [st.tuples(st.just("flip"), position), st.tuples(st.just("truncate"), position),
           st.tuples(st.just("overwrite"), position, st.binary(min_size=1, max_size=16)),
           st.tuples(st.just("insert"), position, st.binary(min_size=1, max_size=64)),
           st.tuples(st.just("delete"), position, st.integers(1, 64)),
           st.tuples(st.just("field"), st.sampled_from(fields), value)]
    if numbers:
        ops.append(st.tuples(st.just("number"), st.sampled_from(numbers),
                             st.sampled_from(INTERESTING) | st.integers(-2**70, 2**70)))
    return st.lists(st.one_of(*ops), min_size=1, max_size=4).map(lambda chosen: _apply(seed, chosen))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.sampled_from(INTERESTING)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12)


@st.composite
def consistent_safetensors(draw) -> bytes:
    """A valid safetensors file of random tensors (any dtype, shapes with 0s), then maybe one field made odd."""
    sizes = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "F16": 2, "BF16": 2, "I32": 4,
             "U32": 4, "F32": 4, "I64": 8, "F64": 8, "U16": 2, "U64": 8}
    header, begin = {}, 0
    for name in draw(st.lists(st.text(max_size=6), max_size=5, unique=True)):
        dtype = draw(st.sampled_from(sorted(sizes)))
        shape = draw(st.lists(st.integers(0, 4), max_size=3))
        nbytes = int(np.prod(shape)) * sizes[dtype]
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [begin, begin + nbytes]}
        begin += nbytes
    if header and draw(st.booleans()):
        entry = header[draw(st.sampled_from(sorted(header)))]
        key = draw(st.sampled_from(["dtype", "shape", "data_offsets"]))
        entry[key] = draw(json_values | st.lists(st.sampled_from(INTERESTING) | st.integers(-2, 9), max_size=3))
    if draw(st.booleans()):
        header["__metadata__"] = draw(st.dictionaries(st.text(max_size=4), st.text(max_size=4) | json_values, max_size=2))
    try:
        raw = json.dumps(header).encode()
    except ValueError:
        raw = b"{}"
    return struct.pack("<Q", len(raw)) + raw + draw(st.binary(min_size=begin, max_size=begin + draw(st.sampled_from([0, 0, 3]))))


@st.composite
def random_safetensors(draw) -> bytes:
    """A safetensors file with a random header: random JSON, or entries with random dtype/shape/offsets."""
    dimension = st.integers(0, 8) | st.sampled_from(INTERESTING) | st.integers(-3, -1)
    entry = st.fixed_dictionaries({
        "dtype": st.sampled_from(ST_DTYPES) | st.text(max_size=4),
        "shape": st.lists(dimension, max_size=4) | json_values,
        "data_offsets": st.lists(st.integers(0, 64) | st.sampled_from(INTERESTING) | st.integers(-5, -1),
                                 min_size=0, max_size=3) | json_values})
    names = st.text(max_size=6) | st.just("__metadata__")
    header = draw(st.dictionaries(names, entry | json_values, max_size=5) | json_values)
    try:
        raw = json.dumps(header).encode()
    except ValueError:
        raw = b"{}"
    if draw(st.booleans()):
        raw = raw + b" " * draw(st.integers(0, 16))
    data = draw(st.binary(max_size=64))
    length = draw(st.just(len(raw)) | st.sampled_from(INTERESTING) | st.integers(0, len(raw) + 64))
    return struct.pack("<Q", length % 2**64) + raw + data


def _gstr(raw: bytes) -> bytes:
    return struct.pack("<Q", len(raw)) + raw


@st.composite
def random_gguf(draw) -> bytes:
    """A GGUF with random keys, value types, counts, tensor dimensions, types and offsets."""
    count = st.integers(0, 4) | st.sampled_from(INTERESTING)
    kvs = []
    for _ in range(draw(st.integers(0, 5))):
        key = draw(st.sampled_from([b"general.architecture", b"general.alignment", b"llama.block_count",
                                    b"tokenizer.ggml.tokens"]) | st.binary(max_size=8))
        kind = draw(st.integers(0, 13))
        if kind == 8:
            value = _gstr(draw(st.binary(max_size=12)))
        elif kind == 9:
            item = draw(st.integers(0, 13))
            items = draw(st.lists(st.binary(max_size=8), max_size=4))
            body = b"".join(_gstr(i) if item == 8 else i for i in items)
            value = struct.pack("<IQ", item, draw(st.just(len(items)) | count) % 2**64) + body
        else:
            value = draw(st.binary(min_size=0, max_size=8))
        kvs.append(_gstr(key) + struct.pack("<I", kind) + value)
    infos = []
    for _ in range(draw(st.integers(0, 4))):
        dims = draw(st.lists(st.integers(0, 40) | st.sampled_from(INTERESTING), max_size=5))
        infos.append(_gstr(draw(st.binary(max_size=8))) + struct.pack("<I", draw(st.just(len(dims)) | count) % 2**32)
                     + b"".join(struct.pack("<Q", d % 2**64) for d in dims)
                     + struct.pack("<IQ", draw(st.integers(0, 45)), draw(st.integers(0, 256) | st.sampled_from(INTERESTING)) % 2**64))
    version = draw(st.sampled_from([2, 3, 3, 3]) | st.integers(0, 2**32 - 1))
    tensors = draw(st.just(len(infos)) | count) % 2**64
    keys = draw(st.just(len(kvs)) | count) % 2**64
    body = b"GGUF" + struct.pack("<IQQ", version, tensors, keys) + b"".join(kvs) + b"".join(infos)
    return body + b"\0" * (-len(body) % 32) + draw(st.binary(max_size=512))


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    found = [prefix]
    if isinstance(value, dict):
        for k, v in list(value.items())[:40]:
            found += _paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value[:8]):
            found += _paths(v, prefix + (i,))
    return found


def _child(parent: Any, step: Any) -> Any:
    if isinstance(parent, dict):
        return parent.get(step)
    if isinstance(parent, list) and isinstance(step, int) and step < len(parent):
        return parent[step]
    return None


def mutated_fingerprint(seeds: Seeds):
    """The seed fingerprint with a metadata value replaced or removed, and/or an array dropped, cut or retyped."""
    return _mutated_fingerprint(seeds.fingerprint_meta, seeds.fingerprint_arrays)


def _mutated_fingerprint(seed_meta: dict, seed_arrays: dict[str, np.ndarray]):
    @st.composite
    def draw_fingerprint(draw) -> bytes:  # a closure: hypothesis would otherwise print the seed arrays
        return _draw_fingerprint(draw, seed_meta, seed_arrays)
    return draw_fingerprint()


def _draw_fingerprint(draw, seed_meta: dict, seed_arrays: dict[str, np.ndarray]) -> bytes:
    from safetensors.numpy import save

    meta = json.loads(json.dumps(seed_meta))
    arrays = dict(seed_arrays)
    paths = _paths(meta)
    for _ in range(draw(st.integers(0, 3))):
        path = draw(st.sampled_from(paths[1:]))
        parent = meta
        for step in path[:-1]:
            parent = _child(parent, step)
        last = path[-1]
        if isinstance(parent, dict) and last in parent:
            if draw(st.booleans()):
                parent[last] = draw(json_values)
            else:
                del parent[last]
        elif isinstance(parent, list) and isinstance(last, int) and last < len(parent):
            parent[last] = draw(json_values)
    names = sorted(arrays)
    for _ in range(draw(st.integers(0, 2))):
        name = draw(st.sampled_from(names))
        action = draw(st.sampled_from(["drop", "cut", "retype", "reshape", "nan"]))
        if name not in arrays:
            continue
        if action == "drop":
            del arrays[name]
        elif action == "cut":
            arrays[name] = arrays[name].reshape(-1)[: draw(st.integers(0, 8))].copy()
        elif action == "retype":
            with np.errstate(all="ignore"):
                arrays[name] = np.nan_to_num(arrays[name]).astype(
                    draw(st.sampled_from([np.int32, np.float64, np.uint8, np.float16])))
        elif action == "reshape":
            arrays[name] = arrays[name].reshape(-1, 1).copy() if arrays[name].ndim == 1 else arrays[name].reshape(-1).copy()
        elif arrays[name].dtype.kind == "f":
            arrays[name] = arrays[name].copy()
            arrays[name].reshape(-1)[:1] = np.nan
    try:
        text = json.dumps(meta)
    except ValueError:
        text = "{}"
    return save(arrays, metadata={"provenance": text})


# --------------------------------------------------------------------------- targets and the runner


def _read_all(source) -> None:
    try:
        source.metadata()
        for info in source.tensor_infos():
            source.read_tensor(info.name)
    finally:
        source.close()


def _open_checkpoint(path: Path) -> None:
    from provenance.model import Checkpoint

    with Checkpoint.open(path):
        pass


def target_safetensors(path: Path) -> None:
    from provenance.formats.safetensors_format import SafetensorsFile

    _read_all(SafetensorsFile(path))
    _open_checkpoint(path)


def target_gguf(path: Path) -> None:
    from provenance.formats.gguf_format import GgufFile

    _read_all(GgufFile(path))
    _open_checkpoint(path)


def target_fingerprint(path: Path, reference=None) -> None:
    from provenance.fingerprint.store import is_fingerprint_file, load_fingerprint

    is_fingerprint_file(path)
    fingerprint = load_fingerprint(path)
    if reference is not None:  # what the comparison makes of whatever loading accepted
        from provenance.compare import compare_fingerprints

        from provenance.report.compare_json import comparison_to_json, render_comparison

        for candidate, other in ((fingerprint, reference), (reference, fingerprint)):
            result = compare_fingerprints(candidate, other)
            render_comparison(comparison_to_json(str(path), candidate, "reference", other, result))


@dataclass
class Tally:
    inputs: int = 0
    refused: int = 0  # ProvenanceError: the right answer to a broken file
    accepted: int = 0
    uncaught: list[dict] = field(default_factory=list)  # anything else: a bug


class Fuzzer:
    """Feeds inputs to targets in a scratch directory, counting outcomes per target."""

    def __init__(self, scratch: Path):
        self.scratch = scratch
        self.scratch.mkdir(parents=True, exist_ok=True)
        self.tallies: dict[str, Tally] = {}
        self._counter = 0

    def feed(self, name: str, data: bytes, suffix: str, target: Callable[[Path], None]) -> None:
        tally = self.tallies.setdefault(name, Tally())
        self._counter += 1
        path = self.scratch / f"input{self._counter}{suffix}"  # a fresh name: an old map of a rewritten file would fault
        path.write_bytes(data)
        tally.inputs += 1
        try:
            target(path)
            tally.accepted += 1
        except ProvenanceError as exc:
            tally.refused += 1
            if "\n" in str(exc):
                self._record(tally, name, data, suffix, exc, "a ProvenanceError spanning several lines")
        except BaseException as exc:  # noqa: BLE001 - anything but a ProvenanceError is what we look for
            if isinstance(exc, KeyboardInterrupt):
                raise
            self._record(tally, name, data, suffix, exc, traceback.format_exc(limit=-4))
        finally:
            path.unlink(missing_ok=True)

    def _record(self, tally: Tally, name: str, data: bytes, suffix: str, exc: BaseException, where: str) -> None:
        keep = self.scratch / "crashes" / f"{name}-{len(tally.uncaught)}{suffix}"
        keep.parent.mkdir(exist_ok=True)
        keep.write_bytes(data)
        tally.uncaught.append({"error": f"{type(exc).__name__}: {str(exc)[:300]}", "where": where[-1500:],
                               "input": str(keep)})

    def run(self, name: str, strategy, suffix: str, target: Callable[[Path], None], examples: int,
            seed: int | None = 0) -> Tally:
        """Draw `examples` inputs from `strategy` (hypothesis, generation only: no shrinking, no database)."""
        @settings(max_examples=examples, database=None, deadline=None, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck), derandomize=seed is not None)
        @given(strategy)
        def drive(data: bytes) -> None:
            self.feed(name, data, suffix, target)

        drive()
        return self.tallies.setdefault(name, Tally())


def plan(seeds: Seeds, reference=None) -> list[tuple[str, Any, str, Callable[[Path], None], float]]:
    """(name, strategy, suffix, target, share of the inputs) for every fuzzed parser."""
    fp_target = (lambda path: target_fingerprint(path, reference))
    return [
        ("safetensors-mutated", mutations(seeds.safetensors, seeds.safetensors_fields, seeds.safetensors_numbers),
         ".safetensors", target_safetensors, 0.25),
        ("safetensors-random-header", random_safetensors(), ".safetensors", target_safetensors, 0.08),
        ("safetensors-consistent-header", consistent_safetensors(), ".safetensors", target_safetensors, 0.07),
        ("gguf-mutated", mutations(seeds.gguf, seeds.gguf_fields), ".gguf", target_gguf, 0.25),
        ("gguf-random", random_gguf(), ".gguf", target_gguf, 0.15),
        ("fingerprint-mutated-bytes", mutations(seeds.fingerprint, [(0, 8)]), ".fp.safetensors", fp_target, 0.08),
        ("fingerprint-mutated-content", mutated_fingerprint(seeds), ".fp.safetensors", fp_target, 0.12),
    ]


def scratch_directory() -> Path:
    """A scratch directory in memory (/dev/shm) when there is one: inputs are written and deleted constantly."""
    base = Path("/dev/shm") if Path("/dev/shm").is_dir() else None
    return Path(tempfile.mkdtemp(prefix="provenance-fuzz-", dir=base))
