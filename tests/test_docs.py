"""The README stays a landing page and the docs site keeps every page reachable.

Cheap checks on the files only (`mkdocs build --strict`, run by `.ci/run`,
checks links, anchors and the API reference): the README is under 250
lines, keeps the two commands, the CI recipe and the guide to a verdict,
and links only to pages that exist; every page under `docs/` is in the
`nav` of `mkdocs.yml` and every `nav` entry is a page.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
README_MAX_LINES = 250


def nav_pages(nav) -> list[str]:
    """Every page path named in an MkDocs `nav` (entries are 'page.md', {title: 'page.md'} or {title: [...]})."""
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, list):
        return [page for entry in nav for page in nav_pages(entry)]
    if isinstance(nav, dict):
        return [page for value in nav.values() for page in nav_pages(value)]
    return []


def test_readme_is_a_landing_page_under_250_lines():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) < README_MAX_LINES, f"README.md has {len(lines)} lines; move detail into docs/"


def test_readme_keeps_the_two_commands_the_ci_recipe_and_the_verdict_guide():
    text = README.read_text(encoding="utf-8")
    assert "bash scripts/setup.sh" in text
    assert "bash scripts/demo.sh" in text and "bash .ci/run" in text and "python -m pytest" in text
    for ci in ("action.yml", ".pre-commit-hooks.yaml", "--fail-on", "id: provenance-audit"):
        assert ci in text, ci
    for verdict in ("identical", "derived", "assembled", "same-architecture", "unrelated", "abstain",
                    "No reference explains these weights"):
        assert verdict in text, verdict


def test_readme_exit_codes_are_the_gates():
    from provenance.gate import EXIT_CODES

    text = README.read_text(encoding="utf-8")
    for code, _ in EXIT_CODES:
        assert re.search(rf"^\| {code} \|", text, re.MULTILINE), f"exit code {code} missing from README.md"


def test_readme_links_to_files_that_exist():
    text = README.read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    assert targets
    missing = [t for t in targets if "://" not in t and not (ROOT / t).exists()]
    assert not missing, f"README.md links to missing files: {missing}"


def test_every_docs_page_is_in_the_mkdocs_nav():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    listed = nav_pages(config["nav"])
    pages = sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md"))
    assert sorted(set(listed)) == sorted(listed), "a page is listed twice in the nav"
    assert not set(pages) - set(listed), f"pages not in the mkdocs.yml nav: {sorted(set(pages) - set(listed))}"
    assert not set(listed) - set(pages), f"nav entries without a page: {sorted(set(listed) - set(pages))}"
