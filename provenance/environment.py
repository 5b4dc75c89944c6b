"""`provenance env`: what a bug report or a CI log needs to know about this installation, in one place.

Versions (of provenance, Python and every library it uses, optional ones
marked), the folders it reads and writes (reference database, fingerprint
cache, Hugging Face cache) with whether they exist, the network settings
(HF_ENDPOINT, HF_HUB_OFFLINE) and the built-in references. Versions come
from the installed packages' metadata, so nothing heavy is imported.
"""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from . import __version__

REQUIRED = ("torch", "numpy", "scipy", "safetensors", "transformers", "huggingface_hub", "gguf", "jinja2", "tqdm",
            "xxhash")
OPTIONAL = {"ray": "scan --ray", "jsonschema": "the tests' schema checks", "pre-commit": "the pre-commit hook",
            "tomli": "[tool.provenance] on Python 3.10"}
REFERENCES = Path(__file__).resolve().parent / "references"


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _folder(path: Path) -> dict[str, Any]:
    return {"path": str(path), "exists": path.exists()}


def environment_report(database: Path, cache: Path, hub_cache: str, config: str | None) -> dict[str, Any]:
    """The `provenance.env/1` object; the caller passes the folders (it knows how each is chosen)."""
    return {
        "schema": "provenance.env/1",
        "provenance": {"version": __version__, "location": str(Path(__file__).resolve().parent)},
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


__all__ = ["environment_report", "render_environment"]
