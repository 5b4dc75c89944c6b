"""`provenance refs ACTION`: the reference database (add, list, remove, export, import, sync).

`refs list --json` prints the `provenance.refs-list/1` object built here
(`refs_list_json`); `refs export` writes bundles (registry/bundles.py);
`refs sync` is in refs_sync.py. Only add, import and sync create a database.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from ..cli_help import command
from ..errors import UnreadablePathError
from ..gate import EXIT_ERROR, EXIT_OK
from ..outputs import check_output
from ..remote.budget import DEFAULT_DEADLINE
from ..visible_text import clean
from .inputs import fingerprint_with_progress, require_path
from .options import REFS_HELP, add_deadline, add_location, add_no_progress

LIST_SCHEMA = "provenance.refs-list/1"


def register(commands) -> None:
    refs = command(commands, "refs", help="manage the reference database")
    refs.add_argument("--refs", metavar="DB", help=REFS_HELP)
    actions = refs.add_subparsers(dest="refs_command", metavar="ACTION")
    actions.required = True
    adding = command(actions, "add", full_name="refs add", help="fingerprint PATH and store it under NAME")
    add_location(adding, "path", "PATH")
    adding.add_argument("--name", required=True)
    adding.add_argument("--replace", action="store_true", help="replace an existing reference of that name")
    add_no_progress(adding)
    add_deadline(adding)
    listing = command(actions, "list", full_name="refs list", help="list the references")
    listing.add_argument("--json", action="store_true", help="print one JSON object (schema provenance.refs-list/1)")
    removing = command(actions, "remove", full_name="refs remove", help="remove the reference NAME")
    removing.add_argument("name", metavar="NAME")
    exporting = command(actions, "export", full_name="refs export", help="write references (fingerprints, no weights) to a bundle file")
    exporting.add_argument("output", metavar="OUT", help="bundle file to write (a .zip; replaced atomically)")
    exporting.add_argument("--name", dest="names", action="append", metavar="NAME",
                           help="export only this reference (repeat --name for several; default: all)")
    importing = command(actions, "import", full_name="refs import", help="add every reference of a bundle (all or none)")
    importing.add_argument("bundle", metavar="BUNDLE", help="bundle file written by `refs export`")
    importing.add_argument("--replace", action="store_true", help="overwrite references that have the same name")
    syncing = command(actions, "sync", full_name="refs sync", help="fingerprint the catalog's open base models (range reads from "
                                          "the hub, HF_ENDPOINT) into the database; resumable")
    syncing.add_argument("--only", action="extend", nargs="+", metavar="NAME", help="only these catalog names or repo ids")
    syncing.add_argument("--max-size", type=size_limit, metavar="SIZE",
                         help="leave out models over SIZE: parameters (15B, 500M) or checkpoint bytes (30GB); default 15B")
    syncing.add_argument("--all", action="store_true", help="every catalog model, whatever its size")
    syncing.add_argument("--catalog", metavar="FILE", help="a catalog file (default: provenance/references/catalog.json)")
    syncing.add_argument("--list", action="store_true", help="print the models a sync would take, then stop (no network)")
    add_deadline(syncing, "model_deadline", "seconds each model may take (default "
                 f"{DEFAULT_DEADLINE:g}, or PROVENANCE_REMOTE_DEADLINE); a model over it fails and the sync goes on")
    syncing.add_argument("--offline", action="store_true",
                         help="say at once that a sync needs the hub, and stop (as HF_HUB_OFFLINE=1 does)")
    for action in (adding, listing, removing, exporting, importing, syncing):
        # --refs after the action too (`refs list --refs DB`); SUPPRESS keeps a value given before the action.
        action.add_argument("--refs", metavar="DB", default=argparse.SUPPRESS, help=REFS_HELP)
    for action in (adding, importing, syncing):
        action.add_argument("--create", action="store_true",
                            help="create the database's folder if it does not exist (default: the folder must exist)")
    refs.set_defaults(handler=run, create=False)


def size_limit(text: str):
    # lazy: the catalog code loads the database package (sqlite3), only when --max-size is given
    from ..registry.catalog import parse_size

    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def run(args: argparse.Namespace) -> int:
    # lazy: sqlite3 and the database code, only for refs
    from ..registry import Registry, default_path

    writes = args.refs_command in ("add", "import", "sync")  # only these create a database (in an existing folder)
    path = Path(args.refs or default_path())
    given = bool(args.refs or os.environ.get("PROVENANCE_REFS"))
    if not writes and not given and not path.exists():  # a fresh machine: nothing was mistyped
        return no_database_yet(args, path)
    if args.refs_command == "sync" and not args.list:
        # lazy: refs_sync (10 ms), only for refs sync
        from .refs_sync import OFFLINE_HINT, offline_requested

        if offline_requested(args.offline):  # before a database is created for nothing
            print(f"provenance: refs sync: offline (--offline or HF_HUB_OFFLINE): nothing to do; {OFFLINE_HINT}",
                  file=sys.stderr)
            return EXIT_ERROR
    created = writes and not path.exists()
    if writes:
        # The default location is the tool's own folder, created on first use; a path the user gave
        # (--refs, $PROVENANCE_REFS) must be in an existing folder unless --create says otherwise.
        own_folder = not (args.refs or os.environ.get("PROVENANCE_REFS"))
        registry = Registry(args.refs or default_path(), create=True, parents=args.create or own_folder)
    else:
        registry = Registry(args.refs or default_path(), create=False)
    with registry:
        return ACTIONS[args.refs_command](args, registry, created)


def add(args: argparse.Namespace, registry, created: bool) -> int:
    # lazy: numpy (screening signatures)
    from ..audit.shortlist import add_reference

    args.path = require_path(args.path, revision=args.revision, hub=args.hub)
    registry.check_new_name(args.name, replace=args.replace)  # before the fingerprinting, not after it
    entry = add_reference(registry, args.name, fingerprint_with_progress(args.path, args), replace=args.replace)
    print(f"added {entry.name} ({entry.family or 'unknown family'}) to {registry.path} (revision {registry.revision})",
          file=sys.stderr)
    return EXIT_OK


def export(args: argparse.Namespace, registry, created: bool) -> int:
    check_output(args.output, "bundle")
    # lazy: zipfile and the bundle code, only for refs export
    from ..registry.bundles import export_bundle

    result = export_bundle(registry, args.output, args.names)
    print(f"exported {len(result.names)} references from {registry.path} (revision {result.revision}) "
          f"to {result.path}", file=sys.stderr)
    return EXIT_OK


def import_(args: argparse.Namespace, registry, created: bool) -> int:
    # lazy: numpy (screening signatures), only for refs import
    from ..audit.shortlist import signature_blob
    from ..registry.bundles import import_bundle

    require_path(args.bundle, remote_ok=False)
    result = import_bundle(registry, args.bundle, replace=args.replace, signer=signature_blob)
    print(f"imported {len(result.names)} references from {result.path} into {registry.path} "
          f"(revision {result.revision})", file=sys.stderr)
    return EXIT_OK


def sync(args: argparse.Namespace, registry, created: bool) -> int:
    """provenance/commands/refs_sync.py; a failed first sync leaves no empty database behind."""
    # lazy: the hub client, only for refs sync
    from .refs_sync import run_sync_command

    code = run_sync_command(registry, args.catalog, args.only, args.max_size, args.all, args.list,
                            args.model_deadline)
    if created and not registry.names():
        registry.close()
        remove_database_files(registry.path)
        print(f"refs sync: no reference was added; {registry.path} was not kept", file=sys.stderr)
    return code


def remove(args: argparse.Namespace, registry, created: bool) -> int:
    registry.remove(args.name)
    print(f"removed {args.name} from {registry.path} (revision {registry.revision})", file=sys.stderr)
    return EXIT_OK


def list_(args: argparse.Namespace, registry, created: bool) -> int:
    entries = registry.entries()
    if args.json:
        print(json.dumps(refs_list_json(registry.path, registry.revision, entries), indent=2))
        return EXIT_OK
    for e in entries:
        arch = e.architecture
        print(f"{clean(e.name, 200):<32} {clean(e.family or '?', 60):<12} layers={arch.get('num_layers')} hidden={arch.get('hidden_size')} "
              f"added {e.added}")
    print(f"{len(entries)} references in {registry.path} (revision {registry.revision})", file=sys.stderr)
    return EXIT_OK


ACTIONS = {"add": add, "export": export, "import": import_, "sync": sync, "remove": remove, "list": list_}


def refs_list_json(path: str | Path, revision: int, entries: list) -> dict[str, Any]:
    """The `provenance.refs-list/1` object: the database, its revision and every reference's entry."""
    return {"schema": LIST_SCHEMA, "path": str(path), "revision": revision, "references": [e.__dict__ for e in entries]}


def no_database_yet(args: argparse.Namespace, path: Path) -> int:
    """`refs list` (and remove, export) before any database exists at the default place: say how to make one."""
    how = ("`provenance refs add PATH --name NAME` (one model), `refs import BUNDLE` (references made elsewhere) "
           "or `refs sync` (the catalog's open base models, from the hub) creates it; audits use the built-in "
           "references meanwhile")
    if args.refs_command == "list":
        if args.json:
            print(json.dumps(refs_list_json(path, 0, []), indent=2))
        print(f"provenance: no reference database yet (it would be {path}); {how}", file=sys.stderr)
        return EXIT_OK
    raise UnreadablePathError(path, f"no reference database yet; {how}")


def remove_database_files(path: Path) -> None:
    for extra in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{extra}").unlink(missing_ok=True)
