"""Canonical tensor roles: what a tensor *does*, independent of any family's spelling.

Comparisons speak of `layer 7 / attn.q`, never of
`model.layers.7.self_attn.q_proj`. A `CanonicalKey` is a role plus, where they
apply, a layer index, an expert index and whether it is a weight or a bias.
Canonical orientation is PyTorch `nn.Linear`'s: (out_features, in_features).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Roles outside the transformer blocks.
GLOBAL_ROLES = {
    "embed": "token embedding",
    "pos_embed": "learned position embedding",
    "type_embed": "token type embedding",
    "embed_norm": "norm applied to the embeddings",
    "final_norm": "final norm before the output head",
    "lm_head": "output projection to the vocabulary",
    "pooler": "pooler projection (encoders)",
}

# Roles inside block `layer`.
LAYER_ROLES = {
    "attn_norm": "norm before attention (input_layernorm)",
    "mlp_norm": "norm before the MLP (pre-MLP / post_attention_layernorm in LLaMA)",
    "post_attn_norm": "norm applied after attention (post-LN models, Gemma 2)",
    "post_mlp_norm": "norm applied after the MLP (post-LN models, Gemma 2)",
    "attn.q": "attention query projection",
    "attn.k": "attention key projection",
    "attn.v": "attention value projection",
    "attn.o": "attention output projection",
    "attn.q_norm": "per-head query norm",
    "attn.k_norm": "per-head key norm",
    # Multi-head latent attention (DeepSeek-V2/V3, Kimi K2, MiniCPM3): queries and keys/values pass
    # through low-rank latents, so no stored matrix is a q, k or v projection of the residual stream.
    "attn.q_a": "latent attention: query down-projection from the residual stream (q_a_proj)",
    "attn.q_a_norm": "latent attention: norm of the query latent (q_a_layernorm)",
    "attn.q_b": "latent attention: query up-projection from the latent (q_b_proj)",
    "attn.kv_a": "latent attention: key/value down-projection plus the shared RoPE key (kv_a_proj_with_mqa)",
    "attn.kv_a_norm": "latent attention: norm of the key/value latent (kv_a_layernorm)",
    "attn.kv_b": "latent attention: key and value up-projection from the latent (kv_b_proj)",
    "attn.sinks": "per-head attention sink logits (gpt-oss)",
    "mlp.gate": "MLP gate projection (gated MLPs)",
    "mlp.up": "MLP up projection",
    "mlp.down": "MLP down projection",
    "moe.router": "mixture-of-experts router",
    "moe.score_correction": "per-expert bias added to router scores to choose experts (DeepSeek-V3 e_score_correction_bias)",
    "moe.shared_gate": "gate of the shared expert",
    "shared_mlp.gate": "shared expert gate projection",
    "shared_mlp.up": "shared expert up projection",
    "shared_mlp.down": "shared expert down projection",
}

# Roles that also exist once per expert (`expert` index set).
EXPERT_ROLES = {"mlp.gate", "mlp.up", "mlp.down"}

ALL_ROLES = {**GLOBAL_ROLES, **LAYER_ROLES}

# How each matrix meets the residual stream (pre-norm transformers): readers take
# the output of the norm named here (their columns are residual dimensions, and
# the norm can be folded into them); writers add to it (their rows are residual
# dimensions).
PRECEDING_NORM = {"attn.q": "attn_norm", "attn.k": "attn_norm", "attn.v": "attn_norm",
                  "attn.q_a": "attn_norm", "attn.kv_a": "attn_norm",
                  "mlp.gate": "mlp_norm", "mlp.up": "mlp_norm"}
WRITES_RESIDUAL = frozenset({"attn.o", "mlp.down"})

# Norm types whose stored weight w is an offset from the scale the model applies: Gemma's RMSNorm
# multiplies by (1 + w). Every reader of a norm's scale goes through `norm_scale`.
NORM_WEIGHT_OFFSET = {"rmsnorm_plus_one": 1.0}


def norm_scale(values, norm_type: str | None):
    """The scale a norm applies, from its stored weight `values` (an array; its dtype is kept)."""
    offset = NORM_WEIGHT_OFFSET.get(norm_type) if norm_type else None
    return values + offset if offset is not None else values

# Order of roles within a block, used to list tensors and to break ties in inference.
ROLE_ORDER = [
    "embed", "pos_embed", "type_embed", "embed_norm",
    "attn_norm", "attn.q", "attn.k", "attn.v", "attn.q_norm", "attn.k_norm",
    "attn.q_a", "attn.q_a_norm", "attn.q_b", "attn.kv_a", "attn.kv_a_norm", "attn.kv_b", "attn.sinks",
    "attn.o", "post_attn_norm",
    "mlp_norm", "moe.router", "moe.score_correction", "mlp.gate", "mlp.up", "mlp.down",
    "moe.shared_gate", "shared_mlp.gate", "shared_mlp.up", "shared_mlp.down", "post_mlp_norm",
    "final_norm", "lm_head", "pooler",
]


# `CanonicalKey.name`, read back: [layers.L.][experts.E.]ROLE.PARAM
_KEY_NAME = re.compile(r"^(?:layers\.(\d+)\.)?(?:experts\.(\d+)\.)?(.+)\.(weight|bias)$")


@dataclass(frozen=True, order=True)
class CanonicalKey:
    """One canonical tensor: `layers.3.experts.1.mlp.up.weight`-style identity."""

    role: str
    layer: int | None = None
    expert: int | None = None
    param: str = "weight"  # "weight" or "bias"

    def __post_init__(self):
        if self.role not in ALL_ROLES:
            raise ValueError(f"unknown role {self.role!r}")

    @classmethod
    def parse(cls, name: str) -> "CanonicalKey | None":
        """The key whose `name` this is (`layers.3.experts.1.mlp.up.weight`), or None for any other string."""
        match = _KEY_NAME.match(name)
        if match is None or match[3] not in ALL_ROLES:
            return None
        return cls(match[3], None if match[1] is None else int(match[1]), None if match[2] is None else int(match[2]),
                   match[4])

    @property
    def name(self) -> str:
        parts = []
        if self.layer is not None:
            parts.append(f"layers.{self.layer}")
        if self.expert is not None:
            parts.append(f"experts.{self.expert}")
        parts.append(self.role)
        parts.append(self.param)
        return ".".join(parts)

    @property
    def label(self) -> str:
        """Human form: `layer 7 / attn.q`, `layer 2 / expert 5 / mlp.up (bias)`."""
        parts = []
        if self.layer is not None:
            parts.append(f"layer {self.layer}")
        if self.expert is not None:
            parts.append(f"expert {self.expert}")
        parts.append(self.role + (" (bias)" if self.param == "bias" else ""))
        return " / ".join(parts)

    def sort_key(self) -> tuple:
        in_block = self.layer is not None
        position = ROLE_ORDER.index(self.role) if self.role in ROLE_ORDER else len(ROLE_ORDER)
        group = 1 if in_block else (0 if position < ROLE_ORDER.index("attn_norm") else 2)
        return (group, self.layer if in_block else -1, self.expert if self.expert is not None else -1,
                position, 0 if self.param == "weight" else 1)
