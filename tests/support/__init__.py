"""Test scaffolding that is not itself a test: the attack corpus, the fuzzer, and a paused database writer."""
