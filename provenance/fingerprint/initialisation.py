"""The Hugging Face default initialisation of a model's configuration, regenerated under a seed, as sketches.

Two teams that each run `torch.manual_seed(s)` and then build the model
from its config (`LlamaForCausalLM(config)`, as Hugging Face training
scripts do) start from the same weights. To check that reading, this module
rebuilds that starting point: the fingerprint's architecture descriptor is
turned into the family's transformers config (only the families in
`MODEL_CLASSES`; `transformers` classes, never remote code), the model is
built on CPU right after `torch.manual_seed(seed)`, saved to a temporary
folder and read back through `Checkpoint`, so that its tensors get the same
canonical keys and layouts as any checkpoint; each matrix's float32 values
at its shape's sketch positions (`sketch.sketch_positions`, the positions
every fingerprint samples) are kept, with the embedding and head rows of
the anchor token ids asked for.

What the default initialisation is belongs to the installed transformers
(recorded in `Initialisation.made_by`): a model initialised by another
version's code may not be reproduced. Models over MAX_PARAMETERS are not
built (None, with the reason). Results are cached per (configuration, seed,
rows) within a process.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

from ..architectures.roles import Role
from ..errors import ProvenanceError
from ..model import Checkpoint
from .sketch import sketch_positions

# Building and reading a model costs about 4 bytes and a few nanoseconds per parameter per seed; 1.5e8
# parameters (SmolLM2-135M) is a few seconds and 600 MB of temporary file.
MAX_PARAMETERS = 150_000_000
# The default initializer_range of LlamaConfig, MistralConfig and Qwen2Config: every Linear and Embedding weight
# is drawn from N(0, 0.02^2).
DEFAULT_INIT_STD = 0.02
# family -> (config class, model class): families whose default init the project regenerates.
MODEL_CLASSES = {
    "llama": ("LlamaConfig", "LlamaForCausalLM"),
    "mistral": ("MistralConfig", "MistralForCausalLM"),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM"),
}


@dataclass(frozen=True)
class Initialisation:
    """A regenerated default initialisation: sketches of its matrices by canonical key, anchor rows by role."""

    seed: int
    made_by: str  # e.g. "transformers 5.25.0 LlamaForCausalLM"
    sketches: dict[str, np.ndarray]  # every canonical tensor's values at its sketch positions (1-D: whole)
    rows: dict[str, dict[int, np.ndarray]]  # role ("embed", "lm_head") -> token id -> float32 row


def parameter_count(arch: dict[str, Any]) -> int | None:
    """Parameters of a dense decoder with this descriptor (embeddings, attention, gated MLP, head); None if a
    number is missing."""
    try:
        h, inter, layers = int(arch["hidden_size"]), int(arch["intermediate_size"]), int(arch["num_layers"])
        heads, kv, vocab = int(arch["num_heads"]), int(arch["num_kv_heads"]), int(arch["vocab_size"])
        head_dim = int(arch.get("head_dim") or h // max(heads, 1))
    except (KeyError, TypeError, ValueError):
        return None
    attention = h * head_dim * (2 * heads + 2 * kv)
    per_layer = attention + 3 * h * inter
    return vocab * h * (1 if arch.get("tied_embeddings") else 2) + layers * per_layer


def unavailable_reason(arch: dict[str, Any], family: str | None) -> str | None:
    """Why this architecture's default initialisation is not regenerated, or None if it can be."""
    if family not in MODEL_CLASSES:
        return f"the {family or 'unknown'} family's default initialisation is not regenerated here"
    if arch.get("num_experts") or arch.get("gated_mlp") is False:
        return "only dense gated-MLP decoders are regenerated"
    count = parameter_count(arch)
    if count is None or count <= 0 or not _plausible(arch):
        return "the architecture does not state every shape"
    if count > MAX_PARAMETERS:
        return f"the model has {count:.3g} parameters, over the cap of {MAX_PARAMETERS:.2g} for rebuilding it"
    return None


