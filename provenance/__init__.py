"""provenance: audit where a released model checkpoint's weights come from."""

__version__ = "0.1.0"
