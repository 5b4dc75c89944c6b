"""The reference database (database.py: one SQLite file of fingerprints) and its shared bundles (bundles.py).

The registry stores fingerprints and the screening signatures it is given;
it never computes a signature (provenance/audit/shortlist.py does).
"""

from .database import (DB_SCHEMA_VERSION, ReferenceEntry, Registry, RegistryError, SignatureBlob, default_path,
                       fingerprint_from_bytes, fingerprint_to_bytes)

__all__ = ["DB_SCHEMA_VERSION", "ReferenceEntry", "Registry", "RegistryError", "SignatureBlob", "default_path",
           "fingerprint_from_bytes", "fingerprint_to_bytes"]
