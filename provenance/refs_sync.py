"""`provenance refs sync`: fingerprint the catalog's open base models into the reference database by range reads.

The catalog (`provenance/references/catalog.json`, or `--catalog FILE`)
lists each model's repo id, the revision asked for, its approximate size
and family. For each model chosen (all up to `DEFAULT_MAX_PARAMS`
parameters by default; `--max-size SIZE`, `--all`, `--only NAME...`), in
catalog order:
1. the revision is resolved to a commit on the hub (`remote.hub.resolve_commit`);
2. a reference of that name synced from the same repository at that commit
   is skipped; a reference of that name not synced from the catalog is left
   alone (skipped, with the reason);
3. otherwise hf://REPO@COMMIT is fingerprinted by range requests (the
   "remote" variant: headers, 1-D tensors and sampled rows only) and stored
   under the catalog name, replacing an older sync, with
   `source.hub = {repo, revision, commit, catalog}` in its metadata, which
   the database keeps in its `source` column (no schema change: older
   databases open as they are).
Each model is its own transaction, so an interrupted sync keeps what it
finished and a rerun resumes where it stopped; one model's failure (a gated
repository without HF_TOKEN, weights only as .bin, a server that stalls past
the per-model deadline, `--deadline`) is reported and the sync goes on. Progress is one line per model on stderr, then a summary of bytes
read and time.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .errors import CorruptFileError, ProvenanceError
from .remote.budget import deadline_scope
from .remote.hub import resolve_commit
from .visible_text import clean

CATALOG_PATH = Path(__file__).resolve().parent / "references" / "catalog.json"
CATALOG_SCHEMA = "provenance.catalog/1"
DEFAULT_MAX_PARAMS = 15e9  # the 14B class and below (Qwen2.5-14B has 14.7B parameters)
_UNITS = {"K": 1e3, "M": 1e6, "B": 1e9, "G": 1e9, "T": 1e12}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMBGT]?)(I?B)?\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class CatalogModel:
    name: str
    repo: str
    revision: str
    revision_kind: str  # "branch", "tag" or "commit"
    params: int
    bytes: int
    family: str
    note: str = ""
    dequantize: str = ""  # the quantization scheme to undo (catalog "weights"), named as formats/quantized names it: fp8, mxfp4


@dataclass(frozen=True)
class SizeLimit:
    """A --max-size: a parameter count ("15B") or checkpoint bytes ("30GB")."""

    value: float
    unit: str  # "params" or "bytes"

    def allows(self, model: CatalogModel) -> bool:
        return (model.params if self.unit == "params" else model.bytes) <= self.value

    def __str__(self) -> str:
        return f"{self.value / 1e9:g}B parameters" if self.unit == "params" else f"{self.value / 1e9:g} GB"


def parse_size(text: str) -> SizeLimit:
    """'15B', '500M' (parameters) or '30GB', '800MB', '1.5TiB' (checkpoint bytes); ValueError otherwise."""
    match = _SIZE.match(text or "")
    if not match or not (match[2] or match[3]):
        raise ValueError(f"size {text!r}: write parameters as 15B or 500M, or checkpoint bytes as 30GB or 800MB")
    number, prefix, suffix = float(match[1]), match[2].upper(), (match[3] or "").upper()
    if suffix:  # bytes: 30GB, 800MB, 1.5TiB (a lone B after the number means billions of parameters)
        power = "KMGT".index(prefix) + 1 if prefix in ("K", "M", "G", "T") else 0
        return SizeLimit(number * (1024 if suffix == "IB" else 1000) ** power, "bytes")
    return SizeLimit(number * _UNITS[prefix], "params")


def load_catalog(path: str | Path | None = None) -> list[CatalogModel]:
    """The catalog's models, validated (one-line errors naming the file and the entry)."""
    path = Path(path) if path else CATALOG_PATH
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise CorruptFileError(path, f"cannot read the catalog: {exc.strerror or exc}") from exc
    except (UnicodeDecodeError, ValueError) as exc:
        raise CorruptFileError(path, f"catalog is not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or data.get("schema") != CATALOG_SCHEMA or not isinstance(data.get("models"), list):
        raise CorruptFileError(path, f"not a catalog: expected an object with schema {CATALOG_SCHEMA!r} and a 'models' list")
    models: list[CatalogModel] = []
    seen: set[str] = set()
    for index, entry in enumerate(data["models"]):
        try:
            model = CatalogModel(name=entry["name"], repo=entry["repo"], revision=entry.get("revision") or "main",
                                 revision_kind=entry.get("revision_kind", "branch"), params=int(entry["params"]),
                                 bytes=int(entry["bytes"]), family=entry.get("family", ""), note=entry.get("note", ""),
                                 dequantize=(entry.get("weights") or {}).get("dequantize", ""))
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptFileError(path, f"catalog entry {index} needs name, repo, params and bytes ({exc})") from exc
        if not all(isinstance(value, str) for value in (model.name, model.repo, model.revision, model.family)):
            raise CorruptFileError(path, f"catalog entry {index}: name, repo, revision and family must be strings")
        if not model.name.isprintable() or not 0 < len(model.name) <= 200:
            raise CorruptFileError(path, f"catalog entry {index}: name {clean(model.name, 60)!r} is not a short "
                                         "printable name")
        if not re.fullmatch(r"[\w.\-/]{1,200}", model.revision):
            raise CorruptFileError(path, f"catalog entry {model.name!r}: revision {clean(model.revision, 60)!r} is not "
                                         "a branch, tag or commit name")
        if not re.fullmatch(r"[A-Za-z0-9][\w.\-]*/[\w.\-]+", model.repo):
            raise CorruptFileError(path, f"catalog entry {model.name!r}: repo {model.repo!r} is not ORG/NAME")
        if model.revision_kind == "commit" and not re.fullmatch(r"[0-9a-f]{40}", model.revision):
            raise CorruptFileError(path, f"catalog entry {model.name!r}: a pinned commit must be 40 hex digits")
        if model.name.lower() in seen:
            raise CorruptFileError(path, f"catalog names {model.name!r} twice")
        seen.add(model.name.lower())
        models.append(model)
    return models


def select(models: list[CatalogModel], only: list[str] | None, limit: SizeLimit | None,
           everything: bool) -> tuple[list[CatalogModel], list[tuple[CatalogModel, str]]]:
    """(models to sync, [(model, why it is left out)]). --only names (or repo ids) apply the size limit only if given."""
    if only:
        wanted = {w.lower() for w in only}
        known = {m.name.lower() for m in models} | {m.repo.lower() for m in models}
        unknown = sorted(w for w in only if w.lower() not in known)
        if unknown:
            raise ProvenanceError(None, f"not in the catalog: {', '.join(unknown)} (see `provenance refs sync --list`)")
        models = [m for m in models if m.name.lower() in wanted or m.repo.lower() in wanted]
    if everything:
        return models, []
    if limit is None and not only:
        limit = SizeLimit(DEFAULT_MAX_PARAMS, "params")
    if limit is None:
        return models, []
    chosen = [m for m in models if limit.allows(m)]
    left = [(m, f"larger than {limit}") for m in models if not limit.allows(m)]
    return chosen, left


@dataclass
class SyncSummary:
    synced: list[tuple[str, int, float]] = field(default_factory=list)  # name, bytes read, seconds
    up_to_date: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    stopped: str | None = None  # the network failure that ended the sync early (the hub cannot be reached)

    @property
    def bytes_read(self) -> int:
        return sum(n for _, n, _ in self.synced)

    def render(self) -> str:
        return (f"refs sync: {len(self.synced)} fingerprinted, {len(self.up_to_date)} already at the resolved commit, "
                f"{len(self.skipped)} skipped, {len(self.failed)} failed; {self.bytes_read / 1e6:.1f} MB read from "
                f"weight files in {self.seconds:.1f} s")


def stored_hub_source(registry, name: str) -> dict | None:
    """The `source.hub` record of reference `name` (None: no such reference; {} : one not synced from a hub)."""
    if name not in registry.names():
        return None
    hub = registry.entry(name).source.get("hub")
    return hub if isinstance(hub, dict) else {}


def sync(registry, models: list[CatalogModel], say: Callable[[str], None] = lambda line: None,
         model_seconds: float | None = None) -> SyncSummary:
    """Each model within its own deadline (`model_seconds`, else the remote default): one stall fails one model."""
    # lazy: numpy and torch, which `refs sync --list` and --max-size parsing do not need
    from .audit.shortlist import add_reference
    from .fingerprint.load import fingerprint_for

    summary = SyncSummary()
    started = time.perf_counter()
    width = len(str(len(models)))
    for number, model in enumerate(models, start=1):
        prefix = clean(f"[{number:>{width}}/{len(models)}] {model.name} ({model.repo}@{model.revision})", 300)
        stored = stored_hub_source(registry, model.name)
        if stored == {} or (stored and stored.get("repo") != model.repo):
            why = "a reference of that name exists that was not synced from this repository; `refs remove` it first"
            summary.skipped.append((model.name, why))
            say(f"{prefix}: skipped: {why}")
            continue
        begin = time.perf_counter()
        try:
            with deadline_scope(model_seconds, "this model (refs sync --deadline, per model)"):
                commit = resolve_commit(model.repo, model.revision)
                if stored and stored.get("commit") == commit:
                    summary.up_to_date.append(model.name)
                    say(f"{prefix}: already at {commit[:12]}")
                    continue
                fingerprint = fingerprint_for(f"hf://{model.repo}@{commit}")
            fingerprint.meta["source"]["hub"] = {"repo": model.repo, "revision": model.revision, "commit": commit,
                                                 "catalog": model.name}
            add_reference(registry, model.name, fingerprint, replace=True)
        except Exception as exc:  # one model's failure is reported; the sync goes on (KeyboardInterrupt stops it)
            problem = str(exc) if isinstance(exc, ProvenanceError) else clean(f"unexpected {type(exc).__name__}: {exc}")
            summary.failed.append((model.name, problem))
            if network_failure(exc):  # every other model would fail the same way: say it once and stop
                summary.stopped = problem
                break
            say(f"{prefix}: failed: {problem}")
            continue
        remote = fingerprint.meta.get("remote") or {}
        seconds = time.perf_counter() - begin
        read = int(remote.get("bytes_read") or 0)
        summary.synced.append((model.name, read, seconds))
        fraction = remote.get("fraction_read")
        say(f"{prefix}: {commit[:12]} fingerprinted, {read / 1e6:.1f} MB read"
            + (f" ({100 * fraction:.2f}% of {remote['checkpoint_bytes'] / 1e9:.2f} GB)" if fraction else "")
            + f" in {seconds:.1f} s")
    summary.seconds = time.perf_counter() - started
    return summary


def network_failure(exc: BaseException) -> bool:
    """Whether `exc` (or what caused it) is a failure to reach the hub at all: no network, a name that does not
    resolve, a refused or timed-out connection, or huggingface_hub's offline mode; an HTTP answer is not one."""
    # lazy: huggingface_hub's errors, only once a sync has failed
    from huggingface_hub.errors import OfflineModeIsEnabled

    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, (ConnectionError, TimeoutError, socket.gaierror, OfflineModeIsEnabled)):
            return True
        # the HTTP client's own transport errors (httpx's ConnectError, ConnectTimeout ...), by name: the client
        # huggingface_hub uses is its choice, and which one is installed differs between its versions
        if any(kind.__name__ in TRANSPORT_ERRORS for kind in type(exc).__mro__):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


