"""Independent mixture-of-experts pairs: does the expert matching (or anything else) accuse them?

    python bench/moe_nulls.py [--pairs 30] [--experts 16] [--layers 2]

Each model's weights come from the null suite's generator (`bench/nulls/models.py`:
power-law spectra, a model-wide residual subspace, massive dimensions): a
LLaMA-shaped model of `layers x experts` layers is generated from the model's
seed, and its MLPs become the experts (so a model's experts share its
residual structure, as trained experts share one residual stream), its first
layers' attention and norms the MoE's, written with Qwen3-MoE names
(`moe_models.write_moe`). Pairs of different seeds are independent. Printed:
verdicts, the share of pairs whose expert matching reaches the layer bar
(p < 1e-6 after correction) in any layer, and the smallest corrected p-value
seen; also every independent MoE against an independent dense model of the
same generator (the upcycling test's null).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.moe_models import MoeSpec, write_dense, write_moe  # noqa: E402
from bench.nulls.models import ModelSpec, generate_state  # noqa: E402
from provenance.compare.engine import compare_fingerprints  # noqa: E402
from provenance.compare.experts import Experts, match_experts, upcycling  # noqa: E402
from provenance.compare.views import SKETCHES  # noqa: E402
from provenance.fingerprint import build_fingerprint  # noqa: E402
from provenance.model import Checkpoint  # noqa: E402


def structured_layers(spec: MoeSpec, dense_width: int | None = None):
    """A `write_moe` layer_override filling every layer from one null-suite LLaMA model of the spec's seed."""
    width = dense_width or spec.expert_dim
    count = spec.layers * (1 if dense_width else spec.experts)
    llama = ModelSpec(name=f"moe{spec.seed}", group="moe", family="llama", hidden=spec.hidden, intermediate=width,
                      heads=spec.heads, kv_heads=spec.kv_heads, layers=max(count, spec.layers), vocab=spec.vocab,
                      tied=False, seed=spec.seed)
    state, _ = generate_state(llama)

    def override(layer: int, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        prefix = f"model.layers.{layer}."
        out = dict(tensors)
        for name in ("input_layernorm", "post_attention_layernorm", "self_attn.q_proj", "self_attn.k_proj",
                     "self_attn.v_proj", "self_attn.o_proj"):
            out[f"{prefix}{name}.weight"] = state[f"model.layers.{layer}.{name}.weight"]
        if dense_width:
            out = {k: v for k, v in out.items() if ".mlp." not in k}
            for part in ("gate_proj", "up_proj", "down_proj"):
                out[f"{prefix}mlp.{part}.weight"] = state[f"model.layers.{layer}.mlp.{part}.weight"]
            return out
        for expert in range(spec.experts):
            source = f"model.layers.{layer * spec.experts + expert}.mlp."
            for part in ("gate_proj", "up_proj", "down_proj"):
                out[f"{prefix}mlp.experts.{expert}.{part}.weight"] = state[source + part + ".weight"]
        return out
    return override


def fingerprint(path: Path):
    with Checkpoint.open(path) as checkpoint:
        return build_fingerprint(checkpoint)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=30)
    parser.add_argument("--experts", type=int, default=16)
    parser.add_argument("--layers", type=int, default=2)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="moe_nulls_"))
    models = []
    for seed in range(args.pairs + 1):
        spec = MoeSpec(layers=args.layers, experts=args.experts, hidden=64, expert_dim=32, vocab=256, shards=1,
                       seed=1000 + seed)
        models.append(fingerprint(write_moe(root / f"m{seed}", spec, layer_override=structured_layers(spec))))
    dense_spec = MoeSpec(layers=args.layers, experts=args.experts, hidden=64, expert_dim=32, vocab=256, shards=1,
                         seed=999)
    dense = fingerprint(write_dense(root / "dense", dense_spec, 32 * args.experts))
    verdicts: Counter[str] = Counter()
    strongest, flagged = 0.0, 0
    for index in range(args.pairs):
        cand, ref = models[index + 1], models[index]
        result = compare_fingerprints(cand, ref)
        verdicts[str(result.verdict.value if hasattr(result.verdict, "value") else result.verdict)] += 1
        ce, re = Experts.of(cand), Experts.of(ref)
        layer_ps = []
        for layer in range(args.layers):
            match = match_experts(cand, ref, layer, layer, ce, re, SKETCHES)
            if match is not None:
                layer_ps.append(match.log10p)
        best = min(layer_ps, default=0.0)
        strongest = min(strongest, best)
        flagged += best < -6
    up_verdicts: Counter[str] = Counter()
    up_strongest = 0.0
    for index in range(args.pairs):
        moe = models[index]
        result = compare_fingerprints(moe, dense)
        up_verdicts[str(result.verdict.value if hasattr(result.verdict, "value") else result.verdict)] += 1
        for layer in range(args.layers):
            found = upcycling(moe, dense, layer, layer, Experts.of(moe).by_layer[layer], True)
            if found is not None:
                up_strongest = min(up_strongest, found.log10p)
    print(f"{args.pairs} independent MoE pairs ({args.layers} layers x {args.experts} experts, null-suite weights): "
          f"verdicts {dict(verdicts)}; pairs with an expert match at p < 1e-6 (corrected over experts): {flagged}; "
          f"smallest corrected log10 p {strongest:.2f}")
    print(f"{args.pairs} independent MoE vs dense pairs: verdicts {dict(up_verdicts)}; smallest held-out log10 p of "
          f"the upcycling test {up_strongest:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
