"""Nothing lost: a fingerprint write killed at any moment leaves the old complete file or the new complete one.

`Fingerprint.save` writes a temporary file next to the target, fsyncs it and
renames it over the target. Two kinds of SIGKILL:
- deterministic: a subprocess pauses in the test hook between the complete
  temporary file and the rename; the target must still be the old file, and
  the leftover temporary file must not be taken for a fingerprint;
- at random moments: a subprocess rewrites a 64 MB fingerprint in a loop,
  alternating two contents; whenever it is killed, the target loads and is
  entirely one of the two.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from provenance.errors import ProvenanceError
from provenance.fingerprint.load import fingerprint_for
from provenance.fingerprint.store import Fingerprint, is_fingerprint_file, load_fingerprint

PAD_VALUES = 16 * 1024 * 1024  # float32: 64 MB, so that a write takes long enough to be interrupted
# (as a `gram/` array: a fingerprint file holds only arrays of its own kinds, store.fingerprint_kind)

# The writer imports store.py without running provenance/fingerprint/__init__.py, which imports
# torch (5 s per process on a busy machine); it needs only numpy and safetensors.
_WRITER = r"""
import json, sys, time, types
from pathlib import Path
import numpy as np
import provenance
from safetensors import safe_open
from safetensors.numpy import load_file

package = types.ModuleType("provenance.fingerprint")
package.__path__ = [str(Path(provenance.__file__).parent / "fingerprint")]
sys.modules["provenance.fingerprint"] = package
from provenance.fingerprint import store
from provenance import atomic_files
assert "torch" not in sys.modules

with safe_open(sys.argv[1], "np") as handle:
    base_meta = json.loads(handle.metadata()["provenance"])
base_arrays = load_file(sys.argv[1])
# a schema-4 file holds its records and arrays packed (fingerprint/packing.py): a Fingerprint holds them unpacked
from provenance.fingerprint.packing import unpack
base_meta, base_arrays = unpack(base_meta, base_arrays)
target, mode = sys.argv[2], sys.argv[3]

def variant(label, value):
    meta = dict(base_meta, created=label)
    return store.Fingerprint(meta=meta, arrays={**base_arrays, "gram/padding": np.full(%d, value, dtype=np.float32)})

a, b = variant("A", 1.0), variant("B", 2.0)
if mode == "pause":
    def pause(temporary, final):  # in place of the rename: the temporary file is complete here
        print(temporary, flush=True)
        time.sleep(600)
    atomic_files.os = types.SimpleNamespace(**{**vars(atomic_files.os), "replace": pause})
    b.save(target)
else:
    i = 0
    while True:
        (a if i %% 2 == 0 else b).save(target)
        if i == 0:
            print("saved", flush=True)
        i += 1
""" % PAD_VALUES


@pytest.fixture(scope="module")
def base_fingerprint(tmp_path_factory):
    from provenance.fingerprint import build_fingerprint
    from provenance.model import Checkpoint
    from tests.support.attack_corpus import write_model_dir

    work = tmp_path_factory.mktemp("atomic")
    with Checkpoint.open(write_model_dir(work / "model")) as checkpoint:
        return build_fingerprint(checkpoint).save(work / "base.fp.safetensors")


def _start(base: Path, target: Path, mode: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "PROVENANCE_DEBUG"}
    return subprocess.Popen([sys.executable, "-c", _WRITER, str(base), str(target), mode], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def _kill(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)


def _assert_whole(target: Path) -> str:
    """The target loads, and its metadata and its 64 MB array come from the same write."""
    fingerprint = load_fingerprint(target)
    label = fingerprint.meta["created"]
    assert label in ("A", "B")
    values = fingerprint.arrays["gram/padding"]
    assert values.shape == (PAD_VALUES,)
    assert np.all(values == (1.0 if label == "A" else 2.0))
    return label


def _assert_not_a_fingerprint(temporary: Path) -> None:
    assert temporary.name.startswith(".") and temporary.name.endswith(".tmp")
    assert not is_fingerprint_file(temporary)
    with pytest.raises(ProvenanceError):
        fingerprint_for(temporary)


def test_kill_between_temporary_file_and_rename_keeps_the_old_file(base_fingerprint, tmp_path):
    target = tmp_path / "model.fp.safetensors"
    old = load_fingerprint(base_fingerprint)
    Fingerprint(meta=dict(old.meta, created="A"),
                arrays={**old.arrays, "gram/padding": np.full(PAD_VALUES, 1.0, dtype=np.float32)}).save(target)
    process = _start(base_fingerprint, target, "pause")
    try:
        line = process.stdout.readline().strip()  # the hook prints the complete temporary file, then sleeps
    finally:
        _kill(process)
    temporary = Path(line)
    assert temporary.parent == tmp_path and temporary.exists(), (line, process.stderr.read())
    assert _assert_whole(target) == "A"  # the old content, complete
    # The new content is complete in the temporary file, but nothing takes it for a fingerprint.
    assert temporary.stat().st_size > PAD_VALUES * 4
    _assert_not_a_fingerprint(temporary)
    assert [p.name for p in tmp_path.glob("*.safetensors")] == ["model.fp.safetensors"]


def test_kill_at_random_moments_leaves_a_whole_file(base_fingerprint, tmp_path):
    target = tmp_path / "model.fp.safetensors"
    rng = random.Random(7)
    seen = set()
    for attempt in range(3):
        process = _start(base_fingerprint, target, "loop")
        try:
            assert process.stdout.readline().strip() == "saved", process.stderr.read()
            time.sleep(rng.uniform(0.05, 1.0))  # somewhere inside a later write, or between two
        finally:
            _kill(process)
        seen.add(_assert_whole(target))
        for temporary in tmp_path.glob(".*.tmp"):
            _assert_not_a_fingerprint(temporary)
    assert seen <= {"A", "B"}


def test_failed_save_removes_its_temporary_file(base_fingerprint, tmp_path):
    """An exception during the write (here: an array safetensors cannot store) leaves no temporary file."""
    fingerprint = load_fingerprint(base_fingerprint)
    broken = Fingerprint(meta=fingerprint.meta, arrays={**fingerprint.arrays, "bad": np.array([object()])})
    with pytest.raises(Exception):
        broken.save(tmp_path / "x.fp.safetensors")
    assert list(tmp_path.iterdir()) == []
