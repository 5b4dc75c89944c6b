"""The signals are units: one module each in compare/signals/, one list that registers them, and an engine with no
signal of its own."""

from __future__ import annotations

import ast
import dataclasses
import importlib
from pathlib import Path

from provenance.compare.signals.base import Signal
from provenance.compare.signals.registry import SIGNALS

ROOT = Path(__file__).resolve().parents[1]
SIGNAL_DIR = ROOT / "provenance" / "compare" / "signals"
NOT_SIGNALS = {"__init__", "base", "registry"}


def test_every_signal_module_registers_one_signal_with_its_null():
    modules = sorted(p.stem for p in SIGNAL_DIR.glob("*.py") if p.stem not in NOT_SIGNALS)
    registered = {type(s).__module__.rsplit(".", 1)[1]: s for s in SIGNALS}
    assert sorted(registered) == modules, "each module of compare/signals/ holds one signal listed in SIGNALS"
    for name in modules:
        module = importlib.import_module(f"provenance.compare.signals.{name}")
        own = [v for v in vars(module).values()
               if isinstance(v, type) and issubclass(v, Signal) and v is not Signal and v.__module__ == module.__name__]
        assert len(own) == 1, f"signals/{name}.py defines {len(own)} signals"
    names = [s.name for s in SIGNALS]
    assert len(set(names)) == len(names) and all(names)
    assert all(s.null and s.null.count(". ") == 0 for s in SIGNALS), "each null is one sentence"


def test_the_engine_runs_the_registry_and_names_no_signal_module():
    source = (ROOT / "provenance" / "compare" / "engine.py").read_text(encoding="utf-8")
    imported = [node.module or "" for node in ast.walk(ast.parse(source)) if isinstance(node, ast.ImportFrom)]
    signal_modules = [m for m in imported if m.startswith("signals.")]
    assert "signals.registry" in signal_modules
    assert set(signal_modules) <= {"signals.registry", "signals.base"}


def test_signals_place_layers_without_changing_the_map(base, tmp_path, monkeypatch):
    """A rotated copy: later signals place the layers the sketches could not, through their results only."""
    from .test_accusation import _rotated
    from .test_compare import _compare, _save

    state, config, path = base
    placed = []
    for signal in SIGNALS:
        def checked(pair, measure=signal.measure):
            before = [dataclasses.astuple(row) for row in pair.rows]
            result = measure(pair)
            assert [dataclasses.astuple(row) for row in pair.rows] == before, "a signal changed the layer map"
            placed.extend(result.placements)
            return result
        monkeypatch.setattr(signal, "measure", checked)
    result = _compare(_save(tmp_path / "rotated", _rotated(state, 25), config), path)
    assert placed and result.verdict == "identical", result.summary
