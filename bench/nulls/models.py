"""Seeded, independent checkpoints with the weight structure of trained LLMs (the null suite's models).

Every model draws its own bases, indices and noise from its own seed; two
models share only what independently trained models share: the tokenizer's
strings, the token-frequency profile of the text (which sets embedding row
norms), the architecture's shapes, and the kind of structure below.

Structure of one model (see `ModelSpec`):
- every weight matrix is U diag(s) V^T with U, V random orthonormal for that
  matrix, except that matrices reading the residual stream (q, k, v, gate, up)
  take their top right singular vectors, and matrices writing it (o, down)
  their top left ones, from a model-wide residual subspace of RESIDUAL_SUBSPACE
  directions: the low-dimensional residual structure trained models share
  across layers. `s` is a power law s_k = k^-alpha (alpha drawn per model,
  0.5 to 1.0 by default: participation ratio of the rows 2.5 to 25) or, for
  the stand-ins, the singular values of a randomly chosen layer of the real
  SmolLM2-135M or all-MiniLM-L6-v2 (`real_stats.py`), resampled to the width;
- 2 to 4 massive residual dimensions at model-specific indices: norm weights
  MASSIVE_NORM times the median there (real norm weights for the stand-ins,
  with their largest values put there), reading matrices' columns and writing
  matrices' rows boosted there;
- norm weights lognormal around 1 (LayerNorm biases too in the families that
  have them), linear biases where the family has them;
- embeddings: row norms from a shared token-frequency profile, directions
  from the model's own anisotropic distribution (own mean direction and own
  power-law covariance basis); an untied output head likewise; learned
  position embeddings smooth in the position, in the model's own basis.

Families: `llama` (RMSNorm + SwiGLU, GQA, RoPE, tied or untied), `gpt2`
(LayerNorm + GELU, biases, fused Conv1D QKV, tied), `bert` (post-LN encoder,
biases). Tensor names and config.json come from transformers' own classes
(model built on the meta device, so nothing is allocated), so the project's
family tables map them as they would a real checkpoint.
"""

from __future__ import annotations

import json
import string
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

RESIDUAL_SUBSPACE = 8  # model-wide residual directions read and written by every layer
MASSIVE_NORM = 20.0  # norm weight at a massive dimension, relative to the median
MASSIVE_READ = 2.0  # extra weight of matrices reading the residual on its massive dimensions (columns)
MASSIVE_WRITE = 4.0  # extra weight of matrices writing the residual on its massive dimensions (rows)
VOCAB_STRINGS = 4096  # the shared token strings (a model's vocabulary is a prefix of them)
SHARED_SEED = 20240613  # the "text" every model was trained on: token strings and frequencies


@dataclass(frozen=True)
class ModelSpec:
    """What to generate; `seed` alone decides every random value of the model."""

    name: str
    group: str  # models of one group have equal shapes except depth (and tying)
    family: str  # "llama", "gpt2", "bert"
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    layers: int
    vocab: int
    tied: bool
    seed: int
    alpha: float | None = None  # power-law exponent of singular values (None: a real model's spectra)
    real: str | None = None  # "smollm2" or "minilm": spectra and norm weights from that model
    massive: int = 3  # number of massive residual dimensions
    # The "trained" draw kind (off by default; the default draws are unchanged): how far the inner bases of the
    # pairs training couples are turned onto each other (0: independent, 1: the same), `aligned_qk` for q and k
    # through a head's dimensions, `aligned_vo` for v and o through a head's, `aligned_ud` for up and down through
    # the MLP units (`_align_pairs`); `heavy_tails`: the entries of the matrices' privileged residual axes (the
    # massive dimensions' reading columns and writing rows) heavy-tailed (`_heavy_axes`).
    aligned_qk: float = 0.0
    aligned_vo: float = 0.0
    aligned_ud: float = 0.0
    heavy_tails: bool = False

    def to_dict(self) -> dict:
        """The spec's fields; the draw-kind fields only when set, so the keys of default draws stay as they were."""
        found = asdict(self)
        for key in ("aligned_qk", "aligned_vo", "aligned_ud", "heavy_tails"):
            if not found[key]:
                del found[key]
        return found

    @property
    def trained_kind(self) -> bool:
        return bool(self.aligned_qk or self.aligned_vo or self.aligned_ud or self.heavy_tails)


