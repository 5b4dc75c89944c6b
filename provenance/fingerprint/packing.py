"""The compact file layout of a fingerprint (schema 4): per-tensor records as column arrays, arrays stacked.

Part of the file layout: called from `store.py` only (and `arrays_file.py` for
the name tables of stacks), so the JSON it reads and writes (the record
tables' descriptions and leftovers) stays inside the layout; readers see the
typed records (`records.py`).

A fingerprint's metadata used to hold one JSON object per tensor (about 600
bytes each): a 29,000-tensor mixture of experts overran the 16 MiB cap on the
metadata string, and every one of its ~60,000 arrays cost a header entry.
In a schema-4 file:

- Record tables (`TABLE_PATHS`: the canonical tensors, the stored tensors,
  the renamed tensors, the generic sketches' records) are columns of arrays
  `table/<t>/<column>`; the JSON keeps only a short description of each
  table (`meta["tables"]`: where it goes, its fields and their kinds), so the
  JSON no longer grows with the tensor count. A field is stored by what its
  values are across the table: strings as codes into a table of distinct
  strings (UTF-8 bytes and offsets), integers as int64, shapes as a padded
  int64 matrix, statistics as a float64 matrix (NaN: absent) with the
  statistic names in the JSON; anything else (or a value that does not fit
  its column) as a JSON string of that row's leftovers. Decoding gives back
  exactly the records that were encoded, keys sorted, so a fingerprint read
  from a file is the one that was built.
- Arrays of one kind, dtype and shape (the sketches of every expert's
  `mlp.up`, say) are stacked into one array `stack/<i>`, their names kept as
  a string table `stack/<i>/names/...`. Arrays are unstacked into views on
  load: the comparison sees the same names as before.

Bound: every per-tensor byte is now in the arrays (records ~100 bytes, the
name included; sketch and row sample ~24 KiB per matrix), which only the
2 GiB file cap bounds; the JSON of a 1,000,000-tensor checkpoint is the same
few kilobytes as that of a 100-tensor one, and its header lists a few
hundred arrays, not millions.
"""

from __future__ import annotations

import json
import math
from typing import Any, Iterable

import numpy as np

# Where per-tensor tables sit in the metadata (a path of keys), and the prefix of their arrays.
TABLE_PATHS = (("tensors",), ("stored_tensors",), ("renamed_tensors",), ("generic", "tensors"))
TABLE_PREFIX = "table/"
STACK_PREFIX = "stack/"
ABSENT_INT = np.iinfo(np.int64).min  # an integer field a row does not have
KEY = "__key__"  # the column of a table that was a JSON object: its keys
LEFTOVER = "__json__"  # the column of values that fit no column, as one JSON object per row


class PackingError(ValueError):
    """A packed table or stack that does not decode (a corrupt or hostile file)."""


# --------------------------------------------------------------------------- strings

def encode_strings(values: list[str | None]) -> dict[str, np.ndarray]:
    """Strings (or None) as codes into a table of distinct strings (UTF-8 bytes and their offsets)."""
    distinct = list(dict.fromkeys(v for v in values if v is not None))
    position = {v: i for i, v in enumerate(distinct)}
    encoded = [v.encode("utf-8", errors="surrogatepass") for v in distinct]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(b) for b in encoded], out=offsets[1:])
    return {"codes": np.array([-1 if v is None else position[v] for v in values], dtype=np.int64),
            "bytes": np.frombuffer(b"".join(encoded), dtype=np.uint8).copy() if encoded else np.zeros(0, np.uint8),
            "offsets": offsets}


def decode_strings(codes: np.ndarray, blob: np.ndarray, offsets: np.ndarray) -> list[str | None]:
    if codes.ndim != 1 or blob.ndim != 1 or offsets.ndim != 1 or offsets.size < 1:
        raise PackingError("a string table has arrays of the wrong number of dimensions")
    if offsets[0] != 0 or offsets[-1] != blob.size or np.any(np.diff(offsets) < 0):
        raise PackingError("a string table's offsets do not cut its bytes")
    if codes.size and (codes.min() < -1 or codes.max() >= offsets.size - 1):
        raise PackingError("a string code points outside its string table")
    raw = blob.tobytes()
    try:
        distinct = [raw[a:b].decode("utf-8", errors="surrogatepass") for a, b in zip(offsets[:-1], offsets[1:])]
    except UnicodeDecodeError as exc:
        raise PackingError(f"a string table holds bytes that are not UTF-8 (at {exc.start})") from exc
    return [None if c < 0 else distinct[c] for c in codes.tolist()]


