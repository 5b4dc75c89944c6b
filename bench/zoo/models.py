"""Model families of the zoo, seeded training on CPU, saving in Hugging Face layout, logit checks.

A model is described by its family ("llama", "gpt2", "mixtral") and the
keyword arguments of its transformers config class (`params`); its weights
are a state dict in the Hugging Face layout of that family. Mixtral weights
are written in the Hub's per-expert layout (`block_sparse_moe.experts.E.w1`),
the one released Mixtral checkpoints use.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

LOGIT_CHECK_SHAPE = (2, 64)  # fixed input for function-preservation checks: 2 windows of 64 tokens


@dataclass(frozen=True)
class Family:
    name: str
    config_class: str
    model_class: str
    layer_prefix: str  # with {i}
    layers_param: str
    embed: str
    lm_head: str | None  # None when tied to the embedding
    conv1d: bool  # linear weights stored (in, out)

    def prefix(self, i: int) -> str:
        return self.layer_prefix.format(i=i)

    def num_layers(self, params: dict) -> int:
        return int(params[self.layers_param])

    def config(self, params: dict):
        import transformers

        config = getattr(transformers, self.config_class)(**params)
        config.architectures = [self.model_class]
        return config


FAMILIES = {
    "llama": Family("llama", "LlamaConfig", "LlamaForCausalLM", "model.layers.{i}.", "num_hidden_layers",
                    "model.embed_tokens.weight", "lm_head.weight", False),
    "gpt2": Family("gpt2", "GPT2Config", "GPT2LMHeadModel", "transformer.h.{i}.", "n_layer",
                   "transformer.wte.weight", None, True),
    "mixtral": Family("mixtral", "MixtralConfig", "MixtralForCausalLM", "model.layers.{i}.", "num_hidden_layers",
                      "model.embed_tokens.weight", "lm_head.weight", False),
}


def llama_params(vocab: int, eot: int, hidden: int = 128, intermediate: int = 344, layers: int = 6, heads: int = 4,
                 kv_heads: int = 2) -> dict:
    return dict(vocab_size=vocab, hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=layers,
                num_attention_heads=heads, num_key_value_heads=kv_heads, max_position_embeddings=256,
                rms_norm_eps=1e-5, tie_word_embeddings=False, bos_token_id=eot, eos_token_id=eot,
                initializer_range=0.02)


def gpt2_params(vocab: int, eot: int, hidden: int = 128, inner: int = 512, layers: int = 6, heads: int = 4) -> dict:
    return dict(vocab_size=vocab, n_embd=hidden, n_inner=inner, n_layer=layers, n_head=heads, n_positions=256,
                bos_token_id=eot, eos_token_id=eot, tie_word_embeddings=True, resid_pdrop=0.0, embd_pdrop=0.0,
                attn_pdrop=0.0)


def build_model(family: str, params: dict, state: dict[str, torch.Tensor] | None = None):
    import transformers

    fam = FAMILIES[family]
    config = fam.config(params)
    config._attn_implementation = "eager"  # faster than sdpa for these sizes on CPU, and exact
    model = getattr(transformers, fam.model_class)(config)
    if state is not None:
        missing, unexpected = model.load_state_dict(state, strict=False)
        allowed_missing = {"lm_head.weight"} if fam.lm_head is None else set()
        if set(missing) - allowed_missing or unexpected:
            raise ValueError(f"state does not fit {family}: missing {missing}, unexpected {unexpected}")
    model.eval()
    return model


def state_of(model, family: str) -> dict[str, torch.Tensor]:
    fam = FAMILIES[family]
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    if fam.lm_head is None:
        state.pop("lm_head.weight", None)
    return state


def train(family: str, params: dict, data: np.ndarray, steps: int, lr: float, seed: int,
          state: dict[str, torch.Tensor] | None = None, batch: int = 16, seq: int = 64, warmup: int = 20,
          log=print, label: str = "") -> tuple[dict[str, torch.Tensor], dict]:
    """Next-token training (AdamW, linear warm-up then cosine decay to 10%), seeded; returns state and metrics."""
    torch.manual_seed(seed)
    model = build_model(family, params, state)
    model.train()
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.95))
    split = int(len(data) * 0.95)
    train_ids = torch.from_numpy(data[:split])
    rng = np.random.default_rng(seed)
    losses = []
    started = time.time()
    for step in range(steps):
        scale = (step + 1) / warmup if step < warmup else 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))
        for group in optimiser.param_groups:
            group["lr"] = lr * scale
        offsets = rng.integers(0, len(train_ids) - seq - 1, size=batch)
        x = torch.stack([train_ids[o:o + seq] for o in offsets])
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
        optimiser.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if log and (step + 1) % 100 == 0:
            log(f"    {label} step {step + 1}/{steps} loss {np.mean(losses[-20:]):.3f}")
    model.eval()
    metrics = {"steps": steps, "lr": lr, "seed": seed, "batch": batch, "seq": seq,
               "first_loss": round(float(np.mean(losses[:5])), 4) if losses else None,
               "last_loss": round(float(np.mean(losses[-10:])), 4) if losses else None,
               "val_loss": round(validation_loss(model, data[split:], seq), 4), "seconds": round(time.time() - started, 1)}
    return state_of(model, family), metrics


@torch.no_grad()
def validation_loss(model, ids: np.ndarray, seq: int, windows: int = 16) -> float:
    ids = torch.from_numpy(ids)
    starts = np.linspace(0, len(ids) - seq - 1, windows).astype(int)
    x = torch.stack([ids[s:s + seq] for s in starts])
    return float(model(input_ids=x, labels=x).loss)


def check_input(data: np.ndarray) -> torch.Tensor:
    """The fixed input of logit checks: the first windows of the held-out part of the same text."""
    rows, length = LOGIT_CHECK_SHAPE
    start = int(len(data) * 0.95)
    return torch.from_numpy(data[start:start + rows * length].copy()).reshape(rows, length)


@torch.no_grad()
def logits(family: str, params: dict, state: dict[str, torch.Tensor], input_ids: torch.Tensor) -> torch.Tensor:
    model = build_model(family, params, {k: v.float() for k, v in state.items()})
    return model(input_ids=input_ids).logits.float()


def save_model(directory: Path, family: str, params: dict, state: dict[str, torch.Tensor], tokenizer_json: dict,
               torch_dtype: str = "float32", quantization_config: dict | None = None) -> None:
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    config = FAMILIES[family].config(params).to_dict()
    config["torch_dtype"] = torch_dtype
    if quantization_config:
        config["quantization_config"] = quantization_config
    config.pop("_attn_implementation", None)
    (directory / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    (directory / "tokenizer.json").write_text(json.dumps(tokenizer_json, ensure_ascii=False))
    save_file({k: v.contiguous() for k, v in state.items()}, str(directory / "model.safetensors"),
              metadata={"format": "pt"})


def load_state(directory: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(directory / "model.safetensors"))


def relative_change(new: dict[str, torch.Tensor], old: dict[str, torch.Tensor]) -> float | None:
    """||new - old|| / ||old|| over the tensors both share with equal shapes."""
    num = den = 0.0
    for key, value in new.items():
        if key in old and old[key].shape == value.shape:
            num += float((value.float() - old[key].float()).pow(2).sum())
            den += float(old[key].float().pow(2).sum())
    return round(math.sqrt(num / den), 5) if den else None
