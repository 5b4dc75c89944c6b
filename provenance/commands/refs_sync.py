"""`provenance refs sync`: fingerprint the catalog's open base models into the reference database by range reads.

The catalog (registry/catalog.py: `provenance/references/catalog.json`, or
`--catalog FILE`) lists each model's repo id, the revision asked for, its
approximate size and family. For each model chosen (all up to `DEFAULT_MAX_PARAMS`
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

import os
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

from ..errors import ProvenanceError
from ..registry.catalog import CatalogModel, SizeLimit, list_selection, load_catalog, select
from ..remote.budget import deadline_scope
from ..remote.hub import resolve_commit
from ..visible_text import clean



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
    from ..audit.shortlist import add_reference
    from ..fingerprint.load import fingerprint_for

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
            fingerprint = fingerprint.with_hub({"repo": model.repo, "revision": model.revision, "commit": commit,
                                                "catalog": model.name})
            add_reference(registry, model.name, fingerprint, replace=True)
        except Exception as exc:  # one model's failure is reported; the sync goes on (KeyboardInterrupt stops it)
            problem = str(exc) if isinstance(exc, ProvenanceError) else clean(f"unexpected {type(exc).__name__}: {exc}")
            summary.failed.append((model.name, problem))
            if network_failure(exc):  # every other model would fail the same way: say it once and stop
                summary.stopped = problem
                break
            say(f"{prefix}: failed: {problem}")
            continue
        remote = fingerprint.made.remote
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
