"""The audit report as one self-contained HTML page (inline CSS and SVG, no script, no network).

Jinja2 renders `templates/report.html.j2` with autoescaping on: every value
from a checkpoint is escaped, after `text.clean` has made its invisible
characters visible. A Content-Security-Policy meta tag forbids scripts and
remote loads as a second line of defence.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import jinja2
from markupsafe import Markup, escape

from .audit_report import Phrase, Power
from .text import clean


def _value(value: Any) -> Markup:
    if isinstance(value, Markup):
        return value
    if isinstance(value, Power):
        return Markup("{}<sup>{}</sup>").format(value.base, value.exp)
    return escape(clean(value))


def say(phrase: Phrase | str | None) -> Markup:
    """A sentence from the strings file with its values filled in, escaped."""
    if phrase is None:
        return Markup("")
    if isinstance(phrase, str):
        phrase = Phrase(phrase)
    return Markup(escape(phrase.template)).format(**{k: _value(v) for k, v in phrase.args.items()})


def _finalize(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, Markup) or not isinstance(value, str):
        return value
    return clean(value)  # autoescape then escapes the cleaned text


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("provenance.report", "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, finalize=_finalize, trim_blocks=True, lstrip_blocks=True)
    env.filters["say"] = say
    env.filters["fill"] = lambda template, **args: say(Phrase(template, args))
    return env


def render_html(context: dict[str, Any]) -> str:
    return environment().get_template("report.html.j2").render(**context)
