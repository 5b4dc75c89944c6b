"""Independent trainings from one seed's default init, and copies of them: what `compare` answers.

    python bench/shared_seed.py OUT [--pairs 10] [--scales 3,1,0.5]

For each scale and pair index: two LLaMAs (4 layers, hidden 128, 344 MLP
units, 4 heads / 2 KV, vocabulary 1024) that start from
`torch.manual_seed(42)` + `LlamaForCausalLM(config)` and each add an
independent update from the null generator (`bench/nulls`: power-law
spectra, massive dimensions), `scale` times the init's norm per matrix;
norms take the generator's values. Each pair is compared (the null: nothing
shared but the init; an accusation is a false one), and a 5% copy of the
first model is compared with it (a real descendant: `derived` expected).
Prints verdict counts per scale and the residual test's p-values (the
evidence row "weights beyond the regenerated default initialisation").
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.nulls import models as M  # noqa: E402
from bench.zoo import transforms as Z  # noqa: E402
from provenance.api import compare_models  # noqa: E402
from provenance.verdicts import ACCUSING  # noqa: E402

VOCAB = 1024


def _spec(seed: int) -> M.ModelSpec:
    return M.ModelSpec(name=f"s{seed}", group="shared-seed", family="llama", hidden=128, intermediate=344, heads=4,
                       kv_heads=2, layers=4, vocab=VOCAB, tied=False, seed=seed, alpha=0.75, massive=3)


def _save(path: Path, state: dict[str, torch.Tensor], config: dict) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    config = {k: v for k, v in config.items() if k != "_attn_implementation"} | {"torch_dtype": "float32"}
    (path / "config.json").write_text(json.dumps(config, default=str))
    (path / "tokenizer.json").write_text(json.dumps(M.tokenizer_json(VOCAB, "llama")))
    save_file({k: v.float().contiguous() for k, v in state.items()}, str(path / "model.safetensors"))
    return path


def _trained(init: dict[str, torch.Tensor], seed: int, scale: float) -> tuple[dict[str, torch.Tensor], dict]:
    update, config = M.generate_state(_spec(seed))
    return ({k: v if init[k].dim() == 1 else init[k] + v / v.norm() * init[k].norm() * scale
             for k, v in update.items()}, config)


def _beyond(result) -> str:
    rows = [e for e in result.evidence if e.signal.startswith("weights beyond the regenerated")]
    return f"{10 ** rows[0].log10p:.2g}" if rows else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--scales", default="3,1,0.5")
    args = parser.parse_args()
    import transformers as T  # heavy: only when run

    _, config = M.generate_state(_spec(1))
    torch.manual_seed(42)
    settings = {k: config[k] for k in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                                       "num_attention_heads", "num_key_value_heads", "tie_word_embeddings")}
    init = {k: v.detach().clone() for k, v in T.LlamaForCausalLM(T.LlamaConfig(**settings)).state_dict().items()}
    for scale in (float(s) for s in args.scales.split(",")):
        pairs, copies, beyond = Counter(), Counter(), []
        for i in range(args.pairs):
            (a, config), (b, _) = _trained(init, 5000 + 2 * i, scale), _trained(init, 5001 + 2 * i, scale)
            pa, pb = _save(args.out / f"x{scale:g}-{i}-a", a, config), _save(args.out / f"x{scale:g}-{i}-b", b, config)
            pc = _save(args.out / f"x{scale:g}-{i}-copy", Z.add_noise(a, 0.05, 900 + i), config)
            pair = compare_models(pa, pb)
            pairs[("accused " if pair.verdict in ACCUSING else "") + str(pair.verdict)
                  + (" (abstained)" if pair.abstained else "")] += 1
            beyond.append(_beyond(pair))
            copies[str(compare_models(pc, pa).verdict)] += 1
        print(f"scale {scale:g}: independent pairs {dict(pairs)}; residual p {', '.join(beyond)}; "
              f"5% copies {dict(copies)}", flush=True)


if __name__ == "__main__":
    main()