def _plausible(arch: dict[str, Any]) -> bool:
    """Every shape positive and the query heads a multiple of the key/value heads (numbers from a file)."""
    try:
        numbers = [int(arch[k]) for k in ("hidden_size", "intermediate_size", "num_layers", "num_heads",
                                          "num_kv_heads", "vocab_size")]
        head_dim = int(arch.get("head_dim") or 1)
    except (KeyError, TypeError, ValueError):
        return False
    heads, kv = numbers[3], numbers[4]
    return min(numbers) >= 1 and head_dim >= 1 and heads % kv == 0


def _config_fields(arch: dict[str, Any]) -> dict[str, Any]:
    """The transformers config fields that decide the initial weights' shapes (and so the random draws)."""
    h, heads = int(arch["hidden_size"]), int(arch["num_heads"])
    fields: dict[str, Any] = {
        "vocab_size": int(arch["vocab_size"]), "hidden_size": h, "intermediate_size": int(arch["intermediate_size"]),
        "num_hidden_layers": int(arch["num_layers"]), "num_attention_heads": heads,
        "num_key_value_heads": int(arch["num_kv_heads"]), "tie_word_embeddings": bool(arch.get("tied_embeddings")),
    }
    if arch.get("head_dim") and int(arch["head_dim"]) != h // heads:
        fields["head_dim"] = int(arch["head_dim"])
    for key in ("attention_bias", "mlp_bias"):
        if arch.get(key):
            fields[key] = True
    return fields


def regenerate(arch: dict[str, Any], family: str, seed: int, row_ids: tuple[int, ...] = ()) -> Initialisation | None:
    """The default initialisation of this architecture under `torch.manual_seed(seed)`, or None when
    `unavailable_reason` gives one."""
    if unavailable_reason(arch, family) is not None:
        return None
    fields = json.dumps(_config_fields(arch), sort_keys=True)
    try:
        return _regenerate(family, fields, int(seed), tuple(sorted({int(i) for i in row_ids if int(i) >= 0})))
    except (ValueError, TypeError, RuntimeError, OSError, ProvenanceError):
        return None  # transformers refused the configuration, or the rebuilt model could not be read back


@lru_cache(maxsize=8)
def _regenerate(family: str, fields: str, seed: int, row_ids: tuple[int, ...]) -> Initialisation:
    import transformers  # heavy: only when a comparison asks for a regenerated initialisation

    config_name, model_name = MODEL_CLASSES[family]
    config = getattr(transformers, config_name)(**json.loads(fields))
    config.architectures = [model_name]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):  # the caller's global generator is left where it stood
            torch.manual_seed(seed)
            model = getattr(transformers, model_name)(config)
    finally:
        torch.set_num_threads(threads)
    sketches: dict[str, np.ndarray] = {}
    rows: dict[str, dict[int, np.ndarray]] = {}
    with tempfile.TemporaryDirectory(prefix="provenance-init-") as folder:
        state, seen = {}, set()
        for name, value in model.state_dict().items():  # a tied output head shares the embedding's storage: kept once
            if value.data_ptr() not in seen:
                seen.add(value.data_ptr())
                state[name] = value.detach().contiguous()
        del model
        config_dict = config.to_dict()
        config_dict["model_type"] = family
        (Path(folder) / "config.json").write_text(json.dumps(config_dict, default=str))
        save_file(state, str(Path(folder) / "model.safetensors"), metadata={"format": "pt"})
        del state
        with Checkpoint.open(folder) as checkpoint:
            for assignment, tensor in checkpoint.iter_canonical():
                key, values = assignment.key, tensor.to(torch.float32)
                name = key.name
                sketches[name] = values.reshape(-1)[torch.from_numpy(sketch_positions(tuple(values.shape)))].numpy().copy()
                if key.role in (Role.EMBED, Role.LM_HEAD) and key.param == "weight" and row_ids:
                    wanted = [i for i in row_ids if i < values.shape[0]]
                    picked = values[torch.tensor(wanted, dtype=torch.long)].numpy().copy() if wanted else None
                    rows[key.role] = {i: picked[n] for n, i in enumerate(wanted)} if picked is not None else {}
    return Initialisation(seed, f"transformers {transformers.__version__} {model_name}", sketches, rows)
