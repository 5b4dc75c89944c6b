"""The provenance zoo: small trained models and labelled derivatives of them.

`python -m bench.zoo.build --out DIR [--slice small|full]` writes the models
and DIR/cases.json (see bench/zoo/build.py); `python bench/run_zoo.py DIR`
measures the engine on them.
"""
