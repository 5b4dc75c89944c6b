"""Disguised and structurally edited copies of a LLaMA base (the "no disguise escapes" cases), with the verdict
each must get and the edits its summary must name (`edits`: substrings of the comparison's summary, checked by
bench/run_zoo.py).

Expected verdicts, from the five definitions (DESIGN.md section 2):

- compose-exact: norms folded, residual basis rotated, MLP units, KV groups and query heads within groups permuted,
  then positive rescalings (q/k, v/o and up/down pairs, norms against the linears after them). Every step is
  function-preserving, so the definition says `identical` ("up to ... function-preserving transforms"); `derived`
  is accepted, as for rotate-permute, because attention is not yet checked up to a rotation with permuted heads,
  so the copy is found but its equality cannot be proved (still the right relation, only less specific).
- compose-change: the same, then Gaussian noise of 5% of each tensor's std (a fine-tune-sized change): `derived`.
- prune-width: 112 of 128 residual dimensions and 256 of 344 MLP units kept, then 2% noise: "pruned" is listed
  under `derived`.
- moe-split: every layer's MLP units partitioned into 4 experts of 86, each changed by 1% noise, a new router:
  `derived` (a split MLP is "upcycled from it"); never `identical`: the router makes another function, and the
  storage-rounding rule must not hold across expert layouts.
- moe-split-exact: the same split with every unit unchanged: still `derived`, never `identical` (every expert
  weight is a dense weight, but the storage-rounding rule does not hold across expert layouts).
- kv-pool: the 2 KV heads of every layer averaged into 1 (MQA), nothing else changed: `derived` (not a storage
  difference: the function changes).
- vocab-replace: a tokenizer of another text (1200 tokens where the base has 1000), its embedding and output head
  drawn anew, the layers kept with 2% noise: `derived` ("vocabulary changed").
- layer-reorder (layers 2 and 3 swapped) and layer-repeat (layer 2 twice): `assembled` ("reference layers are
  repeated or reordered").
- neg-disguise: each edited copy against `other`, an independent seed: `same-architecture` (or `unrelated`).
- quant-finetune: the fine-tune llama-s0-ft-a stored as GPTQ 4-bit: `derived` (quantized and fine-tuned), beside
  its control, quant-gptq4 (the base itself stored so: `identical`, the rounding is storage). The fine-tune moved
  the weights by 1.7%, less than the 4-bit rounding moves them (4.8%): the pair shows whether the tool tells a fine-tune
  under a coarse quantization from the quantization alone.
"""

from __future__ import annotations

import torch

from . import integer_quantized as QI
from . import quantized as Q
from . import text as X
from . import transforms as T
from . import models as M

DONOR_VOCAB = 1200
ROTATED_PERMUTED = ("residual basis changed (rotated", "the units were permuted")


