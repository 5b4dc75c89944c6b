"""Reference bundles: share a database's fingerprints (never the weights) as one file.

Format (schema `provenance.refs-bundle/1`): a zip archive, members stored
uncompressed (fingerprint arrays do not compress), holding exactly
- `fingerprints/NNNN.safetensors`: one fingerprint file per reference, the
  bytes the database stores (a fingerprint file, schema `provenance.fingerprint/N`, validated on import like any);
- `manifest.json`: `schema`, `tool_version`, `created`, `database` (the source
  file's name, schema version and revision at export), and `references`: per
  reference its `name`, `file`, `sha256` and `bytes` of the member, plus
  `family`, `fingerprint_schema`, `tool_version` and `added` for people reading it.

Zip was chosen over a tar or one big safetensors file because members can be
read one at a time by name (one fingerprint in memory at a time) and the
standard library reads it; nothing in it is code.

Import treats the bundle as untrusted: size caps on the file, the manifest and
each member (declared and actual sizes), a strict manifest schema, member names
that must be exactly `manifest.json` or the `fingerprints/NNNN.safetensors`
files the manifest lists (no others, no duplicates, no encryption, stored or
deflated only), the sha256 of every member, and every fingerprint parsed by
the validated loader. Members are read into memory by name and never
extracted, so no archive name becomes a disk path. All references go into the
database in one transaction (`Registry.add_many`): every one or none. Names
already in the database are refused unless `replace`.

Export reads the database in one snapshot (consistent whatever writers do
meanwhile) and writes the bundle atomically: a temporary file in the target's
folder, fsynced, then renamed over the target.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from .. import __version__
from ..atomic_files import replacing
from ..errors import CorruptFileError, UnreadablePathError, UnsupportedError
from .database import DB_SCHEMA_VERSION, Registry, RegistryError, SignatureBlob, fingerprint_from_bytes

BUNDLE_SCHEMA = "provenance.refs-bundle/1"
BUNDLE_VERSION = 1
MANIFEST = "manifest.json"
MEMBER_NAME = re.compile(r"fingerprints/[0-9]{4,9}\.safetensors")
SHA256 = re.compile(r"[0-9a-f]{64}")

MAX_BUNDLE_BYTES = 64 * 1024**3  # the whole file
MAX_MANIFEST_BYTES = 16 * 1024**2
MAX_MEMBER_BYTES = 1024**3  # one fingerprint (LLaMA-7B's is 61 MB)
MAX_REFERENCES = 100_000


@dataclass(frozen=True)
class BundleResult:
    path: Path
    names: list[str]
    revision: int  # the database's revision after import, or the one exported


# --- export -------------------------------------------------------------------------------------

def export_bundle(registry: Registry, out: str | Path, names: list[str] | None = None) -> BundleResult:
    """Write the references `names` (default: all) of `registry` to the bundle file `out`."""
    out = Path(out)
    with registry.snapshot():
        available = registry.names()
        chosen = list(dict.fromkeys(names)) if names else available
        missing = [n for n in chosen if n not in set(available)]
        if missing:
            raise RegistryError(registry.path, f"no reference named {', '.join(map(repr, missing))}")
        revision = registry.revision
        out.parent.mkdir(parents=True, exist_ok=True)
        with replacing(out) as temporary:
            references = []
            with zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_STORED) as archive:
                for index, name in enumerate(chosen):
                    blob = registry.fingerprint_blob(name)
                    entry = registry.entry(name)
                    member = f"fingerprints/{index:04d}.safetensors"
                    archive.writestr(member, blob)
                    references.append({"name": name, "file": member, "sha256": hashlib.sha256(blob).hexdigest(),
                                       "bytes": len(blob), "family": entry.family, "fingerprint_schema": entry.schema,
                                       "tool_version": entry.tool_version, "added": entry.added})
                    del blob
                manifest = {"schema": BUNDLE_SCHEMA, "tool_version": __version__,
                            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                            "database": {"file": registry.path.name, "schema_version": DB_SCHEMA_VERSION,
                                         "revision": revision},
                            "references": references}
                archive.writestr(MANIFEST, json.dumps(manifest, indent=2, ensure_ascii=False))
    return BundleResult(out, chosen, revision)


# --- import -------------------------------------------------------------------------------------

def _open(bundle: Path) -> zipfile.ZipFile:
    try:
        size = bundle.stat().st_size
    except OSError as exc:
        raise UnreadablePathError(bundle, exc.strerror or "cannot read") from exc
    if not bundle.is_file():
        raise UnreadablePathError(bundle, "not a file (a reference bundle is one .zip file)")
    if size > MAX_BUNDLE_BYTES:
        raise CorruptFileError(bundle, f"bundle is {size} bytes, over the {MAX_BUNDLE_BYTES}-byte limit")
    try:
        return zipfile.ZipFile(bundle, "r")
    except (zipfile.BadZipFile, ValueError, EOFError) as exc:
        raise CorruptFileError(bundle, f"not a reference bundle (not a valid zip archive: {exc})") from exc
    except OSError as exc:
        raise UnreadablePathError(bundle, exc.strerror or str(exc)) from exc


def _check_members(bundle: Path, archive: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    members: dict[str, zipfile.ZipInfo] = {}
    total = 0
    for info in archive.infolist():
        name = info.filename
        if name in members:
            raise CorruptFileError(bundle, f"member {name!r} appears twice")
        if name != MANIFEST and not MEMBER_NAME.fullmatch(name):
            raise CorruptFileError(bundle, f"unexpected member {name!r} (a bundle holds {MANIFEST} and "
                                           "fingerprints/NNNN.safetensors only)")
        if info.flag_bits & 0x1:
            raise CorruptFileError(bundle, f"member {name!r} is encrypted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise CorruptFileError(bundle, f"member {name!r} uses compression method {info.compress_type} "
                                           "(only stored or deflated are read)")
        limit = MAX_MANIFEST_BYTES if name == MANIFEST else MAX_MEMBER_BYTES
        if info.file_size > limit:
            raise CorruptFileError(bundle, f"member {name!r} is {info.file_size} bytes, over the {limit}-byte limit")
        total += info.file_size
        members[name] = info
    if total > MAX_BUNDLE_BYTES:
        raise CorruptFileError(bundle, f"members add up to {total} bytes, over the {MAX_BUNDLE_BYTES}-byte limit")
    if MANIFEST not in members:
        raise CorruptFileError(bundle, f"no {MANIFEST} (not a reference bundle)")
    return members


def _read_member(bundle: Path, archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> bytes:
    """A member's bytes, never more than its declared size (which was checked against `limit`)."""
    try:
        with archive.open(info) as member:
            data = member.read(limit + 1)  # zipfile also stops at the declared size and checks the CRC
    except (zipfile.BadZipFile, ValueError, EOFError, OSError, RuntimeError) as exc:
        raise CorruptFileError(f"{bundle}:{info.filename}", f"cannot read the member: {exc}") from exc
    if len(data) != info.file_size:
        raise CorruptFileError(f"{bundle}:{info.filename}",
                               f"member holds {len(data)} bytes, its directory entry says {info.file_size}")
    return data


