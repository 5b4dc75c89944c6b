"""Old import path of provenance/formats/lineage.py, kept only for fingerprint/build.py and
remote/fingerprint.py until their rewrite lands (issue 14); import provenance.formats.lineage instead."""

from .formats.lineage import lineage_claims

__all__ = ["lineage_claims"]
