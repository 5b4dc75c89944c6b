"""Fingerprint files and reference databases: damaged, oversized, from the future."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np

from .corpus import Corpus, Run


def add_fingerprint_cases(c: Corpus) -> None:
    from safetensors.numpy import load_file, save_file

    from provenance.formats.safetensors_format import read_safetensors_header

    from provenance.fingerprint.store import load_fingerprint

    good = c.good_fingerprint
    # The cases below damage the metadata and arrays as a comparison sees them, written in the schema-3
    # layout (records in JSON, one array per name), which still loads; the packed layout's own cases follow.
    packed_arrays = load_file(str(good))
    unpacked = load_fingerprint(good)
    arrays = dict(unpacked.arrays)
    meta = {**unpacked.meta, "schema": "provenance.fingerprint/3"}

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

    from provenance.fingerprint.store import SCHEMA_VERSION

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

    packed_meta = read_safetensors_header(good)[1]["provenance"]
    offsets = next(k for k in packed_arrays if k.startswith("table/") and k.endswith("/offsets"))
    far = packed_arrays[offsets].copy()
    far[-1] += 1 << 40
    p = write("table_offsets", packed_meta, {**packed_arrays, offsets: far})
    c.add("fingerprint/packed_table_offsets", "a record table's string offsets point past its bytes",
          runs(p, "offsets do not cut its bytes"))

    stack = next(k for k in packed_arrays if k.startswith("stack/") and k.count("/") == 1)
    p = write("stack_rows", packed_meta, {**packed_arrays, stack: packed_arrays[stack][:1]})
    c.add("fingerprint/packed_stack_rows", "a stack of arrays with fewer rows than names", runs(p, "rows for"))


def add_database_cases(c: Corpus) -> None:
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