# Groups of the default pool: (group, family, hidden, intermediate, heads, kv heads, vocab, real source).
GROUPS = (
    ("llama-128", "llama", 128, 344, 4, 2, 2048, None),
    ("llama-256", "llama", 256, 688, 8, 2, 4096, None),
    ("llama-384", "llama", 384, 1024, 6, 2, 4096, None),
    # SmolLM2's spectra and norms resampled to hidden 384 (its own 576 x 1536 would triple the generation time)
    ("smollm2-standin", "llama", 384, 1024, 6, 2, 4096, "smollm2"),
    ("gpt2-256", "gpt2", 256, 1024, 4, 4, 4096, None),
    ("minilm-standin", "bert", 384, 1536, 12, 12, 4096, "minilm"),
)
DEPTHS = (6, 8, 10)


def pool_specs(count: int, seed: int, real_available: set[str] | frozenset = frozenset({"smollm2", "minilm"}),
               groups=GROUPS, depths=DEPTHS) -> list[ModelSpec]:
    """`count` model specs spread round-robin over the groups (stand-ins only if their real model is available)."""
    rng = np.random.default_rng([seed, 1])
    usable = [g for g in groups if g[7] is None or g[7] in real_available]
    specs = []
    for index in range(count):
        group, family, hidden, inter, heads, kv, vocab, real = usable[index % len(usable)]
        tied = True if family in ("gpt2", "bert") else bool(rng.random() < 0.5)
        specs.append(ModelSpec(
            name=f"{group}-{index:03d}", group=group, family=family, hidden=hidden, intermediate=inter, heads=heads,
            kv_heads=kv, layers=int(rng.choice(depths)), vocab=vocab, tied=tied,
            seed=int(rng.integers(2**31)), alpha=None if real else round(float(rng.uniform(0.5, 1.0)), 3),
            real=real, massive=int(rng.integers(2, 5))))
    return specs


def choose_pairs(specs: list[ModelSpec], count: int, seed: int, cross_share: float = 0.1) -> list[tuple[int, int]]:
    """`count` distinct unordered pairs: mostly within a group (equal shapes, equal or different depth),
    `cross_share` of them across families of equal hidden size (shared vocabulary strings)."""
    rng = np.random.default_rng([seed, 2])
    within = [(i, j) for i in range(len(specs)) for j in range(i + 1, len(specs)) if specs[i].group == specs[j].group]
    across = [(i, j) for i in range(len(specs)) for j in range(i + 1, len(specs))
              if specs[i].family != specs[j].family and specs[i].hidden == specs[j].hidden]
    n_across = min(len(across), int(round(count * cross_share)))
    n_within = min(len(within), count - n_across)
    picked = [within[k] for k in rng.choice(len(within), size=n_within, replace=False)] if n_within else []
    picked += [across[k] for k in rng.choice(len(across), size=n_across, replace=False)] if n_across else []
    return sorted(picked)


# --- shared across models: the text's token strings and frequencies ---------------------------------------

def shared_strings(count: int = VOCAB_STRINGS) -> list[str]:
    """Token strings every model's tokenizer uses (a vocabulary of size V is the first V of them)."""
    rng = np.random.default_rng(SHARED_SEED)
    letters = np.array(list(string.ascii_lowercase))
    found: dict[str, None] = {}
    while len(found) < count:
        length = int(rng.integers(1, 8))
        word = "".join(rng.choice(letters, size=length))
        found.setdefault((" " if rng.random() < 0.5 else "") + word)
    return list(found)


