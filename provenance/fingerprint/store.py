"""The fingerprint file: a safetensors file of arrays plus one JSON metadata string.

Layout (schema `provenance.fingerprint/3`):
- `__metadata__["provenance"]`: JSON with `schema`, `value_hash`,
  `tool_version`, `created`, `source` (path, format, files with sizes and
  sha256), `architecture`, `family`, `tensors` (per canonical key: shape,
  stored dtype, value hash, summary statistics, stored name),
  `stored_tensors` (value hash per stored tensor), `renamed_tensors`,
  `vocabulary` (kind, size, hashes, special tokens, anchor token strings);
- arrays: `sketch/<key>` (float32 values at shape-seeded positions; 1-D
  tensors whole), `units/<layer>/<role>` (float16 per-unit signatures of MLP
  rows/columns), `anchors/<role>` (float16 embedding rows of anchor tokens),
  `responses/<layer>/<role>` (float16 responses of MLP units to the first
  anchor tokens' embedding rows; absent from files made before it existed,
  whose comparisons then skip the signal that reads it).

Schema 2 changed only the tensor hashes (the fields keep the name "sha256"):
XXH3-128 of the values in the first of f16/bf16/f32 that holds them
exactly (see tensor_pass.value_hash), instead of sha256 of the float32
values. Both are equal exactly when the values are. A schema-1 file still
loads, with a note: its hashes match no schema-2 hash, so exact-copy evidence
against it needs the fingerprint rebuilt (`provenance fingerprint PATH`).

Schema 3 changed only how summary statistics are computed: from a
deterministic sample of 65,536 values per tensor (`tensor_pass.sample_statistics`;
`stats.sample` says how many) instead of every value. Hashes, sketches,
samples and signatures are as in schema 2, and schema-2 files load and
compare as they are (their statistics describe every value).

Schema 4 changed only the file layout (`packing.py`): the per-tensor
records (`tensors`, `stored_tensors`, `renamed_tensors`, `generic.tensors`)
are column arrays `table/...` instead of JSON, and arrays of one kind, dtype
and shape are stacked (`stack/...`). Loading undoes both, so the metadata
and arrays a comparison sees are those of schema 3, and files of schemas 1-3
load as before. The JSON no longer grows with the tensor count: the 16 MiB
cap on it is no longer reached by any checkpoint (a 1,000,000-tensor one
included), and the per-tensor bytes are bounded by the 2 GiB file cap
(about 24 KiB of arrays per matrix: some 85,000 matrices at full width).

safetensors keeps the file free of code (no pickle) and lets us reuse the
validated header reader. A schema-4 file is written by `writer.py`, array by
array and each stack row by row, so saving never holds a stacked second copy
of the arrays (`write_file` gives the same bytes for the reference
database). A loaded fingerprint's arrays are not read with the file: each is
read from it when looked up (`arrays_file.ArrayFile`; a stack's row at its
offset), and only the record tables are decoded at once. Writes are atomic: a temporary file (`.NAME.*.tmp`,
which nothing takes for a fingerprint) is written, flushed to disk and renamed
over the target, so a killed run leaves the old file or the new one.

A fingerprint read from disk is untrusted like any checkpoint: besides the
header checks, `load_fingerprint` checks the types and sizes of everything
the comparison reads (architecture numbers, tensor records, array shapes),
so that a hostile file fails with one line instead of deep inside a
comparison, or a loop over a billion claimed layers.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass, fields
from enum import Enum
from functools import cached_property
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
from safetensors.numpy import save, save_file

from ..architectures.descriptor import Architecture
from ..atomic_files import replacing
from ..errors import CorruptFileError, UnreadablePathError, UnsupportedError
from .arrays_file import NUMPY_OF, ArrayFile, unstacked
from .packing import STACK_PREFIX, TABLE_PREFIX, PackingError, pack, pack_layout, unpack_tables
from .records import (FamilyRecord, GenericSection, LineageClaim, MadeRecord, RenamedTensor, SourceRecord, StoredRecord, TensorRecord,
                      VocabularyRecord, architecture_of, family_of, generic_of, lineage_claims_of, made_of, renamed_of, source_of,
                      stored_records, tensor_records, vocabulary_of)
from .writer import write_safetensors

FINGERPRINT_SCHEMA = "provenance.fingerprint/4"
SKETCH_SIZE = 2048  # values kept per 2-D tensor (`sketch.sketch_positions`)
FULL_VECTOR_LIMIT = 16384  # 1-D tensors up to this length are kept whole
SCHEMA_VERSION = 4
PACKED_VERSION = 4  # from this schema on, records are column arrays and arrays are stacked (`packing.py`)
# Schema versions whose tensor hashes are sha256 of float32 values (not comparable with ours).
SHA256_HASH_VERSIONS = (1,)
# A LLaMA-7B fingerprint is 53 MB; a 405B-parameter model's would be under 1 GB.
MAX_FINGERPRINT_BYTES = 2 * 1024 ** 3
MAX_LAYERS = 65_536  # architecture numbers drive loops in the comparison
# The metadata JSON: a few KB since schema 4 (512 anchor tokens; tensor records are arrays). A schema-3
# file held ~600 bytes per tensor in it: about 200 KB for LLaMA-7B.
MAX_META_BYTES = 16 * 1024 * 1024


class Part(str, Enum):
    """A kind of content a fingerprint may hold.

    The builder records the parts it made (`meta["parts"]`), which depend on
    what the tensor source reads cheaply: a local file reads whole tensors, a
    remote one row blocks by range. A comparison uses the views both sides hold.
    """

    TENSOR_HASHES = "tensor-hashes"  # a value hash of every tensor, canonical and stored
    STATISTICS = "statistics"  # summary statistics of every tensor
    VECTORS = "vectors"  # 1-D tensors whole (`sketch/<key>`), with their hashes and statistics
    SKETCHES = "sketches"  # `sketch/<key>` of every matrix: values at shape-seeded positions
    ROW_SAMPLES = "row-samples"  # `rows/<key>`: the row sample of every matrix
    UNIT_SIGNATURES = "unit-signatures"  # `units/<layer>/<role>`: every MLP unit's signature
    SAMPLED_UNIT_SIGNATURES = "sampled-unit-signatures"  # `rowunits/<layer>/mlp.up`: the sampled rows' signatures
    GRAM = "gram"  # `gram/<layer>/<role>`: residual-space Gram matrices
    ANCHORS = "anchors"  # `anchors/<role>`: embedding rows of anchor tokens
    ANCHOR_RESPONSES = "anchor-responses"  # `responses/<layer>/<role>`: MLP units' responses to anchor embeddings


# What a builder makes from whole tensors, and from row blocks read by range (the "remote" variant).
WHOLE_TENSOR_PARTS = frozenset(set(Part) - {Part.SAMPLED_UNIT_SIGNATURES})
ROW_READ_PARTS = frozenset({Part.VECTORS, Part.ROW_SAMPLES, Part.SAMPLED_UNIT_SIGNATURES, Part.ANCHORS})
# The array name prefix of each part stored as arrays.
ARRAY_PREFIX = {Part.SKETCHES: "sketch", Part.VECTORS: "sketch", Part.ROW_SAMPLES: "rows", Part.UNIT_SIGNATURES: "units",
                Part.SAMPLED_UNIT_SIGNATURES: "rowunits", Part.GRAM: "gram", Part.ANCHORS: "anchors",
                Part.ANCHOR_RESPONSES: "responses"}


def array_name(part: Part, *key: object) -> str:
    """The name of an array of `part`: `array_name(Part.UNIT_SIGNATURES, 3, "mlp.up")` is `units/3/mlp.up`."""
    return "/".join([ARRAY_PREFIX[part], *(str(k) for k in key)])


@dataclass(frozen=True)
class Fingerprint:
    """A fingerprint: its metadata, and its arrays by name.

    `arrays` is any mapping of name -> array: a dict, or (built, or loaded
    from a file) an `arrays_file.ArrayFile` that reads each array from its
    file when looked up, so only the arrays in use are in memory.
    """

    meta: dict[str, Any]
    arrays: Mapping[str, np.ndarray]

    @property
    def architecture(self) -> dict[str, Any]:
        """The architecture section as recorded, for outputs that print it whole; read fields from `arch`."""
        return self.meta["architecture"]

    @property
    def tensors(self) -> dict[str, dict[str, Any]]:
        """The tensor records as recorded (the layout's and tests' view); read them as `records`."""
        return self.meta["tensors"]

    @cached_property
    def records(self) -> dict[str, TensorRecord]:
        """Every tensor's typed record (`records.TensorRecord`), by the keys of `tensors`."""
        return tensor_records(self.meta["tensors"])

    @cached_property
    def stored_records(self) -> dict[str, StoredRecord]:
        """Every stored tensor's hash and size (`records.StoredRecord`), by its name in the checkpoint."""
        return stored_records(self.meta.get("stored_tensors"))

    @property
    def value_hash(self) -> str:
        """How tensor values were hashed (the builder's `HASH_NAME`; "sha256" in files made before the field): only
        fingerprints of one kind compare their hashes."""
        return self.meta.get("value_hash", "sha256")

    @cached_property
    def vocabulary(self) -> VocabularyRecord | None:
        """What the fingerprint keeps of its tokenizer, typed (`records.VocabularyRecord`); None without one."""
        return vocabulary_of(self.meta.get("vocabulary"))

    @cached_property
    def arch(self) -> Architecture:
        """The architecture, typed (`Architecture`)."""
        return architecture_of(self.meta["architecture"])

    @cached_property
    def source(self) -> SourceRecord:
        """What the fingerprint was made from (`records.SourceRecord`): path, format, files, hub pin."""
        return source_of(self.meta.get("source"))

    @cached_property
    def family(self) -> FamilyRecord:
        """The family the roles were read as, and why (`records.FamilyRecord`)."""
        return family_of(self.meta.get("family"))

    @cached_property
    def renamed_tensors(self) -> tuple[RenamedTensor, ...]:
        """Stored tensors read under a standard name they do not carry (`records.RenamedTensor`)."""
        return renamed_of(self.meta.get("renamed_tensors"))

    @cached_property
    def lineage_claims(self) -> tuple[LineageClaim, ...] | None:
        """What the checkpoint's files claim about its origin, unverified (`records.LineageClaim`); None for a
        fingerprint made before claims were recorded."""
        return lineage_claims_of(self.meta.get("lineage_claims"))

    @cached_property
    def notes(self) -> tuple[str, ...]:
        """What the builder (or the loader, for an old schema) noted about this fingerprint."""
        return tuple(self.meta.get("notes") or ())

    @cached_property
    def generic(self) -> GenericSection | None:
        """The generic view's section (`records.GenericSection`; its records checked as read), or None."""
        return generic_of(self.meta.get("generic"))  # `generic.META_KEY`

    @cached_property
    def made(self) -> MadeRecord:
        """How the fingerprint was made (`records.MadeRecord`): schema, tool version, date, variant, transfers."""
        return made_of(self.meta)

    def metadata_json(self) -> str:
        """The metadata as canonical JSON (keys sorted; what an attestation's digest covers)."""
        return json.dumps(self.meta, sort_keys=True, default=str)

    def section_json(self, name: str) -> str:
        """One section of the metadata (`architecture`, `source`) as JSON, as the reference database stores it."""
        return json.dumps(self.meta[name])

    def with_hub(self, hub: Mapping[str, Any]) -> Fingerprint:
        """This fingerprint with its source pinned to a hub repository and commit (`refs sync`)."""
        return Fingerprint(meta={**self.meta, "source": {**self.meta["source"], "hub": dict(hub)}}, arrays=self.arrays)

    def with_parts(self, parts: Iterable[Part], arrays: Mapping[str, np.ndarray], **marks: Any) -> Fingerprint:
        """A fingerprint of this one's metadata holding only `parts` (and `arrays`), with `marks` added to it."""
        return Fingerprint(meta={**self.meta, "parts": sorted(p.value for p in parts), **marks}, arrays=arrays)

    def mark(self, name: str) -> Any:
        """A mark `with_parts` added (None when absent)."""
        return self.meta.get(name)

    @property
    def parts(self) -> frozenset[Part]:
        """What this fingerprint holds (`Part`). Files made before `meta["parts"]` existed: by their variant."""
        recorded = self.meta.get("parts")
        if isinstance(recorded, list):
            known = {p.value for p in Part}
            return frozenset(Part(name) for name in recorded if name in known)
        if self.meta.get("variant") == "remote":
            return ROW_READ_PARTS
        if any(name.startswith("rows/") for name in self.arrays):
            return WHOLE_TENSOR_PARTS
        return WHOLE_TENSOR_PARTS - {Part.ROW_SAMPLES}  # made before row samples were added

    def holds(self, *parts: Part) -> bool:
        return all(part in self.parts for part in parts)

    def array(self, name: str) -> np.ndarray | None:
        return self.arrays.get(name)

    def part_array(self, part: Part, *key: object) -> np.ndarray | None:
        """One array of `part`, e.g. `fp.part_array(Part.ROW_SAMPLES, "layers.0.attn.q.weight")`; None if absent."""
        return self.arrays.get(array_name(part, *key))

    def nbytes(self) -> int:
        total = getattr(self.arrays, "total_bytes", None)  # an ArrayFile: from its shapes, nothing read
        return total() if total is not None else sum(a.nbytes for a in self.arrays.values())

    def file_contents(self) -> tuple[dict[str, np.ndarray], dict[str, str]]:
        """The arrays and the safetensors metadata of this fingerprint's file.

        Schema 4 and later in the packed layout; a fingerprint read from an older file is written back as
        it was (its schema number says what its hashes and statistics are, and older readers read it).
        """
        meta, arrays = (pack(self.meta, self.arrays) if schema_version(self.meta) >= PACKED_VERSION
                        else (self.meta, self.arrays))
        arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
        return arrays, {"provenance": json.dumps(meta, sort_keys=True)}

    def save(self, path: str | Path) -> Path:
        """Write the file (atomically); a schema-4 file's stacks row by row, never stacked in memory (`writer.py`)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if schema_version(self.meta) < PACKED_VERSION:
            arrays, metadata = self.file_contents()
            with replacing(path) as temporary:
                save_file(arrays, str(temporary), metadata=metadata)
            return path
        with replacing(path) as temporary, open(temporary, "wb") as handle:
            self._write_packed(handle)
        return path

    def file_bytes(self) -> bytes:
        """The bytes `save` writes, made without stacking a copy (but whole in memory: `write_file` streams)."""
        if schema_version(self.meta) < PACKED_VERSION:
            arrays, metadata = self.file_contents()
            return save(arrays, metadata=metadata)
        buffer = io.BytesIO()
        self._write_packed(buffer)
        return buffer.getvalue()  # the buffer's own bytes, not a copy, when nothing else holds them

    def write_file(self, handle) -> int:
        """Write the bytes `save` writes to an open binary file, array by array; the number of bytes written.

        What the reference database stores: the blob is copied from this file in pieces, so a fingerprint
        whose arrays are read from a file (`arrays_file.ArrayFile`) is never whole in memory.
        """
        start = handle.tell()
        if schema_version(self.meta) < PACKED_VERSION:
            handle.write(self.file_bytes())
        else:
            self._write_packed(handle)
        return handle.tell() - start

    def _write_packed(self, handle) -> None:
        meta, stacks, arrays = pack_layout(self.meta, self.arrays)
        write_safetensors(handle, stacks, arrays, {"provenance": json.dumps(meta, sort_keys=True)})


def as_saved(meta: dict[str, Any]) -> dict[str, Any]:
    """`meta` as a file holds it and `load_fingerprint` reads it back (JSON, keys sorted), so a fingerprint built
    now and one read from its file are equal."""
    return json.loads(json.dumps(meta, sort_keys=True))


def schema_version(meta: dict[str, Any]) -> int:
    """The version number of a fingerprint's schema (0 when it has none)."""
    schema = meta.get("schema")
    try:
        return int(schema.rsplit("/", 1)[1]) if isinstance(schema, str) else 0
    except ValueError:
        return 0


