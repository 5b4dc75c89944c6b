"""Derivations of a state dict: each returns new (params, state), never edits its input.

Function-preserving transforms (permutations, norm rescaling, residual
rotation) are exact in real arithmetic; build.py checks each by the logits on
a fixed input. Layer operations take layers from one or more source states.
"""

from __future__ import annotations

import math
import re

import numpy as np
import torch

from .models import FAMILIES

Tensors = dict[str, torch.Tensor]


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _copy(state: Tensors) -> Tensors:
    return {k: v.clone() for k, v in state.items()}


def _is_linear(family: str, key: str, value: torch.Tensor) -> bool:
    return value.dim() == 2 and value.is_floating_point()


def _oriented(family: str, key: str, value: torch.Tensor) -> torch.Tensor:
    """A 2-D weight as (out, in): Conv1D layer weights of GPT-2 are stored (in, out)."""
    if FAMILIES[family].conv1d and ".h." in key and value.dim() == 2:
        return value.t()
    return value


# --- renaming and casts -------------------------------------------------------------------------

def rename_yi(state: Tensors) -> Tensors:
    return {k.replace("input_layernorm", "ln1").replace("post_attention_layernorm", "ln2"): v for k, v in state.items()}


def rename_opaque(state: Tensors, shuffle: bool, seed: int) -> tuple[Tensors, dict[str, str]]:
    """Names t000, t001, ... in the model's own order, or in a random order (shuffle)."""
    keys = list(state)
    if shuffle:
        order = np.random.default_rng(seed).permutation(len(keys))
        keys = [keys[i] for i in order]
    width = max(3, len(str(len(keys))))
    mapping = {key: f"t{index:0{width}d}" for index, key in enumerate(keys)}
    return {mapping[k]: state[k] for k in state}, mapping


def cast(state: Tensors, dtype: torch.dtype) -> Tensors:
    return {k: v.to(dtype) if v.is_floating_point() else v.clone() for k, v in state.items()}


# --- quantize-dequantize ------------------------------------------------------------------------

def quant_int8_per_channel(family: str, state: Tensors) -> Tensors:
    """Symmetric int8, one scale per output channel (row of the (out, in) weight), then dequantized."""
    result = _copy(state)
    for key, value in state.items():
        if not _is_linear(family, key, value):
            continue
        w = _oriented(family, key, value).float()
        scale = w.abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / 127.0
        q = torch.round(w / scale).clamp(-127, 127) * scale
        result[key] = (_oriented(family, key, q)).contiguous()
    return result