def shared_row_norms(vocab: int) -> np.ndarray:
    """Relative embedding row norm of every token id, from the shared frequency profile (Zipf ranks)."""
    rng = np.random.default_rng([SHARED_SEED, 1])
    rank = rng.permutation(vocab) + 1  # the frequency rank of each token in the shared text
    return 1.3 - 0.8 * np.log(rank) / np.log(vocab)


def tokenizer_json(vocab: int, family: str) -> dict:
    strings = shared_strings()[:vocab]
    if family == "bert":
        model = {"type": "WordPiece", "unk_token": strings[0], "continuing_subword_prefix": "##",
                 "max_input_chars_per_word": 100, "vocab": {s: i for i, s in enumerate(strings)}}
    else:
        model = {"type": "BPE", "dropout": None, "unk_token": None, "vocab": {s: i for i, s in enumerate(strings)},
                 "merges": []}
    return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": [], "normalizer": None,
            "pre_tokenizer": None, "post_processor": None, "decoder": None, "model": model}


# --- one model -----------------------------------------------------------------------------------------

def _orthonormal(rng: np.random.Generator, rows: int, columns: int, first: np.ndarray | None = None) -> np.ndarray:
    """rows x columns with orthonormal columns (float32); the first ones span `first` (rows x m) when given."""
    gaussian = torch.randn(rows, columns, generator=_torch_generator(rng))
    if first is not None:
        m = min(first.shape[1], columns)
        gaussian[:, :m] = torch.from_numpy((first[:, :m] @ _rotation(rng, m)).astype(np.float32))
    q, r = torch.linalg.qr(gaussian)
    return (q * torch.sign(torch.diagonal(r))[None, :]).numpy()


def _rotation(rng: np.random.Generator, size: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((size, size)))
    return q * np.sign(np.diag(r))[None, :]


def _torch_generator(rng: np.random.Generator) -> torch.Generator:
    """Large draws (Gaussian matrices) come from torch, seeded by the model's generator: torch's
    linear algebra honours a thread limit set at run time, numpy's OpenBLAS does not."""
    return torch.Generator().manual_seed(int(rng.integers(2**62)))