def _strings_arrays(prefix: str, values: list[str | None]) -> dict[str, np.ndarray]:
    return {f"{prefix}/{part}": array for part, array in encode_strings(values).items()}


def _strings_from(arrays: dict[str, np.ndarray], prefix: str) -> list[str | None]:
    try:
        return decode_strings(arrays[f"{prefix}/codes"], arrays[f"{prefix}/bytes"], arrays[f"{prefix}/offsets"])
    except KeyError as exc:
        raise PackingError(f"array {exc.args[0]} is missing") from exc


# --------------------------------------------------------------------------- record tables

def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and ABSENT_INT < value < 1 << 63


def _is_float(value: Any) -> bool:
    return isinstance(value, float) and math.isfinite(value)


def _field_kind(name: str, values: list[Any]) -> str | None:
    """How a field is stored, from the values the rows that have it hold; None: as leftovers."""
    if all(v is None or isinstance(v, str) for v in values):
        return "string"
    if all(_is_int(v) for v in values):
        return "int"
    if name == "shape" and all(isinstance(v, list) and len(v) <= 8 and all(_is_int(d) and d >= 0 for d in v)
                               for v in values):
        return "shape"
    if name == "stats" and all(isinstance(v, dict) for v in values):
        return "stats"
    return None


def _stat_columns(rows: list[dict]) -> tuple[list[str], set[str]]:
    """Names of the statistics and those whose every value is an integer (kept integers on decoding)."""
    names: dict[str, bool] = {}
    for stats in rows:
        for name, value in stats.items():
            names[name] = names.get(name, True) and _is_int(value)
    return sorted(names), {name for name, ints in names.items() if ints}