def is_fingerprint_file(path: Path) -> bool:
    """A safetensors file that is a provenance fingerprint by the strict check of `fingerprint_kind`."""
    return file_fingerprint_kind(path) == "fingerprint"


def file_fingerprint_kind(path: Path) -> str | None:
    """`fingerprint_kind` of the safetensors file at `path` (None when it is not a readable safetensors file)."""
    # lazy: the checkpoint reader's module imports torch; fingerprint files are read and written with numpy only
    from ..formats.safetensors_format import read_safetensors_header

    if not path.is_file() or not path.name.endswith((".safetensors", ".fp", ".fingerprint")):
        return None
    try:
        infos, metadata = read_safetensors_header(path)
    except Exception:
        return None
    return fingerprint_kind(metadata, [info.name for info in infos])


MIXED_FILE = ("holds fingerprint metadata and arrays that are not a fingerprint's (model weights?); a file is "
              "either a fingerprint or a checkpoint, so it is refused")


def fingerprint_kind(metadata: dict[str, Any], names: Iterable[str]) -> str | None:
    """What a safetensors header presents: "fingerprint", "mixed" or None (no fingerprint metadata: weights).

    A fingerprint is recognised strictly: `provenance` metadata and nothing
    but arrays of a fingerprint's own kinds (`sketch/...`, `rows/...`; their
    dtypes and shapes are then checked by `load_fingerprint`). A file with
    `provenance` metadata and any other tensor is "mixed": weights dressed as
    a fingerprint (or the reverse), to be refused, never read as either.
    """
    if "provenance" not in metadata:
        return None
    if any(kind not in FINGERPRINT_ARRAY_KINDS or not key for kind, _, key in (n.partition("/") for n in names)):
        # arrays of a newer schema cannot be judged here: a fingerprint, which `load_fingerprint` refuses as too new
        return "fingerprint" if _newer_schema(metadata["provenance"]) else "mixed"
    return "fingerprint"