def _resample(values: np.ndarray, count: int) -> np.ndarray:
    """A sorted sequence resampled to `count` points at equal relative positions."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) == count:
        return values.copy()
    return np.interp(np.linspace(0, 1, count), np.linspace(0, 1, len(values)), values)


class _Generator:
    def __init__(self, spec: ModelSpec, real: dict | None):
        self.spec = spec
        self.rng = np.random.default_rng(spec.seed)
        self.real = real
        h = spec.hidden
        self.residual = _orthonormal(self.rng, h, RESIDUAL_SUBSPACE)
        self.massive = np.sort(self.rng.choice(h, size=spec.massive, replace=False))
        real_layers = sorted(int(k) for k in real["spectra"]) if real else []
        # each generated layer takes the statistics of one real layer (drawn per model)
        self.real_layer = [str(self.rng.choice(real_layers)) for _ in range(spec.layers)] if real else []

    # singular values and scale of one matrix
    def spectrum(self, layer: int | None, role: str, rank: int, fan_in: int) -> tuple[np.ndarray, float]:
        spec = self.spec
        if self.real and layer is not None and role in self.real["spectra"][self.real_layer[layer]]:
            entry = self.real["spectra"][self.real_layer[layer]][role]
            return _resample(entry["singular"], rank), float(entry["rms"])
        alpha = (0.75 if spec.alpha is None else spec.alpha) + self.rng.uniform(-0.1, 0.1)
        return np.arange(1, rank + 1, dtype=np.float64) ** -alpha, float(self.rng.uniform(0.5, 1.5) / np.sqrt(fan_in))

    def matrix(self, out: int, inn: int, layer: int | None, role: str, reads: bool | None) -> np.ndarray:
        """(out, inn); reads=True: input is the residual, False: output is, None: neither."""
        rank = min(out, inn)
        singular, rms = self.spectrum(layer, role, rank, inn)
        u = _orthonormal(self.rng, out, rank, self.residual if reads is False else None)
        v = _orthonormal(self.rng, inn, rank, self.residual if reads is True else None)
        w = (torch.from_numpy((u * singular[None, :]).astype(np.float32)) @ torch.from_numpy(v).T).double().numpy()
        if reads is True:
            w[:, self.massive] *= MASSIVE_READ
        elif reads is False:
            w[self.massive, :] *= MASSIVE_WRITE
        return w * (rms / max(float(np.sqrt(np.mean(w * w))), 1e-30))

    def norm_weight(self, layer: int | None, role: str) -> np.ndarray:
        h = self.spec.hidden
        real_values = None
        if self.real:
            key = "global" if layer is None else self.real_layer[layer]
            real_values = (self.real["norms"].get(key) or {}).get(role)
        if real_values is not None:
            values = _resample(np.abs(real_values), h)  # sorted; magnitudes (a sign flips with the next matrix)
            values = np.maximum(values, 1e-3)
            weights = np.empty(h)
            rest = np.setdiff1d(np.arange(h), self.massive)
            weights[self.massive] = values[-len(self.massive):]
            weights[self.rng.permutation(rest)] = values[:-len(self.massive)]
            return weights
        weights = self.rng.lognormal(0.0, 0.3, size=h)
        weights[self.massive] = MASSIVE_NORM * np.median(weights) * self.rng.uniform(0.7, 1.3, size=len(self.massive))
        return weights

    def norm_bias(self) -> np.ndarray:
        bias = self.rng.normal(0.0, 0.05, size=self.spec.hidden)
        bias[self.massive] += self.rng.normal(0.0, 0.5, size=len(self.massive))
        return bias

    def bias(self, size: int) -> np.ndarray:
        return self.rng.normal(0.0, 0.02, size=size)

    def token_rows(self, vocab: int) -> np.ndarray:
        """Embedding or head rows: shared row norms, model-specific anisotropic directions."""
        h = self.spec.hidden
        basis = _orthonormal(self.rng, h, h)
        scales = np.arange(1, h + 1, dtype=np.float64) ** -(0.75 if self.spec.alpha is None else self.spec.alpha) * 0.5
        mean = self.rng.standard_normal(h)
        mean *= 0.5 / np.linalg.norm(mean)
        gaussian = torch.randn(vocab, h, generator=_torch_generator(self.rng))
        directions = ((gaussian * torch.from_numpy(scales.astype(np.float32))[None, :]) @ torch.from_numpy(basis).T).double().numpy()
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        directions = directions + mean[None, :]
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        norms = shared_row_norms(vocab) * self.rng.lognormal(0.0, 0.1, size=vocab)
        return directions * norms[:, None] * float(self.rng.uniform(0.5, 1.5))

    def positions(self, count: int) -> np.ndarray:
        """Learned position embeddings: smooth in the position, in the model's own basis."""
        h = self.spec.hidden
        waves = 16
        frequencies = np.pi * np.arange(1, waves + 1) / count  # shared (the position structure), phases own
        phases = self.rng.uniform(0, 2 * np.pi, size=waves)
        curves = np.sin(np.arange(count)[:, None] * frequencies[None, :] + phases[None, :])
        loadings = self.rng.standard_normal((waves, h)) * (np.arange(1, waves + 1) ** -0.5)[:, None]
        return 0.02 * (curves @ loadings) + self.rng.normal(0, 0.005, size=(count, h))


