"""Renderers: terminal text (terminal.py), the JSON objects of compare (compare_json.py), audit (audit_json.py) and
two tokenizer folders (tokenizer_compare.py), and the audit report for people.

The audit report (`provenance audit --report FILE.html|FILE.md [--lang zh]`):
audit_report.py gathers its content, charts.py the geometry of its pictures,
html.py and markdown.py render templates/ with the words of strings/<lang>.json
(i18n.py), text.py makes checkpoint strings safe to show, write.py writes the file atomically.
"""
