"""Canonical tensor roles: what a tensor *does*, independent of any family's spelling.

Comparisons speak of `layer 7 / attn.q`, never of
`model.layers.7.self_attn.q_proj`. A `CanonicalKey` is a role plus, where they
apply, a layer index, an expert index and whether it is a weight or a bias.
Canonical orientation is PyTorch `nn.Linear`'s: (out_features, in_features).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum


class Role(str, Enum):
    """A canonical role. A `str` enum: each member equals its spelling, so JSON, stored fingerprints and
    dictionaries keyed by the strings are unchanged; `str()` and f-strings give the spelling."""

    EMBED = "embed"
    POS_EMBED = "pos_embed"
    TYPE_EMBED = "type_embed"
    EMBED_NORM = "embed_norm"
    FINAL_NORM = "final_norm"
    LM_HEAD = "lm_head"
    POOLER = "pooler"
    ATTN_NORM = "attn_norm"
    MLP_NORM = "mlp_norm"
    POST_ATTN_NORM = "post_attn_norm"
    POST_MLP_NORM = "post_mlp_norm"
    ATTN_Q = "attn.q"
    ATTN_K = "attn.k"
    ATTN_V = "attn.v"
    ATTN_O = "attn.o"
    ATTN_Q_NORM = "attn.q_norm"
    ATTN_K_NORM = "attn.k_norm"
    ATTN_Q_A = "attn.q_a"
    ATTN_Q_A_NORM = "attn.q_a_norm"
    ATTN_Q_B = "attn.q_b"
    ATTN_KV_A = "attn.kv_a"
    ATTN_KV_A_NORM = "attn.kv_a_norm"
    ATTN_KV_B = "attn.kv_b"
    ATTN_SINKS = "attn.sinks"
    MLP_GATE = "mlp.gate"
    MLP_UP = "mlp.up"
    MLP_DOWN = "mlp.down"
    MOE_ROUTER = "moe.router"
    MOE_SCORE_CORRECTION = "moe.score_correction"
    MOE_SHARED_GATE = "moe.shared_gate"
    SHARED_MLP_GATE = "shared_mlp.gate"
    SHARED_MLP_UP = "shared_mlp.up"
    SHARED_MLP_DOWN = "shared_mlp.down"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


# Roles outside the transformer blocks.
GLOBAL_ROLES = {
    Role.EMBED: "token embedding",
    Role.POS_EMBED: "learned position embedding",
    Role.TYPE_EMBED: "token type embedding",
    Role.EMBED_NORM: "norm applied to the embeddings",
    Role.FINAL_NORM: "final norm before the output head",
    Role.LM_HEAD: "output projection to the vocabulary",
    Role.POOLER: "pooler projection (encoders)",
}

# Roles inside block `layer`.
LAYER_ROLES = {
    Role.ATTN_NORM: "norm before attention (input_layernorm)",
    Role.MLP_NORM: "norm before the MLP (pre-MLP / post_attention_layernorm in LLaMA)",
    Role.POST_ATTN_NORM: "norm applied after attention (post-LN models, Gemma 2)",
    Role.POST_MLP_NORM: "norm applied after the MLP (post-LN models, Gemma 2)",
    Role.ATTN_Q: "attention query projection",
    Role.ATTN_K: "attention key projection",
    Role.ATTN_V: "attention value projection",
    Role.ATTN_O: "attention output projection",
    Role.ATTN_Q_NORM: "per-head query norm",
    Role.ATTN_K_NORM: "per-head key norm",
    # Multi-head latent attention (DeepSeek-V2/V3, Kimi K2, MiniCPM3): queries and keys/values pass
    # through low-rank latents, so no stored matrix is a q, k or v projection of the residual stream.
    Role.ATTN_Q_A: "latent attention: query down-projection from the residual stream (q_a_proj)",
    Role.ATTN_Q_A_NORM: "latent attention: norm of the query latent (q_a_layernorm)",
    Role.ATTN_Q_B: "latent attention: query up-projection from the latent (q_b_proj)",
    Role.ATTN_KV_A: "latent attention: key/value down-projection plus the shared RoPE key (kv_a_proj_with_mqa)",
    Role.ATTN_KV_A_NORM: "latent attention: norm of the key/value latent (kv_a_layernorm)",
    Role.ATTN_KV_B: "latent attention: key and value up-projection from the latent (kv_b_proj)",
    Role.ATTN_SINKS: "per-head attention sink logits (gpt-oss)",
    Role.MLP_GATE: "MLP gate projection (gated MLPs)",
    Role.MLP_UP: "MLP up projection",
    Role.MLP_DOWN: "MLP down projection",
    Role.MOE_ROUTER: "mixture-of-experts router",
    Role.MOE_SCORE_CORRECTION: "per-expert bias added to router scores to choose experts (DeepSeek-V3 e_score_correction_bias)",
    Role.MOE_SHARED_GATE: "gate of the shared expert",
    Role.SHARED_MLP_GATE: "shared expert gate projection",
    Role.SHARED_MLP_UP: "shared expert up projection",
    Role.SHARED_MLP_DOWN: "shared expert down projection",
}

# Roles that also exist once per expert (`expert` index set).
EXPERT_ROLES = {Role.MLP_GATE, Role.MLP_UP, Role.MLP_DOWN}

ALL_ROLES = {**GLOBAL_ROLES, **LAYER_ROLES}

# How each matrix meets the residual stream (pre-norm transformers): readers take
# the output of the norm named here (their columns are residual dimensions, and
# the norm can be folded into them); writers add to it (their rows are residual
# dimensions).
PRECEDING_NORM = {Role.ATTN_Q: Role.ATTN_NORM, Role.ATTN_K: Role.ATTN_NORM, Role.ATTN_V: Role.ATTN_NORM,
                  Role.ATTN_Q_A: Role.ATTN_NORM, Role.ATTN_KV_A: Role.ATTN_NORM,
                  Role.MLP_GATE: Role.MLP_NORM, Role.MLP_UP: Role.MLP_NORM}
WRITES_RESIDUAL = frozenset({Role.ATTN_O, Role.MLP_DOWN})

# Norm types whose stored weight w is an offset from the scale the model applies: Gemma's RMSNorm
# multiplies by (1 + w). Every reader of a norm's scale goes through `norm_scale`.
NORM_WEIGHT_OFFSET = {"rmsnorm_plus_one": 1.0}


def norm_scale(values, norm_type: str | None):
    """The scale a norm applies, from its stored weight `values` (an array; its dtype is kept)."""
    offset = NORM_WEIGHT_OFFSET.get(norm_type) if norm_type else None
    return values + offset if offset is not None else values

# Order of roles within a block, used to list tensors and to break ties in inference.
ROLE_ORDER = [
    Role.EMBED, Role.POS_EMBED, Role.TYPE_EMBED, Role.EMBED_NORM,
    Role.ATTN_NORM, Role.ATTN_Q, Role.ATTN_K, Role.ATTN_V, Role.ATTN_Q_NORM, Role.ATTN_K_NORM,
    Role.ATTN_Q_A, Role.ATTN_Q_A_NORM, Role.ATTN_Q_B, Role.ATTN_KV_A, Role.ATTN_KV_A_NORM, Role.ATTN_KV_B, Role.ATTN_SINKS,
    Role.ATTN_O, Role.POST_ATTN_NORM,
    Role.MLP_NORM, Role.MOE_ROUTER, Role.MOE_SCORE_CORRECTION, Role.MLP_GATE, Role.MLP_UP, Role.MLP_DOWN,
    Role.MOE_SHARED_GATE, Role.SHARED_MLP_GATE, Role.SHARED_MLP_UP, Role.SHARED_MLP_DOWN, Role.POST_MLP_NORM,
    Role.FINAL_NORM, Role.LM_HEAD, Role.POOLER,
]


# `CanonicalKey.name`, read back: [layers.L.][experts.E.]ROLE.PARAM
_KEY_NAME = re.compile(r"^(?:layers\.(\d+)\.)?(?:experts\.(\d+)\.)?(.+)\.(weight|bias)$")


@dataclass(frozen=True, order=True)
class CanonicalKey:
    """One canonical tensor: `layers.3.experts.1.mlp.up.weight`-style identity."""

    role: Role
    layer: int | None = None
    expert: int | None = None
    param: str = "weight"  # "weight" or "bias"

    def __post_init__(self):
        if self.role not in ALL_ROLES:
            raise ValueError(f"unknown role {self.role!r}")
        object.__setattr__(self, "role", Role(self.role))

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


def key_name(role: Role, layer: int | None = None, expert: int | None = None, param: str = "weight") -> str:
    """The canonical name of a tensor (`layers.3.mlp.up.weight`): the one place such a name is spelled."""
    return CanonicalKey(role, layer, expert, param).name


def expert_role_name(expert: int, role: Role) -> str:
    """An expert's role within its layer (`experts.3.mlp.up`): how per-expert fingerprint arrays are named."""
    return f"experts.{expert}.{role}"


def key_role(name: str) -> Role | None:
    """The role of the canonical tensor `name`, or None if `name` is no canonical key."""
    key = CanonicalKey.parse(name)
    return None if key is None else key.role


def in_layer(name: str) -> bool:
    """Whether `name` is the canonical name of a tensor inside a transformer block (`layers.L....`)."""
    return name.startswith("layers.")


def has_gated_mlp(names) -> bool:
    """Whether any canonical name in `names` is a gated MLP's gate weight (dense, per expert or shared)."""
    return any(name.endswith(".weight") and key_role(name) in (Role.MLP_GATE, Role.SHARED_MLP_GATE) for name in names)
