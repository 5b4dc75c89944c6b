#!/usr/bin/env bash
# The main job on a fresh machine: set up, make the demo suspect if it is missing
# (SmolLM2-135M-Instruct from a PyPI package, renamed, lightly perturbed and
# presented as an original model: see fixtures/README.md), describe it, then
# audit it against the built-in references (SmolLM2-135M-Instruct, all-MiniLM-L6-v2 and
# the 2025 Gemma-3-270M, each compared weight by weight) and write an HTML report.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
if [ ! -d fixtures/suspect ]; then
  python scripts/make_suspect.py   # about 270 MB, deterministic; kept out of git
fi
provenance inspect fixtures/suspect
echo
provenance audit fixtures/suspect --report report.html