def _manifest_error(bundle: Path, problem: str) -> CorruptFileError:
    return CorruptFileError(f"{bundle}:{MANIFEST}", problem)


def _check_manifest(bundle: Path, raw: bytes, registry: Registry) -> dict[str, Any]:
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise _manifest_error(bundle, f"not UTF-8 text (byte {exc.start})") from exc
    except (ValueError, RecursionError) as exc:
        raise _manifest_error(bundle, f"not valid JSON: {exc}") from exc
    if not isinstance(manifest, dict):
        raise _manifest_error(bundle, f"must be a JSON object, not {type(manifest).__name__}")
    schema = manifest.get("schema")
    if not isinstance(schema, str) or not schema.startswith("provenance.refs-bundle/"):
        raise _manifest_error(bundle, f"schema is {schema!r}, expected {BUNDLE_SCHEMA!r}")
    version = schema.rsplit("/", 1)[1]
    if not version.isdigit():
        raise _manifest_error(bundle, f"schema {schema!r} has no version number")
    if int(version) > BUNDLE_VERSION:
        raise UnsupportedError(f"{bundle}:{MANIFEST}", f"bundle schema version {version} is newer than this tool "
                                                       f"reads ({BUNDLE_VERSION}); upgrade provenance")
    references = manifest.get("references")
    if not isinstance(references, list):
        raise _manifest_error(bundle, "'references' must be a list")
    if len(references) > MAX_REFERENCES:
        raise _manifest_error(bundle, f"{len(references)} references, over the limit of {MAX_REFERENCES}")
    names: set[str] = set()
    files: set[str] = set()
    for index, ref in enumerate(references):
        where = f"references[{index}]"
        if not isinstance(ref, dict):
            raise _manifest_error(bundle, f"{where} must be an object")
        name, file, digest, size = ref.get("name"), ref.get("file"), ref.get("sha256"), ref.get("bytes")
        if not isinstance(name, str):
            raise _manifest_error(bundle, f"{where}.name must be a string, not {name!r}")
        try:
            registry.check_name(name)
        except RegistryError as exc:
            raise _manifest_error(bundle, f"{where}: {exc.problem}") from exc
        if name in names:
            raise _manifest_error(bundle, f"reference name {name!r} appears twice")
        if not isinstance(file, str) or not MEMBER_NAME.fullmatch(file):
            raise _manifest_error(bundle, f"{where}.file {file!r} is not of the form fingerprints/NNNN.safetensors")
        if file in files:
            raise _manifest_error(bundle, f"member {file!r} is listed twice")
        if not isinstance(digest, str) or not SHA256.fullmatch(digest):
            raise _manifest_error(bundle, f"{where}.sha256 must be 64 lowercase hex digits, not {digest!r}")
        if not isinstance(size, int) or isinstance(size, bool) or not 0 < size <= MAX_MEMBER_BYTES:
            raise _manifest_error(bundle, f"{where}.bytes must be an integer from 1 to {MAX_MEMBER_BYTES}, not {size!r}")
        names.add(name)
        files.add(file)
    return manifest