TRANSPORT_ERRORS = ("TransportError", "NetworkError", "ConnectError", "ConnectTimeout", "TimeoutException")


OFFLINE_HINT = ("refs sync reads the hub; on a machine without network, leave it out (audits use the built-in "
                "references and any database you have), or import a bundle made elsewhere with `refs import`")


def offline_requested(flag: bool) -> bool:
    """--offline, or huggingface_hub's own HF_HUB_OFFLINE set to a true value."""
    return flag or os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def list_selection(chosen: list[CatalogModel], left: list[tuple[CatalogModel, str]]) -> str:
    lines = [f"{m.name:<24} {m.repo:<38} {m.revision:<10} {m.params / 1e9:>6.2f}B {m.bytes / 1e9:>7.1f} GB  {m.family}"
             + (f"  (weights to dequantize: {m.dequantize})" if m.dequantize else "") for m in chosen]
    lines += [f"{m.name:<24} {m.repo:<38} (left out: {why})" for m, why in left]
    total = sum(m.bytes for m in chosen)
    lines.append(f"{len(chosen)} models to sync ({total / 1e9:.0f} GB of checkpoints), {len(left)} left out")
    return "\n".join(lines)


def run_sync_command(registry, catalog: str | None, only: list[str] | None, limit: SizeLimit | None,
                     everything: bool, list_only: bool, model_seconds: float | None = None) -> int:
    """What the command line runs: select, sync (or list), print progress and the summary; the exit code."""
    chosen, left = select(load_catalog(catalog), only, limit, everything)
    if list_only:
        print(list_selection(chosen, left))
        return 0
    for model, why in left:
        print(f"refs sync: {clean(model.name, 200)}: left out ({why}; --all or --max-size to include)", file=sys.stderr)

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    summary = sync(registry, chosen, say, model_seconds)
    if summary.stopped:
        print(f"refs sync: stopped: the hub cannot be reached ({summary.stopped}); nothing more was tried "
              f"(--offline or HF_HUB_OFFLINE=1 says so at once: {OFFLINE_HINT})", file=sys.stderr)
        return 1
    print(f"{summary.render()}; database {registry.path} (revision {registry.revision})", file=sys.stderr)
    return 1 if summary.failed else 0