def _role(family: str, name: str) -> tuple[str, int | None]:
    """(role, layer) of a tensor name of this family, in the generator's own terms."""
    parts = name.split(".")
    layer = next((int(p) for p in parts if p.isdigit()), None)
    table = {
        "llama": [("embed_tokens.weight", "embed"), ("lm_head.weight", "head"), ("q_proj.weight", "attn.q"),
                  ("k_proj.weight", "attn.k"), ("v_proj.weight", "attn.v"), ("o_proj.weight", "attn.o"),
                  ("gate_proj.weight", "mlp.gate"), ("up_proj.weight", "mlp.up"), ("down_proj.weight", "mlp.down"),
                  ("input_layernorm.weight", "attn_norm"), ("post_attention_layernorm.weight", "mlp_norm"),
                  ("norm.weight", "final_norm")],
        "gpt2": [("wte.weight", "embed"), ("wpe.weight", "positions"), ("c_attn.weight", "attn.qkv"),
                 ("attn.c_proj.weight", "attn.o"), ("c_fc.weight", "mlp.up"), ("mlp.c_proj.weight", "mlp.down"),
                 ("ln_1.weight", "attn_norm"), ("ln_2.weight", "mlp_norm"), ("ln_f.weight", "final_norm"),
                 ("ln_1.bias", "norm_bias"), ("ln_2.bias", "norm_bias"), ("ln_f.bias", "norm_bias"), (".bias", "bias")],
        "bert": [("word_embeddings.weight", "embed"), ("position_embeddings.weight", "positions"),
                 ("token_type_embeddings.weight", "token_types"), ("embeddings.LayerNorm.weight", "embed_norm"),
                 ("attention.output.LayerNorm.weight", "post_attn_norm"), ("output.LayerNorm.weight", "post_mlp_norm"),
                 ("LayerNorm.bias", "norm_bias"), ("self.query.weight", "attn.q"), ("self.key.weight", "attn.k"),
                 ("self.value.weight", "attn.v"), ("attention.output.dense.weight", "attn.o"),
                 ("intermediate.dense.weight", "mlp.up"), ("output.dense.weight", "mlp.down"),
                 ("pooler.dense.weight", "pooler"), (".bias", "bias")],
    }[family]
    for suffix, role in table:
        if name.endswith(suffix):
            return role, layer
    raise ValueError(f"{name}: no role in the {family} generator table")


READS = {"attn.q": True, "attn.k": True, "attn.v": True, "mlp.gate": True, "mlp.up": True, "attn.o": False,
         "mlp.down": False, "pooler": None}


def config_for(spec: ModelSpec):
    import transformers as T

    if spec.family == "llama":
        config = T.LlamaConfig(vocab_size=spec.vocab, hidden_size=spec.hidden, intermediate_size=spec.intermediate,
                               num_hidden_layers=spec.layers, num_attention_heads=spec.heads,
                               num_key_value_heads=spec.kv_heads, max_position_embeddings=2048,
                               tie_word_embeddings=spec.tied, bos_token_id=0, eos_token_id=1)
        config.architectures = ["LlamaForCausalLM"]
        return config, "LlamaForCausalLM"
    if spec.family == "gpt2":
        config = T.GPT2Config(vocab_size=spec.vocab, n_embd=spec.hidden, n_inner=spec.intermediate,
                              n_layer=spec.layers, n_head=spec.heads, n_positions=256, bos_token_id=0,
                              eos_token_id=1, tie_word_embeddings=True)
        config.architectures = ["GPT2LMHeadModel"]
        return config, "GPT2LMHeadModel"
    if spec.family == "bert":
        config = T.BertConfig(vocab_size=spec.vocab, hidden_size=spec.hidden, intermediate_size=spec.intermediate,
                              num_hidden_layers=spec.layers, num_attention_heads=spec.heads, max_position_embeddings=512)
        config.architectures = ["BertModel"]
        return config, "BertModel"
    raise ValueError(f"unknown family {spec.family}")