def _newer_schema(raw: Any) -> bool:
    try:
        schema = json.loads(raw).get("schema") if isinstance(raw, str) and len(raw) <= MAX_META_BYTES else None
        return int(str(schema).removeprefix("provenance.fingerprint/")) > SCHEMA_VERSION
    except (ValueError, AttributeError, RecursionError):
        return False


WEIGHT_LIKE_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")


def fingerprint_file_at(path: Path) -> Path | None:
    """The fingerprint file PATH names: PATH itself, or the one a folder holds in place of weights.

    A folder whose only weights-like files are fingerprints (`provenance fingerprint M -o fpdir/m.safetensors`)
    is read as that fingerprint, never as a checkpoint of one tensor file; several are an error naming them.
    A folder laid out as a checkpoint (it has a config.json) is not: a fingerprint there stands where weights
    are expected, and the checkpoint reader names it as such (`load.refuse_local_fingerprints`).
    """
    if is_fingerprint_file(path):
        return path
    if not path.is_dir() or (path / "config.json").exists():
        return None
    try:
        files = sorted(p for p in path.iterdir() if p.name.lower().endswith(WEIGHT_LIKE_SUFFIXES) and p.is_file())
    except OSError:
        return None  # the checkpoint reader reports an unreadable folder
    fingerprints = [p for p in files if is_fingerprint_file(p)]
    if not fingerprints or len(fingerprints) < len(files):
        return None
    if len(fingerprints) > 1:
        raise UnreadablePathError(path, f"holds {len(fingerprints)} fingerprint files and no weights; pass one of "
                                        f"them: {', '.join(p.name for p in fingerprints[:5])}")
    return fingerprints[0]


