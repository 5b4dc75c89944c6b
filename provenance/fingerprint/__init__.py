"""Fingerprints: everything later comparisons need, computed once per checkpoint in one streaming pass."""

from .build import build_fingerprint
from .store import FINGERPRINT_SCHEMA, Fingerprint, Part, array_name, load_fingerprint

__all__ = ["build_fingerprint", "Fingerprint", "Part", "array_name", "load_fingerprint", "FINGERPRINT_SCHEMA"]