def generate_state(spec: ModelSpec, real: dict | None = None) -> tuple[dict[str, torch.Tensor], dict]:
    """Every stored tensor of the model (float32, in the family's own names and layout) and its config dict.

    Generated on one thread (the pools that build many models run one process per core)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _generate_state(spec, real)
    finally:
        torch.set_num_threads(threads)


def _generate_state(spec: ModelSpec, real: dict | None) -> tuple[dict[str, torch.Tensor], dict]:
    import transformers as T

    config, model_class = config_for(spec)
    with torch.device("meta"):
        model = getattr(T, model_class)(config)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if spec.tied or spec.family in ("gpt2", "bert"):
        shapes.pop("lm_head.weight", None)
    make = _Generator(spec, real)
    state: dict[str, np.ndarray] = {}
    for name, shape in shapes.items():
        role, layer = _role(spec.family, name)
        if role == "embed" or role == "head":
            values = make.token_rows(shape[0])
        elif role == "positions":
            values = make.positions(shape[0])
        elif role == "token_types":
            values = make.rng.normal(0.0, 0.02, size=shape)
        elif role.endswith("norm"):
            values = make.norm_weight(layer, role)
        elif role == "norm_bias":
            values = make.norm_bias()
        elif role == "bias":
            values = make.bias(shape[0])
        elif role == "attn.qkv":  # GPT-2 Conv1D: (in, 3 * hidden), q | k | v along the output
            h = spec.hidden
            values = np.concatenate([make.matrix(h, h, layer, r, True) for r in ("attn.q", "attn.k", "attn.v")]).T
        elif spec.family == "gpt2":  # Conv1D stores (in, out)
            values = make.matrix(shape[1], shape[0], layer, role, READS[role]).T
        else:
            values = make.matrix(shape[0], shape[1], layer, role, READS[role])
        state[name] = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))
    if spec.trained_kind:  # after every default draw, from the same generator: the default tensors stay as drawn
        _trained_structure(spec, make, state)
    return state, config.to_dict()


# --- the "trained" draw kind: what independent trainings on real text show (bench/trained_nulls.py) -----------

def _align(target: np.ndarray, current: np.ndarray, strength: float) -> np.ndarray:
    """Orthonormal columns turned from `current` toward `target` (same shape), column by column in order
    (the largest singular direction first): strength 0 keeps `current`, 1 gives `target`."""
    mixed = strength * target + np.sqrt(max(1.0 - strength ** 2, 0.0)) * current
    q, r = np.linalg.qr(mixed)
    return q * np.sign(np.diag(r))[None, :]


def _with_inner(w: np.ndarray, inner: np.ndarray, side: str) -> np.ndarray:
    """w with its singular vectors on one side replaced (`side` "left": rows space, "right": columns space);
    the singular values and the other side's vectors are kept."""
    u, s, vt = np.linalg.svd(w, full_matrices=False)
    return (inner * s[None, :]) @ vt if side == "left" else (u * s[None, :]) @ inner.T


def _align_pairs(spec: ModelSpec, layer: dict[str, np.ndarray]) -> None:
    """q/k and v/o through each head's dimensions, up/down through the units, matrices as (out, in).

    Training couples the two matrices of each product the forward pass computes: the attention score
    x^T q_h^T k_g y, the head's output o_h v_g x, the MLP's down (act(gate x) * up x). A trained pair's
    large singular directions in the space they share (head dimensions, units) coincide; generated
    matrices draw that space's basis independently. Each head's q (and o) takes the basis of its KV
    group's k (and v), turned by the spec's strength; down takes up's unit basis. Singular values and the
    residual side are kept, so spectra, massive dimensions and the shared residual subspace stay."""
    heads, kv = spec.heads, spec.kv_heads
    d = layer["q"].shape[0] // heads
    group = heads // kv
    for h in range(heads):
        g = h // group
        rows, kv_rows = slice(h * d, (h + 1) * d), slice(g * d, (g + 1) * d)
        if spec.aligned_qk:
            k_left = np.linalg.svd(layer["k"][kv_rows], full_matrices=False)[0]
            q_left = np.linalg.svd(layer["q"][rows], full_matrices=False)[0]
            layer["q"][rows] = _with_inner(layer["q"][rows], _align(k_left, q_left, spec.aligned_qk), "left")
        if spec.aligned_vo:
            v_left = np.linalg.svd(layer["v"][kv_rows], full_matrices=False)[0]
            o_right = np.linalg.svd(layer["o"][:, rows], full_matrices=False)[2].T
            layer["o"][:, rows] = _with_inner(layer["o"][:, rows], _align(v_left, o_right, spec.aligned_vo), "right")
    if spec.aligned_ud:
        up_left = np.linalg.svd(layer["up"], full_matrices=False)[0]  # (units, rank)
        down_right = np.linalg.svd(layer["down"], full_matrices=False)[2].T  # (units, rank)
        layer["down"] = _with_inner(layer["down"], _align(up_left, down_right, spec.aligned_ud), "right")


