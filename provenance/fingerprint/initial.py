"""Fingerprints of the standard random initialisations, so that a comparison can tell a shared init from copying.

Two teams that create a model with the same code and the same seed start
from the same weights and, however long they train, keep part of them. The
common case is the Hugging Face default initialisation of a family's model
class after `torch.manual_seed(seed)` with a popular seed. This module
regenerates that initialisation for an architecture and a seed (LLaMA-style
families: `LlamaForCausalLM` from the fingerprint's shapes), fingerprints it
with the ordinary builder, and keeps the fingerprint in the fingerprint cache
folder, under `initialisations/` (the weights themselves are deleted once
fingerprinted; with the cache turned off nothing is kept). Models larger
than `MAX_PARAMETERS` are not regenerated: making them would take more
memory than an audit should.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from ..model import Checkpoint
from .build import build_fingerprint
from .cache import default_directory, disabled_by_environment
from .store import Fingerprint, load_fingerprint

COMMON_SEEDS = (0, 42, 1234, 3407)
MAX_PARAMETERS = 400_000_000
LLAMA_LIKE = ("llama", "mistral", "qwen2", "smollm", "yi")


def _llama_config(arch: dict[str, Any]) -> dict[str, Any] | None:
    needed = ("hidden_size", "intermediate_size", "num_layers", "num_heads", "vocab_size")
    if not all(isinstance(arch.get(k), int) and arch[k] > 0 for k in needed):
        return None
    config = {"vocab_size": arch["vocab_size"], "hidden_size": arch["hidden_size"],
              "intermediate_size": arch["intermediate_size"], "num_hidden_layers": arch["num_layers"],
              "num_attention_heads": arch["num_heads"],
              "num_key_value_heads": arch.get("num_kv_heads") or arch["num_heads"],
              "tie_word_embeddings": bool(arch.get("tied_embeddings"))}
    if arch.get("head_dim") and arch["head_dim"] != arch["hidden_size"] // arch["num_heads"]:
        config["head_dim"] = arch["head_dim"]
    return config


def _parameters(config: dict[str, Any]) -> int:
    h, i, layers, v = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"], config["vocab_size"]
    return layers * (4 * h * h + 3 * h * i) + v * h * (1 if config["tie_word_embeddings"] else 2)


def initial_fingerprint(architecture: dict[str, Any], family: str | None, seed: int) -> Fingerprint | None:
    """The fingerprint of the family's default initialisation under `seed`, or None when it cannot be made here
    (another family, missing shapes, a model above MAX_PARAMETERS)."""
    if not family or not any(family.lower().startswith(f) for f in LLAMA_LIKE):
        return None
    config = _llama_config(architecture)
    if config is None or _parameters(config) > MAX_PARAMETERS:
        return None
    # lazy: transformers is only needed when an initialisation is regenerated, which few comparisons do
    import transformers

    digest = hashlib.sha256(json.dumps([config, seed, transformers.__version__, torch.__version__],
                                       sort_keys=True).encode()).hexdigest()[:20]
    keep = not disabled_by_environment()
    folder = (default_directory() / "initialisations" / f"llama-{digest}" if keep
              else Path(tempfile.mkdtemp(prefix="provenance-init-")))
    saved = folder / "init.fingerprint.safetensors"
    if keep and saved.is_file():
        return load_fingerprint(saved)
    weights = folder / "weights"
    weights.mkdir(parents=True, exist_ok=True)
    try:
        state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**config))
        torch.random.set_rng_state(state)
        tensors = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        if config["tie_word_embeddings"]:
            tensors.pop("lm_head.weight", None)
        save_file(tensors, str(weights / "model.safetensors"))
        (weights / "config.json").write_text(json.dumps({**config, "model_type": "llama",
                                                         "architectures": ["LlamaForCausalLM"]}))
        del model, tensors
        with Checkpoint.open(weights) as checkpoint:
            fingerprint = build_fingerprint(checkpoint)
        if keep:
            fingerprint.save(saved)
    finally:
        shutil.rmtree(weights if keep else folder, ignore_errors=True)
    return fingerprint