def encode_table(records: list[dict[str, Any]], prefix: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """A list of flat records as column arrays under `prefix`, and the description the JSON keeps."""
    present: dict[str, list[Any]] = {}
    for record in records:
        for name, value in record.items():
            present.setdefault(name, []).append(value)
    kinds = {name: _field_kind(name, values) for name, values in present.items()}
    kinds = {name: kind for name, kind in kinds.items() if kind is not None and name != LEFTOVER}
    arrays: dict[str, np.ndarray] = {}
    leftovers: list[dict[str, Any]] = [{} for _ in records]
    description: dict[str, Any] = {"rows": len(records), "fields": dict(sorted(kinds.items()))}
    for name, kind in kinds.items():
        column = f"{prefix}{name}"
        values = [record.get(name, ...) for record in records]
        if kind == "string":
            # a row without the field is told apart from a None value by the leftovers' marker
            for row, value in enumerate(values):
                if value is ...:
                    leftovers[row].setdefault("__absent__", []).append(name)
            arrays.update(_strings_arrays(column, [None if v is ... else v for v in values]))
        elif kind == "int":
            arrays[column] = np.array([ABSENT_INT if v is ... else v for v in values], dtype=np.int64)
        elif kind == "shape":
            width = max((len(v) for v in values if v is not ...), default=0)
            matrix = np.full((len(values), width + 1), -1, dtype=np.int64)
            for row, shape in enumerate(values):
                if shape is not ...:
                    matrix[row, 0] = len(shape)
                    matrix[row, 1:1 + len(shape)] = shape
            arrays[column] = matrix
        else:  # stats
            names, ints = _stat_columns([v for v in values if v is not ...])
            nan = float("nan")
            lines = []
            has = np.zeros(len(values), dtype=np.int64)
            for row, stats in enumerate(values):
                if stats is not ... and all(_is_float(v) or _is_int(v) for v in stats.values()):
                    has[row] = 1
                    lines.append([stats.get(n, nan) for n in names])
                else:
                    if stats is not ...:
                        leftovers[row][name] = stats
                    lines.append([nan] * len(names))
            matrix = np.array(lines, dtype=np.float64).reshape(len(values), len(names))
            arrays[column] = matrix
            arrays[f"{column}/present"] = has
            description["stats"] = {"names": names, "integers": sorted(ints)}
    for row, record in enumerate(records):
        for name, value in record.items():
            if name not in kinds:
                leftovers[row][name] = value
    if any(leftovers):
        arrays.update(_strings_arrays(f"{prefix}{LEFTOVER}",
                                      [json.dumps(v) if v else None for v in leftovers]))
        description["leftovers"] = True
    return description, arrays


def _column(arrays: dict[str, np.ndarray], name: str, rows: int, dims: int) -> np.ndarray:
    array = arrays.get(name)
    if array is None:
        raise PackingError(f"array {name} is missing")
    if array.ndim != dims or array.shape[0] != rows:
        raise PackingError(f"array {name} has shape {list(array.shape)}, expected {rows} rows")
    return array


def decode_table(description: Any, arrays: dict[str, np.ndarray], prefix: str) -> list[dict[str, Any]]:
    """The records `encode_table` stored (keys sorted); PackingError if the arrays do not fit the description."""
    if not isinstance(description, dict) or not isinstance(description.get("fields"), dict):
        raise PackingError("a table description is not an object with fields")
    rows = description.get("rows")
    if not _is_int(rows) or rows < 0:
        raise PackingError("a table description has no row count")
    records: list[dict[str, Any]] = [{} for _ in range(rows)]
    for name, kind in description["fields"].items():
        column = f"{prefix}{name}"
        if kind == "string":
            values = _strings_from(arrays, column)
            if len(values) != rows:
                raise PackingError(f"column {column} has {len(values)} rows, expected {rows}")
            for record, value in zip(records, values):
                record[name] = value
        elif kind == "int":
            for record, value in zip(records, _column(arrays, column, rows, 1).tolist()):
                if value != ABSENT_INT:
                    record[name] = value
        elif kind == "shape":
            matrix = _column(arrays, column, rows, 2)
            for record, line in zip(records, matrix.tolist()):
                if line[0] >= 0:
                    if line[0] > len(line) - 1 or min(line[1:1 + line[0]], default=0) < 0:
                        raise PackingError(f"column {column} holds a malformed shape")
                    record[name] = line[1:1 + line[0]]
        elif kind == "stats":
            spec = description.get("stats")
            if not isinstance(spec, dict) or not isinstance(spec.get("names"), list):
                raise PackingError("a statistics column has no statistic names")
            names = [str(n) for n in spec["names"]]
            ints = set(spec.get("integers") or [])
            matrix = _column(arrays, column, rows, 2)
            if matrix.shape[1] != len(names):
                raise PackingError(f"column {column} has {matrix.shape[1]} statistics, expected {len(names)}")
            present = _column(arrays, f"{column}/present", rows, 1)
            for record, line, has in zip(records, matrix.tolist(), present.tolist()):
                if has:
                    record[name] = {n: (int(v) if n in ints else v) for n, v in zip(names, line) if v == v}
        else:
            raise PackingError(f"column {column} has the unknown kind {kind!r}")
    if description.get("leftovers"):
        extras = _strings_from(arrays, f"{prefix}{LEFTOVER}")
        if len(extras) != rows:
            raise PackingError(f"the leftovers of table {prefix} have {len(extras)} rows, expected {rows}")
        for record, extra in zip(records, extras):
            if extra is None:
                continue
            try:
                values = json.loads(extra)
            except (ValueError, RecursionError) as exc:
                raise PackingError(f"a leftover of table {prefix} is not valid JSON") from exc
            if not isinstance(values, dict):
                raise PackingError(f"a leftover of table {prefix} is not an object")
            for name in values.pop("__absent__", []):
                record.pop(name, None)
            record.update(values)
    return [dict(sorted(record.items())) for record in records]


def _get(meta: dict[str, Any], path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(meta, dict):
            return None
        meta = meta.get(key)
    return meta


def pack_tables(meta: dict[str, Any]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The metadata without its per-tensor tables (a copy of the objects changed), and the arrays holding them."""
    meta = {key: dict(value) if isinstance(value, dict) else value for key, value in meta.items()}
    arrays: dict[str, np.ndarray] = {}
    described = []
    for number, path in enumerate(TABLE_PATHS):
        value = _get(meta, path)
        if isinstance(value, dict) and all(isinstance(v, dict) for v in value.values()):
            records = [{KEY: key, **record} for key, record in value.items()]
            shape = "object"
        elif isinstance(value, list) and all(isinstance(v, dict) for v in value):
            records, shape = value, "list"
        else:
            continue
        prefix = f"{TABLE_PREFIX}{number}/"
        description, table = encode_table(records, prefix)
        described.append({"path": list(path), "shape": shape, "prefix": prefix, **description})
        arrays.update(table)
        del _get(meta, path[:-1])[path[-1]]
    meta["tables"] = described
    return meta, arrays


def unpack_tables(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """The metadata with its tables put back (`pack_tables` undone); PackingError if they do not decode."""
    described = meta.pop("tables", None)
    if not isinstance(described, list):
        raise PackingError("tables is not a list")
    known = {tuple(p): p for p in TABLE_PATHS}
    for entry in described:
        raw_path = entry.get("path") if isinstance(entry, dict) else None
        path = tuple(raw_path) if isinstance(raw_path, list) and all(isinstance(k, str) for k in raw_path) else ()
        if path not in known or not isinstance(entry.get("prefix"), str) or not entry["prefix"].startswith(TABLE_PREFIX):
            raise PackingError(f"a table has the unknown place {path!r}")
        records = decode_table(entry, arrays, entry["prefix"])
        if entry.get("shape") == "object":
            value: Any = {}
            for record in records:
                key = record.pop(KEY, None)
                if not isinstance(key, str) or key in value:
                    raise PackingError(f"table {'.'.join(path)} has a missing or repeated key")
                value[key] = record
        else:
            value = records
        parent = meta
        for key in path[:-1]:
            parent = parent.setdefault(key, {})
            if not isinstance(parent, dict):
                raise PackingError(f"table {'.'.join(path)} sits under a value that is not an object")
        parent[path[-1]] = value
        if len(path) > 1:
            meta[path[0]] = dict(sorted(meta[path[0]].items()))
    return dict(sorted(meta.items()))  # as a fingerprint built in the run holds it (keys sorted)


# --------------------------------------------------------------------------- stacked arrays

def stack_layout(arrays: dict[str, np.ndarray]) -> tuple[dict[str, list[np.ndarray]], dict[str, np.ndarray]]:
    """The stacks `stack_arrays` makes, without making them: `stack/<i>` -> its rows (arrays of one kind, dtype
    and shape, in order), and every other array (those alone of their kind, and the stacks' name tables)."""
    deferred = getattr(arrays, "deferred_items", None)  # an ArrayFile: rows read as the writer streams them
    if deferred is not None:
        arrays = dict(deferred())
    groups: dict[tuple, list[str]] = {}
    for name, array in arrays.items():
        groups.setdefault((name.partition("/")[0], array.dtype.str, tuple(array.shape)), []).append(name)
    stacks: dict[str, list[np.ndarray]] = {}
    others: dict[str, np.ndarray] = {}
    for names in groups.values():
        if len(names) < 2:
            others[names[0]] = arrays[names[0]]
            continue
        stacked = f"{STACK_PREFIX}{len(stacks)}"
        stacks[stacked] = [arrays[n] for n in names]
        others.update(_strings_arrays(f"{stacked}/names", names))
    return stacks, others


def stack_arrays(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Arrays of one kind, dtype and shape stacked into `stack/<i>` (names in a string table); others as they are."""
    stacks, others = stack_layout(arrays)
    return {**{name: np.stack(rows) for name, rows in stacks.items()}, **{n: np.asarray(a) for n, a in others.items()}}


def stack_names(names: Iterable[str]) -> list[str]:
    """The stacked arrays among array names (`stack/<i>`, not their name tables)."""
    return [n for n in names if n.startswith(STACK_PREFIX) and n.count("/") == 1]


def unstack_arrays(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every array by its own name again (views into the stacks); PackingError on a name given twice."""
    out = {n: a for n, a in arrays.items() if not n.startswith((STACK_PREFIX, TABLE_PREFIX))}
    for stacked in stack_names(arrays):
        names = _strings_from(arrays, f"{stacked}/names")
        values = arrays[stacked]
        if values.ndim < 1 or len(names) != values.shape[0] or any(n is None for n in names):
            raise PackingError(f"array {stacked} has {values.shape[0] if values.ndim else 0} rows for {len(names)} names")
        for name, row in zip(names, values):
            if name in out or name.startswith((STACK_PREFIX, TABLE_PREFIX)):
                raise PackingError(f"array {name[:80]!r} is given twice")
            out[name] = row
    return out


def pack(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """A fingerprint's metadata and arrays as a schema-4 file holds them."""
    packed_meta, tables = pack_tables(meta)
    return packed_meta, {**stack_arrays(arrays), **tables}


def pack_layout(meta: dict[str, Any], arrays: dict[str, np.ndarray]
                ) -> tuple[dict[str, Any], dict[str, list[np.ndarray]], dict[str, np.ndarray]]:
    """`pack` with the stacks left as their rows (`stack_layout`): what a writer streams without a second copy."""
    packed_meta, tables = pack_tables(meta)
    stacks, others = stack_layout(arrays)
    return packed_meta, stacks, {**others, **tables}


def unpack(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """`pack` undone."""
    return unpack_tables(meta, arrays), unstack_arrays(arrays)
