"""Schema-4 fingerprint files: records as column arrays, arrays stacked; bounded metadata whatever the tensor count."""

from __future__ import annotations

import json
import sqlite3
import struct

import numpy as np
import pytest
from safetensors.numpy import save_file

from bench.moe_models import MoeSpec, write_moe
from provenance.errors import CorruptFileError
from provenance.registry import Registry, RegistryError
from provenance.fingerprint import build_fingerprint
from provenance.fingerprint.packing import decode_table, encode_table, pack, unpack
from provenance.fingerprint.store import Fingerprint, load_fingerprint
from provenance.model import Checkpoint


def _header(path) -> tuple[int, str, int]:
    """(header bytes, metadata JSON characters, arrays listed) of a safetensors file."""
    with open(path, "rb") as handle:
        size = struct.unpack("<Q", handle.read(8))[0]
        header = json.loads(handle.read(size))
    return size, header.pop("__metadata__")["provenance"], len(header)


def test_table_round_trips_every_kind_of_field():
    records = [{"__key__": "a", "shape": [2, 3], "dtype": "BF16", "sha256": None, "n": 5,
                "stats": {"mean": 0.25, "numel": 6}, "odd": [1, {"x": 2}]},
               {"__key__": "b", "shape": [], "dtype": "F32", "sha256": "ff", "stats": {"mean": -1e-300, "numel": 1}},
               {"__key__": "c\nwith newline é", "dtype": None, "stats": {"mean": 1.5, "numel": 2, "nan": "x"}},
               {"__key__": "d", "shape": [1] * 8, "n": -(1 << 62)}]
    description, arrays = encode_table(records, "t/")
    back = decode_table(json.loads(json.dumps(description)), arrays, "t/")
    assert json.dumps(back) == json.dumps([dict(sorted(r.items())) for r in records])
    assert [type(r["stats"]["numel"]) for r in back[:2]] == [int, int]


def test_metadata_does_not_grow_with_the_tensor_count(tmp_path):
    """A few thousand tiny expert tensors: the JSON stays a few KB and the header lists a few dozen arrays."""
    sizes = {}
    for experts in (8, 64):
        spec = MoeSpec(layers=2, experts=experts, hidden=32, expert_dim=16, vocab=64, shards=1, seed=experts)
        path = write_moe(tmp_path / f"moe{experts}", spec)
        with Checkpoint.open(path) as checkpoint:
            fingerprint = build_fingerprint(checkpoint)
        saved = fingerprint.save(tmp_path / f"moe{experts}.fp")
        _, text, listed = _header(saved)
        sizes[experts] = (len(fingerprint.tensors), len(text), listed)
        loaded = load_fingerprint(saved)
        assert json.dumps(loaded.meta) == json.dumps(fingerprint.meta)  # same types and key order too
        assert set(loaded.arrays) == set(fingerprint.arrays)
        assert all(np.array_equal(loaded.arrays[k], v) for k, v in fingerprint.arrays.items())
    (few, text_few, listed_few), (many, text_many, listed_many) = sizes[8], sizes[64]
    assert many > 300 and many > 6 * few
    assert text_many < text_few + 512  # no per-tensor JSON (schema 3 held ~600 bytes per tensor)
    assert listed_many < many / 4 and listed_many <= listed_few + 16  # more experts: the same stacks, taller


def test_older_schema_files_load_and_are_written_back_as_they_were(tmp_path):
    fingerprint = Fingerprint(
        meta={"schema": "provenance.fingerprint/3", "architecture": {"num_layers": 1}, "source": {"path": "x"},
              "tensors": {"embed.weight": {"shape": [4, 2], "dtype": "F32", "sha256": "ab", "source": "e", "how": "table"}}},
        arrays={"sketch/embed.weight": np.arange(8, dtype=np.float32)})
    saved = fingerprint.save(tmp_path / "old.fp")
    _, text, _ = _header(saved)
    assert "embed.weight" in text  # the schema-3 layout: records in the JSON
    assert load_fingerprint(saved).meta == fingerprint.meta


def test_a_damaged_table_is_one_clear_error(tmp_path):
    spec = MoeSpec(layers=1, experts=4, hidden=32, expert_dim=16, vocab=64, shards=1)
    with Checkpoint.open(write_moe(tmp_path / "m", spec)) as checkpoint:
        fingerprint = build_fingerprint(checkpoint)
    meta, arrays = pack(fingerprint.meta, fingerprint.arrays)
    codes = next(k for k in arrays if k.startswith("table/") and k.endswith("/codes"))
    arrays[codes] = arrays[codes] + 10 ** 6
    path = tmp_path / "bad.fp"
    save_file(arrays, str(path), metadata={"provenance": json.dumps(meta)})
    with pytest.raises(CorruptFileError, match="string code points outside"):
        load_fingerprint(path)
    meta2, arrays2 = unpack(json.loads(json.dumps(meta)), pack(fingerprint.meta, fingerprint.arrays)[1])
    assert meta2 == fingerprint.meta


