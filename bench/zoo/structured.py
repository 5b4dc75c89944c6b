"""Independent models with the weight structure of trained LLMs, as zoo negatives (never to be accused).

The zoo's own bases are tiny and briefly trained, so their weights are nearly
isotropic; these come from the null suite's generator (`bench/nulls/models.py`:
power-law spectra in model-specific bases, massive residual dimensions,
non-uniform norms, GQA, a shared vocabulary with shared token-frequency row
norms). Cases: LLaMA pairs of equal depth and of different depth (6 vs 10
layers), and a GPT-2 pair, each a different seed of one design.
"""

from __future__ import annotations

from bench.nulls import models as N

SPECS = {
    "aniso-llama-a": N.ModelSpec("aniso-llama-a", "aniso-llama", "llama", 128, 344, 4, 2, 6, 2048, False, 101, alpha=0.8),
    "aniso-llama-b": N.ModelSpec("aniso-llama-b", "aniso-llama", "llama", 128, 344, 4, 2, 6, 2048, False, 102, alpha=0.6),
    "aniso-llama-deep": N.ModelSpec("aniso-llama-deep", "aniso-llama", "llama", 128, 344, 4, 2, 10, 2048, True, 103,
                                    alpha=0.9),
    "aniso-gpt2-a": N.ModelSpec("aniso-gpt2-a", "aniso-gpt2", "gpt2", 128, 512, 4, 4, 6, 2048, True, 104, alpha=0.7),
    "aniso-gpt2-b": N.ModelSpec("aniso-gpt2-b", "aniso-gpt2", "gpt2", 128, 512, 4, 4, 6, 2048, True, 105, alpha=0.9),
}
CASES = (
    ("neg-anisotropic", "aniso-llama-a", "aniso-llama-b", "independent structured LLaMA models, equal depth"),
    ("neg-anisotropic", "aniso-llama-deep", "aniso-llama-a", "independent structured LLaMA models, 10 vs 6 layers"),
    ("neg-anisotropic", "aniso-llama-a", "aniso-llama-deep", "independent structured LLaMA models, 6 vs 10 layers"),
    ("neg-anisotropic", "aniso-gpt2-a", "aniso-gpt2-b", "independent structured GPT-2 models, equal depth"),
)


def build_structured_cases(zoo) -> None:
    """Write the models into `zoo` (a bench.zoo.build.Zoo) when missing and add the negative cases."""
    import json

    for name, spec in SPECS.items():
        directory = zoo.out / "models" / name
        marker = directory / "spec.json"
        wanted = {"structured": spec.to_dict()}
        if not (marker.exists() and json.loads(marker.read_text()).get("recipe") == wanted):
            N.write_model(directory, spec)
            zoo.built += 1
        else:
            zoo.cached += 1
        entry = {"name": name, "path": f"models/{name}", "family": spec.family, "params": spec.to_dict(),
                 "recipe": wanted, "parents": [], "info": {}}
        marker.write_text(json.dumps(entry, indent=1, sort_keys=True))
        zoo.models[name] = entry
    for type_, candidate, reference, note in CASES:
        zoo.cases.append({
            "id": f"{SPECS[reference].family}/{type_}:{candidate}~{reference}", "type": type_,
            "family": SPECS[reference].family, "candidate": candidate, "reference": reference,
            "verdict": "same-architecture", "acceptable": ["same-architecture", "unrelated"], "positive": False,
            "layer_changing": False, "layer_map": None, "layer_sources": None, "max_logit_diff": None,
            "relative_change": None, "note": note})
