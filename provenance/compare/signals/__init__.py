"""The signals a comparison is made of: one module per signal, listed once in `registry.SIGNALS`.

Each signal (`base.Signal`) declares the fingerprint parts both sides must
hold, its null hypothesis in one sentence, and `measure(pair) ->
SignalResult` (evidence entries, the layers it places, notes); the engine
runs every signal whose needs both fingerprints hold, in the registry's
order, and applies what each placed before the next one runs. Adding a
signal: a module here, a line in `registry.py`, its threshold in
`thresholds.py`.
"""
