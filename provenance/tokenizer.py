"""Old import path of provenance/formats/tokenizer.py, kept only for fingerprint/build.py and
remote/fingerprint.py until their rewrite lands (issue 14); import provenance.formats.tokenizer instead."""

from .formats.tokenizer import Vocabulary, load_vocabulary

__all__ = ["Vocabulary", "load_vocabulary"]
