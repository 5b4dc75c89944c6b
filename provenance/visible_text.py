"""Text from outside (files, servers, catalogs) made safe for a terminal or a report: one line, visible, short.

A tensor name, a commit hash sent by a server, a catalog entry may hold
terminal escape sequences, bidi overrides or a hundred thousand characters.
`clean` turns control and format characters into visible escapes and cuts
the length; every error message passes through it (`errors.py`), and the
report renderers start from it (`report/text.py`). Hand-written: the rule is
a few lines over `unicodedata`, and no library draws this exact line.
"""

from __future__ import annotations

import unicodedata

MAX_CHARS = 2000


def _visible(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def clean(value: object, limit: int = MAX_CHARS) -> str:
    """`value` as one line of visible text, at most `limit` characters (then an ellipsis)."""
    text = value if isinstance(value, str) else str(value)
    if len(text) > 4 * limit:
        text = text[:4 * limit]  # escapes at most quadruple a character; the rest is cut anyway
    out = []
    for ch in text:
        if ch in "\t\n\r":
            out.append(" ")
        elif unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Zl", "Zp"):
            out.append(_visible(ch))
        else:
            out.append(ch)
    text = "".join(out)
    return text if len(text) <= limit else text[:limit] + "…"


def quoted(value: object, limit: int = 80) -> str:
    """`value` cleaned, cut to `limit` characters and quoted: how a message quotes a string it was sent."""
    return repr(clean(value, limit))


__all__ = ["MAX_CHARS", "clean", "quoted"]
