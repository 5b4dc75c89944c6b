"""Renderers: terminal text and JSON (HTML and Markdown reports come with `audit`)."""
