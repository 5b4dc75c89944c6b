"""What an audit report shows beside the verdicts, computed once while the audit runs.

The report renders an `AuditResult` (result.py) and never computes or reads:
the per-role similarity profile of the best match (the engine's sketches,
norm folding and null, one role at a time), the overlap of the two
vocabularies, how a recorded file path may be shown, the sha256 of the
candidate's files and the tool's versions are all computed here.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import numpy
import scipy

from .. import __version__
from ..architectures.roles import Role
from ..compare.results import LayerMatch
from ..compare.signals.vocabulary import vocabulary_overlap
from ..compare.sketches import clustered_log10p_matrix, layer_view, sketch_clusters
from ..compare.stats import correlation_matrix
from ..errors import ProvenanceError
from ..fingerprint import Fingerprint
from ..fingerprint.store import is_fingerprint_file
from ..formats.checkpoint_files import open_checkpoint_files
from ..hashing import sha256_file

ROLE_ORDER = (Role.ATTN_Q, Role.ATTN_K, Role.ATTN_V, Role.ATTN_O, Role.MLP_GATE, Role.MLP_UP, Role.MLP_DOWN)


def role_profiles(cand: Fingerprint, ref: Fingerprint, layer_rows: list[LayerMatch]) -> list[dict[str, Any]]:
    """Per canonical role, the correlation (and its own log10 p) of each candidate layer with its partner.

    The partner is the mapped reference layer, or the most similar one when the
    layer matched nothing. Same sketches, norm folding and null as the engine's
    layer signal (compare/signals/layers.py), one role at a time instead of combined.
    """
    cv, rv = layer_view(cand), layer_view(ref)
    names = {name for (_, name), shape in cv.shapes.items() if len(shape) == 2}
    names &= {name for (_, name), shape in rv.shapes.items() if len(shape) == 2}
    ordered = [r for r in ROLE_ORDER if r in names] + sorted(names - set(ROLE_ORDER))
    profiles = []
    for role in ordered:
        points, compared = [], 0
        for row in layer_rows:
            i = row.candidate_layer
            j = row.reference_layer if row.reference_layer is not None else row.best_reference_layer
            point = {"layer": i, "partner": j, "r": None, "log10p": None}
            a, b = cv.sketches.get((i, role)), rv.sketches.get((j, role)) if j is not None else None
            if a is not None and b is not None and cv.shapes[(i, role)] == rv.shapes[(j, role)]:
                point["r"] = float(correlation_matrix(a[None, :], b[None, :])[0, 0])
                point["log10p"] = float(clustered_log10p_matrix(a[None, :], b[None, :],
                                                                sketch_clusters(cv.shapes[(i, role)]))[0, 0])
                compared += 1
            points.append(point)
        if compared:
            profiles.append({"role": role, "points": points})
    return profiles


def vocabulary_of(fp: Fingerprint) -> dict[str, Any] | None:
    """The vocabulary a fingerprint recorded, or None (also when a hand-edited file holds something else there)."""
    return fp.vocabulary.to_dict() if fp.vocabulary is not None else None


def shared_vocabulary(cand: Fingerprint, ref: Fingerprint) -> float | None:
    """The two vocabularies' estimated Jaccard overlap (MinHash), when both fingerprints recorded one."""
    if vocabulary_of(cand) is None or vocabulary_of(ref) is None:
        return None
    try:
        return vocabulary_overlap(cand, ref)
    except (TypeError, ValueError):  # a hand-edited fingerprint with a malformed minhash
        return None


def shown_source(source: Any, given: str) -> str:
    """A file path recorded in a fingerprint, as a report may show it: whole when it lies under the path the
    user gave for this run, else its file name only (a built-in reference records where the package was built)."""
    source = source if isinstance(source, str) else "" if source is None else str(source)
    if not source:
        return source
    try:
        if given and Path(source).resolve().is_relative_to(Path(given).resolve()):
            return source
    except (OSError, ValueError):
        pass
    return Path(source).name or source


def vocabulary_source(fp: Fingerprint, given: str) -> str:
    """Where the fingerprint's vocabulary was read from, as a report may show it ("" when none is recorded)."""
    vocabulary = vocabulary_of(fp)
    return shown_source(vocabulary.get("source"), given) if vocabulary is not None else ""


def _text(value: Any) -> str:
    return value if isinstance(value, str) else "" if value is None else str(value)


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def candidate_files(candidate_path: str, cand: Fingerprint, hash_files: bool) -> dict[str, Any]:
    """The candidate's files with sha256 (streamed, when `hash_files`), or the fingerprint file and the files it
    recorded: the reproducibility section of the report."""
    path = Path(candidate_path)
    recorded = [{"name": _text(f.get("name")), "bytes": _text(f.get("bytes")), "sha256": _text(f.get("sha256")) or None}
                for f in _dicts(list(cand.source.files))]
    out: dict[str, Any] = {"files": [], "fingerprint": None, "recorded": recorded}
    if path.is_file() and is_fingerprint_file(path):
        out["fingerprint"] = {"name": str(path), "bytes": str(path.stat().st_size),
                              "sha256": sha256_file(path) if hash_files else None,
                              "created": _text(cand.made.created), "version": _text(cand.made.tool_version)}
        return out
    if path.exists() and hash_files:
        try:
            files = open_checkpoint_files(path)
        except ProvenanceError:
            return out
        try:
            out["files"] = [{"name": str(f), "bytes": str(f.stat().st_size), "sha256": sha256_file(f)}
                            for f in files.all_files()]
        finally:
            files.close()
    return out


def versions() -> dict[str, str]:
    """The versions a run's numbers depend on."""
    return {"version": __version__, "python": platform.python_version(), "numpy": numpy.__version__,
            "scipy": scipy.__version__}