def test_a_fingerprint_over_sqlites_value_limit_is_one_clear_error(tmp_path):
    fingerprint = Fingerprint(
        meta={"schema": "provenance.fingerprint/4", "architecture": {"num_layers": 1}, "source": {"path": "x"},
              "tensors": {}},
        arrays={"sketch/embed.weight": np.zeros(4096, dtype=np.float32)})
    with Registry(tmp_path / "refs.sqlite") as registry:
        registry._db.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 10_000)  # SQLite's 1e9 bytes, scaled down
        with pytest.raises(RegistryError, match="over SQLite's 10000-byte limit"):
            registry.add("big", fingerprint)


def test_the_streaming_writer_gives_the_arrays_the_library_writes_stacked(tmp_path):
    """`Fingerprint.save` writes the stacks row by row (`writer.py`); the library reads back what `pack` stacks."""
    from safetensors.numpy import load_file

    spec = MoeSpec(layers=1, experts=6, hidden=32, expert_dim=16, vocab=64, shards=1)
    with Checkpoint.open(write_moe(tmp_path / "m", spec)) as checkpoint:
        fingerprint = build_fingerprint(checkpoint)
    streamed = fingerprint.save(tmp_path / "streamed.fp")
    meta, arrays = pack(fingerprint.meta, fingerprint.arrays)
    save_file(arrays, str(tmp_path / "library.fp"), metadata={"provenance": json.dumps(meta, sort_keys=True)})
    ours, theirs = load_file(str(streamed)), load_file(str(tmp_path / "library.fp"))
    assert any(k.startswith("stack/") for k in ours) and set(ours) == set(theirs)
    assert all(ours[k].dtype == theirs[k].dtype and np.array_equal(ours[k], theirs[k]) for k in ours)
    assert _header(streamed)[1] == _header(tmp_path / "library.fp")[1]
    assert _header(streamed)[0] % 8 == 0
    assert fingerprint.file_bytes() == streamed.read_bytes()
    with Registry(tmp_path / "refs.sqlite") as registry:  # written into the database in pieces (`blobopen`)
        registry.add("m", fingerprint)
        assert registry.fingerprint_blob("m") == streamed.read_bytes()
    loaded = load_fingerprint(streamed)
    assert json.dumps(loaded.meta) == json.dumps(fingerprint.meta)
    assert all(np.array_equal(loaded.arrays[k], v) for k, v in fingerprint.arrays.items())


def test_a_damaged_fingerprint_in_the_database_is_one_error_naming_the_entry(tmp_path):
    fingerprint = Fingerprint(
        meta={"schema": "provenance.fingerprint/4", "architecture": {"num_layers": 1}, "source": {"path": "x"},
              "tensors": {}},
        arrays={"sketch/embed.weight": np.zeros(16, dtype=np.float32)})
    with Registry(tmp_path / "refs.sqlite") as registry:
        registry.add("m", fingerprint)
        registry._db.execute("UPDATE refs SET fingerprint = ? WHERE name = 'm'", (b"\x08" + b"\x00" * 7 + b"{bad}   ",))
        with pytest.raises(CorruptFileError, match=r"refs\.sqlite#m"):
            registry.fingerprint("m")


def test_arrays_are_read_from_files_when_looked_up(tmp_path):
    """The build spills its arrays to a spool file and a loaded fingerprint reads its file: both are lazy
    mappings whose values, saved bytes, database blob and pickled form are those of the arrays themselves."""
    import os
    import pickle

    from provenance.fingerprint.arrays_file import ArrayFile

    spec = MoeSpec(layers=2, experts=8, hidden=32, expert_dim=16, vocab=64, shards=1, seed=3)
    path = write_moe(tmp_path / "moe", spec)
    with Checkpoint.open(path) as checkpoint:
        built = build_fingerprint(checkpoint)
    assert isinstance(built.arrays, ArrayFile) and list(built.arrays) == sorted(built.arrays)
    saved = built.save(tmp_path / "moe.fp")
    plain = Fingerprint(meta=built.meta, arrays=dict(built.arrays.items()))
    assert saved.read_bytes() == plain.file_bytes() == built.file_bytes()
    loaded = load_fingerprint(saved)
    assert isinstance(loaded.arrays, ArrayFile) and set(loaded.arrays) == set(plain.arrays)
    assert loaded.nbytes() == plain.nbytes()
    stacked = [n for n in loaded.arrays if n.startswith("sketch/layers.1.")]
    assert stacked and all(np.array_equal(loaded.arrays[n], plain.arrays[n]) for n in stacked)
    first = loaded.arrays[stacked[0]]
    first[...] = 7  # each lookup is a fresh, writable array: the file and later lookups are untouched
    assert np.array_equal(loaded.arrays[stacked[0]], plain.arrays[stacked[0]])
    assert loaded.save(tmp_path / "again.fp").read_bytes() == saved.read_bytes()
    os.replace(tmp_path / "again.fp", saved)  # the file replaced (a cache entry rewritten): still readable
    assert all(np.array_equal(loaded.arrays[k], v) for k, v in plain.arrays.items())
    copied = pickle.loads(pickle.dumps(loaded))  # a process pool's result: the values travel
    assert isinstance(copied.arrays, dict) and set(copied.arrays) == set(plain.arrays)
    with Registry(tmp_path / "refs.sqlite") as registry:
        registry.add("m", loaded)
        assert registry.fingerprint_blob("m") == saved.read_bytes()
        back = registry.fingerprint("m")  # read from a temporary file removed once loaded
        assert all(np.array_equal(back.arrays[k], v) for k, v in plain.arrays.items())