def load_fingerprint(path: str | Path) -> Fingerprint:
    """The fingerprint in the file at `path`, checked; its arrays are read from the file when looked up."""
    # lazy: the checkpoint reader's module imports torch; fingerprint files are read and written with numpy only
    from ..formats.byte_reader import LocalFile
    from ..formats.safetensors_format import read_layout

    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise UnreadablePathError(path, f"cannot read: {exc.strerror or exc}") from exc
    if size > MAX_FINGERPRINT_BYTES:
        raise CorruptFileError(path, f"fingerprint file is {size} bytes, over the {MAX_FINGERPRINT_BYTES}-byte limit")
    infos, metadata, offsets, data_start = read_layout(LocalFile(path))
    raw = metadata.get("provenance")
    if raw is None:
        raise CorruptFileError(path, "not a provenance fingerprint (no 'provenance' metadata)")
    if len(raw) > MAX_META_BYTES:
        raise CorruptFileError(path, f"fingerprint metadata is {len(raw)} characters, over the {MAX_META_BYTES} limit")
    try:
        meta = json.loads(raw)
    except ValueError as exc:
        raise CorruptFileError(path, f"fingerprint metadata is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise CorruptFileError(path, "fingerprint metadata JSON is nested too deeply") from exc
    schema = meta.get("schema") if isinstance(meta, dict) else None
    if not isinstance(schema, str) or not schema.startswith("provenance.fingerprint/"):
        raise CorruptFileError(path, f"fingerprint metadata has schema {_short(schema)}, expected {FINGERPRINT_SCHEMA}")
    try:
        version = int(schema.rsplit("/", 1)[1])
    except ValueError as exc:
        raise CorruptFileError(path, f"fingerprint schema {_short(schema)} has no version number") from exc
    if version > SCHEMA_VERSION:
        raise UnsupportedError(path, f"fingerprint schema version {version} is newer than this tool reads ({SCHEMA_VERSION}); upgrade provenance")
    if fingerprint_kind(metadata, [info.name for info in infos]) == "mixed":
        raise CorruptFileError(path, MIXED_FILE)
    header = {info.name: (info.dtype, info.shape) for info in infos}
    arrays: Mapping[str, np.ndarray]
    if version >= PACKED_VERSION:  # the records are arrays: read them, then check what they hold
        problem = _header_problem(header)
        if problem is not None:
            raise CorruptFileError(path, f"fingerprint {problem}")
        stored = _array_file(path, infos, offsets, data_start)
        try:
            tables = {name: stored[name] for name in stored if name.startswith(TABLE_PREFIX)
                      or name.startswith(STACK_PREFIX) and name.count("/") > 1}
            meta = unpack_tables(meta, tables)
            arrays = unstacked(stored, tables)
        except PackingError as exc:
            raise CorruptFileError(path, f"fingerprint {exc}") from exc
        except (TypeError, ValueError, KeyError, IndexError, AttributeError) as exc:
            # hostile tables can be malformed in more ways than `unpack` names; each is a corrupt file, never a crash
            raise CorruptFileError(path, f"fingerprint tables do not decode ({type(exc).__name__}: {exc})") from exc
        except OSError as exc:
            raise CorruptFileError(path, f"fingerprint arrays cannot be read: {exc}") from exc
        header = {name: (NUMPY_DTYPES.get(dtype.str, dtype.str), shape)
                  for name, (dtype, shape) in ((n, arrays.spec(n)) for n in arrays)}
    for key in ("architecture", "tensors", "source"):
        if not isinstance(meta.get(key), dict):
            raise CorruptFileError(path, f"fingerprint metadata lacks its {_short(key)} section")
    problem = _meta_problem(meta)
    if problem is None:
        problem = _array_problem(meta, header)
    if problem is not None:
        raise CorruptFileError(path, f"fingerprint {problem}")
    if version in SHA256_HASH_VERSIONS:
        meta["notes"] = list(meta.get("notes") or []) + [
            f"a schema-{version} fingerprint (from provenance {_short(meta.get('tool_version'))}): its tensor hashes "
            "(sha256) match none made by this version, so bit-identical tensors are not recognised against it; "
            "rebuild it with `provenance fingerprint CHECKPOINT -o FILE`"]
    if version < PACKED_VERSION:
        arrays = _array_file(path, infos, offsets, data_start)
    return Fingerprint(meta=meta, arrays=arrays)


def _array_file(path: Path, infos, offsets: dict[str, tuple[int, int]], data_start: int) -> ArrayFile:
    """The file's arrays as stored (header validated: dtypes checked, offsets inside the file), read when asked."""
    entries = {}
    for info in infos:
        dtype = NUMPY_OF.get(info.dtype)
        if dtype is None:
            raise CorruptFileError(path, f"fingerprint array {_short(info.name)} has dtype {info.dtype}, "
                                         "which a fingerprint file does not hold")
        entries[info.name] = (dtype, tuple(info.shape), data_start + offsets[info.name][0])
    try:
        return ArrayFile.open(path, entries)
    except OSError as exc:
        raise UnreadablePathError(path, f"cannot read: {exc.strerror or exc}") from exc


# --------------------------------------------------------------------------- validation of untrusted fingerprints

def _is_int(value: Any, low: int = 0, high: int = 1 << 62) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)) and math.isfinite(value)


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _short(value: Any) -> str:
    """A bad value quoted in an error, cut short: a hostile file can hold megabytes in one value."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _architecture_problem(arch: dict[str, Any]) -> str | None:


    for spec in fields(Architecture):
        value = arch.get(spec.name)
        kind = str(spec.type)
        if value is None:
            continue
        if spec.name == "disagreements":
            ok = _is_str_list(value)
        elif kind.startswith("int"):
            ok = _is_int(value, 0, MAX_LAYERS) if spec.name == "num_layers" else _is_int(value, -(1 << 40), 1 << 40)
        elif kind.startswith("float"):
            ok = _is_number(value)
        elif kind.startswith("bool"):
            ok = isinstance(value, bool)
        else:
            ok = isinstance(value, str)
        if not ok:
            return f"architecture {spec.name} = {_short(value)} is not a valid {kind}"
    return None


def _shape_problem(where: str, shape: Any) -> str | None:
    if not isinstance(shape, list) or len(shape) > 8 or not all(_is_int(d) for d in shape) or math.prod(shape) > 1 << 62:
        return f"{where} has shape {_short(shape)}, not a list of at most 8 non-negative integers"
    return None


def _meta_problem(meta: dict[str, Any]) -> str | None:
    """The first thing in the metadata that the comparison could not use, or None."""
    problem = _architecture_problem(meta["architecture"])
    if problem:
        return problem
    for key, record in meta["tensors"].items():
        if not isinstance(record, dict):
            return f"tensor record {_short(key)} is not an object"
        problem = _shape_problem(f"tensor {_short(key)}", record.get("shape"))
        if problem:
            return problem
        if "sha256" not in record or not (record["sha256"] is None or isinstance(record["sha256"], str)):
            return f"tensor {_short(key)} has sha256 {_short(record.get('sha256'))}, not a string"
        for name in ("dtype", "source", "how"):
            if not (record.get(name) is None or isinstance(record.get(name), str)):
                return f"tensor {_short(key)} has {name} {_short(record.get(name))}, not a string"
        stats = record.get("stats", {})
        if (not isinstance(stats, dict) or not all(_is_number(v) for v in stats.values())
                or not _is_int(stats.get("numel", 0))):
            return f"tensor {_short(key)} has statistics {_short(stats)}, not an object of finite numbers"
    stored = meta.get("stored_tensors") or {}
    if not isinstance(stored, dict):
        return "stored_tensors is not an object"
    for name, record in stored.items():
        if (not isinstance(record, dict) or "sha256" not in record
                or not (record["sha256"] is None or isinstance(record["sha256"], str)) or not _is_int(record.get("numel", 0))):
            return f"stored tensor record {_short(name)} is not an object with a sha256 string and an integer numel"
    vocabulary = meta.get("vocabulary")
    if vocabulary is not None:
        if not isinstance(vocabulary, dict):
            return "vocabulary is not an object"
        if not _is_str_list(vocabulary.get("anchor_tokens")):
            return "vocabulary anchor_tokens is not a list of strings"
        minhash = vocabulary.get("minhash", [])
        if not isinstance(minhash, list) or not all(_is_int(v, 0, (1 << 64) - 1) for v in minhash):
            return "vocabulary minhash is not a list of 64-bit integers"
    family = meta.get("family", {})
    if not isinstance(family, dict) or not (family.get("name") is None or isinstance(family.get("name"), str)):
        return "family is not an object with a name string"
    for name in ("renamed_tensors", "lineage_claims"):
        value = meta.get(name)
        if not (value is None or (isinstance(value, list) and all(isinstance(v, dict) for v in value))):
            return f"{name} is not a list of objects"
    if not (meta.get("variant") is None or isinstance(meta.get("variant"), str)):
        return "variant is not a string"
    if not (meta.get("parts") is None or _is_str_list(meta.get("parts"))):
        return "parts is not a list of strings"
    if not (meta.get("notes") is None or _is_str_list(meta.get("notes"))):
        return "notes is not a list of strings"
    return None


# Array kinds the comparison reads, by name prefix, and their number of dimensions.
ARRAY_DIMS = {"sketch": 1, "gram": 1, "units": 2, "anchors": 2, "rows": 2, "rowunits": 2, "responses": 2}
ARRAY_DTYPES = {"F16", "F32", "F64"}
PACKING_DTYPES = {"I64", "U8", "F64"}  # record tables and the name tables of stacks (schema 4)
NUMPY_DTYPES = {"<f2": "F16", "<f4": "F32", "<f8": "F64", "<i8": "I64", "|u1": "U8"}


def _header_problem(arrays: dict[str, tuple[str, tuple[int, ...]]]) -> str | None:
    """The first array of a schema-4 file whose dtype its layout does not allow, or None (before anything is read)."""
    for name, (dtype, shape) in arrays.items():
        table = name.startswith(TABLE_PREFIX) or name.startswith(STACK_PREFIX) and name.count("/") > 1
        if dtype not in (PACKING_DTYPES if table else ARRAY_DTYPES):
            return f"array {_short(name)} has dtype {dtype}, expected {'I64, U8 or F64' if table else 'F16, F32 or F64'}"
        if name.startswith(STACK_PREFIX) and name.count("/") == 1 and len(shape) < 2:
            return f"array {_short(name)} has shape {list(shape)}, expected a stack of arrays"
    return None
# Array kinds a fingerprint file holds: those of ARRAY_DIMS, `generic/` samples (fingerprint/generic.py), and
# schema 4's record tables and stacks (packing.py), whose unpacked arrays `_array_problem` checks like the rest.
FINGERPRINT_ARRAY_KINDS = frozenset(ARRAY_DIMS) | {"generic", TABLE_PREFIX.rstrip("/"), STACK_PREFIX.rstrip("/")}


def _array_problem(meta: dict[str, Any], arrays: dict[str, tuple[str, tuple[int, ...]]]) -> str | None:
    """The first array whose dtype or shape the comparison could not use, or None (from the header alone)."""
    for name, (dtype, shape) in arrays.items():
        if dtype not in ARRAY_DTYPES:
            return f"array {_short(name)} has dtype {dtype}, expected F16, F32 or F64"
        kind, _, key = name.partition("/")
        dims = ARRAY_DIMS.get(kind)
        if dims is not None and len(shape) != dims:
            return f"array {_short(name)} has shape {list(shape)}, expected {dims} dimensions"
        record = meta["tensors"].get(key) if kind == "sketch" else None
        if record is not None:
            numel = math.prod(record["shape"])
            whole = len(record["shape"]) == 1 and numel <= FULL_VECTOR_LIMIT or numel <= SKETCH_SIZE
            expected = numel if whole else SKETCH_SIZE
            if shape != (expected,):
                return f"array {_short(name)} holds {list(shape)} values, but tensor {_short(key)} of shape {record['shape']} has {expected} sketch positions"
    return None
