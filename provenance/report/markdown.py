"""The audit report as Markdown, for pull-request comments (GitHub-flavoured tables, no pictures).

The pictures of the HTML report become a text heatmap (in a code block:
numbers only, nothing from a checkpoint) and small tables. Jinja2 renders
`templates/report.md.j2` without HTML autoescaping; instead every `{{ }}`
value passes through `text.markdown_escape` unless it is a fragment this
module built (`MarkdownSafe`), so a hostile tensor name cannot open a link,
a tag, a table cell or a mention.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import jinja2

from .audit_report import Phrase, Power
from .text import markdown_escape


class MarkdownSafe(str):
    """Text already escaped (or built from trusted strings): inserted as is."""


def _value(value: Any) -> str:
    if isinstance(value, MarkdownSafe):
        return value
    if isinstance(value, Power):
        return f"{value.base}^{value.exp}"
    return markdown_escape(value)


def say(phrase: Phrase | str | None) -> MarkdownSafe:
    if phrase is None:
        return MarkdownSafe("")
    if isinstance(phrase, str):
        phrase = Phrase(phrase)
    return MarkdownSafe(phrase.template.format(**{k: _value(v) for k, v in phrase.args.items()}))


def _finalize(value: Any) -> str:
    if value is None:
        return ""
    return _value(value)


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("provenance.report", "templates"), autoescape=False,
                             undefined=jinja2.StrictUndefined, finalize=_finalize, trim_blocks=True, lstrip_blocks=True,
                             keep_trailing_newline=True)
    env.filters["say"] = say
    env.filters["fill"] = lambda template, **args: say(Phrase(template, args))
    env.filters["raw"] = MarkdownSafe  # numbers-only text (the ASCII heatmap) in code blocks
    return env


def render_markdown(context: dict[str, Any]) -> str:
    return environment().get_template("report.md.j2").render(**context)
