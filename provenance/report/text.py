"""Hostile text made safe to show: every string read from a checkpoint passes through here.

Tensor names, paths, tokens and config values are written by whoever
published the file. Before a template escapes them for HTML or Markdown,
`clean` (from `visible_text`, shared with error messages) makes invisible
characters visible (control characters, bidi overrides and other format
characters, which could reorder or hide what a reader sees) and caps the
length. `markdown_escape` then neutralises Markdown and inline HTML; the HTML templates rely on Jinja's autoescaping.
These few rules are hand-written because no maintained library escapes
Markdown for GitHub comments (markupsafe covers HTML only).
"""

from __future__ import annotations

import re

from ..visible_text import MAX_CHARS, clean


# Characters Markdown (CommonMark and GitHub's flavour) gives a meaning inside a line.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#!|~^$])")


def markdown_escape(value: object) -> str:
    """Text that GitHub Markdown shows literally, safe inside a table cell.

    HTML is entity-escaped (no tags, no entities of the author's), Markdown
    punctuation is backslash-escaped, and `@` gets a word joiner after it so a
    hostile name cannot mention (and notify) a GitHub user or team.
    """
    text = clean(value)
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = _MARKDOWN_SPECIAL.sub(r"\\\1", text)
    # Line-start syntax (lists, headings) needs no care: templates never start a line with a value.
    return text.replace("@", "@\u2060")


__all__ = ["MAX_CHARS", "clean", "markdown_escape"]
