"""The zoo's structural edits (bench/zoo/transforms.py) do what their cases say: the experts of a split MLP partition
its units (their outputs sum to the dense MLP's), pooled KV heads are the mean of the heads they replace, and width
pruning keeps a subset of residual dimensions and MLP units in order."""

from __future__ import annotations

import torch

from bench.zoo import transforms as T

PARAMS = dict(vocab_size=32, hidden_size=16, intermediate_size=24, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2)


def _state() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    h, m = PARAMS["hidden_size"], PARAMS["intermediate_size"]
    kv = h // PARAMS["num_attention_heads"] * PARAMS["num_key_value_heads"]
    shapes = {"model.embed_tokens.weight": (32, h), "lm_head.weight": (32, h), "model.norm.weight": (h,)}
    for i in range(PARAMS["num_hidden_layers"]):
        p = f"model.layers.{i}."
        shapes |= {p + "input_layernorm.weight": (h,), p + "post_attention_layernorm.weight": (h,),
                   p + "self_attn.q_proj.weight": (h, h), p + "self_attn.k_proj.weight": (kv, h),
                   p + "self_attn.v_proj.weight": (kv, h), p + "self_attn.o_proj.weight": (h, h),
                   p + "mlp.gate_proj.weight": (m, h), p + "mlp.up_proj.weight": (m, h),
                   p + "mlp.down_proj.weight": (h, m)}
    return {k: torch.randn(shape, generator=g) for k, shape in shapes.items()}


def _mlp(gate, up, down, x):
    return (torch.nn.functional.silu(x @ gate.T) * (x @ up.T)) @ down.T


def test_split_experts_partition_the_dense_mlp():
    state = _state()
    params, moe = T.split_moe(PARAMS, state, 4, 0.0, 1)
    assert params["intermediate_size"] == 6 and params["num_local_experts"] == 4
    x = torch.randn(5, PARAMS["hidden_size"])
    for i in range(PARAMS["num_hidden_layers"]):
        p = f"model.layers.{i}."
        dense = _mlp(state[p + "mlp.gate_proj.weight"], state[p + "mlp.up_proj.weight"],
                     state[p + "mlp.down_proj.weight"], x)
        experts = sum(_mlp(*(moe[f"{p}block_sparse_moe.experts.{e}.{w}.weight"] for w in ("w1", "w3", "w2")), x)
                      for e in range(4))
        assert torch.allclose(dense, experts, atol=1e-4)
        assert not any(k.startswith(p + "mlp.") for k in moe)


def test_pooled_kv_heads_are_the_mean_of_the_heads_they_replace():
    state = _state()
    params, pooled = T.pool_kv_heads(PARAMS, state, 1)
    assert params["num_key_value_heads"] == 1
    k = state["model.layers.0.self_attn.k_proj.weight"]
    assert torch.allclose(pooled["model.layers.0.self_attn.k_proj.weight"], (k[:4] + k[4:]) / 2)
    assert torch.equal(pooled["model.layers.0.self_attn.q_proj.weight"], state["model.layers.0.self_attn.q_proj.weight"])


def test_width_pruning_keeps_a_subset_in_order():
    state = _state()
    params, pruned = T.prune_width(PARAMS, state, 12, 16, 3)
    assert (params["hidden_size"], params["intermediate_size"], params["head_dim"]) == (12, 16, 4)
    assert pruned["model.embed_tokens.weight"].shape == (32, 12)
    assert pruned["model.layers.0.self_attn.o_proj.weight"].shape == (12, 16)
    assert pruned["model.layers.1.mlp.down_proj.weight"].shape == (12, 16)
    columns = _kept(state, pruned)  # the residual dimensions kept, found by their (distinct) final-norm weights
    assert torch.equal(pruned["model.norm.weight"], state["model.norm.weight"][columns])
    assert columns.tolist() == sorted(set(columns.tolist()))
    up, kept = state["model.layers.0.mlp.up_proj.weight"][:, columns], pruned["model.layers.0.mlp.up_proj.weight"]
    units = [int((up - row).abs().sum(dim=1).argmin()) for row in kept]
    assert torch.equal(up[units], kept)
    assert units == sorted(set(units))


def _kept(state, pruned) -> torch.Tensor:
    norm, kept = state["model.norm.weight"], pruned["model.norm.weight"]
    return torch.tensor([int((norm - value).abs().argmin()) for value in kept])
