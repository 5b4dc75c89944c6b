"""Build the provenance zoo: small trained models, labelled derivatives, and DIR/cases.json.

Usage (from the checkout root):

    python -m bench.zoo.build --out DIR [--slice small|full]

`small` (about a minute on 2 CPU cores): two LLaMA bases and one GPT-2 base,
40 training steps each, and a dozen cases. `full` (about ten minutes): the
whole list below, 300 steps per base. Everything is seeded; trained bases,
derivatives and token streams are cached under DIR, keyed by their recipe,
so a rerun only rebuilds what changed. Nothing is downloaded.

What is built (see text.py for the corpora and tokenizer, models.py for the
families and training, transforms.py for each derivation):

- a byte-level BPE tokenizer (vocabulary 1000) trained on the Python sources
  of the stdlib packages json/email/asyncio ("same text"), saved as
  tokenizer.json in every model directory;
- bases trained by next-token prediction on the same text: LLaMA (hidden 128,
  MLP 344, 6 layers, 4 heads / 2 KV heads) from seeds 0, 1, 2; a wider LLaMA
  (hidden 192, MLP 512, 4 layers, 6 heads / 2 KV heads); GPT-2 (hidden 128,
  MLP 512, 6 layers, 4 heads, tied head) from seeds 0 and 1;
- derivatives of llama-s0 (and most of them of gpt2-s0): renamed tensors (Yi
  ln1/ln2, opaque t000.. names in order and shuffled), bf16/fp16 casts, int8
  per-channel and 4-bit block-32 quantize-dequantize, FP8 (128x128 block
  scales) and MXFP4 copies stored quantized (and noisy fine-tunes stored
  so, quantized.py), Hub quantizations stored as their producers store them
  (GPTQ, AWQ, compressed-tensors, bitsandbytes: integer_quantized.py; full
  slice), MLP-unit and attention-
  head permutations (GQA groups respected), norm/linear rescaling, a rotation
  of the residual basis (LLaMA; norms folded first), a stack of these
  evasions, a noise ladder (5..150% of each tensor's std), fine-tuning on the
  same text, continued pretraining on different text (Debian docs), layer
  pruning, SOLAR-style depth up-scaling, frankenmerges with another seed's
  layers, MoE upcycling to Mixtral, linear/SLERP/TIES merges of two
  fine-tunes, a merged LoRA, vocabulary extension, pruning and re-indexing,
  and two students of one parent with disjoint layers;
- disguised and structurally edited copies of llama-s0 (disguise.py, both
  slices): rotation, permutations and rescalings composed (exact and with 5%
  noise), width pruning, a dense MLP split into experts, pooled KV heads, a
  replaced vocabulary, layers reordered and repeated, a GPTQ 4-bit fine-tune
  beside a GPTQ 4-bit copy; each with the edit its summary must name, and
  each against llama-s1 as a negative;
- diffusers UNets (random init, diffusion.py): a copy with 10% noise on every
  tensor and an independent seed, for the generic comparison;
- negatives: pairs of seeds, GPT-2 against LLaMA, the wider LLaMA, and
  derivatives of one seed against another seed.

Every function-preserving transform is checked by the logits on a fixed
input (2 x 64 held-out tokens); the build stops if they move by more than
1e-3, and cases.json records the maximum difference.

cases.json (schema provenance.zoo/1): `models` (name -> path relative to
DIR, family, params, recipe, training metrics, checks) and `cases`, each with
`id`, `type`, `family`, `candidate`, `reference` (model names; paths in
`models`), `verdict` (ground truth), `acceptable` (verdicts also counted as
exact, e.g. `derived` for the residual rotation), `positive`,
`layer_changing`, `layer_map` (expected reference layer of every candidate
layer, null for a layer from another source) or null, `layer_sources`
(frankenmerges: [model, layer] per candidate layer), `max_logit_diff`,
`relative_change` (||cand - ref|| / ||ref|| over shared tensors), `note`,
`edits` (substrings the comparison's summary must contain: the edit named;
disguise.py).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from . import diffusion, disguise, structured
from .disguise import ROTATED_PERMUTED
from . import integer_quantized as QI
from . import models as M
from . import quantized as Q
from . import text as X
from . import transforms as T

ZOO_VERSION = 1
SCHEMA = "provenance.zoo/1"
FUNCTION_TOLERANCE = 1e-3

SLICES = {
    "small": dict(base_steps=40, ft_steps=10, cpt_steps=20, seeds=(0, 1), gpt2_seeds=(0,), wide=False, full=False),
    "full": dict(base_steps=300, ft_steps=40, cpt_steps=150, seeds=(0, 1, 2), gpt2_seeds=(0, 1), wide=True, full=True),
}
NOISE_LADDER = (0.05, 0.25, 0.5, 1.0, 1.5)


def _key(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


class Zoo:
    def __init__(self, out: Path, log: Callable[[str], None] = print):
        self.out = out
        self.log = log
        self.models: dict[str, dict] = {}
        self.cases: list[dict] = []
        self._states: dict[str, dict[str, torch.Tensor]] = {}
        self._logits: dict[str, torch.Tensor] = {}
        self.built = self.cached = 0

    # --- text ---------------------------------------------------------------------------------
    def prepare_text(self) -> None:
        same, self.same_meta = X.same_text()
        different, self.different_meta = X.different_text()
        tok_dir = self.out / "tokenizer"
        tok_dir.mkdir(parents=True, exist_ok=True)
        self.tokenizer = self._cached_json(tok_dir / "base.json", self.same_meta["sha256"], lambda: X.train_tokenizer(same))
        self.donor_tokenizer = self._cached_json(tok_dir / "donor.json", self.different_meta["sha256"],
                                                 lambda: X.train_tokenizer(different))
        self.vocab = X.vocab_size(self.tokenizer)
        self.eot = self.tokenizer["model"]["vocab"][X.EOT]
        self.tok_key = _key(self.tokenizer)
        self.same_ids = self._cached_ids(tok_dir / "same.npy", same)
        self.different_ids = self._cached_ids(tok_dir / "different.npy", different)
        self.check_ids = M.check_input(self.same_ids)
        self.log(f"text: same {self.same_meta['chars']} chars -> {len(self.same_ids)} tokens; different "
                 f"{self.different_meta['chars']} chars ({self.different_meta['source']}) -> {len(self.different_ids)} tokens")

    def _cached_json(self, path: Path, key: str, make: Callable[[], dict]) -> dict:
        if path.exists():
            stored = json.loads(path.read_text())
            if stored.get("key") == key:
                return stored["tokenizer"]
        tokenizer = make()
        path.write_text(json.dumps({"key": key, "tokenizer": tokenizer}, ensure_ascii=False))
        return tokenizer

    def _cached_ids(self, path: Path, texts: list[str]) -> np.ndarray:
        key_path = path.with_suffix(".key")
        key = _key([self.tok_key, X._digest(texts)])
        if path.exists() and key_path.exists() and key_path.read_text() == key:
            return np.load(path)
        ids = X.encode(self.tokenizer, texts)
        np.save(path, ids)
        key_path.write_text(key)
        return ids

    # --- models -------------------------------------------------------------------------------
    def model(self, name: str, recipe: dict, make: Callable[[], dict], parents: tuple[str, ...] = ()) -> dict:
        """Build (or reuse from DIR) one model. make() returns family, params, state and optionally
        tokenizer, dtype, info."""
        key = _key({"zoo": ZOO_VERSION, "recipe": recipe, "tokenizer": self.tok_key,
                    "parents": [self.models[p]["key"] for p in parents]})
        directory = self.out / "models" / name
        spec_path = directory / "spec.json"
        if spec_path.exists() and (directory / "model.safetensors").exists():
            spec = json.loads(spec_path.read_text())
            if spec.get("key") == key:
                self.models[name] = spec
                self.cached += 1
                return spec
        started = time.time()
        made = make()
        M.save_model(directory, made["family"], made["params"], made["state"], made.get("tokenizer", self.tokenizer),
                     made.get("dtype", "float32"), made.get("quantization_config"))
        spec = {"name": name, "key": key, "path": f"models/{name}", "family": made["family"], "params": made["params"],
                "recipe": recipe, "parents": list(parents), "info": made.get("info", {}),
                "seconds": round(time.time() - started, 1)}
        spec_path.write_text(json.dumps(spec, indent=1, sort_keys=True, default=str))
        self._states[name] = made["state"]
        self.models[name] = spec
        self.built += 1
        self.log(f"  built {name} ({spec['seconds']} s){' ' + json.dumps(spec['info']) if spec['info'] else ''}")
        return spec

    def state(self, name: str) -> dict[str, torch.Tensor]:
        if name not in self._states:
            self._states[name] = M.load_state(self.out / "models" / name)
        return self._states[name]

    def params(self, name: str) -> dict:
        return dict(self.models[name]["params"])

    def family(self, name: str) -> str:
        return self.models[name]["family"]

    def base_logits(self, name: str) -> torch.Tensor:
        if name not in self._logits:
            self._logits[name] = M.logits(self.family(name), self.params(name), self.state(name), self.check_ids)
        return self._logits[name]

    def logit_diff(self, base: str, family: str, params: dict, state: dict, strict: bool = True) -> float:
        diff = float((M.logits(family, params, state, self.check_ids) - self.base_logits(base)).abs().max())
        if strict and diff > FUNCTION_TOLERANCE:
            raise RuntimeError(f"function-preserving transform of {base} moved logits by {diff:.3g}")
        return diff

    # --- cases --------------------------------------------------------------------------------
    def case(self, type_: str, candidate: str, reference: str, verdict: str, *, acceptable: tuple[str, ...] = (),
             layer_map: list | None = None, layer_sources: list | None = None, note: str = "",
             case_id: str | None = None, edits: tuple[str, ...] = ()) -> None:
        cand, ref = self.models[candidate], self.models[reference]
        positive = verdict in ("identical", "derived", "assembled")
        if layer_map is None and positive and M.FAMILIES[cand["family"]].num_layers(cand["params"]) == \
                M.FAMILIES[ref["family"]].num_layers(ref["params"]) and type_ != "shared-ancestor":
            layer_map = list(range(M.FAMILIES[cand["family"]].num_layers(cand["params"])))
        change = None
        try:
            change = M.relative_change(self.state(candidate), self.state(reference))
        except Exception:
            pass
        self.cases.append({
            "id": case_id or f"{cand['family']}/{type_}:{candidate}~{reference}",
            "type": type_, "family": self.family(reference) if type_.startswith("neg") else cand["family"],
            "candidate": candidate, "reference": reference, "verdict": verdict,
            "acceptable": sorted({verdict, *acceptable}), "positive": positive,
            "layer_changing": type_ in LAYER_CHANGING, "layer_map": layer_map, "layer_sources": layer_sources,
            "max_logit_diff": cand["info"].get("max_logit_diff"), "relative_change": change, "note": note,
            "edits": list(edits)})

    def write(self, slice_name: str, seconds: float) -> Path:
        import tokenizers
        import transformers

        data = {"schema": SCHEMA, "slice": slice_name, "zoo_version": ZOO_VERSION,
                "generator": {"torch": torch.__version__, "transformers": transformers.__version__,
                              "tokenizers": tokenizers.__version__, "python": sys.version.split()[0],
                              "build_seconds": round(seconds, 1), "models_built": self.built, "models_cached": self.cached},
                "corpora": {"same": self.same_meta, "different": self.different_meta},
                "tokenizer": {"kind": "byte-level BPE", "vocab_size": self.vocab, "path": "tokenizer/base.json"},
                "models": {name: {k: spec[k] for k in ("path", "family", "params", "recipe", "parents", "info")}
                           for name, spec in self.models.items()},
                "cases": self.cases}
        path = self.out / "cases.json"
        path.write_text(json.dumps(data, indent=1, default=str))
        return path


LAYER_CHANGING = {"prune-layers", "depth-upscale", "frankenmerge", "shared-ancestor", "moe-upcycle", "moe-split",
                  "moe-split-exact", "layer-reorder", "layer-repeat"}


# --- the recipes -----------------------------------------------------------------------------------

def build_bases(zoo: Zoo, cfg: dict) -> None:
    steps = cfg["base_steps"]

    def trained(family: str, params: dict, seed: int, data: np.ndarray, label: str, lr: float = 2e-3) -> Callable[[], dict]:
        def make() -> dict:
            state, metrics = M.train(family, params, data, steps, lr, seed, log=zoo.log, label=label)
            return {"family": family, "params": params, "state": state, "info": metrics}
        return make

    llama = M.llama_params(zoo.vocab, zoo.eot)
    for seed in cfg["seeds"]:
        name = f"llama-s{seed}"
        zoo.model(name, {"train": "same", "family": "llama", "params": llama, "seed": seed, "steps": steps, "lr": 2e-3},
                  trained("llama", llama, seed, zoo.same_ids, name))
    if cfg["wide"]:
        wide = M.llama_params(zoo.vocab, zoo.eot, hidden=192, intermediate=512, layers=4, heads=6, kv_heads=2)
        zoo.model("llama-wide", {"train": "same", "family": "llama", "params": wide, "seed": 3, "steps": steps, "lr": 2e-3},
                  trained("llama", wide, 3, zoo.same_ids, "llama-wide"))
    gpt2 = M.gpt2_params(zoo.vocab, zoo.eot)
    for seed in cfg["gpt2_seeds"]:
        name = f"gpt2-s{seed}"
        zoo.model(name, {"train": "same", "family": "gpt2", "params": gpt2, "seed": seed, "steps": steps, "lr": 2e-3},
                  trained("gpt2", gpt2, seed, zoo.same_ids, name))


def continued(zoo: Zoo, name: str, parent: str, data_name: str, steps: int, lr: float, seed: int) -> None:
    data = zoo.same_ids if data_name == "same" else zoo.different_ids

    def make() -> dict:
        state, metrics = M.train(zoo.family(parent), zoo.params(parent), data, steps, lr, seed, state=zoo.state(parent),
                                 warmup=min(10, steps), log=zoo.log, label=name)
        metrics["relative_change"] = M.relative_change(state, zoo.state(parent))
        return {"family": zoo.family(parent), "params": zoo.params(parent), "state": state, "info": metrics}

    zoo.model(name, {"continue": data_name, "steps": steps, "lr": lr, "seed": seed}, make, (parent,))


def derive(zoo: Zoo, name: str, parent: str, recipe: dict, fn: Callable[[str, dict, dict], dict],
           extra_parents: tuple[str, ...] = ()) -> str:
    """fn(family, params, state) -> dict with state and optionally params, family, tokenizer, dtype, info."""
    def make() -> dict:
        family, params = zoo.family(parent), zoo.params(parent)
        made = fn(family, params, zoo.state(parent))
        return {"family": family, "params": params, **made}

    zoo.model(name, recipe, make, (parent, *extra_parents))
    return name


def build_same_shape_derivatives(zoo: Zoo, base: str, cfg: dict) -> None:
    """Derivatives that keep the architecture: renames, casts, quantization, function-preserving transforms, noise."""
    fam = zoo.family(base)
    full = cfg["full"]

    def checked(transform: Callable[[str, dict, dict], dict], strict: bool = True):
        def fn(family: str, params: dict, state: dict) -> dict:
            made = transform(family, params, state)
            made.setdefault("info", {})["max_logit_diff"] = zoo.logit_diff(
                base, family, made.get("params", params), made.get("check_state", made["state"]), strict)
            made.pop("check_state", None)
            return made
        return fn

    if fam == "llama":
        derive(zoo, f"{base}-yi", base, {"t": "rename-yi"}, lambda f, p, s: {"state": T.rename_yi(s)})
        zoo.case("rename-yi", f"{base}-yi", base, "identical", note="input_layernorm/post_attention_layernorm -> ln1/ln2")
    if full or fam == "gpt2":
        derive(zoo, f"{base}-opaque-shuffled", base, {"t": "rename-opaque", "shuffle": True, "seed": 21},
               lambda f, p, s: {"state": T.rename_opaque(s, True, 21)[0]})
        zoo.case("rename-opaque-shuffled", f"{base}-opaque-shuffled", base, "identical",
                 note="every tensor renamed t000.. in a random order; config.json kept")
    if full and fam == "llama":
        derive(zoo, f"{base}-opaque", base, {"t": "rename-opaque", "shuffle": False},
               lambda f, p, s: {"state": T.rename_opaque(s, False, 0)[0]})
        zoo.case("rename-opaque", f"{base}-opaque", base, "identical",
                 note="every tensor renamed t000.. in the model's own order; config.json kept")
    casts = [("bf16", torch.bfloat16, "bfloat16")] if fam == "llama" else []
    casts += [("fp16", torch.float16, "float16")] if full or fam == "gpt2" else []
    for label, dtype, dtype_name in casts:
        derive(zoo, f"{base}-{label}", base, {"t": "cast", "dtype": label},
               checked(lambda f, p, s, d=dtype, n=dtype_name: {"state": T.cast(s, d), "dtype": n}, strict=False))
        zoo.case(f"cast-{label}", f"{base}-{label}", base, "identical")
    derive(zoo, f"{base}-int8", base, {"t": "quant-int8"},
           checked(lambda f, p, s: {"state": T.quant_int8_per_channel(f, s)}, strict=False))
    zoo.case("quant-int8", f"{base}-int8", base, "derived",
             note="symmetric int8 per output channel, dequantized to float32 (every 2-D tensor)")
    if full:
        derive(zoo, f"{base}-q4", base, {"t": "quant-q4"},
               checked(lambda f, p, s: {"state": T.quant_4bit_blocks(f, s)}, strict=False))
        zoo.case("quant-q4", f"{base}-q4", base, "derived",
                 note="symmetric 4-bit (levels -7..7), blocks of 32 along the input dimension, dequantized")
    if fam == "llama":
        build_quantized_copies(zoo, base)
    if full and fam == "llama":
        build_hub_quantized_copies(zoo, base)
    derive(zoo, f"{base}-perm-mlp", base, {"t": "perm-mlp", "seed": 31},
           checked(lambda f, p, s: {"state": T.permute_mlp(f, p, s, 31)}))
    zoo.case("perm-mlp", f"{base}-perm-mlp", base, "identical", note="MLP hidden units permuted in every layer")
    if full:
        derive(zoo, f"{base}-perm-heads", base, {"t": "perm-heads", "seed": 32},
               checked(lambda f, p, s: {"state": T.permute_heads(f, p, s, 32)[0]}))
        zoo.case("perm-heads", f"{base}-perm-heads", base, "identical",
                 note="attention heads permuted in every layer (with GQA, query heads move with their KV group)")
    if fam == "llama":
        def disguise(f: str, p: dict, s: dict) -> dict:
            s = T.rotate_residual(p, s, 43)
            s = T.permute_mlp(f, p, s, 44)
            return {"state": T.permute_heads(f, p, s, 45)[0]}
        derive(zoo, f"{base}-rotate-perm", base, {"t": "rotate-permute", "seeds": [43, 44, 45]}, checked(disguise))
        zoo.case("rotate-permute", f"{base}-rotate-perm", base, "identical", acceptable=("derived",),
                 edits=ROTATED_PERMUTED,
                 note="norms folded, residual basis rotated, MLP units, KV groups and query heads within groups permuted")
        derive(zoo, f"{base}-rotate-perm-noise", base, {"t": "rotate-permute-noise", "seeds": [43, 44, 45], "noise": 0.05},
               lambda f, p, s: {"state": T.add_noise(disguise(f, p, s)["state"], 0.05, 46)})
        zoo.case("rotate-permute-change", f"{base}-rotate-perm-noise", base, "derived",
                 edits=ROTATED_PERMUTED,
                 note="rotated and permuted as rotate-permute, then Gaussian noise of 5% of each tensor's std")
    derive(zoo, f"{base}-rescale", base, {"t": "rescale-norms", "seed": 33},
           checked(lambda f, p, s: {"state": T.rescale_norms(f, p, s, 33)}))
    zoo.case("rescale-norms", f"{base}-rescale", base, "identical",
             note="norm weights x s, following linear input columns / s, s = exp(0.5 N(0,1)) per channel")
    if full and fam == "llama":
        derive(zoo, f"{base}-rotate", base, {"t": "rotate-residual", "seed": 34},
               checked(lambda f, p, s: {"state": T.rotate_residual(p, s, 34)}))
        zoo.case("rotate-residual", f"{base}-rotate", base, "identical", acceptable=("derived",),
                 note="norms folded into the following linears (norm weights all 1), residual basis rotated by a random orthogonal matrix")

        derive(zoo, f"{base}-rotate-noise", base, {"t": "rotate-then-noise", "seed": 34, "noise": 0.1},
               lambda f, p, s: {"state": T.add_noise(T.rotate_residual(p, s, 34), 0.1, 41)})
        zoo.case("rotate-then-change", f"{base}-rotate-noise", base, "derived",
                 note="residual basis rotated (norms folded), then Gaussian noise of 10% of each tensor's std")
        derive(zoo, f"{base}-rescale-pairs", base, {"t": "rescale-pairs", "seed": 38},
               checked(lambda f, p, s: {"state": T.rescale_pairs(p, s, 38)}))
        zoo.case("rescale-pairs", f"{base}-rescale-pairs", base, "identical",
                 note="q rows x s / k rows / s (rotary pairs equal), v rows x t / o columns / t, up rows x u / down columns / u")

        def stack(f: str, p: dict, s: dict) -> dict:
            s = T.permute_mlp(f, p, s, 35)
            s = T.permute_heads(f, p, s, 36)[0]
            s = T.rescale_norms(f, p, s, 37)
            s = T.cast(s, torch.bfloat16)
            return {"state": T.rename_yi(s), "check_state": s, "dtype": "bfloat16"}
        derive(zoo, f"{base}-evasion-stack", base, {"t": "evasion-stack", "seeds": [35, 36, 37]}, checked(stack, strict=False))
        zoo.case("evasion-stack", f"{base}-evasion-stack", base, "identical",
                 note="MLP and head permutations, norm rescaling, bf16 cast and Yi renaming together")
    for fraction in (NOISE_LADDER if full else (0.25,)):
        label = f"noise-{int(round(fraction * 100)):03d}"
        derive(zoo, f"{base}-{label}", base, {"t": "noise", "fraction": fraction, "seed": 40},
               lambda f, p, s, x=fraction: {"state": T.add_noise(s, x, 40)})
        zoo.case(label, f"{base}-{label}", base, "derived",
                 note=f"Gaussian noise of {fraction:.0%} of each tensor's std added to every tensor")


def build_quantized_copies(zoo: Zoo, base: str) -> None:
    """Copies stored as their producers store them (FP8 with 128x128 block scales as DeepSeek-V3, MXFP4 blocks as
    gpt-oss), read back as floats by the tool: `identical` within the format's rounding; the same after Gaussian
    noise of twice that rounding (FP8 0.12, MXFP4 0.5 of each tensor's std) is a `derived` fine-tune."""
    for scheme, quantize, config, noise in (("fp8", Q.fp8_state, Q.fp8_config(), 0.12),
                                            ("mxfp4", Q.mxfp4_state, Q.MXFP4_CONFIG, 0.5)):
        copy = derive(zoo, f"{base}-{scheme}", base, {"t": f"quant-{scheme}"},
                      lambda f, p, s, q=quantize, c=config: {"state": q(s), "quantization_config": c})
        zoo.case(f"quant-{scheme}-copy", copy, base, "identical", note=f"{scheme} weights (stored quantized), read back "
                 "as floats")
        zoo.cases[-1]["relative_change"] = M.relative_change(Q.read_back(zoo.out / "models" / copy), zoo.state(base))
        tuned = derive(zoo, f"{base}-{scheme}-tuned", base, {"t": f"quant-{scheme}-tuned", "noise": noise, "seed": 42},
                       lambda f, p, s, q=quantize, c=config, x=noise: {"state": q(T.add_noise(s, x, 42)),
                                                                        "quantization_config": c})
        zoo.case(f"quant-{scheme}-tuned", tuned, base, "derived", note=f"Gaussian noise of {noise:.0%} of each tensor's "
                 f"std, then stored as {scheme}")
        zoo.cases[-1]["relative_change"] = M.relative_change(Q.read_back(zoo.out / "models" / tuned), zoo.state(base))


def build_hub_quantized_copies(zoo: Zoo, base: str) -> None:
    """GPTQ, AWQ, compressed-tensors and bitsandbytes copies stored as their producers store them
    (`integer_quantized.ZOO_COPIES`): the rounding is storage, so each is `identical`."""
    for label, (writer, options, config, note) in QI.ZOO_COPIES.items():
        copy = derive(zoo, f"{base}-{label.removeprefix('quant-')}", base, {"t": label},
                      lambda f, p, s, w=writer, o=options, c=config: {"state": QI.quantized_state(s, w, **o),
                                                                       "quantization_config": c})
        zoo.case(label, copy, base, "identical", note=note)
        zoo.cases[-1]["relative_change"] = M.relative_change(Q.read_back(zoo.out / "models" / copy), zoo.state(base))


def build_training_derivatives(zoo: Zoo, base: str, cfg: dict) -> None:
    full = cfg["full"]
    continued(zoo, f"{base}-ft-a", base, "same", cfg["ft_steps"], 3e-4, 10)
    zoo.case("finetune", f"{base}-ft-a", base, "derived", note=f"{cfg['ft_steps']} more steps on the same text, lr 3e-4")
    if full and zoo.family(base) == "llama":
        derive(zoo, f"{base}-ft-a-rotate", f"{base}-ft-a", {"t": "rotate-residual", "seed": 39},
               lambda f, p, s: {"state": T.rotate_residual(p, s, 39)})
        zoo.case("rotate-then-change", f"{base}-ft-a-rotate", base, "derived",
                 note=f"{base}-ft-a (fine-tuned) with its residual basis rotated (norms folded)")
    if full:
        continued(zoo, f"{base}-cpt", base, "different", cfg["cpt_steps"], 5e-4, 12)
        zoo.case("continued-pretrain", f"{base}-cpt", base, "derived",
                 note=f"{cfg['cpt_steps']} steps on different text (Debian docs), lr 5e-4")


def build_layer_derivatives(zoo: Zoo, base: str, other: str | None, cfg: dict) -> None:
    fam, params, full = zoo.family(base), zoo.params(base), cfg["full"]
    layers = M.FAMILIES[fam].num_layers(params)
    kept = [i for i in range(layers) if i not in (3, 4)]
    derive(zoo, f"{base}-pruned", base, {"t": "prune-layers", "kept": kept},
           lambda f, p, s: dict(zip(("params", "state"), T.assemble_layers(f, p, s, [(s, i) for i in kept]))))
    zoo.case("prune-layers", f"{base}-pruned", base, "derived", layer_map=kept, note=f"layers 3 and 4 dropped, kept {kept}",
             edits=(f"depth-pruned: {len(kept)} of the reference's {layers} layers",))
    half = layers - 2
    solar = list(range(half)) + list(range(layers - half, layers))
    derive(zoo, f"{base}-dus", base, {"t": "depth-upscale", "layers": solar},
           lambda f, p, s: dict(zip(("params", "state"), T.assemble_layers(f, p, s, [(s, i) for i in solar]))))
    repeated = sorted({j for j in solar if solar.count(j) > 1})
    zoo.case("depth-upscale", f"{base}-dus", base, "assembled", layer_map=solar,
             edits=(f"layers {', '.join(map(str, repeated))} repeated",),
             note=f"SOLAR-style: layers 0..{half - 1} of one copy then {layers - half}..{layers - 1} of another -> {len(solar)} layers")
    if other is None:
        return
    plans = {"split": [(base, 0), (base, 1), (base, 2), (other, 3), (other, 4), (other, 5)]}
    if full:
        plans["interleave"] = [(base, 0), (base, 1), (other, 1), (other, 2), (base, 3), (base, 4), (other, 4), (other, 5)]
    for label, plan in plans.items():
        name = f"{base}-franken-{label}"
        derive(zoo, name, base, {"t": "frankenmerge", "plan": plan},
               lambda f, p, s, plan=plan: dict(zip(("params", "state"), T.assemble_layers(
                   f, p, s, [(zoo.state(src), i) for src, i in plan]))), extra_parents=(other,))
        sources = [[src, i] for src, i in plan]
        for ref in ((base, other) if full else (base,)):
            zoo.case("frankenmerge", name, ref, "assembled", layer_sources=sources,
                     layer_map=[i if src == ref else None for src, i in plan],
                     note=f"{label}: layers {plan}; embeddings, final norm and head from {base}")
    if full and fam == "llama":
        derive(zoo, f"{base}-moe", base, {"t": "moe-upcycle", "experts": 4, "noise": 0.05, "seed": 50},
               lambda f, p, s: dict(zip(("params", "state"), T.upcycle_moe(p, s, 4, 0.05, 50)), family="mixtral"))
        zoo.case("moe-upcycle", f"{base}-moe", base, "derived", layer_map=list(range(layers)),
                 note="Mixtral, 4 experts (top-2), each a copy of the dense MLP plus 5% noise; random router")
        evens, odds = list(range(0, layers, 2)), list(range(1, layers, 2))
        for label, kept_layers in (("even", evens), ("odd", odds)):
            derive(zoo, f"{base}-student-{label}", base, {"t": "student", "kept": kept_layers},
                   lambda f, p, s, k=kept_layers: dict(zip(("params", "state"), T.assemble_layers(f, p, s, [(s, i) for i in k]))))
        zoo.case("shared-ancestor", f"{base}-student-even", f"{base}-student-odd", "derived",
                 layer_map=[None] * len(evens),
                 note=f"two students of {base}: layers {evens} vs {odds}; no block shared, embeddings and norms shared")


def build_merges(zoo: Zoo, base: str, cfg: dict) -> None:
    continued(zoo, f"{base}-ft-b", base, "different", cfg["ft_steps"], 3e-4, 11)
    a, b = f"{base}-ft-a", f"{base}-ft-b"
    merges = {
        "merge-linear": ({"t": "merge-linear", "w": [0.5, 0.5]}, lambda: T.merge_linear([zoo.state(a), zoo.state(b)], [0.5, 0.5])),
        "merge-slerp": ({"t": "merge-slerp", "t_": 0.5}, lambda: T.merge_slerp(zoo.state(a), zoo.state(b), 0.5)),
        "merge-ties": ({"t": "merge-ties", "density": 0.5}, lambda: T.merge_ties(zoo.state(base), [zoo.state(a), zoo.state(b)], 0.5)),
    }
    for type_, (recipe, fn) in merges.items():
        name = f"{base}-{type_}"
        derive(zoo, name, base, recipe, lambda f, p, s, fn=fn: {"state": fn()}, extra_parents=(a, b))
        zoo.case(type_, name, base, "derived", note=f"{type_[6:]} merge of {a} (same text) and {b} (different text)")
        if type_ == "merge-linear":
            zoo.case(type_, name, a, "derived", note=f"against one of its parents, {a}")
    derive(zoo, f"{base}-lora", base, {"t": "lora", "rank": 8, "relative": 0.2, "seed": 60},
           lambda f, p, s: {"state": T.merge_lora(f, p, s, 8, 0.2, 60)})
    zoo.case("lora-merged", f"{base}-lora", base, "derived",
             note="rank-8 update B A added to every block linear weight, ||BA|| = 0.2 ||W||")
    derive(zoo, f"{base}-lora-small", base, {"t": "lora", "rank": 8, "relative": 0.003, "seed": 61},
           lambda f, p, s: {"state": T.merge_lora(f, p, s, 8, 0.003, 61)})
    zoo.case("lora-small-f32", f"{base}-lora-small", base, "derived",
             note="rank-8 update with ||BA|| = 0.003 ||W|| (under bf16 rounding), stored in float32")


def build_vocab_derivatives(zoo: Zoo, base: str, cfg: dict) -> None:
    full, fam = cfg["full"], zoo.family(base)
    if full and fam == "llama":
        def extend(f: str, p: dict, s: dict) -> dict:
            tok, new_to_old, added = X.extend_vocabulary(zoo.tokenizer, zoo.donor_tokenizer, 200)
            params, state = T.move_vocab_rows(f, p, s, new_to_old, 70)
            return {"params": params, "state": state, "tokenizer": tok, "info": {"added_tokens": len(added)}}
        derive(zoo, f"{base}-vocab-extend", base, {"t": "vocab-extend", "count": 200, "seed": 70}, extend)
        zoo.case("vocab-extend", f"{base}-vocab-extend", base, "derived",
                 note="200 tokens from a tokenizer of the different text appended (with merges); new rows = mean row + noise")

        def prune(f: str, p: dict, s: dict) -> dict:
            tok, new_to_old, removed = X.prune_vocabulary(zoo.tokenizer, 150, 71)
            params, state = T.move_vocab_rows(f, p, s, new_to_old, 71)
            return {"params": params, "state": state, "tokenizer": tok, "info": {"removed_tokens": len(removed)}}
        derive(zoo, f"{base}-vocab-prune", base, {"t": "vocab-prune", "count": 150, "seed": 71}, prune)
        zoo.case("vocab-prune", f"{base}-vocab-prune", base, "derived",
                 note="150 merged tokens that no other merge uses removed, ids compacted")

    def reindex(f: str, p: dict, s: dict) -> dict:
        tok, new_to_old = X.reindex_vocabulary(zoo.tokenizer, 72)
        params, state = T.move_vocab_rows(f, p, s, new_to_old, 72)
        # function check: the same text through each tokenizer gives the same logits, up to the id map
        old_to_new = torch.empty(len(new_to_old), dtype=torch.long)
        old_to_new[torch.tensor(new_to_old)] = torch.arange(len(new_to_old))
        new_logits = M.logits(f, params, state, old_to_new[zoo.check_ids])
        diff = float((new_logits[..., old_to_new] - zoo.base_logits(base)).abs().max())
        if diff > FUNCTION_TOLERANCE:
            raise RuntimeError(f"vocabulary re-indexing changed logits by {diff:.3g}")
        return {"params": params, "state": state, "tokenizer": tok, "info": {"max_logit_diff": diff}}
    derive(zoo, f"{base}-vocab-reindex", base, {"t": "vocab-reindex", "seed": 72}, reindex)
    zoo.case("vocab-reindex", f"{base}-vocab-reindex", base, "derived", acceptable=("identical",),
             note="ids of all non-special tokens shuffled, embedding/head rows moved with them (function preserved)")


def build_negatives(zoo: Zoo, cfg: dict) -> None:
    full = cfg["full"]
    seeds = [f"llama-s{s}" for s in cfg["seeds"]]
    for a in seeds:
        for b in seeds:
            if a != b:
                zoo.case("neg-seed", a, b, "same-architecture", note="same config and data, different seed")
    gpts = [f"gpt2-s{s}" for s in cfg["gpt2_seeds"]]
    for a in gpts:
        for b in gpts:
            if a != b:
                zoo.case("neg-seed", a, b, "same-architecture", note="same config and data, different seed")
    zoo.case("neg-other-family", "gpt2-s0", "llama-s0", "unrelated", note="GPT-2 against LLaMA, same tokenizer and data")
    zoo.case("neg-other-family", "llama-s0", "gpt2-s0", "unrelated", note="LLaMA against GPT-2, same tokenizer and data")
    if not full:
        return
    zoo.case("neg-other-size", "llama-wide", "llama-s0", "same-architecture", note="LLaMA hidden 192 / 4 layers vs hidden 128 / 6 layers")
    zoo.case("neg-other-size", "llama-s0", "llama-wide", "same-architecture", note="LLaMA hidden 128 / 6 layers vs hidden 192 / 4 layers")
    for cand, ref in (("llama-s0-ft-a", "llama-s1"), ("llama-s0-int8", "llama-s2"), ("llama-s0-dus", "llama-s1"),
                      ("llama-s0-moe", "llama-s2"), ("llama-s0-vocab-reindex", "llama-s1"), ("llama-s0-perm-mlp", "llama-s2"),
                      ("gpt2-s0-perm-mlp", "gpt2-s1")):
        zoo.case("neg-derivative", cand, ref, "same-architecture", acceptable=("unrelated",),
                 note=f"a derivative of {zoo.models[cand]['parents'][0]} against an independent seed")


def build(out: Path, slice_name: str, log: Callable[[str], None] = print, threads: int = 1) -> Path:
    # One thread by default: on a shared 2-core machine, two OpenMP threads wait on each other
    # whenever another process takes a core, and training becomes up to 10x slower.
    torch.set_num_threads(threads)
    cfg = SLICES[slice_name]
    started = time.time()
    zoo = Zoo(out, log)
    zoo.prepare_text()
    log(f"bases ({cfg['base_steps']} steps each)")
    build_bases(zoo, cfg)
    full = cfg["full"]
    log("derivatives")
    build_same_shape_derivatives(zoo, "llama-s0", cfg)
    build_training_derivatives(zoo, "llama-s0", cfg)
    build_layer_derivatives(zoo, "llama-s0", "llama-s1", cfg)
    if full:
        build_merges(zoo, "llama-s0", cfg)
    build_vocab_derivatives(zoo, "llama-s0", cfg)
    disguise.build_disguise_cases(zoo, "llama-s0", derive, "llama-s1")  # structural edits and disguises, each named (see disguise.py)
    if full:
        build_same_shape_derivatives(zoo, "gpt2-s0", cfg)
        build_training_derivatives(zoo, "gpt2-s0", cfg)
        build_layer_derivatives(zoo, "gpt2-s0", "gpt2-s1", cfg)
        build_vocab_derivatives(zoo, "gpt2-s0", cfg)
    build_negatives(zoo, cfg)
    diffusion.build_diffusion_cases(zoo, cfg)  # UNets for the generic comparison (see diffusion.py)
    if full:
        structured.build_structured_cases(zoo)  # independent models with trained-LLM structure (see structured.py)
    seconds = time.time() - started
    path = zoo.write(slice_name, seconds)
    log(f"{len(zoo.cases)} cases, {len(zoo.models)} models ({zoo.built} built, {zoo.cached} cached) in {seconds:.1f} s -> {path}")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.zoo.build", description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="output directory (models, caches, cases.json)")
    parser.add_argument("--slice", choices=sorted(SLICES), default="full")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1, see build())")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    build(args.out, args.slice, threads=args.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