def _validated(bundle: Path, archive: zipfile.ZipFile, registry: Registry) -> dict[str, Any]:
    """The manifest, checked, with the archive's members checked against it (fingerprints not read yet)."""
    members = _check_members(bundle, archive)
    raw = _read_member(bundle, archive, members[MANIFEST], MAX_MANIFEST_BYTES)
    manifest = _check_manifest(bundle, raw, registry)
    listed = {ref["file"]: ref for ref in manifest["references"]}
    for name, info in members.items():
        if name == MANIFEST:
            continue
        if name not in listed:
            raise CorruptFileError(bundle, f"member {name!r} is not listed in {MANIFEST}")
        if info.file_size != listed[name]["bytes"]:
            raise CorruptFileError(bundle, f"member {name!r} is {info.file_size} bytes, "
                                           f"the manifest says {listed[name]['bytes']}")
    for file, ref in listed.items():
        if file not in members:
            raise CorruptFileError(bundle, f"{MANIFEST} lists {file!r} (reference {ref['name']!r}) "
                                           "but the bundle has no such member")
    return manifest


def import_bundle(registry: Registry, bundle: str | Path, replace: bool = False,
                  signer: Callable[[Any], SignatureBlob] | None = None) -> BundleResult:
    """Add every reference of `bundle` to `registry` in one transaction, after validating all of it."""
    bundle = Path(bundle)
    with _open(bundle) as archive:
        manifest = _validated(bundle, archive, registry)
        references = manifest["references"]
        clashes = sorted({ref["name"] for ref in references} & set(registry.names()))
        if clashes and not replace:
            shown = ", ".join(map(repr, clashes[:5])) + (f" and {len(clashes) - 5} more" if len(clashes) > 5 else "")
            raise RegistryError(registry.path, f"{len(clashes)} reference(s) of {bundle} already exist: {shown}; "
                                               "nothing imported (use --replace to overwrite them)")

        def fingerprints() -> Iterator[tuple[str, Any]]:
            # Read lazily inside add_many's transaction: one fingerprint in memory at a time,
            # and any bad member rolls back everything before it.
            for ref in references:
                info = archive.getinfo(ref["file"])
                data = _read_member(bundle, archive, info, MAX_MEMBER_BYTES)
                where = f"{bundle}:{ref['file']}"
                actual = hashlib.sha256(data).hexdigest()
                if actual != ref["sha256"]:
                    raise CorruptFileError(where, f"sha256 {actual} differs from the manifest's {ref['sha256']} "
                                                  f"(reference {ref['name']!r}); nothing imported")
                fingerprint = fingerprint_from_bytes(data, where)
                del data
                yield ref["name"], fingerprint

        names = registry.add_many(fingerprints(), replace=replace, signer=signer)
    return BundleResult(bundle, names, registry.revision)