def build_disguise_cases(zoo, base: str, derive, other: str | None = None) -> None:
    """`derive` is build.derive (passed in: build imports this module)."""
    params = zoo.params(base)
    layers = params["num_hidden_layers"]

    def compose(f: str, p: dict, s: dict) -> dict:
        s = T.rotate_residual(p, s, 81)
        s = T.permute_mlp(f, p, s, 82)
        s = T.permute_heads(f, p, s, 83)[0]
        s = T.rescale_pairs(p, s, 84)
        return {"state": T.rescale_norms(f, p, s, 85)}

    def checked(f: str, p: dict, s: dict) -> dict:
        made = compose(f, p, s)
        made["info"] = {"max_logit_diff": zoo.logit_diff(base, f, p, made["state"])}
        return made

    derive(zoo, f"{base}-compose", base, {"t": "compose", "seeds": [81, 82, 83, 84, 85]}, checked)
    zoo.case("compose-exact", f"{base}-compose", base, "identical", acceptable=("derived",),
             edits=ROTATED_PERMUTED,
             note="norms folded, residual rotated, MLP units, KV groups and query heads permuted, q/k, v/o, up/down "
                  "and norm/linear rescaled per channel (function preserved)")
    derive(zoo, f"{base}-compose-change", base, {"t": "compose-change", "seeds": [81, 82, 83, 84, 85], "noise": 0.05},
           lambda f, p, s: {"state": T.add_noise(compose(f, p, s)["state"], 0.05, 86)})
    zoo.case("compose-change", f"{base}-compose-change", base, "derived", edits=ROTATED_PERMUTED,
             note="compose-exact, then Gaussian noise of 5% of each tensor's std")

    derive(zoo, f"{base}-prune-width", base, {"t": "prune-width", "hidden": 112, "intermediate": 256, "seed": 87},
           lambda f, p, s: dict(zip(("params", "state"), _noisy(T.prune_width(p, s, 112, 256, 87), 0.02, 88))))
    zoo.case("prune-width", f"{base}-prune-width", base, "derived",
             edits=("width-pruned: 112 of the reference's 128 residual dimensions",
                    "width-pruned: 256 of the reference's 344 MLP units", "in the reference's order: a subset of its units"),
             note="112 of 128 residual dimensions and 256 of 344 MLP units per layer kept, then 2% noise")

    split_notes = {
        "moe-split": ("Mixtral, 4 experts of 86 units partitioning each dense MLP's 344, each changed by 1% noise; "
                      "random router"),
        "moe-split-exact": ("as moe-split with no change to any unit: every expert weight equals a dense weight, yet "
                            "the router makes another function, so never `identical`"),
    }
    for name, noise in (("moe-split", 0.01), ("moe-split-exact", 0.0)):
        derive(zoo, f"{base}-{name}", base, {"t": "moe-split", "experts": 4, "noise": noise, "seed": 89},
               lambda f, p, s, noise=noise: dict(zip(("params", "state"), T.split_moe(p, s, 4, noise, 89)),
                                                 family="mixtral"))
        zoo.case(name, f"{base}-{name}", base, "derived", layer_map=list(range(layers)),
                 edits=("experts 0-3 partition the reference's MLP units",), note=split_notes[name])

    derive(zoo, f"{base}-kv-pool", base, {"t": "kv-pool", "kv_heads": 1},
           lambda f, p, s: dict(zip(("params", "state"), T.pool_kv_heads(p, s, 1))))
    zoo.case("kv-pool", f"{base}-kv-pool", base, "derived",
             edits=("key/value heads pooled: 1 KV heads where the reference has 2",),
             note="the 2 KV heads of every layer averaged into 1 (GQA -> MQA), nothing else changed")

    def replace_vocabulary(f: str, p: dict, s: dict) -> dict:
        tokenizer = X.train_tokenizer(X.different_text()[0], DONOR_VOCAB)
        vocab = X.vocab_size(tokenizer)
        state = T.add_noise(s, 0.02, 90)
        g = T._generator(91)
        for key in ("model.embed_tokens.weight", "lm_head.weight"):
            state[key] = 0.02 * torch.randn(vocab, p["hidden_size"], generator=g)
        eot = tokenizer["model"]["vocab"][X.EOT]
        return {"params": {**p, "vocab_size": vocab, "bos_token_id": eot, "eos_token_id": eot}, "state": state,
                "tokenizer": tokenizer}
    derive(zoo, f"{base}-vocab-replace", base, {"t": "vocab-replace", "vocab": DONOR_VOCAB, "seeds": [90, 91]},
           replace_vocabulary)
    zoo.case("vocab-replace", f"{base}-vocab-replace", base, "derived", edits=("vocabulary replaced",),
             note=f"a {DONOR_VOCAB}-token tokenizer of the different text; embedding and head drawn anew "
                  "(std 0.02), layers kept with 2% noise")

    for label, plan, edit in (("layer-reorder", [0, 1, 3, 2, 4, 5], "layers reordered: candidate layers 2, 3 hold "
                               "reference layers 3, 2"),
                              ("layer-repeat", [0, 1, 2, 2, 3, 4, 5], "layer 2 repeated: candidate layers 2, 3 "
                               "match reference layer 2")):
        derive(zoo, f"{base}-{label}", base, {"t": label, "layers": plan},
               lambda f, p, s, plan=plan: dict(zip(("params", "state"), T.assemble_layers(
                   f, p, s, [(s, i) for i in plan]))))
        zoo.case(label, f"{base}-{label}", base, "assembled", layer_map=plan, edits=(edit,),
                 note=f"layers {plan} of {base}, nothing else changed")

    tuned = f"{base}-ft-a"
    writer, options, config, note = QI.ZOO_COPIES["quant-gptq4"]
    if f"{base}-gptq4" not in zoo.models:  # the full slice has it (build_hub_quantized_copies)
        copy = derive(zoo, f"{base}-gptq4", base, {"t": "quant-gptq4"},
                      lambda f, p, s: {"state": QI.quantized_state(s, writer, **options), "quantization_config": config})
        zoo.case("quant-gptq4", copy, base, "identical", note=f"{note} (the control of quant-finetune)")
        zoo.cases[-1]["relative_change"] = M.relative_change(Q.read_back(zoo.out / "models" / copy), zoo.state(base))
    name = derive(zoo, f"{tuned}-gptq4", tuned, {"t": "quant-gptq4"},
                  lambda f, p, s: {"state": QI.quantized_state(s, writer, **options), "quantization_config": config})
    zoo.case("quant-finetune", name, base, "derived",
             note=f"{tuned} (10 steps on the same text) stored as GPTQ 4-bit, groups of 64")
    zoo.cases[-1]["relative_change"] = M.relative_change(Q.read_back(zoo.out / "models" / name), zoo.state(base))

    # each edited copy against an independent seed: the paths that find the edits (anchor responses, experts among
    # dense units, layers of other widths or order) must not accuse an unrelated model
    if other is not None:
        for suffix in ("compose", "prune-width", "moe-split", "moe-split-exact", "kv-pool", "vocab-replace", "layer-reorder",
                       "layer-repeat", "ft-a-gptq4"):
            zoo.case("neg-disguise", f"{base}-{suffix}", other, "same-architecture", acceptable=("unrelated",),
                     note=f"{base}-{suffix} against an independent seed")


def _noisy(made: tuple[dict, dict], fraction: float, seed: int) -> tuple[dict, dict]:
    params, state = made
    return params, T.add_noise(state, fraction, seed)