def quant_4bit_blocks(family: str, state: Tensors, block: int = 32) -> Tensors:
    """Symmetric 4-bit (levels -7..7), blocks of 32 along the input dimension, one scale per block."""
    result = _copy(state)
    for key, value in state.items():
        if not _is_linear(family, key, value):
            continue
        w = _oriented(family, key, value).float()
        rows, cols = w.shape
        padded = math.ceil(cols / block) * block
        blocks = torch.nn.functional.pad(w, (0, padded - cols)).reshape(rows, padded // block, block)
        scale = blocks.abs().amax(dim=2, keepdim=True).clamp_min(1e-12) / 7.0
        q = (torch.round(blocks / scale).clamp(-7, 7) * scale).reshape(rows, padded)[:, :cols]
        result[key] = _oriented(family, key, q).contiguous()
    return result


# --- function-preserving transforms -------------------------------------------------------------

def permute_mlp(family: str, params: dict, state: Tensors, seed: int) -> Tensors:
    """A random permutation of the MLP hidden units of every layer."""
    fam = FAMILIES[family]
    g = _generator(seed)
    result = _copy(state)
    for i in range(fam.num_layers(params)):
        p = fam.prefix(i)
        if family == "llama":
            order = torch.randperm(params["intermediate_size"], generator=g)
            for name in ("gate_proj", "up_proj"):
                result[f"{p}mlp.{name}.weight"] = state[f"{p}mlp.{name}.weight"][order].contiguous()
            result[f"{p}mlp.down_proj.weight"] = state[f"{p}mlp.down_proj.weight"][:, order].contiguous()
        else:
            order = torch.randperm(params["n_inner"], generator=g)
            result[f"{p}mlp.c_fc.weight"] = state[f"{p}mlp.c_fc.weight"][:, order].contiguous()
            result[f"{p}mlp.c_fc.bias"] = state[f"{p}mlp.c_fc.bias"][order].contiguous()
            result[f"{p}mlp.c_proj.weight"] = state[f"{p}mlp.c_proj.weight"][order].contiguous()
    return result


def _head_rows(order: list[int], head_dim: int) -> torch.Tensor:
    return torch.cat([torch.arange(h * head_dim, (h + 1) * head_dim) for h in order])


def permute_heads(family: str, params: dict, state: Tensors, seed: int) -> tuple[Tensors, list]:
    """Permute attention heads of every layer; with GQA, key/value heads move with their query groups.

    Returns the state and, per layer, the new -> old order of query heads.
    """
    fam = FAMILIES[family]
    rng = np.random.default_rng(seed)
    result = _copy(state)
    orders = []
    for i in range(fam.num_layers(params)):
        p = fam.prefix(i)
        if family == "llama":
            heads, kv = params["num_attention_heads"], params["num_key_value_heads"]
            head_dim = params["hidden_size"] // heads
            group = heads // kv
            while True:
                kv_order = rng.permutation(kv).tolist()
                q_order = [kv_order[g] * group + int(t) for g in range(kv) for t in rng.permutation(group)]
                if q_order != list(range(heads)):
                    break
            q_rows, kv_rows = _head_rows(q_order, head_dim), _head_rows(kv_order, head_dim)
            result[f"{p}self_attn.q_proj.weight"] = state[f"{p}self_attn.q_proj.weight"][q_rows].contiguous()
            result[f"{p}self_attn.k_proj.weight"] = state[f"{p}self_attn.k_proj.weight"][kv_rows].contiguous()
            result[f"{p}self_attn.v_proj.weight"] = state[f"{p}self_attn.v_proj.weight"][kv_rows].contiguous()
            result[f"{p}self_attn.o_proj.weight"] = state[f"{p}self_attn.o_proj.weight"][:, q_rows].contiguous()
        else:
            heads, hidden = params["n_head"], params["n_embd"]
            head_dim = hidden // heads
            while True:
                q_order = rng.permutation(heads).tolist()
                if q_order != list(range(heads)):
                    break
            cols = _head_rows(q_order, head_dim)
            cols = torch.cat([cols, cols + hidden, cols + 2 * hidden])  # same order for q, k and v
            result[f"{p}attn.c_attn.weight"] = state[f"{p}attn.c_attn.weight"][:, cols].contiguous()
            result[f"{p}attn.c_attn.bias"] = state[f"{p}attn.c_attn.bias"][cols].contiguous()
            result[f"{p}attn.c_proj.weight"] = state[f"{p}attn.c_proj.weight"][_head_rows(q_order, head_dim)].contiguous()
        orders.append(q_order)
    return result, orders


def rescale_norms(family: str, params: dict, state: Tensors, seed: int, spread: float = 0.5) -> Tensors:
    """Multiply each norm's weight by s > 0 per channel and divide the input columns of the linear layers after it by s.

    GPT-2's final LayerNorm is left alone: its output head is tied to the embedding.
    """
    fam = FAMILIES[family]
    g = _generator(seed)
    result = _copy(state)

    def scale(width: int) -> torch.Tensor:
        return torch.exp(spread * torch.randn(width, generator=g))

    for i in range(fam.num_layers(params)):
        p = fam.prefix(i)
        if family == "llama":
            for norm, linears in (("input_layernorm", ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")),
                                  ("post_attention_layernorm", ("mlp.gate_proj", "mlp.up_proj"))):
                s = scale(params["hidden_size"])
                result[f"{p}{norm}.weight"] = state[f"{p}{norm}.weight"] * s
                for linear in linears:
                    result[f"{p}{linear}.weight"] = (state[f"{p}{linear}.weight"] / s[None, :]).contiguous()
        else:
            for norm, linear in (("ln_1", "attn.c_attn"), ("ln_2", "mlp.c_fc")):
                s = scale(params["n_embd"])
                result[f"{p}{norm}.weight"] = state[f"{p}{norm}.weight"] * s
                result[f"{p}{norm}.bias"] = state[f"{p}{norm}.bias"] * s
                result[f"{p}{linear}.weight"] = (state[f"{p}{linear}.weight"] / s[:, None]).contiguous()
    if family == "llama":
        s = scale(params["hidden_size"])
        result["model.norm.weight"] = state["model.norm.weight"] * s
        result["lm_head.weight"] = (state["lm_head.weight"] / s[None, :]).contiguous()
    return result


def rescale_pairs(params: dict, state: Tensors, seed: int, spread: float = 0.5) -> Tensors:
    """LLaMA only: per-unit rescalings between paired matrices that leave the function unchanged.

    q rows x s and the matching k rows / s (s per key-value head dimension, equal on
    the two dimensions each rotary pair mixes, shared by the query heads of a
    group); v rows x t and the matching o columns / t; up rows x u and down
    columns / u (SwiGLU: gate * up is linear in up).
    """
    g = _generator(seed)
    heads, kv_heads = params["num_attention_heads"], params["num_key_value_heads"]
    hidden = params["hidden_size"]
    d = hidden // heads
    group = heads // kv_heads
    result = _copy(state)

    def positive(count: int) -> torch.Tensor:
        return torch.exp(spread * torch.randn(count, generator=g))

    for i in range(params["num_hidden_layers"]):
        p = f"model.layers.{i}."
        half = positive(kv_heads * d // 2).reshape(kv_heads, d // 2)
        s = torch.cat([half, half], dim=1).reshape(-1)  # rotate_half pairs dimension e with e + d/2
        q_scale = s.reshape(kv_heads, 1, d).expand(kv_heads, group, d).reshape(-1)
        result[f"{p}self_attn.q_proj.weight"] = (state[f"{p}self_attn.q_proj.weight"] * q_scale[:, None]).contiguous()
        result[f"{p}self_attn.k_proj.weight"] = (state[f"{p}self_attn.k_proj.weight"] / s[:, None]).contiguous()
        t = positive(kv_heads * d)
        o_scale = t.reshape(kv_heads, 1, d).expand(kv_heads, group, d).reshape(-1)
        result[f"{p}self_attn.v_proj.weight"] = (state[f"{p}self_attn.v_proj.weight"] * t[:, None]).contiguous()
        result[f"{p}self_attn.o_proj.weight"] = (state[f"{p}self_attn.o_proj.weight"] / o_scale[None, :]).contiguous()
        u = positive(state[f"{p}mlp.up_proj.weight"].shape[0])
        result[f"{p}mlp.up_proj.weight"] = (state[f"{p}mlp.up_proj.weight"] * u[:, None]).contiguous()
        result[f"{p}mlp.down_proj.weight"] = (state[f"{p}mlp.down_proj.weight"] / u[None, :]).contiguous()
    return result


def rotate_residual(params: dict, state: Tensors, seed: int) -> Tensors:
    """LLaMA only: fold every RMSNorm weight into the linear layers after it (norms become 1), then
    rotate the residual stream by a random orthogonal Q (x -> Q^T x): readers W -> W Q, writers W -> Q^T W,
    embedding rows E -> E Q. RMSNorm without weights commutes with rotations, so the function is unchanged
    (the construction of QuaRot/SliceGPT, and of mergekit's permutation/rotation evasion script).
    """
    hidden = params["hidden_size"]
    g = _generator(seed)
    q, r = torch.linalg.qr(torch.randn(hidden, hidden, generator=g, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))[None, :]
    state = {k: v.double() for k, v in state.items()}
    result = {}
    readers = {"self_attn.q_proj": "input_layernorm", "self_attn.k_proj": "input_layernorm",
               "self_attn.v_proj": "input_layernorm", "mlp.gate_proj": "post_attention_layernorm",
               "mlp.up_proj": "post_attention_layernorm"}
    for i in range(params["num_hidden_layers"]):
        p = f"model.layers.{i}."
        for linear, norm in readers.items():
            folded = state[f"{p}{linear}.weight"] * state[f"{p}{norm}.weight"][None, :]
            result[f"{p}{linear}.weight"] = folded @ q
        for norm in ("input_layernorm", "post_attention_layernorm"):
            result[f"{p}{norm}.weight"] = torch.ones(hidden, dtype=torch.float64)
        for linear in ("self_attn.o_proj", "mlp.down_proj"):
            result[f"{p}{linear}.weight"] = q.t() @ state[f"{p}{linear}.weight"]
    result["model.embed_tokens.weight"] = state["model.embed_tokens.weight"] @ q
    result["lm_head.weight"] = (state["lm_head.weight"] * state["model.norm.weight"][None, :]) @ q
    result["model.norm.weight"] = torch.ones(hidden, dtype=torch.float64)
    missing = set(state) - set(result)
    if missing:
        raise ValueError(f"rotation does not cover {sorted(missing)}")
    return {k: result[k].float().contiguous() for k in state}


# --- noise, layers, experts -----------------------------------------------------------------------

def add_noise(state: Tensors, fraction: float, seed: int) -> Tensors:
    """Add Gaussian noise of `fraction` times each tensor's own standard deviation."""
    g = _generator(seed)
    result = {}
    for key, value in state.items():
        if value.is_floating_point() and value.numel() > 1:
            result[key] = value + fraction * value.float().std() * torch.randn(value.shape, generator=g)
        else:
            result[key] = value.clone()
    return result


def assemble_layers(family: str, params: dict, primary: Tensors, sources: list[tuple[Tensors, int]]) -> tuple[dict, Tensors]:
    """A model whose layer k is layer j of sources[k] = (state, j); non-layer tensors from `primary`."""
    fam = FAMILIES[family]
    pattern = re.compile("^" + re.escape(fam.layer_prefix).replace(r"\{i\}", r"(\d+)"))
    result = {k: v.clone() for k, v in primary.items() if not pattern.match(k)}
    for new, (state, old) in enumerate(sources):
        old_prefix, new_prefix = fam.prefix(old), fam.prefix(new)
        found = False
        for key, value in state.items():
            if key.startswith(old_prefix):
                result[new_prefix + key[len(old_prefix):]] = value.clone()
                found = True
        if not found:
            raise ValueError(f"source has no layer {old}")
    return {**params, fam.layers_param: len(sources)}, result


def upcycle_moe(params: dict, state: Tensors, experts: int, noise: float, seed: int) -> tuple[dict, Tensors]:
    """Mixtral from a dense LLaMA: every expert a noisy copy of the layer's MLP, a random router."""
    g = _generator(seed)
    moe_params = {**params, "num_local_experts": experts, "num_experts_per_tok": 2}
    result = {}
    for key, value in state.items():
        match = re.match(r"^(model\.layers\.\d+\.)mlp\.(gate_proj|up_proj|down_proj)\.weight$", key)
        if not match:
            result[key] = value.clone()
            continue
        prefix, name = match.groups()
        w = {"gate_proj": "w1", "down_proj": "w2", "up_proj": "w3"}[name]
        for e in range(experts):
            result[f"{prefix}block_sparse_moe.experts.{e}.{w}.weight"] = (
                value + noise * value.std() * torch.randn(value.shape, generator=g)).contiguous()
    for i in range(params["num_hidden_layers"]):
        result[f"model.layers.{i}.block_sparse_moe.gate.weight"] = 0.02 * torch.randn(
            experts, params["hidden_size"], generator=g)
    return moe_params, result


# --- merges ------------------------------------------------------------------------------------

def merge_linear(states: list[Tensors], weights: list[float]) -> Tensors:
    return {k: sum(w * s[k].float() for s, w in zip(states, weights)) for k in states[0]}


def merge_slerp(a: Tensors, b: Tensors, t: float) -> Tensors:
    """Spherical interpolation per tensor (as mergekit's slerp), linear when nearly parallel."""
    result = {}
    for key in a:
        x, y = a[key].double().reshape(-1), b[key].double().reshape(-1)
        cos = float(torch.dot(x, y) / (x.norm() * y.norm()).clamp_min(1e-12))
        omega = math.acos(max(-1.0, min(1.0, cos)))
        if abs(math.sin(omega)) < 1e-6:
            merged = (1 - t) * x + t * y
        else:
            merged = (math.sin((1 - t) * omega) * x + math.sin(t * omega) * y) / math.sin(omega)
        result[key] = merged.reshape(a[key].shape).float()
    return result


def merge_ties(base: Tensors, tuned: list[Tensors], density: float, weight: float = 1.0) -> Tensors:
    """TIES (Yadav et al. 2023): trim each task vector to its largest `density` share, elect signs, disjoint mean."""
    result = {}
    for key in base:
        deltas = []
        for state in tuned:
            delta = state[key].float() - base[key].float()
            k = max(1, int(round(density * delta.numel())))
            threshold = delta.abs().reshape(-1).kthvalue(delta.numel() - k + 1).values
            deltas.append(torch.where(delta.abs() >= threshold, delta, torch.zeros_like(delta)))
        stacked = torch.stack(deltas)
        sign = torch.sign(stacked.sum(0))
        agree = (torch.sign(stacked) == sign[None]) & (stacked != 0)
        merged = (stacked * agree).sum(0) / agree.sum(0).clamp_min(1)
        result[key] = base[key].float() + weight * merged
    return result


def merge_lora(family: str, params: dict, state: Tensors, rank: int, relative: float, seed: int) -> Tensors:
    """W + B A on every linear layer weight of the blocks, rank r, scaled to ||BA|| = relative * ||W||."""
    fam = FAMILIES[family]
    g = _generator(seed)
    result = _copy(state)
    for key, value in state.items():
        if not (key.startswith(fam.layer_prefix.split("{")[0]) and value.dim() == 2):
            continue
        w = _oriented(family, key, value).float()
        b = torch.randn(w.shape[0], rank, generator=g)
        a = torch.randn(rank, w.shape[1], generator=g)
        delta = b @ a
        delta *= relative * w.norm() / delta.norm()
        result[key] = _oriented(family, key, w + delta).contiguous()
    return result


# --- vocabulary --------------------------------------------------------------------------------

def move_vocab_rows(family: str, params: dict, state: Tensors, new_to_old: list[int | None], seed: int) -> tuple[dict, Tensors]:
    """Embedding (and untied output head) rows follow their tokens; new tokens get the mean row plus noise."""
    fam = FAMILIES[family]
    g = _generator(seed)
    result = _copy(state)
    for key in (fam.embed, fam.lm_head):
        if key is None or key not in state:
            continue
        old = state[key].float()
        mean, std = old.mean(0), old.std(0)
        rows = [old[o] if o is not None else mean + 0.1 * std * torch.randn(old.shape[1], generator=g)
                for o in new_to_old]
        result[key] = torch.stack(rows).contiguous()
    return {**params, "vocab_size": len(new_to_old)}, result


# --- structural edits: width pruning, KV pooling, experts cut from a dense MLP ----------------------

def prune_width(params: dict, state: Tensors, hidden: int, intermediate: int, seed: int) -> tuple[dict, Tensors]:
    """LLaMA only (Minitron-style width pruning, without the healing): keep `hidden` of the residual dimensions
    (every tensor reading or writing the residual stream loses the same columns or rows) and `intermediate` of each
    layer's MLP units (gate/up rows with their down columns); the head size is kept, so config.head_dim is set."""
    rng = np.random.default_rng(seed)
    keep = torch.from_numpy(np.sort(rng.choice(params["hidden_size"], hidden, replace=False)))
    result = {}
    for key, value in state.items():
        if value.dim() == 1:  # norms
            value = value[keep]
        elif key.endswith(("o_proj.weight", "down_proj.weight")):
            value = value[keep]
        else:  # embedding, output head and every matrix reading the residual stream
            value = value[:, keep]
        result[key] = value
    for i in range(params["num_hidden_layers"]):
        p = f"model.layers.{i}.mlp."
        units = torch.from_numpy(np.sort(rng.choice(params["intermediate_size"], intermediate, replace=False)))
        for name in ("gate_proj", "up_proj"):
            result[f"{p}{name}.weight"] = result[f"{p}{name}.weight"][units]
        result[f"{p}down_proj.weight"] = result[f"{p}down_proj.weight"][:, units]
    head_dim = params.get("head_dim") or params["hidden_size"] // params["num_attention_heads"]
    return ({**params, "hidden_size": hidden, "intermediate_size": intermediate, "head_dim": head_dim},
            {k: v.contiguous() for k, v in result.items()})


def pool_kv_heads(params: dict, state: Tensors, kv_heads: int) -> tuple[dict, Tensors]:
    """LLaMA only: average each group of consecutive key/value heads into one (GQA -> fewer KV heads, MQA at 1),
    the query heads kept, as in GQA conversion (Ainslie et al. 2023, mean pooling)."""
    old = params["num_key_value_heads"]
    if old % kv_heads:
        raise ValueError(f"{old} KV heads do not pool into {kv_heads}")
    result = _copy(state)
    for key, value in state.items():
        if key.endswith(("self_attn.k_proj.weight", "self_attn.v_proj.weight")):
            d = value.shape[0] // old
            result[key] = value.reshape(kv_heads, old // kv_heads, d, value.shape[1]).mean(dim=1).reshape(
                kv_heads * d, value.shape[1]).contiguous()
    return {**params, "num_key_value_heads": kv_heads}, result


def split_moe(params: dict, state: Tensors, experts: int, noise: float, seed: int) -> tuple[dict, Tensors]:
    """Mixtral from a dense LLaMA by splitting (Qwen1.5-MoE / LLaMA-MoE style): each layer's MLP units shuffled and
    partitioned into `experts` experts of equal size (gate/up rows with their down columns), each expert then
    changed by Gaussian noise of `noise` times each tensor's std; a random router, top-2."""
    g = _generator(seed)
    units = params["intermediate_size"]
    if units % experts:
        raise ValueError(f"{units} MLP units do not split into {experts} experts")
    size = units // experts
    moe_params = {**params, "intermediate_size": size, "num_local_experts": experts, "num_experts_per_tok": 2}
    result = {k: v.clone() for k, v in state.items() if ".mlp." not in k}
    for i in range(params["num_hidden_layers"]):
        p = f"model.layers.{i}."
        order = torch.randperm(units, generator=g)
        for e in range(experts):
            part = order[e * size:(e + 1) * size]
            pieces = {"w1": state[f"{p}mlp.gate_proj.weight"][part], "w3": state[f"{p}mlp.up_proj.weight"][part],
                      "w2": state[f"{p}mlp.down_proj.weight"][:, part]}
            for w, value in pieces.items():
                result[f"{p}block_sparse_moe.experts.{e}.{w}.weight"] = (
                    value + noise * value.std() * torch.randn(value.shape, generator=g)).contiguous()
        result[f"{p}block_sparse_moe.gate.weight"] = 0.02 * torch.randn(experts, params["hidden_size"], generator=g)
    return moe_params, result