# The trained draw kind at the strengths that give generated models of the trained nulls' shapes (LLaMA, hidden
# 256, 4 layers) the q/k, v/o and up/down alignment measured on the independent trainings of
# `bench/trained_nulls.py` (median of its LLaMA models: 3.9, 5.5, 3.0; these strengths give about 4.0, 5.5, 3.2;
# its structure table prints both). `bench/nulls.py --kind trained` uses them.
TRAINED_KIND = {"aligned_qk": 0.5, "aligned_vo": 0.6, "aligned_ud": 0.14}
HEAVY_DF = 3.0  # Student-t degrees of freedom of the entries on privileged axes


def _heavy_axes(rng: np.random.Generator, massive: np.ndarray, layer: dict[str, np.ndarray]) -> None:
    """The entries of reading matrices' columns and writing matrices' rows at the massive dimensions multiplied by
    |t_3| factors normalised to mean square 1 (each column or row keeps its expected norm, its entries get heavy
    tails: the outlier weights trained LLMs concentrate on the axes of their massive activations)."""
    for role, values in layer.items():
        reads = READS.get(f"attn.{role}", READS.get(f"mlp.{role}"))
        if reads is None:
            continue
        axis = values[:, massive] if reads else values[massive, :]
        factors = np.abs(rng.standard_t(HEAVY_DF, size=axis.shape))
        factors /= np.sqrt(np.mean(factors ** 2))
        if reads:
            values[:, massive] = axis * factors
        else:
            values[massive, :] = axis * factors


def _trained_structure(spec: ModelSpec, make: "_Generator", state: dict[str, torch.Tensor]) -> None:
    """Apply the trained draw kind to every layer of `state` (in place)."""
    for layer_index in range(spec.layers):
        keys = {}
        for name in state:
            role, layer = _role(spec.family, name)
            if layer == layer_index and role.startswith(("attn.", "mlp.")) and name.endswith("weight"):
                keys[role] = name
        layer: dict[str, np.ndarray] = {}
        if "attn.qkv" in keys:  # GPT-2: Conv1D (in, 3 * hidden), q | k | v along the output
            qkv = state[keys["attn.qkv"]].double().numpy().T
            h = spec.hidden
            layer.update(q=qkv[:h].copy(), k=qkv[h:2 * h].copy(), v=qkv[2 * h:].copy())
        for role, name in keys.items():
            if role != "attn.qkv":
                values = state[name].double().numpy()
                layer[role.split(".")[1]] = (values.T if spec.family == "gpt2" else values).copy()
        _align_pairs(spec, layer)
        if spec.heavy_tails:
            _heavy_axes(make.rng, make.massive, layer)
        for role, name in keys.items():
            if role == "attn.qkv":
                values = np.concatenate([layer["q"], layer["k"], layer["v"]]).T
            else:
                values = layer[role.split(".")[1]]
                values = values.T if spec.family == "gpt2" else values
            state[name] = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))


def write_model(directory: Path, spec: ModelSpec, real: dict | None = None) -> Path:
    """Write config.json, model.safetensors and tokenizer.json of `spec` into `directory`."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state, config = generate_state(spec, real)
    config["torch_dtype"] = "float32"
    config.pop("_attn_implementation", None)
    (directory / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True, default=str))
    (directory / "tokenizer.json").write_text(json.dumps(tokenizer_json(spec.vocab, spec.family)))
    save_file(state, str(directory / "model.safetensors"), metadata={"format": "pt"})
    (directory / "spec.json").write_text(json.dumps(spec.to_dict(), indent=2))
    return directory

