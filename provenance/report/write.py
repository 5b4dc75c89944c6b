"""Write an audit report file: the format from the file's extension, written atomically.

The whole report is rendered in memory first, then written to a temporary
file in the target's directory and renamed over the target (`os.replace`),
so a run killed at any point leaves the old report or none, never half of one.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from ..atomic_files import replacing
from ..errors import ProvenanceError
from .audit_report import build_report
from .html import render_html
from .markdown import render_markdown

if TYPE_CHECKING:  # the type only: a renderer needs no audit code at run time
    from ..audit import AuditResult

FORMATS = {".html": "html", ".htm": "html", ".md": "markdown", ".markdown": "markdown"}


class ReportPathError(ProvenanceError):
    """The report cannot be written where asked."""


def report_format(path: str | Path) -> str:
    """`html` or `markdown` from the extension; ValueError (a usage error) for anything else."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        shown = f"'{suffix}'" if suffix else "no extension"
        raise ValueError(f"{path}: unknown report format ({shown}); use a file ending in .html or .md")
    return FORMATS[suffix]


def write_atomic(path: str | Path, text: str) -> Path:
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise ReportPathError(path, f"cannot write the report: folder {folder} does not exist")
    if path.is_dir():
        raise ReportPathError(path, "cannot write the report: this is a directory")
    try:
        with replacing(path) as temporary:
            temporary.write_bytes(text.encode("utf-8"))
    except OSError as exc:
        raise ReportPathError(path, f"cannot write the report: {exc.strerror or exc}") from exc
    return path


def render(context: dict[str, Any], fmt: str) -> str:
    if fmt == "html":
        return render_html(context)
    return render_markdown(context)


def write_audit_report(path: str | Path, audit: AuditResult, lang: str = "en", argv: Iterable[str] | None = None) -> Path:
    """Build, render and atomically write the report for `provenance audit --report PATH`."""
    fmt = report_format(path)
    context = build_report(audit, lang=lang, argv=argv)
    return write_atomic(path, render(context, fmt))
