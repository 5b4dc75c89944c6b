"""A short fuzzing run of every header parser (the long one is bench/fuzz.py): nothing escapes as a non-ProvenanceError.

Targets and strategies are tests/support/fuzzing.py: mutated valid
files and structured random files for safetensors, GGUF (through our reader
wrapper, then `Checkpoint.open`) and fingerprint files (loaded, then compared
both ways with a valid fingerprint). Derandomized, so a failure reproduces.
"""

from __future__ import annotations

import shutil
import warnings

import pytest

from tests.support.fuzzing import Fuzzer, make_seeds, plan, scratch_directory

EXAMPLES = 400  # over all targets; a few seconds


@pytest.fixture(scope="module")
def setup():
    from provenance.fingerprint.store import load_fingerprint

    scratch = scratch_directory()
    seeds = make_seeds(scratch / "seeds")
    yield scratch, seeds, load_fingerprint(scratch / "seeds" / "seed.fp.safetensors")
    shutil.rmtree(scratch, ignore_errors=True)


def test_seeds_are_accepted(setup):
    """The unmutated seeds parse: otherwise every mutation would be refused for the seed's sake."""
    scratch, seeds, reference = setup
    from tests.support.fuzzing import target_fingerprint, target_gguf, target_safetensors

    for data, suffix, target in ((seeds.safetensors, ".safetensors", target_safetensors),
                                 (seeds.gguf, ".gguf", target_gguf),
                                 (seeds.fingerprint, ".fp.safetensors", lambda p: target_fingerprint(p, reference))):
        path = scratch / f"seed{suffix}"
        path.write_bytes(data)
        target(path)


@pytest.mark.parametrize("index", range(7))
def test_fuzz_target(setup, index):
    scratch, seeds, reference = setup
    targets = plan(seeds, reference)
    assert len(targets) == 7
    name, strategy, suffix, target, share = targets[index]
    fuzzer = Fuzzer(scratch / f"run{index}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tally = fuzzer.run(name, strategy, suffix, target, max(20, round(EXAMPLES * share)))
    assert tally.inputs >= 20
    assert tally.refused > 0  # the inputs really are broken, and refused as such
    assert tally.uncaught == [], tally.uncaught[:3]
