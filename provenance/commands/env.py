"""`provenance env`: what a bug report or a CI log needs to know about this installation, in one place.

Versions (of provenance, Python and every library it uses, optional ones
marked), the folders it reads and writes (reference database, fingerprint
cache, Hugging Face cache) with whether they exist, the network settings
(HF_ENDPOINT, HF_HUB_OFFLINE) and the built-in references: the
`provenance.env/1` object, built here. Versions come from the installed
packages' metadata, so nothing heavy is imported.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from .. import __version__
from ..cli_help import command
from ..config import load_config
from ..gate import EXIT_OK

REQUIRED = ("torch", "numpy", "scipy", "safetensors", "transformers", "huggingface_hub", "gguf", "jinja2", "tqdm",
            "xxhash")
OPTIONAL = {"ray": "scan --ray", "jsonschema": "the tests' schema checks", "pre-commit": "the pre-commit hook",
            "tomli": "[tool.provenance] on Python 3.10"}
PACKAGE = Path(__file__).resolve().parent.parent
REFERENCES = PACKAGE / "references"


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _folder(path: Path) -> dict[str, Any]:
    return {"path": str(path), "exists": path.exists()}


def environment_report(database: Path, cache: Path, hub_cache: str, config: str | None) -> dict[str, Any]:
    """The `provenance.env/1` object (schemas/env.schema.json); the caller passes the folders (it knows how each is
    chosen)."""
    return {
        "schema": "provenance.env/1",
        "provenance": {"version": __version__, "location": str(PACKAGE)},
        "python": {"version": platform.python_version(), "executable": sys.executable, "platform": platform.platform()},
        "packages": {name: _version(name) for name in REQUIRED},
        "optional": {name: {"version": _version(name), "for": why} for name, why in OPTIONAL.items()},
        "paths": {"reference_database": _folder(database), "fingerprint_cache": _folder(cache),
                  "huggingface_cache": _folder(Path(hub_cache)), "config": config},
        "network": {"HF_ENDPOINT": os.environ.get("HF_ENDPOINT") or "https://huggingface.co",
                    "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE") or None},
        "builtin_references": sorted(p.name for p in REFERENCES.glob("*") if p.is_file()),
    }


def render_environment(report: dict[str, Any]) -> str:
    def version(value: str | None) -> str:
        return value or "not installed"

    lines = [f"provenance {report['provenance']['version']} ({report['provenance']['location']})",
             f"Python {report['python']['version']} ({report['python']['executable']}) on {report['python']['platform']}"]
    lines += [f"  {name:<16} {version(v)}" for name, v in report["packages"].items()]
    lines += [f"  {name:<16} {version(v['version'])} (optional: {v['for']})" for name, v in report["optional"].items()]
    for name, folder in report["paths"].items():
        if isinstance(folder, dict):
            lines.append(f"{name.replace('_', ' ')}: {folder['path']}{'' if folder['exists'] else ' (not created yet)'}")
    lines.append(f"config: {report['paths']['config'] or 'none ([tool.provenance] in pyproject.toml)'}")
    lines.append(f"hub: {report['network']['HF_ENDPOINT']}"
                 + (f" (HF_HUB_OFFLINE={report['network']['HF_HUB_OFFLINE']})" if report["network"]["HF_HUB_OFFLINE"] else ""))
    lines.append(f"built-in references: {', '.join(report['builtin_references'])}")
    return "\n".join(lines)


def register(commands) -> None:
    parser = command(commands, "env", help="show versions, the folders provenance reads and writes, and what is installed")
    parser.add_argument("--json", action="store_true", help="print one JSON object (schema provenance.env/1)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from huggingface_hub import constants  # lazy: huggingface_hub (100 ms), only for env

    from ..fingerprint.cache import default_directory  # lazy: the cache module loads numpy and torch
    from ..registry import default_path  # lazy: sqlite3 and the database code

    config = load_config().path
    report = environment_report(default_path(), default_directory(), str(constants.HF_HUB_CACHE),
                                str(config) if config else None)
    print(json.dumps(report, indent=2) if args.json else render_environment(report))
    return EXIT_OK
